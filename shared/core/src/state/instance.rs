//! The instance record: one lifecycle action's pipeline through the plan.

use serde::{Deserialize, Serialize};

use super::{ActionRef, HookTimeouts, LifecycleResult, Place, Seen};
use crate::ids::*;
use crate::plan::Plan;

/// The pipeline of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub action: ActionRef,
    pub plan: Plan,
    pub timeouts: HookTimeouts,
    /// When the lifecycle action started (event time).
    pub started_at: Millis,
    pub global_deadline: Millis,
    /// The last heartbeat Auto Scaling confirmed (or the action's start).
    pub last_heartbeat: Millis,
    /// A heartbeat sent but not yet confirmed (re-sent if no confirmation comes).
    #[serde(default)]
    pub heartbeat_sent: Option<Millis>,
    pub steps: Vec<StepRecord>,
    pub phase: Phase,
    /// Recently handled event ids (bounded), for duplicate detection.
    pub seen: Seen,
    /// When the timer path must next look at this instance.
    pub wake_at: Option<Millis>,
    /// Where the action takes the instance (the event's `Destination`): a finished pipeline
    /// for the warm pool does not cover a later wait to enter the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Place>,
    /// When the timer sweep adopted the action (it had no event): a launch event of the same
    /// hook that arrives later for it is a duplicate, not a second pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_at: Option<Millis>,
    /// Operator actions on this pipeline, the most recent [`super::OPERATOR_NOTES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator: Vec<super::OperatorNote>,
    /// Heartbeats Auto Scaling confirmed, for `turnstile show`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub heartbeats: u32,
    /// The alerts raised about this pipeline, the most recent [`ALERT_NOTES`], so `show`
    /// needs no log search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertNote>,
    /// When the instance was seen ready ([`Phase::Readying`]), for `turnstile show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Millis>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How many alerts an instance record keeps.
pub const ALERT_NOTES: usize = 8;
/// How many finished attempts each step record keeps.
pub const ATTEMPT_LOG: usize = 5;

/// An alert raised about a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertNote {
    pub at: Millis,
    pub kind: crate::io::AlertKind,
    pub message: String,
}

impl Instance {
    /// Keeps `note`, dropping the oldest beyond [`ALERT_NOTES`].
    pub fn note_alert(&mut self, note: AlertNote) {
        self.alerts.push(note);
        if self.alerts.len() > ALERT_NOTES {
            self.alerts.remove(0);
        }
    }
}

/// One finished attempt at a step, as `turnstile show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLog {
    /// When it joined the group's queue, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<Millis>,
    /// When its result was read.
    pub ended_at: Millis,
    /// The deployment that ran it (none when it was never created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentId>,
    pub result: AttemptResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptResult {
    Succeeded,
    Failed(String),
}

/// What one plan step has done on this instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Attempts started (1 after the first admission request).
    pub attempts: u32,
    /// Set when the step succeeded: the revision its deployment installed (`None` inside
    /// `Some` means the group had no revision to deploy).
    pub installed: Option<Option<Revision>>,
    pub started_at: Option<Millis>,
    /// An operator let the instance go on without this step after it failed
    /// (`turnstile skip-failed-step`): who, when, why. The step counts as done for the rest of
    /// the pipeline and the final check, and is never run again on this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden: Option<super::OperatorNote>,
    /// Its finished attempts, the most recent [`ATTEMPT_LOG`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<AttemptLog>,
}

impl StepRecord {
    /// Keeps `entry`, dropping the oldest beyond [`ATTEMPT_LOG`].
    pub fn log_attempt(&mut self, entry: AttemptLog) {
        self.log.push(entry);
        if self.log.len() > ATTEMPT_LOG {
            self.log.remove(0);
        }
    }

    /// Succeeded, or skipped by an operator's override.
    pub fn is_done(&self) -> bool {
        self.installed.is_some() || self.overridden.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for the instance to tag itself ready ([`crate::Readiness`]) before anything
    /// runs on it, heartbeating meanwhile. `deploy`: whether the plan's steps follow (false on
    /// a warm-pool transition the plan does not deploy on: the instance is let go once ready,
    /// so it is not stopped in the middle of its bootstrap).
    Readying { since: Millis, deploy: bool },
    /// Working on `step`.
    Running { step: usize, wait: StepWait },
    /// Every step succeeded; the current revision of each group is being checked.
    Verifying {
        since: Millis,
        /// The last check found this deployment (not ours) running on a plan group: it is
        /// waited for. `None`: the check sent at `since` is unanswered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_for: Option<DeploymentId>,
        /// After a CONTINUE that never landed: when its gates opened. The check looks back to
        /// here ([`crate::Command::CheckRevisions`]) until one is answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        look_back: Option<Millis>,
    },
    /// The result is decided and recorded; `CompleteLifecycleAction` is (re)sent until Auto
    /// Scaling acknowledges it or reports the action gone.
    Completing {
        result: LifecycleResult,
        reason: String,
        since: Millis,
        /// An unconfirmed CONTINUE is not sent again blindly: a heartbeat probes whether the
        /// action is still pending (see `Engine`, "re-sending a CONTINUE").
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        probing: bool,
        /// A CONTINUE after the final check: when every gate was opened for it. From then on
        /// every deployment created reaches the instance; if the CONTINUE never landed, the
        /// final check that runs again looks back to here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opened_at: Option<Millis>,
    },
    /// Kept in `Pending:Wait` (heartbeats continue) until an operator acts.
    Held {
        step: Option<usize>,
        reason: String,
        since: Millis,
    },
    /// Nothing left to do.
    Finished { outcome: Outcome, at: Millis },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepWait {
    /// In the group's waiting list or served by one of its deployments (the group record says
    /// which).
    Queued { since: Millis },
    /// A failed attempt; the next one starts at `until`.
    Backoff { until: Millis },
    /// The step of an unsealed deployment ([`Seal`](super::Seal)) succeeded and its gate is
    /// closed; the instance moves on once CodeDeploy confirms that no active deployment of the
    /// group still has it as an unfinished target (one may have been created while the gate was
    /// open).
    Leaving {
        since: Millis,
        revision: Option<Revision>,
        /// Wait (up to the batch window) for batch-mates before the next group is admitted.
        hold_back: bool,
        /// The deployment that still had the instance as a target at the last check.
        blocked_by: Option<DeploymentId>,
        /// The deployment the instance finished its step in (the check leaves it out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        done_in: Option<DeploymentId>,
        /// When the attempt started: the check looks at every deployment of the group created
        /// since. `None` in records written before the check looked back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt_since: Option<Millis>,
    },
    /// The attempt timed out while a deployment still runs on the instance; the attempt is
    /// failed once that deployment no longer touches it.
    Draining { since: Millis },
    /// The group's record lists as many instances as it may ([`crate::Config::group_capacity`]):
    /// the instance waits in its own record since `since` and tries to join every
    /// `overflow_retry_ms` after `tried_at`, keeping `since` as its place in the queue.
    Overflow {
        since: Millis,
        /// When it last found the list full.
        #[serde(default)]
        tried_at: Millis,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Completed with CONTINUE after every step succeeded.
    InService,
    /// Completed with CONTINUE without deploying (a warm-pool transition the plan skips).
    PassedThrough,
    /// Completed with ABANDON.
    Abandoned,
    /// The lifecycle action disappeared (completed elsewhere, timed out, instance terminated).
    Gone,
    /// The instance is terminating.
    Terminated,
    /// The plan was invalid; an alert was raised and the hook's default result applies.
    Rejected,
}

impl Instance {
    /// Worst-case seconds the steps from `from` on still need (one attempt each), skipping
    /// steps already done.
    pub fn remaining_secs(&self, from: usize) -> u64 {
        self.plan
            .steps
            .iter()
            .zip(&self.steps)
            .skip(from)
            .filter(|(_, r)| !r.is_done())
            .map(|(s, _)| s.timeout_secs)
            .sum()
    }

    /// The tag the instance must carry to go on, while it waits for readiness (the store
    /// lists these instances for the timer sweep's batched tag read).
    pub fn awaiting_ready(&self) -> Option<&crate::plan::Gate> {
        match self.phase {
            Phase::Readying { .. } => self.plan.readiness.as_ref().map(|r| &r.tag),
            _ => None,
        }
    }

    /// Whether the plan has steps and every one of them has succeeded (installed a revision,
    /// or found nothing to deploy) or was skipped by an operator's override: what a CONTINUE
    /// counts as putting the instance in service.
    pub fn all_steps_done(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(StepRecord::is_done)
    }

    /// Whether this record already accounts for the instance waiting in `place` on one of
    /// turnstile's launch hooks, so the sweep must not adopt it: a pipeline that is still
    /// running, or one that finished for a wait of the same kind (its action is over; another
    /// tool's hook may still hold the instance). A finished pipeline into the warm pool does
    /// not cover the later wait to leave it, which is a new action.
    pub fn covers_wait(&self, place: Place) -> bool {
        !self.phase.is_finished() || self.destination.unwrap_or(Place::AutoScalingGroup) == place
    }

    /// The group whose full list this instance waits outside of, and since when
    /// ([`StepWait::Overflow`]): what the store's `overflow` index holds.
    pub fn overflowed_on(&self) -> Option<(&GroupKey, Millis)> {
        match &self.phase {
            Phase::Running {
                step,
                wait: StepWait::Overflow { since, .. },
            } => self.plan.steps.get(*step).map(|s| (&s.group, *since)),
            _ => None,
        }
    }

    /// Whether a launch event of this record's hook is for the action the sweep adopted:
    /// while the adopted pipeline runs, Auto Scaling cannot have started another action of the
    /// same hook for the instance; after it, only an event from before the adoption can be.
    pub fn adopted_event(&self, hook: &str, event_time: Millis) -> bool {
        self.action.hook == hook
            && self
                .adopted_at
                .is_some_and(|at| !self.phase.is_finished() || event_time <= at)
    }
}

/// Whether the sweep should adopt an instance waiting in `place` on one of turnstile's launch
/// hooks, given its record (if any): only if no record accounts for that wait.
pub fn needs_adoption(record: Option<&Instance>, place: Place) -> bool {
    record.is_none_or(|r| !r.covers_wait(place))
}

impl Phase {
    pub fn is_finished(&self) -> bool {
        matches!(self, Phase::Finished { .. })
    }
    /// The step currently being worked on, if any.
    pub fn step(&self) -> Option<usize> {
        match self {
            Phase::Running { step, .. } => Some(*step),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(steps: usize) -> Instance {
        // A plan document needs a step; a plan without any is made by dropping it.
        let doc: Vec<String> = (0..steps.max(1))
            .map(|i| {
                format!(r#"{{"application":"app{i}","deploymentGroup":"dg{i}","gateTag":"g{i}"}}"#)
            })
            .collect();
        let plan = Plan::parse(&format!(r#"{{"version":1,"steps":[{}]}}"#, doc.join(",")))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut plan = plan;
        plan.steps.truncate(steps);
        let action = ActionRef {
            asg: "asg".into(),
            hook: "hook".into(),
            token: Some(Token::from("t")),
            instance: InstanceId::from("i-1"),
        };
        Instance {
            id: action.instance.clone(),
            action,
            plan,
            timeouts: HookTimeouts::from_heartbeat(600),
            started_at: Millis(0),
            global_deadline: Millis(60_000_000),
            last_heartbeat: Millis(0),
            heartbeat_sent: None,
            steps: vec![StepRecord::default(); steps],
            phase: Phase::Verifying {
                since: Millis(0),
                waiting_for: None,
                look_back: None,
            },
            seen: Seen::default(),
            wake_at: None,
            destination: None,
            adopted_at: None,
            operator: Vec::new(),
            heartbeats: 0,
            alerts: Vec::new(),
            ready_at: None,
        }
    }

    fn finished(mut inst: Instance, destination: Option<Place>) -> Instance {
        inst.phase = Phase::Finished {
            outcome: Outcome::InService,
            at: Millis(10),
        };
        inst.destination = destination;
        inst
    }

    #[test]
    fn adopt_only_a_wait_no_record_accounts_for() {
        use Place::*;
        let running = instance(1);
        let cases = [
            (None, AutoScalingGroup, true, "no record at all"),
            (
                Some(running.clone()),
                AutoScalingGroup,
                false,
                "a pipeline still running",
            ),
            (
                Some(running),
                WarmPool,
                false,
                "a running pipeline, whatever the wait",
            ),
            (
                Some(finished(instance(1), Some(AutoScalingGroup))),
                AutoScalingGroup,
                false,
                "finished for this launch: another tool's hook may hold it",
            ),
            (
                Some(finished(instance(1), None)),
                AutoScalingGroup,
                false,
                "a record from before destinations were kept counts as a launch",
            ),
            (
                Some(finished(instance(1), Some(WarmPool))),
                AutoScalingGroup,
                true,
                "finished entering the warm pool: leaving it is a new action",
            ),
            (
                Some(finished(instance(1), Some(WarmPool))),
                WarmPool,
                false,
                "finished for this warm-pool entry",
            ),
        ];
        for (record, place, adopt, why) in cases {
            assert_eq!(needs_adoption(record.as_ref(), place), adopt, "{why}");
        }
    }

    #[test]
    fn adopted_event_is_the_same_action_while_running_or_if_older() {
        let mut inst = instance(1);
        assert!(
            !inst.adopted_event("hook", Millis(5)),
            "not adopted: tokens decide"
        );
        inst.adopted_at = Some(Millis(100));
        assert!(
            inst.adopted_event("hook", Millis(500)),
            "running: the same action"
        );
        assert!(
            !inst.adopted_event("other", Millis(50)),
            "another hook's action"
        );
        let inst = {
            let mut f = finished(inst, None);
            f.adopted_at = Some(Millis(100));
            f
        };
        assert!(
            inst.adopted_event("hook", Millis(90)),
            "finished, event from before"
        );
        assert!(
            !inst.adopted_event("hook", Millis(200)),
            "finished, a newer action"
        );
    }

    #[test]
    fn all_steps_done_needs_every_step_installed() {
        let mut inst = instance(2);
        assert!(!inst.all_steps_done());
        inst.steps[0].installed = Some(Some(Revision::from("r1")));
        assert!(!inst.all_steps_done(), "one step is still to do");
        // A group with nothing to deploy counts as done.
        inst.steps[1].installed = Some(None);
        assert!(inst.all_steps_done());
    }

    #[test]
    fn all_steps_done_is_false_for_a_plan_without_steps() {
        // Nothing was deployed: a CONTINUE passes the instance through, not into service.
        assert!(!instance(0).all_steps_done());
    }

    #[test]
    fn phases_written_before_the_look_back_fields_still_load() {
        // Records in the table from before the leave and final checks looked back.
        let old = [
            r#"{"Verifying":{"since":5}}"#,
            r#"{"Completing":{"result":"Continue","reason":"r","since":5}}"#,
            r#"{"Running":{"step":0,"wait":{"Leaving":{"since":5,"revision":null,"hold_back":false,"blocked_by":null}}}}"#,
        ];
        let loaded: Vec<Phase> = old
            .iter()
            .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("{j}: {e}")))
            .collect();
        assert_eq!(
            loaded,
            vec![
                Phase::Verifying {
                    since: Millis(5),
                    waiting_for: None,
                    look_back: None,
                },
                Phase::Completing {
                    result: LifecycleResult::Continue,
                    reason: "r".into(),
                    since: Millis(5),
                    probing: false,
                    opened_at: None,
                },
                Phase::Running {
                    step: 0,
                    wait: StepWait::Leaving {
                        since: Millis(5),
                        revision: None,
                        hold_back: false,
                        blocked_by: None,
                        done_in: None,
                        attempt_since: None,
                    },
                },
            ]
        );
    }

    #[test]
    fn remaining_secs_skips_steps_already_done() {
        let mut inst = instance(3);
        let each = inst.plan.steps[0].timeout_secs;
        assert_eq!(inst.remaining_secs(0), 3 * each);
        inst.steps[1].installed = Some(None);
        assert_eq!(inst.remaining_secs(0), 2 * each);
        assert_eq!(inst.remaining_secs(2), each);
    }
}
