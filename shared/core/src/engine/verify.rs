//! The final check: every group's current revision is on the instance, no foreign deployment
//! is in flight, then every gate opens and CONTINUE goes out.

use super::*;

impl Cx<'_> {
    pub(super) fn verify(&mut self, id: &InstanceId) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Verifying { since: now };
        let groups = inst.plan.steps.iter().map(|s| s.group.clone()).collect();
        self.out.push(Command::CheckRevisions {
            instance: id.clone(),
            groups,
        });
    }

    pub(super) fn on_revisions(&mut self, id: &InstanceId, current: &[GroupRevision]) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        if !matches!(inst.phase, Phase::Verifying { .. }) {
            self.ignore("revision check answer for an instance that is not verifying");
            return;
        }
        let mut stale = Vec::new();
        for (i, (s, r)) in inst.plan.steps.iter().zip(&inst.steps).enumerate() {
            let Some(cur) = current.iter().find(|c| c.group == s.group) else {
                self.ignore(format!("revision check answer lacks {}", s.group));
                return;
            };
            let ours = self
                .w
                .group(&s.group)
                .and_then(|g| g.active.as_ref())
                .and_then(|a| match a {
                    Active::Ours { deployment, .. } => Some(deployment),
                    _ => None,
                });
            if let Some(d) = &cur.active
                && Some(d) != ours
            {
                // Someone else is deploying to the group: wait for it, then check again. The
                // gate should be closed, but one opened for a CONTINUE that never landed (or a
                // close lost with a dead invocation) may have let that deployment in, and it
                // may install anything (a rollback, say): the step no longer counts as done,
                // so the check that follows runs it again at the group's current revision.
                self.ignore(format!(
                    "waiting for {d} on {} before the final check",
                    s.group
                ));
                if let Some(inst) = self.inst_mut(id) {
                    inst.phase = Phase::Verifying { since: now };
                    if let Some(r) = inst.steps.get_mut(i) {
                        r.installed = None;
                    }
                }
                return;
            }
            if r.installed.as_ref() != Some(&cur.revision) {
                stale.push(i);
            }
        }
        let gates: Vec<_> = inst.plan.steps.iter().map(|s| s.gate.clone()).collect();
        if let Some(&first) = stale.first() {
            if let Some(inst) = self.inst_mut(id) {
                for i in &stale {
                    if let Some(r) = inst.steps.get_mut(*i) {
                        *r = StepRecord::default();
                    }
                }
            }
            self.start_attempt(id, first, Admit::Now);
            return;
        }
        self.out.push(Command::OpenGate {
            gates,
            instances: vec![id.clone()],
        });
        self.complete(id, LifecycleResult::Continue, "every step succeeded".into());
    }

    /// A heartbeat sent at `at` succeeded. If it was the probe of a CONTINUE being re-sent, the
    /// action is still pending, so the first CONTINUE never landed: the gates opened for it
    /// close and the final check runs again, as if for the first time.
    pub(super) fn probe_answered(&mut self, id: &InstanceId, at: Millis) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Completing {
            probing: true,
            since,
            ..
        } = inst.phase
        else {
            return;
        };
        if at < since {
            return;
        }
        self.close_every_gate(id);
        self.verify(id);
    }

    /// Closes every gate of the instance's plan, in one call (idempotent: tagging is).
    pub(super) fn close_every_gate(&mut self, id: &InstanceId) {
        let gates: Vec<_> = self
            .inst(id)
            .map(|i| i.plan.steps.iter().map(|s| s.gate.clone()).collect())
            .unwrap_or_default();
        self.out.push(Command::CloseGate {
            gates,
            instances: vec![id.clone()],
        });
    }
}
