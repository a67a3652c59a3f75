//! How a deployment runs: targets handed to each instance's CodeDeploy agent as the
//! deployment configuration allows, one at a time per agent, and how the deployment ends.

use crate::{
    Cloud, DeployConfig, DeploymentStatus, FIRST_EVENT_START_LIMIT_MS, Fact, HookResult,
    InstanceState, Profile, Running, Target, TargetStatus,
};

impl Cloud {
    pub(crate) fn set_target(&mut self, dep: &str, inst: &str, status: TargetStatus) {
        let now = self.now;
        if let Some(t) = self
            .deployments
            .get_mut(dep)
            .and_then(|d| d.targets.get_mut(inst))
        {
            t.status = status;
            if status == TargetStatus::InProgress {
                t.started_at = Some(now);
            }
            if status.is_done() {
                t.ended_at = Some(now);
            }
        }
    }

    /// Hands targets to their agents as the deployment configuration allows.
    pub(crate) fn dispatch(&mut self, id: &str) {
        let now = self.now;
        let Some(d) = self.deployments.get_mut(id) else {
            return;
        };
        let total = d
            .targets
            .values()
            .filter(|t| t.status != TargetStatus::Skipped)
            .count();
        let in_flight = d
            .targets
            .iter()
            .filter(|(i, t)| !t.status.is_done() && !d.undispatched.contains(i))
            .count();
        let limit = match d.config {
            DeployConfig::OneAtATime => 1,
            DeployConfig::HalfAtATime => total.div_ceil(2).max(1),
            DeployConfig::AllAtOnce => usize::MAX,
        };
        let mut handed = Vec::new();
        while in_flight + handed.len() < limit {
            let Some(inst) = d.undispatched.pop_front() else {
                break;
            };
            // A target that ended before its turn (its instance terminated) is not handed out.
            if d.targets.get(&inst).is_some_and(|t| !t.status.is_done()) {
                handed.push(inst);
            }
        }
        for inst in handed {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.agent.queue.push_back((id.to_owned(), now));
            }
            self.start_next(&inst);
        }
    }

    /// The agent starts its next queued deployment, failing any whose first lifecycle event
    /// could not start within the limit [aws-behaviour §3.2 Lifecycle event start limit].
    pub(crate) fn start_next(&mut self, inst: &str) {
        loop {
            let now = self.now;
            let Some(i) = self.instances.get_mut(inst) else {
                return;
            };
            // A terminated instance's agent runs nothing more; an agent not started yet (or
            // stopped with its instance) runs nothing until it starts: its queue waits, and
            // the clock fails what waits too long [aws-behaviour §3.6 Bootstrap and the agent].
            if i.agent.running.is_some() || i.state == InstanceState::Terminated || !i.agent.up {
                return;
            }
            // Its scripts need what the bootstrap installs: a deployment started before the
            // bootstrap is done fails (an agent started at boot) [aws-behaviour §3.6 Bootstrap and the agent].
            let unready = i
                .boot
                .bootstrap
                .as_ref()
                .is_some_and(|b| b.done_at.is_none());
            let Some((dep, queued_at)) = i.agent.queue.pop_front() else {
                return;
            };
            if now.saturating_sub(queued_at) > FIRST_EVENT_START_LIMIT_MS {
                self.finish_target(&dep, inst, TargetStatus::Failed);
                continue;
            }
            let Some(group) = self.deployments.get(&dep).map(|d| d.group.clone()) else {
                continue;
            };
            let profile = self
                .groups
                .get(&group)
                .map(|g| g.profile)
                .unwrap_or(Profile {
                    min_ms: 1000,
                    max_ms: 1000,
                    fail_prob: 0.0,
                });
            let took = self.rng.range(profile.min_ms, profile.max_ms);
            let scripted = self
                .fail_next
                .get_mut(&group)
                .filter(|n| **n > 0)
                .map(|n| *n -= 1);
            let fails = self.rng.chance(profile.fail_prob) || scripted.is_some() || unready;
            if let Some(i) = self.instances.get_mut(inst) {
                i.agent.running = Some(Running {
                    deployment: dep.clone(),
                    ends_at: now + took,
                    fails,
                });
            }
            self.set_target(&dep, inst, TargetStatus::InProgress);
            self.publish_instance(&dep, inst, "START");
            return;
        }
    }

    pub(crate) fn finish_target(&mut self, dep: &str, inst: &str, status: TargetStatus) {
        let now = self.now;
        self.set_target(dep, inst, status);
        self.publish_instance(
            dep,
            inst,
            if status == TargetStatus::Succeeded {
                "SUCCESS"
            } else {
                "FAILURE"
            },
        );
        if status == TargetStatus::Succeeded
            && let Some((group, revision)) = self
                .deployments
                .get(dep)
                .map(|d| (d.group.clone(), d.revision.clone()))
            && let Some(i) = self.instances.get_mut(inst)
        {
            i.installed.insert(group.clone(), revision.clone());
            self.facts.push(Fact::Installed {
                instance: inst.to_owned(),
                group,
                revision,
                deployment: dep.to_owned(),
                at: now,
            });
        }
        if let Some(i) = self.instances.get_mut(inst)
            && i.agent
                .running
                .as_ref()
                .is_some_and(|r| r.deployment == dep)
        {
            i.agent.running = None;
        }
        self.dispatch(dep);
        self.maybe_finish(dep);
        self.start_next(inst);
    }

    /// A deployment ends when no target is left; it succeeds by its configuration's
    /// minimum-healthy rule (AllAtOnce: one success; HalfAtATime: half; OneAtATime: all).
    pub(crate) fn maybe_finish(&mut self, id: &str) {
        let Some(d) = self.deployments.get(id) else {
            return;
        };
        if !d.status.is_active() || d.targets.values().any(|t| !t.status.is_done()) {
            return;
        }
        let deployed: Vec<&Target> = d
            .targets
            .values()
            .filter(|t| t.status != TargetStatus::Skipped)
            .collect();
        let ok = deployed
            .iter()
            .filter(|t| t.status == TargetStatus::Succeeded)
            .count();
        let any = d.targets.len();
        let status = if any == 0 {
            DeploymentStatus::Failed // NO_INSTANCES
        } else if deployed.is_empty() {
            DeploymentStatus::Succeeded // everything already up to date
        } else {
            let needed = match d.config {
                DeployConfig::AllAtOnce => 1,
                DeployConfig::HalfAtATime => deployed.len().div_ceil(2),
                DeployConfig::OneAtATime => deployed.len(),
            };
            if ok >= needed {
                DeploymentStatus::Succeeded
            } else {
                DeploymentStatus::Failed
            }
        };
        self.end_deployment(id, status);
    }

    pub(crate) fn end_deployment(&mut self, id: &str, status: DeploymentStatus) {
        let now = self.now;
        if !status.is_active() {
            self.active.remove(id);
        }
        let Some(d) = self.deployments.get_mut(id) else {
            return;
        };
        d.status = status;
        d.ended_at = Some(now);
        // Targets never reached are skipped.
        for t in d.targets.values_mut() {
            if !t.status.is_done() {
                t.status = TargetStatus::Skipped;
                t.ended_at = Some(now);
            }
        }
        let undispatched: Vec<String> = d.undispatched.drain(..).collect();
        let (group, revision) = (d.group.clone(), d.revision.clone());
        for inst in undispatched {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.agent.queue.retain(|(q, _)| q != id);
            }
        }
        if status == DeploymentStatus::Succeeded
            && let Some(g) = self.groups.get_mut(&group)
        {
            g.target_revision = Some(revision);
        }
        self.facts.push(Fact::DeploymentEnded {
            deployment: id.to_owned(),
            group,
            status,
            at: now,
        });
        let state = match status {
            DeploymentStatus::Succeeded => "SUCCESS",
            DeploymentStatus::Stopped => "STOP",
            _ => "FAILURE",
        };
        self.publish_deployment(id, state);
        let native = self.deployments.get(id).and_then(|d| d.native.clone());
        if let Some((asg, hook, token)) = native {
            let result = if status == DeploymentStatus::Succeeded {
                HookResult::Continue
            } else {
                HookResult::Abandon
            };
            let _ = self.complete_lifecycle_action(&asg, &hook, Some(&token), None, result);
        }
    }
}
