//! A scenario: a fleet, a plan, what happens over time, and the faults. Runs to a [`Report`].

use std::collections::BTreeSet;

use turnstile_core::{Engine, GroupKey, IntentId, Phase};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Fact, Hook, HookResult, Ms, Profile, Transition,
};

use crate::{Faults, Script, Sim};

/// One plan step and the behaviour of its deployment group.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub retries: u32,
    pub timeout_secs: u64,
    pub hold_on_failure: bool,
    pub config: DeployConfig,
    pub min_ms: Ms,
    pub max_ms: Ms,
    pub fail_prob: f64,
    /// Whether the group has a revision to deploy.
    pub has_revision: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub steps: Vec<StepSpec>,
    pub heartbeat_secs: u64,
    pub batch_window_secs: u64,
    pub breaker_threshold: u32,
    pub terminate_hook: bool,
    /// Auto Scaling replaces abandoned instances after this delay.
    pub replace_after_ms: Option<Ms>,
    pub script: Vec<(Ms, Script)>,
    pub faults: Faults,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub violations: Vec<String>,
    pub launched: usize,
    pub in_service: usize,
    pub abandoned: usize,
    pub held: usize,
    /// Deployments the orchestrator created, per plan group.
    pub deployments_per_group: Vec<usize>,
    pub end_ms: Ms,
    pub inputs: u64,
}

impl Scenario {
    pub fn group(i: usize) -> GroupKey {
        GroupKey::new(format!("app{i}"), format!("dg{i}"))
    }

    pub fn plan_json(&self) -> String {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "application": format!("app{i}"),
                    "deploymentGroup": format!("dg{i}"),
                    "gateTag": format!("turnstile:gate:app{i}"),
                    "retries": s.retries,
                    "retryBackoffSecs": 10,
                    "timeoutSecs": s.timeout_secs,
                    "onFailure": if s.hold_on_failure { "hold" } else { "abandon" },
                })
            })
            .collect();
        serde_json::json!({
            "version": 1,
            "steps": steps,
            "batchWindowSecs": self.batch_window_secs,
            "breaker": {"threshold": self.breaker_threshold, "windowSecs": 3600},
        })
        .to_string()
    }

    pub fn build(&self) -> Sim {
        let mut cloud = Cloud::new(self.seed);
        let mut hooks = vec![Hook {
            name: "turnstile-launch".into(),
            transition: Transition::Launching,
            heartbeat_secs: self.heartbeat_secs,
            default_result: HookResult::Abandon,
            metadata: Some(self.plan_json()),
        }];
        if self.terminate_hook {
            hooks.push(Hook {
                name: "turnstile-terminate".into(),
                transition: Transition::Terminating,
                heartbeat_secs: self.heartbeat_secs,
                default_result: HookResult::Continue,
                metadata: None,
            });
        }
        cloud.add_asg(Asg {
            name: "fleet".into(),
            hooks,
            replace_after_ms: self.replace_after_ms,
        });
        for (i, s) in self.steps.iter().enumerate() {
            cloud.add_group(DeploymentGroup {
                app: format!("app{i}"),
                name: format!("dg{i}"),
                tag_set: vec![vec![(format!("turnstile:gate:app{i}"), "open".into())]],
                target_revision: s.has_revision.then(|| format!("rev-{i}-1")),
                config: s.config,
                profile: Profile {
                    min_ms: s.min_ms,
                    max_ms: s.max_ms.max(s.min_ms),
                    fail_prob: s.fail_prob,
                },
            });
        }
        let groups = (0..self.steps.len()).map(Self::group).collect();
        let mut sim = Sim::new(cloud, Engine::default(), self.faults, self.seed, groups);
        for (at, what) in &self.script {
            sim.schedule(*at, what.clone());
        }
        sim
    }

    /// Long enough for every launched instance to reach its global timeout.
    pub fn horizon_ms(&self) -> Ms {
        let last = self.script.iter().map(|(t, _)| *t).max().unwrap_or(0);
        let global = (self.heartbeat_secs * 100 * 1000).min(turnstile_model::GLOBAL_TIMEOUT_CAP_MS);
        last + 2 * global + 600_000
    }

    pub fn run(&self) -> Report {
        let mut sim = self.build();
        sim.run(self.horizon_ms());
        sim.finish();
        report(&sim, self.steps.len())
    }
}

pub fn report(sim: &Sim, steps: usize) -> Report {
    let facts = &sim.cloud.facts;
    let abandoned = facts
        .iter()
        .filter(|f| matches!(f, Fact::Completed { result: HookResult::Abandon, hook, .. } if hook.contains("launch")))
        .count();
    let in_service: BTreeSet<&String> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::InService { instance, .. } => Some(instance),
            _ => None,
        })
        .collect();
    let held = sim
        .world
        .instances
        .values()
        .flatten()
        .filter(|r| matches!(r.phase, Phase::Held { .. }))
        .count();
    let mut deployments_per_group = vec![0; steps];
    for d in sim.cloud.deployments.values() {
        if IntentId::from_description(&d.description).is_some()
            && let Some(i) = (0..steps).find(|i| d.group == (format!("app{i}"), format!("dg{i}")))
            && let Some(n) = deployments_per_group.get_mut(i)
        {
            *n += 1;
        }
    }
    Report {
        violations: sim.violations.clone(),
        launched: sim.cloud.instances.len(),
        in_service: in_service.len(),
        abandoned,
        held,
        deployments_per_group,
        end_ms: sim.cloud.now,
        inputs: sim.stats.inputs,
    }
}
