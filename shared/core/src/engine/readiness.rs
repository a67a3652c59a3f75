//! Readiness: a new instance's first step waits until the instance tags itself ready at the
//! end of its bootstrap ([`crate::Readiness`]), so no deployment reaches it before its
//! CodeDeploy agent runs. The tag is seen through EventBridge's tag-change event (best
//! effort) or the timer sweep's batched read of the tags of every instance still waiting
//! (docs/design.md "Readiness").

use super::*;
use crate::plan::{OnNotReady, Readiness};

impl Cx<'_> {
    /// Starts the wait for the readiness tag, or returns false when the transition waits for
    /// none ([`readiness_for`]).
    pub(super) fn await_ready(
        &mut self,
        id: &InstanceId,
        origin: Option<Place>,
        deploy: bool,
    ) -> bool {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return false;
        };
        if readiness_for(&inst.plan, origin).is_none() {
            return false;
        }
        inst.phase = Phase::Readying { since: now, deploy };
        true
    }

    /// The instance's tags as seen at `at` (a tag-change event's full set, or what the sweep
    /// read): if it waits for readiness and carries the tag with its value, it goes on.
    pub(super) fn on_tagged(&mut self, id: &InstanceId, tags: &[(String, String)], at: Millis) {
        let Some(inst) = self.inst(id) else {
            self.ignore(format!("tags of {id}: no pipeline for it"));
            return;
        };
        let (Phase::Readying { deploy, .. }, Some(r)) = (&inst.phase, &inst.plan.readiness) else {
            self.ignore(format!("tags of {id}: it is not waiting for readiness"));
            return;
        };
        let deploy = *deploy;
        if !carries(tags, r) {
            self.ignore(format!(
                "tags of {id}: no {}={} yet; still waiting for readiness",
                r.tag.key, r.tag.value
            ));
            return;
        }
        let now = self.now;
        if let Some(inst) = self.inst_mut(id) {
            inst.ready_at = Some(at.min(now));
        }
        self.go_on(id, deploy);
    }

    /// Ready (or started anyway): the first step, or the completion of a transition the plan
    /// does not deploy on.
    fn go_on(&mut self, id: &InstanceId, deploy: bool) {
        if deploy {
            // The batch window still applies: instances that become ready together share a
            // deployment.
            self.start_attempt(id, 0, Admit::Window);
        } else {
            self.complete(
                id,
                LifecycleResult::Continue,
                "ready; a warm-pool transition the plan does not deploy on".into(),
            );
        }
    }

    /// The tick of an instance waiting for readiness: past the timeout, the plan's policy.
    pub(super) fn readying_tick(&mut self, id: &InstanceId, since: Millis, deploy: bool) {
        let now = self.now;
        let Some(r) = self.inst(id).and_then(|i| i.plan.readiness.clone()) else {
            return;
        };
        if now < since.plus_secs(r.timeout_secs) {
            return;
        }
        let what = format!(
            "{id} did not tag itself {}={} within {} s of its launch",
            r.tag.key, r.tag.value, r.timeout_secs
        );
        let why = "its bootstrap (user data, cfn-init) failed, is still running, or cannot tag the instance (the instance role needs ec2:CreateTags on itself for that key)";
        match r.on_timeout {
            OnNotReady::Abandon => {
                self.alert(
                    AlertKind::NotReady,
                    Some(id),
                    None,
                    format!("{what}: abandoned, so the group replaces it. Likely {why}; read the instance's console output or /var/log/cloud-init-output.log of a replacement"),
                );
                self.complete(
                    id,
                    LifecycleResult::Abandon,
                    format!("{what} (readiness.onTimeout: abandon)"),
                );
            }
            OnNotReady::Hold => {
                self.alert(
                    AlertKind::NotReady,
                    Some(id),
                    None,
                    format!("{what}: held in its wait state. Likely {why}; once it is fixed, `turnstile retry {id}` starts its first step, `turnstile abandon {id}` replaces it"),
                );
                // Held at the first step, which never ran: `retry` starts it.
                self.hold(id, Some(0), format!("{what} (readiness.onTimeout: hold)"));
            }
            OnNotReady::Start => {
                self.alert(
                    AlertKind::NotReady,
                    Some(id),
                    None,
                    format!("{what}: its first step starts anyway (readiness.onTimeout: start); its retries cover an agent that comes up late. Likely {why}"),
                );
                self.go_on(id, deploy);
            }
        }
    }
}

/// The readiness signal a transition from `origin` waits for: the plan's, unless the instance
/// is leaving the warm pool (it bootstrapped and tagged itself before it entered; tags stay on
/// a stopped instance, and no tag-change event would come for a tag that did not change).
pub(super) fn readiness_for(plan: &Plan, origin: Option<Place>) -> Option<&Readiness> {
    plan.readiness
        .as_ref()
        .filter(|_| origin != Some(Place::WarmPool))
}

fn carries(tags: &[(String, String)], r: &Readiness) -> bool {
    tags.iter()
        .any(|(k, v)| *k == r.tag.key && *v == r.tag.value)
}
