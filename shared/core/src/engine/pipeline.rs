//! The per-instance pipeline: picking up a step's result, leaving the group (sealed, or through
//! the leave check), moving on, retrying, the on-failure policy, holding and completing.

use super::*;

impl Cx<'_> {
    /// Picks up the result of the current step, if the group has one for this instance.
    pub(super) fn resolve(&mut self, id: &InstanceId) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Running { step, wait } = inst.phase.clone() else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step) else {
            return;
        };
        let key = s.group.clone();
        // The attempt joined the waiting list then; its gate opened later, at admission.
        let attempt_since = match &wait {
            StepWait::Queued { since } => Some(*since),
            _ => None,
        };
        match (wait, self.standing(id, &key)) {
            // The group's list was full: try again, keeping the place in the queue.
            (StepWait::Overflow { since, .. }, _) => {
                let (window, max_batch) = (inst.plan.batch_window_secs, inst.plan.max_batch);
                self.join(id, step, since, window, max_batch);
            }
            (StepWait::Backoff { until }, _) => {
                if self.now >= until {
                    self.start_attempt(id, step, Admit::Window);
                }
            }
            // Waiting for the leave check (answered by `LeaveChecked`, re-sent by the timer).
            (StepWait::Leaving { .. }, _) => {}
            (_, Standing::Waiting) => {}
            (StepWait::Queued { .. }, Standing::Absent) => {
                // The group forgot the instance (record lost or reset): queue it again.
                self.start_attempt_again(id, step);
            }
            (StepWait::Draining { .. }, Standing::Absent) => {
                let why = "the attempt timed out".to_owned();
                self.push_attempt(id, step, None, None, AttemptResult::Failed(why.clone()));
                self.step_failed(id, step, why);
            }
            (StepWait::Queued { .. }, Standing::InFlight { .. })
            | (StepWait::Draining { .. }, Standing::InFlight { .. }) => {}
            (wait, Standing::Done(result)) => {
                let hold_back = self.mates_to_come(id, &key);
                self.log_attempt(id, step, &key, attempt_since, &wait, &result);
                self.leave_group(id, &key);
                match (wait, result) {
                    (StepWait::Draining { .. }, _) => {
                        self.step_failed(id, step, "the attempt timed out".into())
                    }
                    (
                        _,
                        StepResult::Success {
                            revision,
                            sealed: true,
                            ..
                        },
                    ) => {
                        // Sealed: nothing else can hold the instance, so no leave check.
                        let admit = if hold_back { Admit::Follow } else { Admit::Now };
                        self.step_succeeded(id, step, revision, admit);
                    }
                    (
                        _,
                        StepResult::Success {
                            revision,
                            deployment,
                            sealed: false,
                        },
                    ) => self.leave(id, step, revision, deployment, hold_back, attempt_since),
                    (_, StepResult::Failure(why)) => {
                        self.step_failed(id, step, why);
                        if !hold_back {
                            self.nudge_next(id, step);
                        }
                    }
                }
            }
        }
    }

    /// Keeps what came of the attempt in the step's record, for `turnstile show`.
    fn log_attempt(
        &mut self,
        id: &InstanceId,
        step: usize,
        key: &GroupKey,
        queued_at: Option<Millis>,
        wait: &StepWait,
        result: &StepResult,
    ) {
        let deployment = self.group(key).and_then(|g| g.deployment_of(id));
        let result = match (wait, result) {
            (StepWait::Draining { .. }, _) => AttemptResult::Failed("the attempt timed out".into()),
            (_, StepResult::Success { .. }) => AttemptResult::Succeeded,
            (_, StepResult::Failure(why)) => AttemptResult::Failed(why.clone()),
        };
        self.push_attempt(id, step, queued_at, deployment, result);
    }

    /// Adds one finished attempt, ended now, to the step's bounded log.
    fn push_attempt(
        &mut self,
        id: &InstanceId,
        step: usize,
        queued_at: Option<Millis>,
        deployment: Option<DeploymentId>,
        result: AttemptResult,
    ) {
        let now = self.now;
        if let Some(r) = self.inst_mut(id).and_then(|i| i.steps.get_mut(step)) {
            r.log_attempt(AttemptLog {
                queued_at,
                ended_at: now,
                deployment,
                result,
            });
        }
    }

    /// A step of an unsealed deployment succeeded: close its gate, then confirm that no other
    /// deployment of the group reached the instance since the attempt started (one command,
    /// which the runner may run before this decision is committed).
    pub(super) fn leave(
        &mut self,
        id: &InstanceId,
        step: usize,
        revision: Option<Revision>,
        done_in: Option<DeploymentId>,
        hold_back: bool,
        attempt_since: Option<Millis>,
    ) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        inst.phase = Phase::Running {
            step,
            wait: StepWait::Leaving {
                since: now,
                revision,
                hold_back,
                blocked_by: None,
                done_in: done_in.clone(),
                attempt_since,
            },
        };
        self.out.push(Command::CheckLeave {
            gate: s.gate,
            instance: id.clone(),
            group: s.group,
            done_in,
            since: attempt_since,
        });
    }

    pub(super) fn on_leave_checked(&mut self, id: &InstanceId, key: &GroupKey, found: &LeaveFound) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Running {
            step,
            wait:
                StepWait::Leaving {
                    revision,
                    hold_back,
                    blocked_by,
                    done_in,
                    attempt_since,
                    ..
                },
        } = inst.phase.clone()
        else {
            self.ignore("leave check answer for an instance that is not leaving");
            return;
        };
        if inst.plan.steps.get(step).map(|s| &s.group) != Some(key) {
            self.ignore("leave check answer for another step");
            return;
        }
        let d = match found {
            LeaveFound::Clear if blocked_by.is_none() => {
                let admit = if hold_back { Admit::Follow } else { Admit::Now };
                self.step_succeeded(id, step, revision, admit);
                return;
            }
            // Another deployment ran on the instance after our step finished (it held it
            // until now, or it was already done with it): what it left there is unknown, so
            // the step runs again (updateOutdatedInstancesOnly makes that a no-op if nothing
            // changed). Not a failure: no retry is spent. Taking its result as the step's would
            // put the instance in service with what that deployment installed, a failed
            // user's revision say, while the group's target revision is still ours
            // (invariant 6; stress mode, seeds 2837 and 6630).
            LeaveFound::Clear | LeaveFound::Touched(_) => {
                self.start_attempt_again(id, step);
                return;
            }
            LeaveFound::Held(d) => d,
        };
        // A deployment created while the gate was open still has the instance: wait for it.
        if let Some(inst) = self.inst_mut(id) {
            inst.phase = Phase::Running {
                step,
                wait: StepWait::Leaving {
                    since: now,
                    revision,
                    hold_back,
                    blocked_by: Some(d.clone()),
                    done_in,
                    attempt_since,
                },
            };
        }
        if let Some(g) = self.group_mut(key)
            && g.active.is_none()
        {
            g.active = Some(Active::Foreign {
                deployment: d.clone(),
                since: now,
                polled_at: now,
            });
        }
    }

    pub(super) fn step_succeeded(
        &mut self,
        id: &InstanceId,
        step: usize,
        revision: Option<Revision>,
        admit: Admit,
    ) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        let asg = inst.action.asg.clone();
        let mut took = 0;
        if let Some(r) = inst.steps.get_mut(step) {
            r.installed = Some(revision);
            took = r.started_at.map_or(0, |t| now.since(t));
        }
        let next = inst.steps.iter().position(|r| !r.is_done());
        self.metric(
            MetricName::StepDuration,
            took as f64,
            MetricUnit::Milliseconds,
            Some(asg),
            Some(s.group.clone()),
        );
        if let Some(g) = self.group_mut(&s.group) {
            g.breaker = Breaker::default();
        }
        match next {
            Some(n) => self.start_attempt(id, n, admit),
            None => self.verify(id),
        }
    }

    pub(super) fn step_failed(&mut self, id: &InstanceId, step: usize, why: String) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        let asg = inst.action.asg.clone();
        let attempts = inst.steps.get(step).map_or(0, |r| r.attempts);
        self.out.push(Command::CloseGate {
            gates: vec![s.gate.clone()],
            instances: vec![id.clone()],
        });
        if attempts <= s.retries {
            let backoff = s
                .retry_backoff_secs
                .saturating_mul(1 << attempts.saturating_sub(1).min(16));
            if let Some(inst) = self.inst_mut(id) {
                inst.phase = Phase::Running {
                    step,
                    wait: StepWait::Backoff {
                        until: now.plus_secs(backoff),
                    },
                };
            }
            self.metric(
                MetricName::StepRetry,
                1.0,
                MetricUnit::Count,
                Some(asg),
                Some(s.group),
            );
            return;
        }
        self.fail_instance(
            id,
            Some(step),
            format!(
                "step {} ({}) failed after {attempts} attempt(s): {why}",
                step + 1,
                s.group
            ),
            None,
        );
    }

    /// Applies the step's on-failure policy (and the breaker) to a failed pipeline.
    pub(super) fn fail_instance(
        &mut self,
        id: &InstanceId,
        step: Option<usize>,
        reason: String,
        alert: Option<AlertKind>,
    ) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        let step_def = step.and_then(|s| inst.plan.steps.get(s)).cloned();
        let breaker = inst.plan.breaker;
        if let Some(kind) = alert {
            self.alert(
                kind,
                Some(id),
                step_def.as_ref().map(|s| &s.group),
                reason.clone(),
            );
        }
        let policy = step_def
            .as_ref()
            .map_or(OnFailure::Abandon, |s| s.on_failure);
        if policy == OnFailure::Hold {
            self.hold(id, step, reason);
            return;
        }
        if let Some(s) = &step_def
            && let Some(g) = self.group_mut(&s.group)
            && let AbandonVerdict::Hold {
                newly_tripped,
                recent,
            } = g.breaker.record_abandon(breaker, now)
        {
            if newly_tripped {
                self.alert(
                    AlertKind::BreakerTripped,
                    Some(id),
                    Some(&s.group),
                    format!(
                        "{} caused {recent} abandons within {} s: holding instances instead of abandoning them until an operator resets the breaker",
                        s.group, breaker.window_secs
                    ),
                );
            }
            self.hold(
                id,
                step,
                format!(
                    "{reason} (repeated-failure breaker of {} is tripped)",
                    s.group
                ),
            );
            return;
        }
        let asg = self.inst(id).map(|i| i.action.asg.clone());
        self.metric(
            MetricName::Abandon,
            1.0,
            MetricUnit::Count,
            asg,
            step_def.map(|s| s.group),
        );
        self.complete(id, LifecycleResult::Abandon, reason);
    }

    pub(super) fn hold(&mut self, id: &InstanceId, step: Option<usize>, reason: String) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Held {
            step,
            reason: reason.clone(),
            since: now,
        };
        let asg = inst.action.asg.clone();
        self.alert(
            AlertKind::InstanceHeld,
            Some(id),
            None,
            format!("instance held in Pending:Wait: {reason}"),
        );
        self.metric(MetricName::Held, 1.0, MetricUnit::Count, Some(asg), None);
    }

    pub(super) fn complete(&mut self, id: &InstanceId, result: LifecycleResult, reason: String) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Completing {
            result,
            reason,
            since: now,
            probing: false,
            opened_at: None,
        };
        let action = inst.action.clone();
        let all_done = inst.all_steps_done();
        let took = now.since(inst.started_at);
        if result == LifecycleResult::Continue && all_done {
            self.metric(
                MetricName::TimeToInService,
                took as f64,
                MetricUnit::Milliseconds,
                Some(action.asg.clone()),
                None,
            );
        }
        self.out.push(Command::CompleteAction { action, result });
    }
}
