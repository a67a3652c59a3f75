//! Simulated time: what falls due next, and advancing to it.

use crate::{Action, Cloud, Fact, Ms, TargetStatus};

impl Cloud {
    /// When something happens next on its own (an agent finishing, a timeout, a replacement).
    pub fn next_due(&self) -> Option<Ms> {
        let agents = self
            .live_instances()
            .filter_map(|i| i.agent.running.as_ref().map(|r| r.ends_at));
        let actions = self.live_instances().flat_map(|i| {
            i.actions
                .iter()
                .map(|a| a.heartbeat_deadline.min(a.global_deadline))
        });
        let repl = self.replacements.iter().map(|(t, _)| *t);
        agents.chain(actions).chain(repl).min()
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
}
