//! The alternative many teams use instead of hooks per group: one launch hook, and a user-data
//! script on the instance that, after boot, creates one deployment per application in plan
//! order with a fixed sleep between them (retrying every 30 s while the group is busy with
//! another deployment), then completes the lifecycle action with CONTINUE. The instance carries
//! every group's tag from launch (launch template tags), so every deployment of every group
//! targets it.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Instant;

use turnstile_model::{ApiError, Cloud, Creator, Fact, HookResult, InstanceState, Ms};

use crate::checks;
use crate::record::{Activity, RunRecord};
use crate::scenario::{Mode, Scenario, USER_DATA_HOOK};
use crate::sim_loop::{Actors, Turn, drive};

/// From launch until the script starts.
pub const BOOT_MS: Ms = 30_000;
/// The script's fixed sleep after each `create-deployment`.
pub const SLEEP_MS: Ms = 180_000;
/// The script's wait before retrying a busy group, and how often it retries.
pub const RETRY_MS: Ms = 30_000;
pub const MAX_TRIES: u32 = 20;

/// One step of one instance's script: create the deployment of group `k` (attempt `tries`),
/// or complete the action when `k` is past the last group.
#[derive(Debug, Clone)]
struct Step {
    instance: String,
    k: usize,
    tries: u32,
}

/// Every instance's script, and the model they run against.
struct Scripts {
    cloud: Cloud,
    asg: String,
    groups: Vec<(String, String)>,
    /// Every group's gate tag, all set at launch.
    gates: Vec<String>,
    /// The scripts' next steps, by when they are due (and a sequence number, for order).
    steps: BTreeMap<(Ms, u64), Step>,
    seq: u64,
    /// Instances whose script has started.
    seen: BTreeSet<String>,
}

impl Scripts {
    /// New instances (scripted or replacements) boot and start their script.
    fn boot(&mut self) {
        let launched: Vec<(String, Ms)> = self
            .cloud
            .facts
            .iter()
            .filter_map(|f| match f {
                Fact::Launched { instance, at } if !self.seen.contains(instance) => {
                    Some((instance.clone(), *at))
                }
                _ => None,
            })
            .collect();
        for (id, at) in launched {
            // One `aws ec2 create-tags` with every gate.
            let tags: Vec<(&str, &str)> = self.gates.iter().map(|g| (g.as_str(), "open")).collect();
            self.cloud.create_tags(std::slice::from_ref(&id), &tags);
            self.seq += 1;
            self.steps.insert(
                (at + BOOT_MS, self.seq),
                Step {
                    instance: id.clone(),
                    k: 0,
                    tries: 0,
                },
            );
            self.seen.insert(id);
        }
    }

    /// Every script step due now.
    fn run_due(&mut self) {
        while let Some(key) = self
            .steps
            .keys()
            .next()
            .copied()
            .filter(|(t, _)| *t <= self.cloud.now)
        {
            let Some(step) = self.steps.remove(&key) else {
                break;
            };
            let alive = self
                .cloud
                .instances
                .get(&step.instance)
                .is_some_and(|i| i.state == InstanceState::PendingWait);
            if alive {
                self.step(step);
            }
        }
    }

    /// One step of a live instance's script.
    fn step(&mut self, step: Step) {
        let now = self.cloud.now;
        self.seq += 1;
        let seq = self.seq;
        let Some(group) = self.groups.get(step.k) else {
            let _ = self.cloud.complete_lifecycle_action(
                &self.asg,
                USER_DATA_HOOK,
                None,
                Some(&step.instance),
                HookResult::Continue,
            );
            return;
        };
        match self
            .cloud
            .create_deployment(group, None, None, true, "user data", Creator::User)
        {
            Err(ApiError::DeploymentLimitExceeded { .. }) if step.tries < MAX_TRIES => {
                self.steps.insert(
                    (now + RETRY_MS, seq),
                    Step {
                        tries: step.tries + 1,
                        ..step
                    },
                );
            }
            // Created, or given up on: sleep, then the next application.
            _ => {
                self.steps.insert(
                    (now + SLEEP_MS, seq),
                    Step {
                        k: step.k + 1,
                        tries: 0,
                        ..step
                    },
                );
            }
        }
    }
}

impl Actors for Scripts {
    type Error = Infallible;

    fn with_cloud<R>(&mut self, f: impl FnOnce(&mut Cloud) -> R) -> R {
        f(&mut self.cloud)
    }

    async fn act(&mut self, _: Ms) -> Result<Turn, Infallible> {
        self.boot();
        self.run_due();
        let _ = self.cloud.drain();
        Ok(Turn::Done)
    }

    fn wakes_at(&self) -> Option<Ms> {
        self.steps.keys().next().map(|(t, _)| *t)
    }

    fn idle(&self) -> bool {
        self.steps.is_empty()
    }
}

pub async fn run(scenario: &Scenario) -> RunRecord {
    let started = Instant::now();
    let mut scripts = Scripts {
        cloud: scenario.cloud(Mode::UserData),
        asg: scenario.fleet.auto_scaling_group.clone(),
        groups: scenario.steps(),
        gates: scenario
            .groups
            .iter()
            .map(|g| Scenario::gate_tag(&g.application))
            .collect(),
        steps: BTreeMap::new(),
        seq: 0,
        seen: BTreeSet::new(),
    };
    let mut checker = checks::for_scenario(scenario, Mode::UserData);
    let Ok(()) = drive(scenario, &mut scripts, &mut checker).await;
    RunRecord {
        mode: Mode::UserData,
        violations: Vec::new(),
        checks: checker.checks,
        collided: checker.collided.clone(),
        cloud: scripts.cloud,
        activity: Activity::default(),
        held: BTreeSet::new(),
        wall: started.elapsed(),
    }
}
