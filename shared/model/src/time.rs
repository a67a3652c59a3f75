//! Simulated time: what falls due next, and advancing to it.

use crate::{
    Action, AgentStart, Cloud, FIRST_EVENT_START_LIMIT_MS, Fact, Instance, Ms, Power, TargetStatus,
};

/// When an instance's own boot falls due next: it comes up after a restart, its bootstrap
/// finishes, or a deployment waiting for an agent that is not running runs out of time.
fn boot_due(i: &Instance) -> Option<Ms> {
    let up = match i.boot.power {
        Power::Booting(t) => Some(t),
        _ => None,
    };
    let bootstrap = i
        .boot
        .bootstrap
        .as_ref()
        .filter(|_| i.boot.power == Power::Running)
        .and_then(|b| b.due());
    let expiry = if i.agent.up {
        None
    } else {
        i.agent
            .queue
            .iter()
            .map(|(_, q)| q + FIRST_EVENT_START_LIMIT_MS + 1)
            .min()
    };
    up.into_iter().chain(bootstrap).chain(expiry).min()
}

impl Cloud {
    /// When something happens next on its own (an agent finishing, a timeout, a replacement,
    /// an instance's boot).
    pub fn next_due(&self) -> Option<Ms> {
        let boots = self.live_instances().filter_map(boot_due);
        let agents = self
            .live_instances()
            .filter_map(|i| i.agent.running.as_ref().map(|r| r.ends_at));
        let actions = self.live_instances().flat_map(|i| {
            i.actions
                .iter()
                .map(|a| a.heartbeat_deadline.min(a.global_deadline))
        });
        let repl = self.replacements.iter().map(|(t, _)| *t);
        let owners = self.next_owner_completion();
        agents
            .chain(actions)
            .chain(repl)
            .chain(owners)
            .chain(boots)
            .min()
    }

    /// Advances time to `t`, running everything that falls due on the way, in time order.
    pub fn advance_to(&mut self, t: Ms) {
        while let Some(due) = self.next_due().filter(|d| *d <= t) {
            self.now = self.now.max(due);
            self.run_due();
        }
        self.now = self.now.max(t);
    }

    fn run_due(&mut self) {
        let now = self.now;
        self.run_boots();
        let finished: Vec<(String, String, bool)> = self
            .live_instances()
            .filter_map(|i| {
                i.agent
                    .running
                    .as_ref()
                    .filter(|r| r.ends_at <= now)
                    .map(|r| (i.id.clone(), r.deployment.clone(), r.fails))
            })
            .collect();
        for (inst, dep, fails) in finished {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.agent.running = None;
            }
            let status = if fails {
                TargetStatus::Failed
            } else {
                TargetStatus::Succeeded
            };
            self.finish_target(&dep, &inst, status);
        }
        // CodeDeploy heartbeats its own hook's action while its deployment runs (every 5 min
        // [aws-behaviour §3.6]); modelled as the heartbeat timer never running out meanwhile.
        for d in self.active.iter().filter_map(|id| self.deployments.get(id)) {
            let Some((_, _, token)) = d.native.as_ref().filter(|_| d.status.is_active()) else {
                continue;
            };
            for id in d.targets.keys() {
                let Some(i) = self.instances.get_mut(id) else {
                    continue;
                };
                for a in i.actions.iter_mut().filter(|a| a.token == *token) {
                    a.heartbeat_deadline = (now + a.heartbeat_ms).min(a.global_deadline);
                }
            }
        }
        // Other tools complete their own hooks' actions when they are done.
        self.run_owner_completions();
        // Lifecycle actions that ran out of time get their hook's default result [aws-behaviour §2 DefaultResult].
        let expired: Vec<(String, Action)> = self
            .live_instances()
            .flat_map(|i| {
                i.actions
                    .iter()
                    .filter(|a| a.heartbeat_deadline.min(a.global_deadline) <= now)
                    .map(|a| (i.id.clone(), a.clone()))
            })
            .collect();
        for (inst, a) in expired {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.actions.retain(|x| x.token != a.token);
            }
            self.facts.push(Fact::TimedOut {
                instance: inst.clone(),
                hook: a.hook.clone(),
                token: a.token.clone(),
                transition: a.transition,
                global: a.global_deadline <= now,
                result: a.default_result,
                at: now,
            });
            self.apply_result(&inst, a.transition, a.default_result);
        }
        let due: Vec<String> = self
            .replacements
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, a)| a.clone())
            .collect();
        self.replacements.retain(|(t, _)| *t > now);
        for asg in due {
            self.scale_out(&asg, 1);
        }
    }

    /// Instances' own boots that fall due now: restarts that come up, bootstraps that finish
    /// (the agent starts if it waited for them, and the instance tags itself ready), and
    /// deployments that waited too long for an agent that never started
    /// [aws-behaviour §3.6 Bootstrap and the agent; §3.2 Lifecycle event start limit].
    fn run_boots(&mut self) {
        let now = self.now;
        let due: Vec<String> = self
            .live_instances()
            .filter(|i| boot_due(i).is_some_and(|t| t <= now))
            .map(|i| i.id.clone())
            .collect();
        for id in due {
            let Some(i) = self.instances.get_mut(&id) else {
                continue;
            };
            if matches!(i.boot.power, Power::Booting(t) if t <= now) {
                i.boot.power = Power::Running;
                if let Some(p) = i.boot.bootstrap.as_mut().filter(|p| p.done_at.is_none()) {
                    p.since = Some(now);
                }
                let done = i
                    .boot
                    .bootstrap
                    .as_ref()
                    .is_none_or(|p| p.done_at.is_some());
                i.agent.up = done || i.boot.agent_start == AgentStart::AtBoot;
            }
            let mut finished = false;
            if i.boot.power == Power::Running
                && let Some(p) = i.boot.bootstrap.as_mut()
                && p.due().is_some_and(|t| t <= now)
            {
                p.done_at = Some(now);
                p.left = Some(0);
                p.since = None;
                i.agent.up = true;
                finished = true;
            }
            let expired: Vec<String> = if i.agent.up {
                Vec::new()
            } else {
                let (gone, kept) = i
                    .agent
                    .queue
                    .drain(..)
                    .partition(|(_, q)| now.saturating_sub(*q) > FIRST_EVENT_START_LIMIT_MS);
                i.agent.queue = kept;
                gone.into_iter().map(|(d, _)| d).collect()
            };
            let asg = i.asg.clone();
            if finished {
                self.facts.push(Fact::BootstrapDone {
                    instance: id.clone(),
                    at: now,
                });
                // The instance tags itself ready, as a `create-tags` at the end of its user
                // data would [aws-behaviour §5.7 Tag change events].
                if let Some((key, value)) =
                    self.bootstraps.get(&asg).and_then(|b| b.ready_tag.clone())
                {
                    self.create_tags(std::slice::from_ref(&id), &[(&key, &value)]);
                }
            }
            for dep in expired {
                if self
                    .deployments
                    .get(&dep)
                    .is_some_and(|d| d.is_target_in_flight(&id))
                {
                    self.finish_target(&dep, &id, TargetStatus::Failed);
                }
            }
            self.start_next(&id);
        }
    }
}
