//! The timer: what a record does when it wakes up (re-sends, timeouts, polls, recovery),
//! heartbeats and the global deadline (housekeeping), and when each record must wake next.

use super::*;

impl Cx<'_> {
    /// An instance's timer fired: each phase re-sends what no answer confirmed, or acts on a
    /// timeout.
    pub(super) fn on_instance_tick(&mut self, id: &InstanceId) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        match inst.phase.clone() {
            Phase::Running {
                step,
                wait:
                    StepWait::Leaving {
                        since,
                        blocked_by,
                        done_in,
                        attempt_since,
                        ..
                    },
            } => {
                // Once a deployment was found holding the instance, its gate has been closed
                // (the check closes first): nothing created since can have reached it, and
                // only whether that one still holds it matters.
                let look_back = if blocked_by.is_some() {
                    None
                } else {
                    attempt_since
                };
                self.resend_leave_check(id, step, since, blocked_by.as_ref(), done_in, look_back)
            }
            Phase::Readying { since, deploy } => self.readying_tick(id, since, deploy),
            Phase::Running { step, wait } if !self.heartbeat_only(id, step, &wait) => {
                self.tick_step(id, step, wait)
            }
            Phase::Verifying {
                since,
                waiting_for,
                look_back,
            } if now.since(since) >= self.cfg.verify_resend_ms(waiting_for.is_some()) => {
                // Checking again (an answer was lost, or a foreign deployment was waited on).
                // Every gate is closed while verifying; a close lost with a dead invocation
                // (after a probed CONTINUE, say) is sent again, as tagging is idempotent. An
                // unanswered check that looked back still does.
                self.close_every_gate(id);
                self.verify_from(id, look_back)
            }
            Phase::Completing {
                result,
                since,
                probing,
                ..
            } if now.since(since) >= self.cfg.completion_resend_ms(probing) => {
                self.resend_completion(id, result)
            }
            _ => {}
        }
    }

    /// Leaving: the leave check is re-sent when its answer is overdue, or when the deployment
    /// that still held the instance is due another look.
    fn resend_leave_check(
        &mut self,
        id: &InstanceId,
        step: usize,
        since: Millis,
        blocked_by: Option<&DeploymentId>,
        done_in: Option<DeploymentId>,
        look_back: Option<Millis>,
    ) {
        let now = self.now;
        if now.since(since) < self.cfg.leave_resend_ms(blocked_by) {
            return;
        }
        let Some((group, gate)) = self
            .inst(id)
            .and_then(|i| i.plan.steps.get(step))
            .map(|s| (s.group.clone(), s.gate.clone()))
        else {
            return;
        };
        if let Some(Phase::Running {
            wait: StepWait::Leaving { since, .. },
            ..
        }) = self.inst_mut(id).map(|i| &mut i.phase)
        {
            *since = now;
        }
        // The close may have been lost with the invocation that decided it: the check closes
        // again (idempotent) before it asks.
        self.out.push(Command::CheckLeave {
            gate,
            instance: id.clone(),
            group,
            done_in,
            since: look_back,
        });
    }

    /// Whether this tick is only for the heartbeat, so the step, queued or waiting outside a
    /// full list, is left alone and its group record not read: the heartbeat is due, and
    /// nothing about the step can be yet. Its attempt cannot time out before it has waited the
    /// step's timeout (it was admitted after it joined), its plan still fits, and a full list
    /// is tried again only `overflow_retry_ms` after the last try. A tick when the heartbeat
    /// is not due is a nudge (a group waking a member whose result is in, the sweep) and looks
    /// at everything; a nudge that happens to come with a heartbeat is repeated by the group
    /// at its next poll.
    fn heartbeat_only(&self, id: &InstanceId, step: usize, wait: &StepWait) -> bool {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return false;
        };
        if !self.heartbeat_due(inst) || !self.fits(id, step) {
            return false;
        }
        let Some(s) = inst.plan.steps.get(step) else {
            return false;
        };
        match wait {
            StepWait::Queued { since } => now < since.plus_secs(s.timeout_secs),
            StepWait::Overflow { tried_at, .. } => {
                now < tried_at.plus_ms(self.cfg.overflow_retry_ms)
            }
            _ => false,
        }
    }

    /// The instance owes a heartbeat now: the interval has passed since the last confirmed
    /// one, another is still useful before the global timeout, and none was sent in the last
    /// `retry_ms` without an answer.
    fn heartbeat_due(&self, inst: &Instance) -> bool {
        let now = self.now;
        let interval = inst
            .timeouts
            .heartbeat_secs
            .saturating_mul(self.cfg.heartbeat_permille);
        let useful =
            inst.last_heartbeat.plus_secs(inst.timeouts.heartbeat_secs) < inst.global_deadline;
        let unconfirmed = inst
            .heartbeat_sent
            .is_some_and(|t| now.since(t) < self.cfg.retry_ms);
        now >= inst.last_heartbeat.plus_ms(interval)
            && useful
            && !unconfirmed
            && !inst.phase.is_finished()
    }

    /// Queued, in back-off or draining: pick up a result the group has, then act on the
    /// attempt's timeout and on a plan that no longer fits.
    fn tick_step(&mut self, id: &InstanceId, step: usize, wait: StepWait) {
        let now = self.now;
        let Some((key, timeout)) = self
            .inst(id)
            .and_then(|i| i.plan.steps.get(step))
            .map(|s| (s.group.clone(), s.timeout_secs))
        else {
            return;
        };
        self.resolve(id);
        let still = self.inst(id).map(|i| i.phase.clone());
        if still
            != Some(Phase::Running {
                step,
                wait: wait.clone(),
            })
        {
            return;
        }
        match (wait, self.standing(id, &key)) {
            (
                StepWait::Queued { .. },
                Standing::InFlight {
                    deployment,
                    admitted_at,
                    sole,
                },
            ) if now >= admitted_at.plus_secs(timeout) => {
                self.attempt_timed_out(id, step, &key, deployment, sole)
            }
            // A stop lost with the invocation that decided it is sent again.
            (
                StepWait::Draining { .. },
                Standing::InFlight {
                    deployment: Some(d),
                    sole: true,
                    ..
                },
            ) => {
                self.out.push(Command::StopDeployment {
                    group: key.clone(),
                    deployment: d,
                });
            }
            (StepWait::Overflow { .. }, _) if !self.fits(id, step) => {
                self.fail_unfit(id, step, format!("room in {key}'s list"));
            }
            (StepWait::Queued { .. }, Standing::Waiting) if !self.fits(id, step) => {
                self.leave_group(id, &key);
                self.fail_unfit(id, step, key.to_string());
            }
            _ => {}
        }
    }

    /// Still waiting for `what` when the rest of the plan can no longer fit before the
    /// global timeout: fail now, while there is time to act on it.
    fn fail_unfit(&mut self, id: &InstanceId, step: usize, what: String) {
        let now = self.now;
        let left = self
            .inst(id)
            .map_or(0, |i| i.global_deadline.since(now) / 1000);
        self.fail_instance(
            id,
            Some(step),
            format!("still waiting for {what} with {left} s left before the global timeout: the remaining plan cannot fit"),
            Some(AlertKind::PlanCannotFit),
        );
    }

    /// The attempt outlived the step's timeout while its deployment still runs: a deployment
    /// that serves only this instance is stopped, and the attempt drains until the deployment
    /// no longer touches it.
    fn attempt_timed_out(
        &mut self,
        id: &InstanceId,
        step: usize,
        key: &GroupKey,
        deployment: Option<DeploymentId>,
        sole: bool,
    ) {
        let now = self.now;
        if sole && let Some(d) = deployment {
            self.out.push(Command::StopDeployment {
                group: key.clone(),
                deployment: d,
            });
        }
        if let Some(inst) = self.inst_mut(id) {
            inst.phase = Phase::Running {
                step,
                wait: StepWait::Draining { since: now },
            };
        }
    }

    /// Completing with no answer: the completion is sent again, except that a CONTINUE is
    /// probed first.
    fn resend_completion(&mut self, id: &InstanceId, result: LifecycleResult) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let action = inst.action.clone();
        let continuing = result == LifecycleResult::Continue && inst.all_steps_done();
        if let Phase::Completing { since, probing, .. } = &mut inst.phase {
            *since = now;
            *probing = continuing;
        }
        if continuing {
            // Re-sending a CONTINUE: no answer confirmed the first one, and the world may have
            // moved since the final check (a user deployment of a new revision that the closed
            // gates kept from this instance, say). A heartbeat tells whether the action is
            // still pending: if it is, the CONTINUE never landed, and the gates close for the
            // final check to run again (`probe_answered`); if the action is gone, it did land.
            inst.heartbeat_sent = Some(now);
            self.out.push(Command::RecordHeartbeat { action });
        } else {
            self.out.push(Command::CompleteAction { action, result });
        }
    }

    /// Whether the rest of the plan still fits before the global timeout.
    pub(super) fn fits(&self, id: &InstanceId, step: usize) -> bool {
        self.inst(id)
            .is_none_or(|i| self.now.plus_secs(i.remaining_secs(step)) <= i.global_deadline)
    }

    pub(super) fn on_group_tick(&mut self, key: &GroupKey) {
        let now = self.now;
        let (poll_every, lease, resend) = (
            self.cfg.poll_interval_ms,
            self.cfg.create_lease_ms,
            self.cfg.resend_ms,
        );
        self.try_admit(key);
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let mut polls: Vec<DeploymentId> = Vec::new();
        // A seal lost with its invocation (or throttled) is sent again, for the members still
        // pending: one that finished may have moved on and need its gate again later.
        if let Some(Active::Ours {
            deployment,
            members,
            seal: Seal::Pending { since },
            ..
        }) = &mut g.active
            && now.since(*since) >= resend
        {
            *since = now;
            let instances: Vec<InstanceId> = members
                .iter()
                .filter(|(_, m)| m.status == MemberStatus::Pending)
                .map(|(i, _)| i.clone())
                .collect();
            let (deployment, gate) = (deployment.clone(), g.gate.clone());
            self.out.push(Command::SealGate {
                group: key.clone(),
                deployment,
                gate,
                instances,
            });
        }
        let Some(g) = self.group_mut(key) else {
            return;
        };
        match &mut g.active {
            Some(Active::Creating { intent, since, .. }) if now.since(*since) >= lease => {
                let from = *since;
                *since = now;
                let intent = intent.clone();
                self.out.push(Command::FindDeployment {
                    group: key.clone(),
                    intent,
                    since: from,
                });
            }
            Some(Active::Ours {
                deployment,
                polled_at,
                ..
            })
            | Some(Active::Foreign {
                deployment,
                polled_at,
                ..
            }) if now.since(*polled_at) >= poll_every => polls.push(deployment.clone()),
            _ => {}
        }
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let mut woken = Vec::new();
        for s in &mut g.settling {
            if now.since(s.polled_at) < poll_every {
                continue;
            }
            let unknown = s.members.values().any(|m| !m.status.is_terminal());
            match &s.deployment {
                Some(d) if unknown => polls.push(d.clone()),
                _ => {
                    // Results are known; wake members that have not read theirs yet.
                    woken.extend(s.members.keys().cloned());
                    s.polled_at = now;
                }
            }
        }
        polls.sort();
        polls.dedup();
        for d in polls {
            self.poll(key, &d);
        }
        self.wake_all(woken);
    }

    pub(super) fn housekeep(&mut self, id: &InstanceId) {
        let now = self.now;
        let guard = self.cfg.deadline_guard_ms;
        let Some(inst) = self.inst(id) else {
            return;
        };
        if inst.phase.is_finished() {
            return;
        }
        if now >= inst.global_deadline {
            // Auto Scaling has applied the hook's default result by now.
            self.end_pipeline(id, Outcome::Gone);
            return;
        }
        let working = matches!(inst.phase, Phase::Running { .. } | Phase::Verifying { .. });
        if working && now.plus_ms(guard) >= inst.global_deadline {
            let step = inst.phase.step();
            self.release(id);
            self.fail_instance(
                id,
                step,
                "the lifecycle hook's global timeout is about to expire with the plan unfinished"
                    .into(),
                Some(AlertKind::PlanCannotFit),
            );
        }
        // Only a confirmed heartbeat counts: one sent by an invocation that died, or that was
        // throttled, is sent again `retry_ms` later.
        let due = self.inst(id).is_some_and(|i| self.heartbeat_due(i));
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        if due {
            inst.heartbeat_sent = Some(now);
            let action = inst.action.clone();
            self.out.push(Command::RecordHeartbeat { action });
        }
    }

    pub(super) fn schedule(&mut self, key: &Key) {
        let at = match key {
            Key::Instance(id) => self.instance_wake(id),
            Key::Group(g) => self.group(g).and_then(|g| g.wake_at(self.cfg)),
        };
        let slot = match key {
            Key::Instance(id) => self
                .w
                .instances
                .get_mut(id)
                .and_then(Option::as_mut)
                .map(|i| &mut i.wake_at),
            Key::Group(g) => self
                .w
                .groups
                .get_mut(g)
                .and_then(Option::as_mut)
                .map(|g| &mut g.wake_at),
        };
        let Some(slot) = slot else {
            return;
        };
        if *slot != at {
            *slot = at;
            if let Some(at) = at {
                self.out.push(Command::Wakeup {
                    key: key.clone(),
                    at,
                });
            }
        }
    }

    pub(super) fn instance_wake(&self, id: &InstanceId) -> Option<Millis> {
        let inst = self.inst(id)?;
        if inst.phase.is_finished() {
            return None;
        }
        let cfg = self.cfg;
        let mut at = vec![inst.global_deadline];
        if inst.last_heartbeat.plus_secs(inst.timeouts.heartbeat_secs) < inst.global_deadline {
            let next = inst.last_heartbeat.plus_ms(
                inst.timeouts
                    .heartbeat_secs
                    .saturating_mul(cfg.heartbeat_permille),
            );
            at.push(match inst.heartbeat_sent {
                Some(sent) => next.max(sent.plus_ms(cfg.retry_ms)),
                None => next,
            });
        }
        match &inst.phase {
            Phase::Running { step, wait } => {
                let s = inst.plan.steps.get(*step)?;
                // The first moment the rest of the plan no longer fits (a wake time that is not
                // in the future would never be rescheduled).
                let fit_deadline = Millis(
                    inst.global_deadline
                        .0
                        .saturating_sub(inst.remaining_secs(*step).saturating_mul(1000))
                        .saturating_add(1),
                );
                match wait {
                    StepWait::Backoff { until } => at.push(*until),
                    // Without its group loaded (a heartbeat), the earliest the step can need a
                    // look: its attempt cannot time out before it has waited the timeout.
                    StepWait::Queued { since }
                        if !self.has_loaded(&s.group)
                            && since.plus_secs(s.timeout_secs).min(fit_deadline) > self.now =>
                    {
                        at.push(since.plus_secs(s.timeout_secs).min(fit_deadline))
                    }
                    StepWait::Queued { .. } => match self.standing(id, &s.group) {
                        Standing::InFlight { admitted_at, .. } => {
                            at.push(admitted_at.plus_secs(s.timeout_secs))
                        }
                        Standing::Waiting => at.push(fit_deadline),
                        Standing::Done(_) | Standing::Absent => at.push(self.now),
                    },
                    StepWait::Draining { .. } => at.push(self.now.plus_ms(cfg.poll_interval_ms)),
                    StepWait::Overflow { tried_at, .. } => {
                        at.push(tried_at.plus_ms(cfg.overflow_retry_ms).max(self.now));
                        at.push(fit_deadline);
                    }
                    StepWait::Leaving {
                        since, blocked_by, ..
                    } => at.push(since.plus_ms(cfg.leave_resend_ms(blocked_by.as_ref()))),
                }
            }
            Phase::Verifying {
                since, waiting_for, ..
            } => at.push(since.plus_ms(cfg.verify_resend_ms(waiting_for.is_some()))),
            Phase::Completing { since, probing, .. } => {
                at.push(since.plus_ms(cfg.completion_resend_ms(*probing)))
            }
            Phase::Readying { since, .. } => {
                if let Some(r) = &inst.plan.readiness {
                    at.push(since.plus_secs(r.timeout_secs));
                }
            }
            Phase::Held { .. } | Phase::Finished { .. } => {}
        }
        at.into_iter().min()
    }
}
