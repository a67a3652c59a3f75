//! The model's nouns: Auto Scaling groups, hooks and instances, CodeDeploy groups,
//! deployments and targets, the errors the APIs return, what is published and what happened.

use std::collections::{BTreeMap, VecDeque};

/// Milliseconds of simulated time.
pub type Ms = u64;

/// CodeDeploy fails a queued deployment on an instance whose first lifecycle event cannot start
/// within 5 minutes [aws-behaviour §3.2 Lifecycle event start limit].
pub const FIRST_EVENT_START_LIMIT_MS: Ms = 5 * 60 * 1000;
/// Global timeout cap: 48 h [aws-behaviour §2 GlobalTimeout].
pub const GLOBAL_TIMEOUT_CAP_MS: Ms = 172_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transition {
    Launching,
    Terminating,
}

impl Transition {
    /// The `LifecycleTransition` spelling [aws-behaviour §1.1 Detail fields].
    pub fn as_api(self) -> &'static str {
        match self {
            Transition::Launching => "autoscaling:EC2_INSTANCE_LAUNCHING",
            Transition::Terminating => "autoscaling:EC2_INSTANCE_TERMINATING",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    Continue,
    Abandon,
}

impl HookResult {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CONTINUE" => Some(HookResult::Continue),
            "ABANDON" => Some(HookResult::Abandon),
            _ => None,
        }
    }

    /// The API spelling [aws-behaviour §2 LifecycleActionResult / DefaultResult].
    pub fn as_api(self) -> &'static str {
        match self {
            HookResult::Continue => "CONTINUE",
            HookResult::Abandon => "ABANDON",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub name: String,
    pub transition: Transition,
    /// 30..=7200 s, default 3600 [aws-behaviour §2 HeartbeatTimeout].
    pub heartbeat_secs: u64,
    /// Default ABANDON [aws-behaviour §2 DefaultResult].
    pub default_result: HookResult,
    /// ≤ 4000 printable ASCII [aws-behaviour §1.1 NotificationMetadata].
    pub metadata: Option<String>,
}

impl Hook {
    /// min(100 × heartbeat timeout, 48 h) [aws-behaviour §2 GlobalTimeout].
    pub fn global_ms(&self) -> Ms {
        (self.heartbeat_secs * 100 * 1000).min(GLOBAL_TIMEOUT_CAP_MS)
    }
}

#[derive(Debug, Clone)]
pub struct Asg {
    pub name: String,
    pub hooks: Vec<Hook>,
    /// Launch a replacement when an instance is abandoned or terminated by a failed launch
    /// [aws-behaviour §2 LifecycleActionResult].
    pub replace_after_ms: Option<Ms>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    PendingWait,
    InService,
    TerminatingWait,
    Terminated,
    /// Held by a hook on its way into the warm pool (a launch into the pool, or a return to it
    /// on scale-in) [aws-behaviour §2 Warm pools].
    WarmedPendingWait,
    /// Stopped in the warm pool [aws-behaviour §2 Warm pools].
    WarmedStopped,
    /// Held by a terminate hook while leaving the warm pool for good [aws-behaviour §2 Warm pools].
    WarmedTerminatingWait,
}

impl InstanceState {
    /// The `LifecycleState` Auto Scaling reports [aws-behaviour §2 States; §2 Warm pools].
    pub fn as_api(self) -> &'static str {
        match self {
            InstanceState::PendingWait => "Pending:Wait",
            InstanceState::InService => "InService",
            InstanceState::TerminatingWait => "Terminating:Wait",
            InstanceState::Terminated => "Terminated",
            InstanceState::WarmedPendingWait => "Warmed:Pending:Wait",
            InstanceState::WarmedStopped => "Warmed:Stopped",
            InstanceState::WarmedTerminatingWait => "Warmed:Terminating:Wait",
        }
    }

    /// In the warm pool: `DescribeWarmPool` lists it, `DescribeAutoScalingGroups` does not
    /// [aws-behaviour §2 DescribeAutoScalingGroups and DescribeWarmPool].
    pub fn is_warm(self) -> bool {
        matches!(
            self,
            InstanceState::WarmedPendingWait
                | InstanceState::WarmedStopped
                | InstanceState::WarmedTerminatingWait
        )
    }
}

/// Where a lifecycle transition comes from and goes to: the `Origin` and `Destination` of its
/// event [aws-behaviour §1.1 Origin and Destination].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Ec2,
    AutoScalingGroup,
    WarmPool,
}

impl Place {
    /// The API spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            Place::Ec2 => "EC2",
            Place::AutoScalingGroup => "AutoScalingGroup",
            Place::WarmPool => "WarmPool",
        }
    }
}

/// When an instance's CodeDeploy agent starts [aws-behaviour §3.6 Bootstrap and the agent].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentStart {
    /// The documented order: the bootstrap (user data, cfn-init) completes, then the agent
    /// starts, then the deployment runs. Deployments sent earlier wait in the agent's queue.
    #[default]
    AfterBootstrap,
    /// The agent is baked into the AMI and started by the init system while user data still
    /// runs: it takes deployments at once, and one that starts before the bootstrap is done
    /// fails (its scripts need what the bootstrap installs).
    AtBoot,
}

/// How the instances of an Auto Scaling group bootstrap themselves (user data): how long it
/// takes, how often it never finishes, when the agent starts, and the tag an instance puts
/// on itself when it is done [aws-behaviour §3.6 Bootstrap and the agent; §5.7 Tag change events].
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub min_ms: Ms,
    pub max_ms: Ms,
    /// Chance that an instance's bootstrap never finishes.
    pub never_prob: f64,
    pub agent: AgentStart,
    /// `(key, value)` the instance tags itself with (one CreateTags) when its bootstrap is done.
    pub ready_tag: Option<(String, String)>,
}

/// An Auto Scaling group's warm pool (PutWarmPool), pool state `Stopped`
/// [aws-behaviour §2 Warm pools].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmPoolSpec {
    /// `InstanceReusePolicy.ReuseOnScaleIn`: scale-in returns instances to the pool.
    pub reuse_on_scale_in: bool,
    /// How long a stopped instance takes to boot again when it leaves the pool, before its
    /// bootstrap resumes and its agent can start (a model parameter, not an AWS figure).
    pub restart_ms: Ms,
}

impl Default for WarmPoolSpec {
    fn default() -> Self {
        Self {
            reuse_on_scale_in: false,
            restart_ms: 30_000,
        }
    }
}

/// One lifecycle action: the instance waits until every hook on the transition is completed or
/// timed out [aws-behaviour §2 Multiple hooks on one transition].
#[derive(Debug, Clone)]
pub struct Action {
    pub hook: String,
    /// Where the transition goes: `WarmPool` for an entry into (or a return to) the warm pool.
    pub destination: Place,
    pub token: String,
    pub transition: Transition,
    pub heartbeat_deadline: Ms,
    pub global_deadline: Ms,
    pub heartbeat_ms: Ms,
    pub default_result: HookResult,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub asg: String,
    pub state: InstanceState,
    pub tags: BTreeMap<String, String>,
    pub actions: Vec<Action>,
    /// Revision installed per deployment group by a successful deployment.
    pub installed: BTreeMap<GroupKey, String>,
    pub launched_at: Ms,
    pub in_service_at: Option<Ms>,
    pub terminated_at: Option<Ms>,
    pub(crate) agent: Agent,
    /// Its bootstrap and power state (a group without a bootstrap spec: none, the agent runs
    /// from launch).
    pub(crate) boot: Boot,
    /// The `version` of its tag set in tag change events: one more per change.
    pub(crate) tag_version: u64,
}

impl Instance {
    /// When its bootstrap finished (`None`: not yet, or never will). An instance of a group
    /// without a bootstrap spec has none to wait for: its launch time.
    pub fn bootstrap_done_at(&self) -> Option<Ms> {
        match &self.boot.bootstrap {
            None => Some(self.launched_at),
            Some(b) => b.done_at,
        }
    }

    /// Whether its CodeDeploy agent is running (takes deployments).
    pub fn agent_running(&self) -> bool {
        self.agent.up
    }

    /// Whether the EC2 instance is stopped (in the warm pool) or still booting after a stop.
    pub fn is_stopped(&self) -> bool {
        !matches!(self.boot.power, Power::Running)
    }
}

/// An instance's power state and bootstrap progress.
#[derive(Debug, Clone, Default)]
pub(crate) struct Boot {
    pub(crate) power: Power,
    pub(crate) bootstrap: Option<Progress>,
    pub(crate) agent_start: AgentStart,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Power {
    #[default]
    Running,
    /// Started again, up at this time.
    Booting(Ms),
    Stopped,
}

/// How far a bootstrap has got.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Bootstrap time still to run (`None`: it never finishes).
    pub(crate) left: Option<Ms>,
    /// Since when it has been running (`None`: paused, the instance is not running).
    pub(crate) since: Option<Ms>,
    pub(crate) done_at: Option<Ms>,
}

impl Progress {
    /// When it finishes if nothing stops it.
    pub(crate) fn due(&self) -> Option<Ms> {
        match (self.done_at, self.left, self.since) {
            (None, Some(left), Some(since)) => Some(since + left),
            _ => None,
        }
    }
}

/// The CodeDeploy agent: runs one deployment at a time [aws-behaviour §3.6 The agent runs one deployment at a time].
#[derive(Debug, Clone, Default)]
pub(crate) struct Agent {
    pub(crate) running: Option<Running>,
    pub(crate) queue: VecDeque<(String, Ms)>,
    /// Whether the agent process runs (false before the bootstrap started it, or while the
    /// instance is stopped).
    pub(crate) up: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) deployment: String,
    pub(crate) ends_at: Ms,
    pub(crate) fails: bool,
}

pub type GroupKey = (String, String);

/// How long a deployment takes on one instance and how often it fails.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub min_ms: Ms,
    pub max_ms: Ms,
    pub fail_prob: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployConfig {
    OneAtATime,
    HalfAtATime,
    AllAtOnce,
}

impl DeployConfig {
    /// `CodeDeployDefault.*` names [aws-behaviour §3.1 deploymentConfigName].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "CodeDeployDefault.OneAtATime" => Some(DeployConfig::OneAtATime),
            "CodeDeployDefault.HalfAtATime" => Some(DeployConfig::HalfAtATime),
            "CodeDeployDefault.AllAtOnce" => Some(DeployConfig::AllAtOnce),
            _ => None,
        }
    }

    /// The name `parse` reads.
    pub fn as_api(self) -> &'static str {
        match self {
            DeployConfig::OneAtATime => "CodeDeployDefault.OneAtATime",
            DeployConfig::HalfAtATime => "CodeDeployDefault.HalfAtATime",
            DeployConfig::AllAtOnce => "CodeDeployDefault.AllAtOnce",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeploymentGroup {
    pub app: String,
    pub name: String,
    /// EC2 tag set: the inner lists are ORed, the outer list is ANDed
    /// [aws-behaviour §3.1 Targets by tag].
    pub tag_set: Vec<Vec<(String, String)>>,
    /// The last successful deployment's revision [aws-behaviour §3.1 Target revision].
    pub target_revision: Option<String>,
    pub config: DeployConfig,
    pub profile: Profile,
}

impl DeploymentGroup {
    pub fn key(&self) -> GroupKey {
        (self.app.clone(), self.name.clone())
    }
    pub(crate) fn selects(&self, tags: &BTreeMap<String, String>) -> bool {
        !self.tag_set.is_empty()
            && self
                .tag_set
                .iter()
                .all(|any| any.iter().any(|(k, v)| tags.get(k) == Some(v)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    InProgress,
    Succeeded,
    Failed,
    Stopped,
}

impl DeploymentStatus {
    pub fn is_active(self) -> bool {
        self == DeploymentStatus::InProgress
    }
    /// The API spelling [aws-behaviour §3.3].
    pub fn as_api(self) -> &'static str {
        match self {
            DeploymentStatus::InProgress => "InProgress",
            DeploymentStatus::Succeeded => "Succeeded",
            DeploymentStatus::Failed => "Failed",
            DeploymentStatus::Stopped => "Stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    Skipped,
}

impl TargetStatus {
    pub fn is_done(self) -> bool {
        !matches!(self, TargetStatus::Pending | TargetStatus::InProgress)
    }
    /// The API spelling [aws-behaviour §3.4].
    pub fn as_api(self) -> &'static str {
        match self {
            TargetStatus::Pending => "Pending",
            TargetStatus::InProgress => "InProgress",
            TargetStatus::Succeeded => "Succeeded",
            TargetStatus::Failed => "Failed",
            TargetStatus::Skipped => "Skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creator {
    /// [aws-behaviour §3.3 creator]
    User,
    /// What CodeDeploy's own Auto Scaling hooks create [aws-behaviour §3.3 creator; §3.6 Flow].
    Autoscaling,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub status: TargetStatus,
    pub started_at: Option<Ms>,
    pub ended_at: Option<Ms>,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub group: GroupKey,
    pub revision: String,
    pub config: DeployConfig,
    /// The request named a configuration other than the group's own.
    pub config_override: bool,
    pub creator: Creator,
    pub description: String,
    pub status: DeploymentStatus,
    pub targets: BTreeMap<String, Target>,
    pub created_at: Ms,
    pub ended_at: Option<Ms>,
    /// Targets not yet handed to their agent (OneAtATime / HalfAtATime pacing).
    pub(crate) undispatched: VecDeque<String>,
    /// For a deployment CodeDeploy's own launch hook started: the action it completes
    /// (Auto Scaling group, hook, token).
    pub native: Option<(String, String, String)>,
}

impl Deployment {
    pub fn is_target_in_flight(&self, instance: &str) -> bool {
        self.status.is_active()
            && self
                .targets
                .get(instance)
                .is_some_and(|t| !t.status.is_done())
    }
}

/// An error the model's APIs return, named as AWS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Auto Scaling `ValidationError` "No active Lifecycle Action found with …" [aws-behaviour §2 Stale token / already completed].
    NoActiveAction(String),
    /// `DeploymentLimitExceededException` with the real message [aws-behaviour §3.1 Group already busy].
    DeploymentLimitExceeded {
        message: String,
        active: String,
    },
    DeploymentGroupDoesNotExist(String),
    DeploymentDoesNotExist(String),
    DeploymentAlreadyCompleted(String),
    /// In-place deployments need a revision (passing none is UNVERIFIED; the model rejects).
    RevisionRequired,
}

/// Something AWS publishes to EventBridge, as the JSON it publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub at: Ms,
    pub json: serde_json::Value,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Lifecycle,
    CodeDeploy,
    /// `Tag Change on Resource` (source `aws.tag`) [aws-behaviour §5.7 Tag change events].
    Tag,
}

/// Another tool that owns a hook and completes each of its actions `after_ms` after the action
/// began, with `result` (a hook nobody completes has no owner and times out to its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookOwner {
    pub after_ms: Ms,
    pub result: HookResult,
}

/// `CompleteLifecycleAction` or `RecordLifecycleActionHeartbeat` as a caller sent it through
/// the API, whether or not an action matched: the record a test asserts on to show that a
/// caller never touched a hook it does not own. A [`HookOwner`]'s completions are the other
/// tool's and are not in it (they are [`Fact::Completed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleCall {
    pub operation: LifecycleOperation,
    pub asg: String,
    pub hook: String,
    pub token: Option<String>,
    pub instance: Option<String>,
    pub at: Ms,
    /// Whether an action matched (false: "No active Lifecycle Action found").
    pub matched: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleOperation {
    Complete(HookResult),
    Heartbeat,
}

/// What happened, for invariant checks and summaries.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Launched {
        instance: String,
        at: Ms,
    },
    Completed {
        instance: String,
        hook: String,
        token: String,
        result: HookResult,
        at: Ms,
    },
    /// A lifecycle action ran out of time and got its hook's default result.
    TimedOut {
        instance: String,
        hook: String,
        token: String,
        transition: Transition,
        global: bool,
        result: HookResult,
        at: Ms,
    },
    InService {
        instance: String,
        at: Ms,
    },
    Terminated {
        instance: String,
        at: Ms,
    },
    DeploymentCreated {
        deployment: String,
        group: GroupKey,
        creator: Creator,
        targets: Vec<String>,
        /// The configuration it runs with, and whether the request named one
        /// (`deploymentConfigName`) other than the group's own.
        config: DeployConfig,
        config_override: bool,
        /// Targets it deploys to (not skipped as up to date) that were in service when it was
        /// created: serving instances it takes through ApplicationStop.
        serving_targets: Vec<String>,
        at: Ms,
    },
    DeploymentEnded {
        deployment: String,
        group: GroupKey,
        status: DeploymentStatus,
        at: Ms,
    },
    CreateRejected {
        group: GroupKey,
        active: String,
        at: Ms,
    },
    Installed {
        instance: String,
        group: GroupKey,
        revision: String,
        deployment: String,
        at: Ms,
    },
    /// An instance's bootstrap finished.
    BootstrapDone {
        instance: String,
        at: Ms,
    },
    /// An instance launched into the warm pool (it also has a `Launched`).
    EnteredWarmPool {
        instance: String,
        at: Ms,
    },
    /// An instance stopped in the warm pool (after entering it or returning to it).
    Stopped {
        instance: String,
        at: Ms,
    },
    /// A stopped instance left the warm pool for the group (scale-out).
    LeftWarmPool {
        instance: String,
        at: Ms,
    },
    /// An in-service instance started back to the warm pool (scale-in with instance reuse).
    ReturningToWarmPool {
        instance: String,
        at: Ms,
    },
}
