//! The sweep's readiness pass: the fallback for tag-change events, which EventBridge delivers
//! on a best-effort basis [aws-behaviour §5.7 Tag change events].
//!
//! Every instance waiting for its readiness tag is listed by the store's `ready` index with
//! the tag it waits for, so one query per index shard and one paged `DescribeTags` (by
//! instance id and tag key, 200 instances per call) cover all of them, however many boot at
//! once. Only the instances found ready become inputs; a lost tag event costs at most one
//! sweep. The core ignores a second signal for an instance already on its way.

use std::collections::BTreeSet;

use turnstile_core::{Input, Millis};

use crate::ports::Tags;
use crate::runner::{Ports, RunError, Runner};
use crate::store::Store;

/// What one readiness pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadinessPass {
    /// Instances waiting for their readiness tag.
    pub waiting: usize,
    /// Of those, instances found carrying it, and handed to the core.
    pub ready: usize,
    /// Instances whose input failed; the next sweep (or the tag event) tries again.
    pub failed: usize,
}

/// Reads the readiness tags of (at most `limit`) waiting instances and hands the core those
/// that carry theirs. Fails only if the index or EC2 cannot be read.
pub async fn probe<P: Ports>(
    runner: &Runner<P>,
    now: Millis,
    limit: usize,
) -> Result<ReadinessPass, RunError> {
    let waiting = runner.ports.store.awaiting_ready(limit).await?;
    let mut pass = ReadinessPass {
        waiting: waiting.len(),
        ..ReadinessPass::default()
    };
    if waiting.is_empty() {
        return Ok(pass);
    }
    let instances: Vec<_> = waiting.iter().map(|(i, _)| i.clone()).collect();
    let keys: Vec<String> = waiting
        .iter()
        .map(|(_, g)| g.key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let found = runner
        .ports
        .tags
        .read(&instances, &keys)
        .await
        .map_err(|source| RunError::Port {
            command: "DescribeTags",
            source,
        })?;
    for (instance, tag) in waiting {
        let tags: Vec<(String, String)> = found
            .iter()
            .filter(|(i, k, v)| *i == instance && *k == tag.key && *v == tag.value)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        if tags.is_empty() {
            continue;
        }
        pass.ready += 1;
        let input = Input::InstanceTagged {
            instance: instance.clone(),
            tags,
            at: now,
        };
        if let Err(e) = runner.handle(input, None).await {
            pass.failed += 1;
            tracing::warn!(instance_id = %instance, error = %e, "readiness input failed; the next sweep tries again");
        }
    }
    Ok(pass)
}
