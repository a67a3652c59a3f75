//! The final check: every group's current revision is on the instance, no foreign deployment
//! is in flight, then every gate opens and CONTINUE goes out.

use super::*;

impl Cx<'_> {
    pub(super) fn verify(&mut self, id: &InstanceId) {
        self.verify_from(id, None);
    }

    /// The final check; after a CONTINUE that never landed, `look_back` is when its gates
    /// opened, and the check also reports what reached the instance since.
    pub(super) fn verify_from(&mut self, id: &InstanceId, look_back: Option<Millis>) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Verifying {
            since: now,
            waiting_for: None,
            look_back,
        };
        let groups = inst.plan.steps.iter().map(|s| s.group.clone()).collect();
        self.out.push(Command::CheckRevisions {
            instance: id.clone(),
            groups,
            asked_at: now,
            since: look_back,
        });
    }

    pub(super) fn on_revisions(
        &mut self,
        id: &InstanceId,
        current: &[GroupRevision],
        asked_at: Millis,
    ) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Verifying {
            since, waiting_for, ..
        } = &inst.phase
        else {
            self.ignore("revision check answer for an instance that is not verifying");
            return;
        };
        if *since != asked_at || waiting_for.is_some() {
            // The check was sent again since (or already answered): this answer is stale. Its
            // invocation was slow, and acting on it could open the gates while the later
            // check's close is still on its way.
            self.ignore("answer to an earlier revision check");
            return;
        }
        if let Some(missing) = inst
            .plan
            .steps
            .iter()
            .find(|s| !current.iter().any(|c| c.group == s.group))
        {
            self.ignore(format!("revision check answer lacks {}", missing.group));
            return;
        }
        // What reached the instance while its gates were open for a CONTINUE that never
        // landed, and is done with it, may have installed anything (a user's revision on a
        // deployment that then failed elsewhere, so the group's target revision is still the
        // one we recorded): those steps no longer count as done (stress mode, seeds 20577 and
        // 28568).
        let touched: Vec<usize> = inst
            .plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                current
                    .iter()
                    .any(|c| c.group == s.group && c.touched.is_some())
            })
            .map(|(i, _)| i)
            .collect();
        if let Some(inst) = self.inst_mut(id) {
            for i in touched {
                if let Some(r) = inst.steps.get_mut(i) {
                    r.installed = None;
                }
            }
        }
        let Some(inst) = self.inst(id) else {
            return;
        };
        let mut stale = Vec::new();
        for (i, (s, r)) in inst.plan.steps.iter().zip(&inst.steps).enumerate() {
            let Some(cur) = current.iter().find(|c| c.group == s.group) else {
                continue;
            };
            let ours = self
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
                    inst.phase = Phase::Verifying {
                        since: now,
                        waiting_for: Some(d.clone()),
                        look_back: None,
                    };
                    if let Some(r) = inst.steps.get_mut(i) {
                        r.installed = None;
                    }
                }
                return;
            }
            // An overridden step is not on the instance, by an operator's decision.
            if r.overridden.is_none() && r.installed.as_ref() != Some(&cur.revision) {
                stale.push(i);
            }
        }
        let gates: Vec<_> = inst.plan.steps.iter().map(|s| s.gate.clone()).collect();
        let skipped: Vec<String> = inst
            .plan
            .steps
            .iter()
            .zip(&inst.steps)
            .filter_map(|(s, r)| {
                r.overridden
                    .as_ref()
                    .map(|n| format!("{} (by {})", s.group, n.actor))
            })
            .collect();
        let reason = if skipped.is_empty() {
            "every step succeeded".to_owned()
        } else {
            format!(
                "every step succeeded but {}, skipped by an operator",
                skipped.join(", ")
            )
        };
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
        self.complete(id, LifecycleResult::Continue, reason);
        if let Some(Phase::Completing { opened_at, .. }) = self.inst_mut(id).map(|i| &mut i.phase) {
            *opened_at = Some(now);
        }
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
            opened_at,
            ..
        } = inst.phase
        else {
            return;
        };
        if at < since {
            return;
        }
        self.close_every_gate(id);
        self.verify_from(id, opened_at);
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
