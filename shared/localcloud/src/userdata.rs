//! The alternative many teams use instead of hooks per group: one launch hook, and a user-data
//! script on the instance that, after boot, creates one deployment per application in plan
//! order with a fixed sleep between them (retrying every 30 s while the group is busy with
//! another deployment), then completes the lifecycle action with CONTINUE. The instance carries
//! every group's tag from launch (launch template tags), so every deployment of every group
//! targets it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use turnstile_model::{ApiError, Creator, Fact, HookResult, Ms};

use crate::checks;
use crate::run::{Activity, RunRecord, next_stop, pace, settled};
use crate::scenario::{Mode, Scenario, USER_DATA_HOOK, apply};

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

pub fn run(scenario: &Scenario) -> RunRecord {
    let started = Instant::now();
    let mut cloud = scenario.cloud(Mode::UserData);
    let asg = scenario.fleet.auto_scaling_group.clone();
    let groups = scenario.steps();
    let gates: Vec<String> = scenario
        .groups
        .iter()
        .map(|g| Scenario::gate_tag(&g.application))
        .collect();
    let script = scenario.script();
    let horizon = scenario.horizon_ms();
    let mut next = 0;
    let mut steps: BTreeMap<(Ms, u64), Step> = BTreeMap::new();
    let mut seq = 0;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut checker = checks::for_scenario(scenario, Mode::UserData);
    loop {
        while let Some((_, a)) = script.get(next).filter(|(t, _)| *t <= cloud.now) {
            apply(&mut cloud, &asg, a);
            next += 1;
        }
        // New instances (scripted or replacements) boot and start their script.
        let launched: Vec<(String, Ms)> = cloud
            .facts
            .iter()
            .filter_map(|f| match f {
                Fact::Launched { instance, at } if !seen.contains(instance) => {
                    Some((instance.clone(), *at))
                }
                _ => None,
            })
            .collect();
        for (id, at) in launched {
            // One `aws ec2 create-tags` with every gate.
            let tags: Vec<(&str, &str)> = gates.iter().map(|g| (g.as_str(), "open")).collect();
            cloud.create_tags(std::slice::from_ref(&id), &tags);
            seq += 1;
            steps.insert(
                (at + BOOT_MS, seq),
                Step {
                    instance: id.clone(),
                    k: 0,
                    tries: 0,
                },
            );
            seen.insert(id);
        }
        // Every script step due now.
        while let Some(key) = steps
            .keys()
            .next()
            .copied()
            .filter(|(t, _)| *t <= cloud.now)
        {
            let Some(step) = steps.remove(&key) else {
                break;
            };
            let alive = cloud
                .instances
                .get(&step.instance)
                .is_some_and(|i| i.state == turnstile_model::InstanceState::PendingWait);
            if !alive {
                continue;
            }
            let now = cloud.now;
            seq += 1;
            let Some(group) = groups.get(step.k) else {
                let _ = cloud.complete_lifecycle_action(
                    &asg,
                    USER_DATA_HOOK,
                    None,
                    Some(&step.instance),
                    HookResult::Continue,
                );
                continue;
            };
            match cloud.create_deployment(group, None, None, true, "user data", Creator::User) {
                Err(ApiError::DeploymentLimitExceeded { .. }) if step.tries < MAX_TRIES => {
                    steps.insert(
                        (now + RETRY_MS, seq),
                        Step {
                            tries: step.tries + 1,
                            ..step
                        },
                    );
                }
                // Created, or given up on: sleep, then the next application.
                _ => {
                    steps.insert(
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
        let _ = cloud.drain();
        checker.check(&cloud);
        if cloud.now >= horizon || (next >= script.len() && steps.is_empty() && settled(&cloud)) {
            break;
        }
        let at = next_stop(
            &cloud,
            &[
                script.get(next).map(|(t, _)| *t),
                steps.keys().next().map(|(t, _)| *t),
            ],
            horizon,
        );
        pace(scenario, cloud.now, at);
        cloud.advance_to(at);
    }
    RunRecord {
        mode: Mode::UserData,
        violations: Vec::new(),
        checks: checker.checks,
        collided: checker.collided.clone(),
        cloud,
        activity: Activity::default(),
        held: BTreeSet::new(),
        wall: started.elapsed(),
    }
}
