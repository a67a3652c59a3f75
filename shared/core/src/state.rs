//! The durable records the core reads and writes: one per instance pipeline and one per
//! deployment group. The store persists them as they are (serde), one item each, with
//! optimistic concurrency on a version kept outside the core.
//!
//! Ownership rule: the **group** record is the authority on which instances a deployment serves
//! (`waiting`, `active.members`, `settling`), so admitting a batch of a thousand instances writes
//! one item. The **instance** record is the authority on the instance's own progress (which step,
//! which attempt, which revision each finished step installed). An instance learns a result the
//! group recorded for it the next time it is woken ([`crate::Command::Wakeup`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::*;
use crate::plan::{Gate, Plan};

/// Which lifecycle action the orchestrator holds for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRef {
    pub asg: String,
    pub hook: String,
    pub token: Token,
    pub instance: InstanceId,
}

/// Timeouts of the lifecycle hook, as described by Auto Scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTimeouts {
    pub heartbeat_secs: u64,
    /// min(100 × heartbeat timeout, 48 h).
    pub global_secs: u64,
}

impl HookTimeouts {
    pub fn from_heartbeat(heartbeat_secs: u64) -> Self {
        Self {
            heartbeat_secs,
            global_secs: (heartbeat_secs.saturating_mul(100)).min(172_800),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleResult {
    Continue,
    Abandon,
}

/// Where an instance comes from and goes to on a launch transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    Ec2,
    AutoScalingGroup,
    WarmPool,
}

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
    pub seen: Vec<EventId>,
    /// When the timer path must next look at this instance.
    pub wake_at: Option<Millis>,
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
    pub finished_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Working on `step`.
    Running { step: usize, wait: StepWait },
    /// Every step succeeded; the current revision of each group is being checked.
    Verifying { since: Millis },
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
    /// The step of an unsealed deployment ([`Seal`]) succeeded and its gate is closed; the
    /// instance moves on once CodeDeploy confirms that no active deployment of the group still
    /// has it as an unfinished target (one may have been created while the gate was open).
    Leaving {
        since: Millis,
        revision: Option<Revision>,
        /// Wait (up to the batch window) for batch-mates before the next group is admitted.
        hold_back: bool,
        /// The deployment that still had the instance as a target at the last check.
        blocked_by: Option<DeploymentId>,
    },
    /// The attempt timed out while a deployment still runs on the instance; the attempt is
    /// failed once that deployment no longer touches it.
    Draining {
        deployment: Option<DeploymentId>,
        since: Millis,
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
            .filter(|(_, r)| r.installed.is_none())
            .map(|(s, _)| s.timeout_secs)
            .sum()
    }
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

/// A CodeDeploy deployment group as the orchestrator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: GroupKey,
    pub gate: Gate,
    /// Deployment configuration override for the next launch deployment.
    pub config: Option<String>,
    pub max_batch: u32,
    /// Instances waiting for this group, with the time they started waiting.
    pub waiting: BTreeMap<InstanceId, Millis>,
    /// When the waiting batch is admitted (if the group is free by then).
    pub admit_at: Option<Millis>,
    pub active: Option<Active>,
    /// Deployments that ended before every member's result was known.
    pub settling: Vec<Settling>,
    pub breaker: Breaker,
    /// Counter for intent ids.
    pub seq: u64,
    pub seen: Vec<EventId>,
    pub wake_at: Option<Millis>,
}

/// The one active deployment of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Active {
    /// The intent to create a deployment is recorded; `CreateDeployment` may or may not have
    /// been called.
    Creating {
        intent: IntentId,
        members: BTreeMap<InstanceId, Member>,
        since: Millis,
        /// Set once a recovery lookup was requested for a stale intent.
        recovering: bool,
    },
    /// The orchestrator's own deployment.
    Ours {
        intent: IntentId,
        deployment: DeploymentId,
        revision: Option<Revision>,
        members: BTreeMap<InstanceId, Member>,
        since: Millis,
        polled_at: Millis,
        /// Whether the members' gate is closed behind the deployment (see [`Seal`]).
        #[serde(default)]
        seal: Seal,
    },
    /// Someone else's deployment (a user's, a rollback, an auto-update): waited on, not fought.
    Foreign {
        deployment: DeploymentId,
        since: Millis,
        polled_at: Millis,
    },
}

/// Whether the gate of an active deployment's members was closed while it was still active
/// ([`crate::Command::SealGate`]).
///
/// CodeDeploy picks an in-place deployment's targets when the deployment is created, and a
/// group runs one deployment at a time. So once the gate is closed while our deployment is still
/// active, no other deployment of the group can have a member as a target: none could be
/// created while ours ran, and those created later no longer select the member. A member of a
/// sealed deployment moves on as soon as its own target succeeds, with no leave check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seal {
    /// Not sealed: the deployment ended first, or the record predates seals. Members leave
    /// through the leave check.
    #[default]
    Open,
    /// Sent at `since` and not answered yet; the group's timer sends it again.
    Pending { since: Millis },
    /// The gate was closed while the deployment was still active.
    Sealed,
}

/// An instance served by one of the orchestrator's deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub admitted_at: Millis,
    pub status: MemberStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    Pending,
    Succeeded,
    Failed,
    /// CodeDeploy skipped the instance: up to date if the deployment succeeded, not deployed
    /// if it failed or stopped.
    Skipped,
}

impl MemberStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, MemberStatus::Pending)
    }
}

/// A deployment that ended while some members' results were still unknown or unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settling {
    pub deployment: Option<DeploymentId>,
    pub revision: Option<Revision>,
    pub outcome: DeploymentEnd,
    pub members: BTreeMap<InstanceId, Member>,
    pub since: Millis,
    pub polled_at: Millis,
    /// Whether the deployment was sealed ([`Seal::Sealed`]) before it ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentEnd {
    Succeeded,
    Failed,
    Stopped,
    /// The deployment could not be created (the creation failed for good).
    NotCreated,
    /// The group has no revision to deploy: every member trivially succeeds.
    NothingToDeploy,
}

/// The repeated-failure breaker of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// Times of recent abandons caused by this group.
    pub failures: Vec<Millis>,
    pub tripped_since: Option<Millis>,
}

impl Group {
    pub fn new(key: GroupKey, gate: Gate) -> Self {
        Self {
            key,
            gate,
            config: None,
            max_batch: crate::plan::defaults::MAX_BATCH,
            waiting: BTreeMap::new(),
            admit_at: None,
            active: None,
            settling: Vec::new(),
            breaker: Breaker::default(),
            seq: 0,
            seen: Vec::new(),
            wake_at: None,
        }
    }

    /// Every instance the group's deployments still serve or wait to serve.
    pub fn instances(&self) -> BTreeSet<&InstanceId> {
        let mut all: BTreeSet<&InstanceId> = self.waiting.keys().collect();
        if let Some(m) = self.active.as_ref().and_then(Active::members) {
            all.extend(m.keys());
        }
        for s in &self.settling {
            all.extend(s.members.keys());
        }
        all
    }

    /// Whether nothing is recorded that needs this group record to stay.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
            && self.active.is_none()
            && self.settling.is_empty()
            && self.breaker.tripped_since.is_none()
            && self.breaker.failures.is_empty()
    }
}

impl Active {
    pub fn members(&self) -> Option<&BTreeMap<InstanceId, Member>> {
        match self {
            Active::Creating { members, .. } | Active::Ours { members, .. } => Some(members),
            Active::Foreign { .. } => None,
        }
    }
    pub fn members_mut(&mut self) -> Option<&mut BTreeMap<InstanceId, Member>> {
        match self {
            Active::Creating { members, .. } | Active::Ours { members, .. } => Some(members),
            Active::Foreign { .. } => None,
        }
    }
    pub fn deployment(&self) -> Option<&DeploymentId> {
        match self {
            Active::Creating { .. } => None,
            Active::Ours { deployment, .. } | Active::Foreign { deployment, .. } => {
                Some(deployment)
            }
        }
    }
}
