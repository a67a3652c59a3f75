//! Test support: the model-backed ports (from `turnstile-localcloud`), a crash injector and
//! DynamoDB Local.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use turnstile_aws::runner::{Observer, RunError};
use turnstile_core::Command;
#[allow(unused_imports)]
pub use turnstile_localcloud::direct::{
    AnyVisibility, Aws, ModelClock, ModelPorts, Wakeups, driver, model_runner,
};

/// Crashes before the n-th effectful command (counted across the whole test), once.
#[derive(Clone, Default)]
pub struct CrashAt(pub Arc<AtomicI64>);

impl CrashAt {
    pub fn arm(&self, n: i64) {
        self.0.store(n, Ordering::SeqCst);
    }
}

impl Observer for CrashAt {
    fn before(&self, c: &Command) -> Result<(), RunError> {
        if matches!(c, Command::Metric(_) | Command::Alert(_)) {
            return Ok(());
        }
        let left = self.0.fetch_sub(1, Ordering::SeqCst);
        if left == 1 {
            Err(RunError::Crashed)
        } else {
            Ok(())
        }
    }
}

pub mod dynamo_local;

/// Deployment group `dg0` of `app0`, selecting by gate tag `gate-0`, with a target revision,
/// AllAtOnce, every deployment taking `min_ms..=max_ms`.
pub fn group_app0(min_ms: u64, max_ms: u64) -> turnstile_model::DeploymentGroup {
    turnstile_model::DeploymentGroup {
        app: "app0".into(),
        name: "dg0".into(),
        tag_set: vec![vec![("gate-0".into(), "open".into())]],
        target_revision: Some("rev".into()),
        config: turnstile_model::DeployConfig::AllAtOnce,
        profile: turnstile_model::Profile {
            min_ms,
            max_ms,
            fail_prob: 0.0,
        },
    }
}

/// A launch hook that ABANDONs on timeout.
pub fn launch_hook(
    name: &str,
    heartbeat_secs: u64,
    metadata: Option<&str>,
) -> turnstile_model::Hook {
    turnstile_model::Hook {
        name: name.into(),
        transition: turnstile_model::Transition::Launching,
        heartbeat_secs,
        default_result: turnstile_model::HookResult::Abandon,
        metadata: metadata.map(str::to_owned),
    }
}
