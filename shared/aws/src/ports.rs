//! Narrow ports the runner needs, one per AWS service, in the core's terms. The SDK adapters
//! implement them; tests implement them over the AWS model.

use std::future::Future;

use turnstile_core::{
    ActionRef, CreateOutcome, DeploymentId, DeploymentState, Gate, GroupKey, GroupRevision,
    HookTimeouts, InstanceId, IntentId, Key, LeaveFound, LifecycleResult, Millis, Place,
    TargetState,
};

/// Why a port call failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Auto Scaling has no such active lifecycle action (completed, timed out, instance gone).
    /// Never retried.
    #[error("{op}: lifecycle action gone: {message}")]
    Gone { op: &'static str, message: String },
    /// Throttling, contention, timeouts, 5xx: a later retry can help.
    #[error("{op}: {source}")]
    Transient {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Validation, permissions, missing resources: retrying cannot help.
    #[error("{op}: {source}")]
    Permanent {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Transient { .. })
    }
    pub fn is_gone(&self) -> bool {
        matches!(self, PortError::Gone { .. })
    }
}

/// A lifecycle hook as Auto Scaling describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookInfo {
    pub timeouts: HookTimeouts,
    pub metadata: Option<String>,
}

/// A group's launch hooks: each hook's name with its description.
pub type LaunchHooks = Vec<(String, HookInfo)>;

/// An instance of a managed Auto Scaling group in a launch wait state: `Pending:Wait` (to
/// enter the group, `place` = `AutoScalingGroup`) or `Warmed:Pending:Wait` (to enter the warm
/// pool, `WarmPool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub asg: String,
    pub instance: InstanceId,
    pub place: Place,
}

/// EC2 Auto Scaling lifecycle actions. An action without a token is addressed by instance id.
pub trait Lifecycle: Send + Sync {
    fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn heartbeat(&self, action: &ActionRef) -> impl Future<Output = Result<(), PortError>> + Send;
    fn hook(
        &self,
        asg: &str,
        hook: &str,
    ) -> impl Future<Output = Result<HookInfo, PortError>> + Send;
    /// The group's launch hooks (`autoscaling:EC2_INSTANCE_LAUNCHING`), each with its name and
    /// description: one DescribeLifecycleHooks call answers both, so an adoption needs no
    /// second call (one fewer to fail).
    fn launch_hooks(
        &self,
        asg: &str,
    ) -> impl Future<Output = Result<LaunchHooks, PortError>> + Send;
    /// Every instance of these groups in a launch wait state, one paged describe call for all
    /// of them.
    fn waiting(
        &self,
        asgs: &[String],
    ) -> impl Future<Output = Result<Vec<Waiting>, PortError>> + Send;
}

/// CodeDeploy.
pub trait Deployments: Send + Sync {
    /// Creates a deployment of the group's target revision with `updateOutdatedInstancesOnly`
    /// and the intent marker; answers `Busy`, or `Created` when the active deployment carries
    /// this intent (adoption). A retryable failure is `Failed { retryable: true }`.
    fn create(
        &self,
        group: &GroupKey,
        intent: &IntentId,
        config: Option<&str>,
    ) -> impl Future<Output = Result<CreateOutcome, PortError>> + Send;
    /// Looks for a deployment of the group carrying the intent, created since `since`.
    fn find(
        &self,
        group: &GroupKey,
        intent: &IntentId,
        since: Millis,
    ) -> impl Future<Output = Result<CreateOutcome, PortError>> + Send;
    /// The deployment's state and the given instances' target states.
    fn status(
        &self,
        deployment: &DeploymentId,
        instances: &[InstanceId],
    ) -> impl Future<Output = Result<(DeploymentState, Vec<(InstanceId, TargetState)>), PortError>> + Send;
    fn stop(&self, deployment: &DeploymentId)
    -> impl Future<Output = Result<(), PortError>> + Send;
    /// The group's target revision and active deployment.
    fn revision(
        &self,
        group: &GroupKey,
    ) -> impl Future<Output = Result<GroupRevision, PortError>> + Send;
    /// Reads the group's target revision ahead of a `create` that usually follows within the
    /// same invocation, so that `create` need not read it again. Best effort: a failure only
    /// means `create` reads it itself.
    fn prefetch(&self, group: &GroupKey) -> impl Future<Output = ()> + Send {
        let _ = group;
        std::future::ready(())
    }
    /// What deployment of the group, other than `done_in` (one the instance is known to have
    /// finished in), reached the instance ([`Command::CheckLeave`]). With `since`: any created
    /// since then that has it as a target, the first still running on it before one done with
    /// it. Without: the group's active deployment, if it still has the instance as an
    /// unfinished target.
    ///
    /// [`Command::CheckLeave`]: turnstile_core::Command::CheckLeave
    fn holding(
        &self,
        group: &GroupKey,
        instance: &InstanceId,
        done_in: Option<&DeploymentId>,
        since: Option<Millis>,
    ) -> impl Future<Output = Result<LeaveFound, PortError>> + Send;
}

/// EC2 instance tags (the gates). Each call sets or removes every gate given on every
/// instance given.
pub trait Tags: Send + Sync {
    fn open(
        &self,
        gates: &[Gate],
        instances: &[InstanceId],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn close(
        &self,
        gates: &[Gate],
        instances: &[InstanceId],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The tags with these keys on these instances, as `(instance, key, value)`: the timer
    /// sweep's read of the readiness tags (paged; a few calls for hundreds of instances).
    fn read(
        &self,
        instances: &[InstanceId],
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(InstanceId, String, String)>, PortError>> + Send;
}

/// Delayed wakeups (SQS delayed messages in AWS).
pub trait Timer: Send + Sync {
    fn wake(&self, key: &Key, at: Millis) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// When a received queue message becomes visible again (SQS `ChangeMessageVisibility` on the
/// queue the function consumes): how the queue handler makes a failed record come back in
/// seconds rather than after the queue's visibility timeout (`crate::redelivery`).
pub trait Visibility: Send + Sync {
    /// Makes the message received with `receipt_handle` visible again `secs` seconds from now.
    fn visible_in(
        &self,
        receipt_handle: &str,
        secs: u32,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The time, from outside the core.
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Millis(ms)
    }
}
