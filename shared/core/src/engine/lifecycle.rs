//! Lifecycle actions: a launch starts a pipeline, a termination or an action Auto Scaling
//! reports gone ends one, a completion Auto Scaling confirmed finishes it, and the sweep
//! adopts an action whose event never came.

use super::*;

impl Engine {
    /// Own hooks only: a launch action of a hook turnstile does not own is its owner's to
    /// complete. It reads no record, changes nothing and sends nothing, so it can neither
    /// end nor replace turnstile's own pipeline for the instance. Returns why, for the log.
    pub(super) fn foreign_launch(&self, input: &Input) -> Option<String> {
        let a = match input {
            Input::Launch { event, .. } => &event.action,
            Input::Adopt { action, .. } => action,
            _ => return None,
        };
        let owned = &self.config.owned_hooks.launch;
        (!owned.matches(&a.hook)).then(|| {
            format!(
                "launch lifecycle action of hook {} on {} for {}: not one of turnstile's launch hooks ({owned}); left to its owner",
                a.hook, a.asg, a.instance
            )
        })
    }
}

impl Cx<'_> {
    pub(super) fn on_launch(
        &mut self,
        ev: &LifecycleEvent,
        plan: &Result<Plan, PlanError>,
        timeouts: HookTimeouts,
    ) {
        let id = &ev.action.instance;
        if let Some(existing) = self.inst(id) {
            if existing.action.token == ev.action.token {
                self.ignore(format!(
                    "duplicate lifecycle token {}",
                    ev.action.token_or_instance()
                ));
                return;
            }
            if existing.adopted_event(&ev.action.hook, ev.time) {
                let at = existing.adopted_at.unwrap_or_default();
                self.ignore(format!(
                    "launch event for the action the sweep adopted at {} ms: already in its pipeline",
                    at.0
                ));
                return;
            }
            if !existing.phase.is_finished() {
                // Auto Scaling issued a new action for this instance: the old one is over.
                self.end_pipeline(id, Outcome::Gone);
            }
        }
        self.start_pipeline(ev, plan, timeouts, None);
    }

    /// Adoption: the sweep found the instance waiting on turnstile's hook with no pipeline for
    /// that wait, and its heartbeat at `at` confirmed the action is pending. The pipeline
    /// starts as a launch event's would, addressed by instance id. When the action began is
    /// not described anywhere, so the global deadline counts from `at` minus one heartbeat
    /// timeout: the earliest it can have begun and still be pending with no heartbeat from us.
    pub(super) fn on_adopt(
        &mut self,
        action: &ActionRef,
        place: Place,
        plan: &Result<Plan, PlanError>,
        timeouts: HookTimeouts,
        at: Millis,
    ) {
        let id = &action.instance;
        if !needs_adoption(self.inst(id), place) {
            self.ignore(format!(
                "adoption of {id}: its record already accounts for the wait (a launch event came first)"
            ));
            return;
        }
        if let Some(existing) = self.inst(id)
            && !existing.phase.is_finished()
        {
            self.end_pipeline(id, Outcome::Gone);
        }
        let ev = LifecycleEvent {
            event_id: None,
            action: ActionRef {
                token: None,
                ..action.clone()
            },
            origin: None,
            destination: Some(place),
            time: Millis(at.0.saturating_sub(timeouts.heartbeat_secs.saturating_mul(1000))),
        };
        self.start_pipeline(&ev, plan, timeouts, Some(at));
    }

    /// Records a new lifecycle action and starts its pipeline (or completes, holds or rejects
    /// it, as the plan and the hook allow). `adopted_at` is set for an adopted action, whose
    /// confirming heartbeat is its last one.
    fn start_pipeline(
        &mut self,
        ev: &LifecycleEvent,
        plan: &Result<Plan, PlanError>,
        timeouts: HookTimeouts,
        adopted_at: Option<Millis>,
    ) {
        let id = &ev.action.instance;
        // A plan outside the stack's scope is as invalid as one that does not parse: every
        // AWS call it leads to would be refused.
        let scoped = plan
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|p| self.cfg.plan_scope.check(p).map(|()| p));
        let plan = &scoped;
        let mut inst = new_instance(
            ev,
            plan.as_ref().ok().copied(),
            timeouts,
            self.now,
            self.cfg,
        );
        if let Some(at) = adopted_at {
            inst.adopted_at = Some(at);
            inst.last_heartbeat = at;
        }
        self.w.instances.insert(id.clone(), Some(inst));
        self.touched.insert(Key::Instance(id.clone()));

        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                self.alert(
                    AlertKind::PlanInvalid,
                    Some(id),
                    None,
                    format!(
                        "lifecycle hook {} of {}: {e}; instance left to the hook's default result",
                        ev.action.hook, ev.action.asg
                    ),
                );
                return;
            }
        };

        let deploy = !matches!(
            (ev.origin, ev.destination, plan.warm_pool),
            (_, Some(Place::WarmPool), WarmPoolPolicy::DeployOnExit)
                | (Some(Place::WarmPool), _, WarmPoolPolicy::DeployOnEntry)
        );
        let readiness =
            super::readiness::readiness_for(plan, ev.origin).map_or(0, |r| r.timeout_secs);
        if !deploy {
            // Entering the warm pool: Auto Scaling stops the instance once its launch hooks
            // complete, so with a readiness signal it waits for the bootstrap to finish first.
            if readiness > timeouts.global_secs {
                self.plan_cannot_fit(id, &ev.action.hook, readiness, timeouts.global_secs);
            } else if !self.await_ready(id, ev.origin, false) {
                self.complete(
                    id,
                    LifecycleResult::Continue,
                    "warm-pool transition the plan does not deploy on".into(),
                );
            }
            return;
        }
        if timeouts.heartbeat_secs < MIN_ROBUST_HEARTBEAT_SECS {
            self.alert(
                AlertKind::HeartbeatTimeoutTooShort,
                Some(id),
                None,
                format!(
                    "lifecycle hook {} has a {} s heartbeat timeout: below {MIN_ROBUST_HEARTBEAT_SECS} s a single lost timer message can miss a heartbeat; raise it",
                    ev.action.hook, timeouts.heartbeat_secs
                ),
            );
        }
        let need: u64 = plan.steps.iter().map(|s| s.timeout_secs).sum::<u64>() + readiness;
        if need > timeouts.global_secs {
            self.plan_cannot_fit(id, &ev.action.hook, need, timeouts.global_secs);
            return;
        }
        if !self.await_ready(id, ev.origin, true) {
            self.start_attempt(id, 0, Admit::Window);
        }
    }

    /// The plan's timeouts (its readiness wait and every step's) add up to more than the
    /// hook's global timeout. A configuration error: every replacement would fail the same
    /// way, so hold rather than feed an abandon/relaunch loop.
    fn plan_cannot_fit(&mut self, id: &InstanceId, hook: &str, need: u64, global_secs: u64) {
        let why = format!(
            "the plan's timeouts (readiness wait and steps) add up to {need} s but hook {hook}'s global timeout is {global_secs} s (100 × heartbeat timeout, at most 48 h)"
        );
        self.alert(AlertKind::PlanCannotFit, Some(id), None, why.clone());
        self.hold(id, None, why);
    }

    /// Any terminate action means the instance is going away, whoever's hook announced it,
    /// so the pipeline ends and releases what it held. Only turnstile's own terminate hook is
    /// completed: another tool's may be draining or shipping logs, and completing it would
    /// cut that short.
    pub(super) fn on_terminate(&mut self, ev: &LifecycleEvent) {
        let id = &ev.action.instance;
        if let Some(inst) = self.inst(id)
            && !inst.phase.is_finished()
        {
            self.end_pipeline(id, Outcome::Terminated);
        }
        let owned = &self.cfg.owned_hooks.terminate;
        if owned.matches(&ev.action.hook) {
            self.out.push(Command::CompleteAction {
                action: ev.action.clone(),
                result: LifecycleResult::Continue,
            });
        } else {
            self.ignore(format!(
                "terminate lifecycle action of hook {} on {} for {}: not one of turnstile's terminate hooks ({owned}), so not completed; left to its owner",
                ev.action.hook, ev.action.asg, ev.action.instance
            ));
        }
    }

    pub(super) fn on_completed(&mut self, id: &InstanceId, token: &Option<Token>) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        if &inst.action.token != token {
            return;
        }
        if let Phase::Completing { result, .. } = inst.phase {
            let outcome = match result {
                LifecycleResult::Abandon => Outcome::Abandoned,
                LifecycleResult::Continue if inst.all_steps_done() => Outcome::InService,
                LifecycleResult::Continue => Outcome::PassedThrough,
            };
            inst.phase = Phase::Finished { outcome, at: now };
        }
    }

    /// Auto Scaling confirmed a heartbeat sent at `at`: it counts from then on, and it answers
    /// the probe of a re-sent CONTINUE.
    pub(super) fn on_heartbeat_recorded(
        &mut self,
        id: &InstanceId,
        token: &Option<Token>,
        at: Millis,
    ) {
        if let Some(inst) = self.inst_mut(id)
            && &inst.action.token == token
        {
            if at > inst.last_heartbeat {
                inst.heartbeats = inst.heartbeats.saturating_add(1);
            }
            inst.last_heartbeat = inst.last_heartbeat.max(at);
            inst.heartbeat_sent = None;
            self.probe_answered(id, at);
        }
    }

    pub(super) fn on_gone(&mut self, id: &InstanceId, token: &Option<Token>) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        if &inst.action.token != token || inst.phase.is_finished() {
            self.ignore("action-gone for an action already finished or replaced");
            return;
        }
        if let Phase::Completing { result, .. } = inst.phase {
            // Our completion landed earlier (the answer was lost) or the action timed out:
            // either way it is over and must not be completed again.
            let outcome = match result {
                LifecycleResult::Continue => Outcome::InService,
                LifecycleResult::Abandon => Outcome::Abandoned,
            };
            let now = self.now;
            if let Some(inst) = self.inst_mut(id) {
                inst.phase = Phase::Finished { outcome, at: now };
            }
            return;
        }
        self.end_pipeline(id, Outcome::Gone);
    }

    /// Leaves every group of the plan, stopping a deployment that served only this instance.
    pub(super) fn release(&mut self, id: &InstanceId) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        let groups: Vec<GroupKey> = inst.plan.steps.iter().map(|s| s.group.clone()).collect();
        for key in groups {
            if let Some(deployment) = self.leave_group(id, &key) {
                self.out.push(Command::StopDeployment {
                    group: key,
                    deployment,
                });
            }
        }
    }

    /// Ends the pipeline: releases what it held and records the outcome.
    pub(super) fn end_pipeline(&mut self, id: &InstanceId, outcome: Outcome) {
        let now = self.now;
        self.release(id);
        if let Some(inst) = self.inst_mut(id) {
            inst.phase = Phase::Finished { outcome, at: now };
        }
    }
}

/// The record of a new lifecycle action, finished as `Rejected` until the launch rule starts
/// its pipeline. An invalid plan leaves an empty one.
fn new_instance(
    ev: &LifecycleEvent,
    plan: Option<&Plan>,
    timeouts: HookTimeouts,
    now: Millis,
    cfg: &Config,
) -> Instance {
    let started_at = ev.time.min(now);
    let mut inst = Instance {
        id: ev.action.instance.clone(),
        action: ev.action.clone(),
        plan: plan.cloned().unwrap_or(Plan {
            steps: Vec::new(),
            warm_pool: WarmPoolPolicy::DeployOnExit,
            batch_window_secs: 0,
            batch_follow_secs: 0,
            max_batch: 1,
            breaker: crate::plan::BreakerPolicy {
                threshold: 1,
                window_secs: 1,
            },
            readiness: None,
        }),
        timeouts,
        started_at,
        global_deadline: started_at.plus_secs(timeouts.global_secs),
        last_heartbeat: started_at,
        heartbeat_sent: None,
        steps: vec![StepRecord::default(); plan.map_or(0, |p| p.steps.len())],
        phase: Phase::Finished {
            outcome: Outcome::Rejected,
            at: now,
        },
        seen: Seen::default(),
        wake_at: None,
        destination: ev.destination,
        adopted_at: None,
        operator: Vec::new(),
        heartbeats: 0,
        alerts: Vec::new(),
        ready_at: None,
    };
    if let Some(e) = &ev.event_id {
        inst.seen.remember(e, cfg.seen_capacity);
    }
    inst
}
