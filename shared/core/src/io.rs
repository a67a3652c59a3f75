//! What goes into the core ([`Input`]) and what comes out ([`Command`]).
//!
//! Inputs are either things AWS told us (lifecycle and CodeDeploy events), answers to commands
//! the core issued earlier (`CreateOutcome`, `Revisions`, `ActionCompleted`, `ActionGone`,
//! `DeploymentStatus` from a poll), the timer, or an operator. Commands are requests; the runner
//! executes them in order and feeds their answers back as inputs.

use serde::{Deserialize, Serialize};

use crate::ids::*;
use crate::plan::{Gate, Plan, PlanError};
use crate::state::{ActionRef, HookTimeouts, LifecycleResult, Place, Request};

/// A lifecycle action notification (EventBridge or direct SQS), already parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub event_id: Option<EventId>,
    pub action: ActionRef,
    pub origin: Option<Place>,
    pub destination: Option<Place>,
    /// When Auto Scaling emitted it.
    pub time: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// `EC2 Instance-launch Lifecycle Action`, with the plan read from the hook's metadata and
    /// the hook's timeouts as described by Auto Scaling.
    Launch {
        event: LifecycleEvent,
        plan: Result<Plan, PlanError>,
        timeouts: HookTimeouts,
    },
    /// `EC2 Instance-terminate Lifecycle Action`.
    Terminate { event: LifecycleEvent },
    /// The timer sweep found the instance waiting in `place` on one of turnstile's launch
    /// hooks with no pipeline for that wait (its launch event was lost, or failed before its
    /// first write), and a heartbeat by instance id at `at` confirmed that the hook's action
    /// is pending. `action` has no token; the plan and timeouts are the hook's.
    Adopt {
        action: ActionRef,
        place: Place,
        plan: Result<Plan, PlanError>,
        timeouts: HookTimeouts,
        at: Millis,
    },
    /// A CodeDeploy deployment state-change event (START, SUCCESS, FAILURE, STOP).
    DeploymentEvent {
        event_id: Option<EventId>,
        group: GroupKey,
        deployment: DeploymentId,
        state: DeploymentState,
    },
    /// A CodeDeploy instance state-change event: one target's result within a deployment.
    TargetEvent {
        event_id: Option<EventId>,
        group: GroupKey,
        deployment: DeploymentId,
        instance: InstanceId,
        state: TargetState,
    },
    /// Answer to [`Command::PollDeployment`]: the deployment's status and the targets the
    /// orchestrator asked about. "Group became free" is a poll answer with a terminal status;
    /// "busy with a foreign deployment" is a `Busy` outcome, a check's `active` deployment, or
    /// a `DeploymentEvent::Started` (handled, though the shipped rule leaves START events out).
    DeploymentPolled {
        group: GroupKey,
        deployment: DeploymentId,
        state: DeploymentState,
        targets: Vec<(InstanceId, TargetState)>,
    },
    /// Answer to [`Command::CreateDeployment`] or [`Command::FindDeployment`].
    CreateAttempted {
        group: GroupKey,
        intent: IntentId,
        outcome: CreateOutcome,
    },
    /// Answer to [`Command::CheckRevisions`]: each group's current target revision and the
    /// deployment active on it, if any; `asked_at` is the check's.
    RevisionsChecked {
        instance: InstanceId,
        current: Vec<GroupRevision>,
        asked_at: Millis,
    },
    /// Answer to [`Command::SealGate`]: the deployment's status, read after the gate closed.
    GateSealed {
        group: GroupKey,
        deployment: DeploymentId,
        state: DeploymentState,
    },
    /// Answer to [`Command::CheckLeave`]: what other deployment of the group reached the
    /// instance, if any.
    LeaveChecked {
        instance: InstanceId,
        group: GroupKey,
        found: LeaveFound,
    },
    /// `RecordLifecycleActionHeartbeat` succeeded at `at`.
    HeartbeatRecorded {
        instance: InstanceId,
        token: Option<Token>,
        at: Millis,
    },
    /// `CompleteLifecycleAction` succeeded.
    ActionCompleted {
        instance: InstanceId,
        token: Option<Token>,
    },
    /// Auto Scaling answered "No active Lifecycle Action found": completed, timed out or the
    /// instance is gone. Never retried.
    ActionGone {
        instance: InstanceId,
        token: Option<Token>,
    },
    /// The timer: look at this record now.
    Tick(Key),
    /// Answer to [`Command::WakeOverflowed`]: how many instances were woken of the `room`
    /// asked for. Fewer means none is left waiting outside the list.
    OverflowWoken {
        group: GroupKey,
        woken: usize,
        room: usize,
    },
    /// The instance's tags, as EventBridge's `Tag Change on Resource` event reported them (its
    /// full set after the change) or as the timer sweep read them (the readiness tags it
    /// asked for) at `at`: an instance waiting for readiness goes on once it carries its
    /// plan's readiness tag.
    InstanceTagged {
        instance: InstanceId,
        tags: Vec<(String, String)>,
        at: Millis,
    },
    /// An operator's decision about a held or stuck instance.
    Operator {
        instance: InstanceId,
        action: OperatorAction,
        request: Request,
    },
    /// An operator resets a group's repeated-failure breaker.
    ResetBreaker { group: GroupKey, request: Request },
    /// An operator pauses (`paused: true`) or resumes a group's admissions.
    Pause {
        group: GroupKey,
        paused: bool,
        request: Request,
    },
}

/// What a leave check found ([`Command::CheckLeave`]) besides the deployment the instance
/// finished its step in. The instance's gate was open from its admission until the check
/// closed it, and a deployment created in that window (a user's, a rollback, one of ours for
/// other instances) selects it by its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveFound {
    /// No other deployment of the group reached the instance: the step is done.
    Clear,
    /// This deployment still has the instance as an unfinished target: wait for it (rule 2).
    Held(DeploymentId),
    /// This deployment reached the instance and is done with it: it may have installed
    /// another revision or failed half-way, so the step no longer counts as done.
    Touched(DeploymentId),
}

impl LeaveFound {
    /// How far before the attempt's start a leave check looks: CodeDeploy stamps
    /// `createTime` with its own clock. A little is enough, since the gate opened only at
    /// admission; more would only bring back deployments of earlier attempts, each of which
    /// costs a needless re-run.
    pub const LOOK_BACK_SLACK_MS: u64 = 5_000;
}

/// A group's state as read for the final revision check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRevision {
    pub group: GroupKey,
    /// The group's target revision (its last successful deployment's).
    pub revision: Option<Revision>,
    /// The deployment active on the group right now, if any.
    pub active: Option<DeploymentId>,
    /// A check that looks back (after a probed CONTINUE, see [`Command::CheckRevisions`]): a
    /// deployment of the group created since then that reached the instance and is done with
    /// it. It may have installed anything, so the group's step no longer counts as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touched: Option<DeploymentId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentState {
    Started,
    Succeeded,
    Failed,
    Stopped,
    /// Still running (poll answer).
    InProgress,
}

impl DeploymentState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentState::Succeeded | DeploymentState::Failed | DeploymentState::Stopped
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetState {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    Skipped,
    /// CodeDeploy reports `Unknown` (e.g. the instance went away).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateOutcome {
    /// Created now, or found (adopted) by its intent marker.
    Created {
        deployment: DeploymentId,
        revision: Option<Revision>,
    },
    /// The group already has an active deployment that is not this intent's.
    Busy { deployment: DeploymentId },
    /// The group has no target revision: there is nothing to deploy.
    NoRevision,
    /// Recovery lookup: no deployment carries this intent; it was never created.
    NotFound,
    /// CreateDeployment failed.
    Failed { reason: String, retryable: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorAction {
    /// Start the current step again with fresh attempts.
    Retry,
    /// Complete the lifecycle action with ABANDON.
    Abandon,
    /// Go on without the held step that failed (an override, recorded on the step).
    SkipFailedStep,
}

impl OperatorAction {
    /// The name the command line and the records use.
    pub fn name(self) -> &'static str {
        match self {
            OperatorAction::Retry => "retry",
            OperatorAction::Abandon => "abandon",
            OperatorAction::SkipFailedStep => "skip-failed-step",
        }
    }
}

/// A record the core reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    Instance(InstanceId),
    Group(GroupKey),
}

/// A request the runner carries out. Commands of one decision run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Tag the instances with the gates (one EC2 CreateTags per 500 instances). Idempotent.
    OpenGate {
        gates: Vec<Gate>,
        instances: Vec<InstanceId>,
    },
    /// Remove the gates' tags from the instances (one EC2 DeleteTags per 500 instances).
    /// Idempotent.
    CloseGate {
        gates: Vec<Gate>,
        instances: Vec<InstanceId>,
    },
    /// `CreateDeployment` with the group's target revision, `updateOutdatedInstancesOnly`,
    /// the config override, and the intent id in the description. On
    /// `DeploymentLimitExceededException` the runner reads the active deployment and answers
    /// `Created` if it carries this intent (adoption), `Busy` otherwise.
    CreateDeployment {
        group: GroupKey,
        intent: IntentId,
        instances: Vec<InstanceId>,
        config: Option<String>,
    },
    /// Recovery: look for a deployment of this group carrying the intent, created since `since`.
    FindDeployment {
        group: GroupKey,
        intent: IntentId,
        since: Millis,
    },
    /// Our deployment exists: remove its members' gate tag (EC2 DeleteTags), then read whether
    /// the deployment is still active (GetDeployment). Answered by `GateSealed`; see
    /// [`crate::Seal`] for why this lets members move on without a leave check.
    SealGate {
        group: GroupKey,
        deployment: DeploymentId,
        gate: Gate,
        instances: Vec<InstanceId>,
    },
    StopDeployment {
        group: GroupKey,
        deployment: DeploymentId,
    },
    /// Reconciliation: ask CodeDeploy for the deployment's status and these targets' results.
    PollDeployment {
        group: GroupKey,
        deployment: DeploymentId,
        instances: Vec<InstanceId>,
    },
    /// A step of an unsealed deployment is over: remove its gate tag (EC2 DeleteTags), then ask
    /// whether another deployment of the group reached the instance while the gate was open
    /// ([`LeaveFound`]). The check only means something after the close, so they are one
    /// command. `done_in` is the deployment the instance is known to have finished in.
    ///
    /// With `since` (when the attempt started; its gate opened later), every deployment of the
    /// group created since then is looked at (`ListDeployments`, then the instance's target
    /// in each other one): one that reached the instance and is done with it still matters,
    /// since it may have installed another revision or failed half-way. Without it (a check
    /// again after one was found holding the instance, its gate closed since), only whether the
    /// group's active deployment still holds the instance (`GetDeploymentGroup`'s last
    /// attempted deployment, then its target).
    CheckLeave {
        gate: Gate,
        instance: InstanceId,
        group: GroupKey,
        done_in: Option<DeploymentId>,
        since: Option<Millis>,
    },
    /// Read each group's current target revision.
    CheckRevisions {
        instance: InstanceId,
        groups: Vec<GroupKey>,
        /// When the check was decided (the instance's `Verifying { since }`), carried back by
        /// the answer: an answer to a check sent again since is stale and ignored, so a slow
        /// invocation's answer cannot complete the instance while a later check's close of its
        /// gates is still on its way.
        asked_at: Millis,
        /// After a CONTINUE that never landed: when its gates opened. Every deployment of each
        /// group created since then that reached the instance is reported too (as with
        /// [`Command::CheckLeave`]'s `since`): it may have run there and ended before this
        /// check, where the group's active deployment no longer shows it.
        since: Option<Millis>,
    },
    RecordHeartbeat {
        action: ActionRef,
    },
    CompleteAction {
        action: ActionRef,
        result: LifecycleResult,
    },
    /// Look at this record again at `at` (a delayed message; the periodic sweep is the backstop).
    Wakeup {
        key: Key,
        at: Millis,
    },
    /// The group's list has `room` free places and instances wait in their own records
    /// ([`crate::StepWait::Overflow`]): wake the `room` that have waited longest (a query of
    /// the store's `overflow` index), so they join now rather than at their next retry.
    /// Answered by `OverflowWoken`.
    WakeOverflowed {
        group: GroupKey,
        room: usize,
    },
    Metric(Metric),
    Alert(Alert),
}

impl Command {
    /// Whether the command may run before the decision that issued it is committed, with its
    /// answer decided into the same commit (see the runner). True for reads, for the leave
    /// check, whose only write closes the gate of a step CodeDeploy reported finished, and for
    /// the seal, whose only write closes the gate of members of a deployment that exists: facts
    /// that outlive a lost decision, so a re-decision closes those gates too. Everything else
    /// (opening a gate, creating or stopping a deployment, lifecycle calls) must wait until
    /// the decision is durable.
    pub fn may_run_early(&self) -> bool {
        matches!(
            self,
            Command::CheckLeave { .. }
                | Command::SealGate { .. }
                | Command::CheckRevisions { .. }
                | Command::PollDeployment { .. }
                | Command::FindDeployment { .. }
        )
    }

    /// Timers, metrics and alerts: they report on or follow up a decision, so they run once
    /// it is committed, never before.
    pub fn is_bookkeeping(&self) -> bool {
        matches!(
            self,
            Command::Wakeup { .. } | Command::Metric(_) | Command::Alert(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: MetricName,
    pub value: f64,
    pub unit: MetricUnit,
    pub asg: Option<String>,
    pub group: Option<GroupKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricName {
    TimeToInService,
    StepDuration,
    StepRetry,
    Abandon,
    Held,
    DeploymentCreated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricUnit {
    Milliseconds,
    Count,
}

/// Something an operator must see: logged at error level and counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub instance: Option<InstanceId>,
    pub group: Option<GroupKey>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    PlanInvalid,
    PlanCannotFit,
    BreakerTripped,
    InstanceHeld,
    CreateFailed,
    /// The hook's heartbeat timeout is too short for the timer sweep to cover a lost timer
    /// message (below [`crate::engine::MIN_ROBUST_HEARTBEAT_SECS`]).
    HeartbeatTimeoutTooShort,
    /// A record would exceed DynamoDB's item size limit, so every write of it fails (raised by
    /// the runner, not the core; the bound on group records should make it impossible).
    RecordTooLarge,
    /// The instance did not tag itself ready within the plan's `readiness.timeoutSecs`.
    NotReady,
}
