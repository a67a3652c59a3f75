//! # turnstile-model
//!
//! A deterministic, in-memory model of the AWS behaviour turnstile depends on: EC2 Auto Scaling
//! lifecycle hooks, EC2 instance tags, and CodeDeploy in-place deployments with the CodeDeploy
//! agent. It has no I/O and no clock of its own: the caller advances time.
//!
//! Every behaviour cites the line of `reference/aws-facts.md` it models (`[aws-facts §x]`).
//! The model is shared by the property tests, the deterministic simulation and the local
//! cloud's wire-protocol simulator, so the three agree on what AWS does.
//!
//! Events are emitted as the JSON AWS publishes to EventBridge (the real envelope), so whoever
//! consumes them exercises the same parser as production.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::json;

pub mod rng;
pub use rng::Rng;

/// Milliseconds of simulated time.
pub type Ms = u64;

/// CodeDeploy fails a queued deployment on an instance whose first lifecycle event cannot start
/// within 5 minutes [aws-facts §3.2 "deployment fails if a lifecycle event does not start within 5 min"].
pub const FIRST_EVENT_START_LIMIT_MS: Ms = 5 * 60 * 1000;
/// Global timeout cap: 48 h [aws-facts §2 GlobalTimeout].
pub const GLOBAL_TIMEOUT_CAP_MS: Ms = 172_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transition {
    Launching,
    Terminating,
}

impl Transition {
    /// The `LifecycleTransition` spelling [aws-facts §1.1].
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

    /// The API spelling [aws-facts §2 LifecycleActionResult / DefaultResult].
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
    /// 30..=7200 s, default 3600 [aws-facts §2 HeartbeatTimeout].
    pub heartbeat_secs: u64,
    /// Default ABANDON [aws-facts §2 DefaultResult].
    pub default_result: HookResult,
    /// ≤ 4000 printable ASCII [aws-facts §1.1 NotificationMetadata].
    pub metadata: Option<String>,
}

impl Hook {
    /// min(100 × heartbeat timeout, 48 h) [aws-facts §2 GlobalTimeout].
    pub fn global_ms(&self) -> Ms {
        (self.heartbeat_secs * 100 * 1000).min(GLOBAL_TIMEOUT_CAP_MS)
    }
}

#[derive(Debug, Clone)]
pub struct Asg {
    pub name: String,
    pub hooks: Vec<Hook>,
    /// Launch a replacement when an instance is abandoned or terminated by a failed launch
    /// [aws-facts §2 "any ABANDON terminates (and replaces) the instance"].
    pub replace_after_ms: Option<Ms>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    PendingWait,
    InService,
    TerminatingWait,
    Terminated,
}

/// One lifecycle action: the instance waits until every hook on the transition is completed or
/// timed out [aws-facts §2 "Multiple hooks on one transition"].
#[derive(Debug, Clone)]
pub struct Action {
    pub hook: String,
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
    agent: Agent,
}

/// The CodeDeploy agent: runs one deployment at a time [aws-facts §1 problem statement;
/// design brief §1 "The agent works through them one at a time"].
#[derive(Debug, Clone, Default)]
struct Agent {
    running: Option<Running>,
    queue: VecDeque<(String, Ms)>,
}

#[derive(Debug, Clone)]
struct Running {
    deployment: String,
    ends_at: Ms,
    fails: bool,
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
    /// `CodeDeployDefault.*` names [aws-facts §3.1 deploymentConfigName].
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
    /// [design brief §3.1 "tag groups in an ec2TagSet are ANDed"].
    pub tag_set: Vec<Vec<(String, String)>>,
    /// The last successful deployment's revision [aws-facts §3.1 "target revision"].
    pub target_revision: Option<String>,
    pub config: DeployConfig,
    pub profile: Profile,
}

impl DeploymentGroup {
    pub fn key(&self) -> GroupKey {
        (self.app.clone(), self.name.clone())
    }
    fn selects(&self, tags: &BTreeMap<String, String>) -> bool {
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
    /// The API spelling [aws-facts §3.3].
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
    /// The API spelling [aws-facts §3.4].
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
    /// [aws-facts §3.3 creator `user`]
    User,
    /// What CodeDeploy's own Auto Scaling hooks create [aws-facts §3.6 creator `autoscaling`].
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
    pub creator: Creator,
    pub description: String,
    pub status: DeploymentStatus,
    pub targets: BTreeMap<String, Target>,
    pub created_at: Ms,
    pub ended_at: Option<Ms>,
    /// Targets not yet handed to their agent (OneAtATime / HalfAtATime pacing).
    undispatched: VecDeque<String>,
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
    /// Auto Scaling `ValidationError` "No active Lifecycle Action found with …" [aws-facts §2].
    NoActiveAction(String),
    /// `DeploymentLimitExceededException` with the real message [aws-facts §3.1].
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
}

/// The model of one AWS account and region.
#[derive(Debug, Clone)]
pub struct Cloud {
    pub now: Ms,
    pub rng: Rng,
    seq: u64,
    pub asgs: BTreeMap<String, Asg>,
    pub instances: BTreeMap<String, Instance>,
    pub groups: BTreeMap<GroupKey, DeploymentGroup>,
    pub deployments: BTreeMap<String, Deployment>,
    /// Events published since the last drain, in publication order.
    pub outbox: Vec<Published>,
    pub facts: Vec<Fact>,
    /// API calls served, by operation name.
    pub calls: BTreeMap<&'static str, u64>,
    replacements: Vec<(Ms, String)>,
    /// Launch hooks CodeDeploy installed for a deployment group associated with the group.
    pub native_hooks: BTreeMap<(String, String), GroupKey>,
    pub account: String,
    pub region: String,
    /// Scripted failures: the next N per-instance deployments of a group fail, whatever its
    /// failure rate (for tests that need a failure at a known place).
    pub fail_next: BTreeMap<GroupKey, u32>,
    /// Ids of the deployments still in progress (an index: large runs create many thousands).
    active: BTreeSet<String>,
    /// Ids of the instances not terminated (an index: relaunch loops leave tens of thousands
    /// of terminated ones behind, and the clock's scans need only these).
    live: BTreeSet<String>,
}

impl Cloud {
    /// The instances not terminated.
    fn live_instances(&self) -> impl Iterator<Item = &Instance> {
        self.live.iter().filter_map(|id| self.instances.get(id))
    }

    pub fn new(seed: u64) -> Self {
        Self {
            now: 0,
            rng: Rng::new(seed),
            seq: 0,
            asgs: BTreeMap::new(),
            instances: BTreeMap::new(),
            groups: BTreeMap::new(),
            deployments: BTreeMap::new(),
            outbox: Vec::new(),
            facts: Vec::new(),
            calls: BTreeMap::new(),
            replacements: Vec::new(),
            native_hooks: BTreeMap::new(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            fail_next: BTreeMap::new(),
            active: BTreeSet::new(),
            live: BTreeSet::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn count(&mut self, op: &'static str) {
        *self.calls.entry(op).or_default() += 1;
    }

    fn uuid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    pub fn add_asg(&mut self, asg: Asg) {
        self.asgs.insert(asg.name.clone(), asg);
    }

    pub fn add_group(&mut self, g: DeploymentGroup) {
        self.groups.insert(g.key(), g);
    }

    /// Associates a deployment group with an Auto Scaling group the way CodeDeploy does: it
    /// installs its own launch hook (`CodeDeploy-managed-automatic-launch-deployment-hook-<group>-<uuid>`,
    /// 600 s heartbeat, ABANDON) [aws-facts §3.6].
    pub fn associate_asg(&mut self, asg: &str, group: &GroupKey) {
        let uuid = self.uuid();
        let name = format!(
            "CodeDeploy-managed-automatic-launch-deployment-hook-{}-{uuid}",
            group.1
        );
        let Some(a) = self.asgs.get_mut(asg) else {
            return;
        };
        a.hooks.push(Hook {
            name: name.clone(),
            transition: Transition::Launching,
            heartbeat_secs: 600,
            default_result: HookResult::Abandon,
            metadata: Some(uuid),
        });
        self.native_hooks
            .insert((asg.to_owned(), name), group.clone());
    }

    /// CodeDeploy's answer to its own hook's notification: a deployment (creator
    /// `autoscaling`) of the group's last successful revision to the new instance, heartbeated
    /// until it ends, then CONTINUE or ABANDON [aws-facts §3.6 Flow].
    fn native_launch(
        &mut self,
        instance: &str,
        asg: &str,
        hook: &str,
        token: &str,
        group: &GroupKey,
    ) {
        let Some(revision) = self
            .groups
            .get(group)
            .and_then(|g| g.target_revision.clone())
        else {
            let _ =
                self.complete_lifecycle_action(asg, hook, Some(token), None, HookResult::Continue);
            return;
        };
        let config = self
            .groups
            .get(group)
            .map_or(DeployConfig::OneAtATime, |g| g.config);
        let id = format!("d-{:09X}", self.next());
        let mut targets = BTreeMap::new();
        targets.insert(
            instance.to_owned(),
            Target {
                status: TargetStatus::Pending,
                started_at: None,
                ended_at: None,
            },
        );
        self.facts.push(Fact::DeploymentCreated {
            deployment: id.clone(),
            group: group.clone(),
            creator: Creator::Autoscaling,
            targets: vec![instance.to_owned()],
            at: self.now,
        });
        self.active.insert(id.clone());
        self.deployments.insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                group: group.clone(),
                revision,
                config,
                creator: Creator::Autoscaling,
                description: String::new(),
                status: DeploymentStatus::InProgress,
                targets,
                created_at: self.now,
                ended_at: None,
                undispatched: VecDeque::from([instance.to_owned()]),
                native: Some((asg.to_owned(), hook.to_owned(), token.to_owned())),
            },
        );
        self.publish_deployment(&id, "START");
        self.dispatch(&id);
        self.maybe_finish(&id);
    }

    // ---- Auto Scaling -----------------------------------------------------------------------

    /// Scale out by `n`: each new instance waits in `Pending:Wait` for every launch hook, and
    /// each hook publishes its own event with its own token [aws-facts §1.1 "One event per
    /// (instance, hook)"; §2 States].
    pub fn scale_out(&mut self, asg: &str, n: usize) -> Vec<String> {
        let Some(group) = self.asgs.get(asg).cloned() else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = format!("i-{:017x}", self.next());
            let mut inst = Instance {
                id: id.clone(),
                asg: asg.to_owned(),
                state: InstanceState::InService,
                tags: BTreeMap::new(),
                actions: Vec::new(),
                installed: BTreeMap::new(),
                launched_at: self.now,
                in_service_at: None,
                terminated_at: None,
                agent: Agent::default(),
            };
            let launch_hooks: Vec<Hook> = group
                .hooks
                .iter()
                .filter(|h| h.transition == Transition::Launching)
                .cloned()
                .collect();
            if !launch_hooks.is_empty() {
                inst.state = InstanceState::PendingWait;
            }
            self.facts.push(Fact::Launched {
                instance: id.clone(),
                at: self.now,
            });
            for h in launch_hooks {
                let token = self.uuid();
                inst.actions.push(self.new_action(&h, token.clone()));
                self.publish_lifecycle(&inst, &h, &token);
            }
            if inst.state == InstanceState::InService {
                inst.in_service_at = Some(self.now);
            }
            let natives: Vec<(String, String, GroupKey)> = inst
                .actions
                .iter()
                .filter_map(|a| {
                    self.native_hooks
                        .get(&(asg.to_owned(), a.hook.clone()))
                        .map(|g| (a.hook.clone(), a.token.clone(), g.clone()))
                })
                .collect();
            self.instances.insert(id.clone(), inst);
            self.live.insert(id.clone());
            for (hook, token, group) in natives {
                self.native_launch(&id, asg, &hook, &token, &group);
            }
            ids.push(id);
        }
        ids
    }

    fn new_action(&self, h: &Hook, token: String) -> Action {
        Action {
            hook: h.name.clone(),
            token,
            transition: h.transition,
            heartbeat_deadline: self.now + h.heartbeat_secs * 1000,
            global_deadline: self.now + h.global_ms(),
            heartbeat_ms: h.heartbeat_secs * 1000,
            default_result: h.default_result,
        }
    }

    /// The EventBridge event of a lifecycle action, in the shape of [aws-facts §1.1].
    fn publish_lifecycle(&mut self, inst: &Instance, h: &Hook, token: &str) {
        let detail_type = match h.transition {
            Transition::Launching => "EC2 Instance-launch Lifecycle Action",
            Transition::Terminating => "EC2 Instance-terminate Lifecycle Action",
        };
        let transition = h.transition.as_api();
        let mut detail = json!({
            "LifecycleActionToken": token,
            "AutoScalingGroupName": inst.asg,
            "LifecycleHookName": h.name,
            "EC2InstanceId": inst.id,
            "LifecycleTransition": transition,
            "Origin": if h.transition == Transition::Launching { "EC2" } else { "AutoScalingGroup" },
            "Destination": if h.transition == Transition::Launching { "AutoScalingGroup" } else { "EC2" },
        });
        if let (Some(m), Some(obj)) = (&h.metadata, detail.as_object_mut()) {
            obj.insert("NotificationMetadata".into(), m.clone().into());
        }
        let id = self.uuid();
        let json = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": "aws.autoscaling",
            "account": self.account,
            "time": iso(self.now),
            "region": self.region,
            "resources": [format!("arn:aws:autoscaling:{}:{}:autoScalingGroup:{}:autoScalingGroupName/{}", self.region, self.account, id, inst.asg)],
            "detail": detail,
        });
        self.outbox.push(Published {
            at: self.now,
            json,
            kind: EventKind::Lifecycle,
        });
    }

    fn find_action(
        &self,
        asg: &str,
        hook: &str,
        token: Option<&str>,
        instance: Option<&str>,
    ) -> Option<(String, usize)> {
        let pending = |i: &Instance| {
            if i.asg != asg {
                return None;
            }
            i.actions
                .iter()
                .position(|a| a.hook == hook && token.is_none_or(|t| t == a.token))
                .map(|p| (i.id.clone(), p))
        };
        match instance {
            Some(id) => self.instances.get(id).and_then(pending),
            None => self.live_instances().find_map(pending),
        }
    }

    fn no_action(token: Option<&str>, instance: Option<&str>) -> ApiError {
        ApiError::NoActiveAction(match (token, instance) {
            (Some(t), _) => format!("No active Lifecycle Action found with token {t}"),
            (None, Some(i)) => format!("No active Lifecycle Action found with instance ID {i}"),
            (None, None) => "No active Lifecycle Action found".into(),
        })
    }

    /// CompleteLifecycleAction by token or instance id [aws-facts §2 CompleteLifecycleAction];
    /// a stale or finished action is `ValidationError` [aws-facts §2 "Stale token"].
    pub fn complete_lifecycle_action(
        &mut self,
        asg: &str,
        hook: &str,
        token: Option<&str>,
        instance: Option<&str>,
        result: HookResult,
    ) -> Result<(), ApiError> {
        self.count("CompleteLifecycleAction");
        let (id, pos) = self
            .find_action(asg, hook, token, instance)
            .ok_or_else(|| Self::no_action(token, instance))?;
        let at = self.now;
        let Some(inst) = self.instances.get_mut(&id) else {
            return Err(Self::no_action(token, instance));
        };
        let action = inst.actions.remove(pos);
        self.facts.push(Fact::Completed {
            instance: id.clone(),
            hook: hook.to_owned(),
            token: action.token.clone(),
            result,
            at,
        });
        self.apply_result(&id, action.transition, result);
        Ok(())
    }

    /// RecordLifecycleActionHeartbeat: restarts the heartbeat timer, never past the global
    /// timeout [aws-facts §2 RecordLifecycleActionHeartbeat].
    pub fn record_heartbeat(
        &mut self,
        asg: &str,
        hook: &str,
        token: Option<&str>,
        instance: Option<&str>,
    ) -> Result<(), ApiError> {
        self.count("RecordLifecycleActionHeartbeat");
        let (id, pos) = self
            .find_action(asg, hook, token, instance)
            .ok_or_else(|| Self::no_action(token, instance))?;
        let now = self.now;
        if let Some(a) = self
            .instances
            .get_mut(&id)
            .and_then(|i| i.actions.get_mut(pos))
        {
            a.heartbeat_deadline = (now + a.heartbeat_ms).min(a.global_deadline);
        }
        Ok(())
    }

    /// DescribeLifecycleHooks for one hook.
    pub fn describe_hook(&mut self, asg: &str, hook: &str) -> Option<Hook> {
        self.count("DescribeLifecycleHooks");
        self.asgs
            .get(asg)
            .and_then(|g| g.hooks.iter().find(|h| h.name == hook).cloned())
    }

    /// Applies a hook result once no action of that transition remains.
    fn apply_result(&mut self, id: &str, transition: Transition, result: HookResult) {
        let now = self.now;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        let remaining = inst.actions.iter().any(|a| a.transition == transition);
        match (transition, result) {
            // Launch: any ABANDON terminates (and replaces) the instance [aws-facts §2].
            (Transition::Launching, HookResult::Abandon) => {
                inst.actions.clear();
                let asg = inst.asg.clone();
                self.terminate_now(id);
                if let Some(delay) = self.asgs.get(&asg).and_then(|g| g.replace_after_ms) {
                    self.replacements.push((now + delay, asg));
                }
            }
            (Transition::Launching, HookResult::Continue)
                if !remaining && inst.state == InstanceState::PendingWait =>
            {
                inst.state = InstanceState::InService;
                inst.in_service_at = Some(now);
                self.facts.push(Fact::InService {
                    instance: id.to_owned(),
                    at: now,
                });
            }
            // Terminate: both results terminate [aws-facts §2].
            (Transition::Terminating, HookResult::Abandon) => {
                inst.actions.clear();
                self.terminate_now(id);
            }
            (Transition::Terminating, HookResult::Continue) if !remaining => self.terminate_now(id),
            _ => {}
        }
    }

    /// Terminates an instance (scale-in or a user's request). With terminate hooks it waits in
    /// `Terminating:Wait` first; a pending launch action disappears [aws-facts §2 States].
    pub fn terminate(&mut self, id: &str) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        if matches!(
            inst.state,
            InstanceState::Terminated | InstanceState::TerminatingWait
        ) {
            return;
        }
        let hooks: Vec<Hook> = self
            .asgs
            .get(&inst.asg)
            .map(|g| {
                g.hooks
                    .iter()
                    .filter(|h| h.transition == Transition::Terminating)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if hooks.is_empty() {
            self.terminate_now(id);
            return;
        }
        let mut actions = Vec::new();
        let snapshot = inst.clone();
        for h in &hooks {
            let token = self.uuid();
            actions.push(self.new_action(h, token.clone()));
            self.publish_lifecycle(&snapshot, h, &token);
        }
        if let Some(inst) = self.instances.get_mut(id) {
            inst.state = InstanceState::TerminatingWait;
            inst.actions = actions;
        }
    }

    fn terminate_now(&mut self, id: &str) {
        let now = self.now;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        if inst.state == InstanceState::Terminated {
            return;
        }
        inst.state = InstanceState::Terminated;
        inst.terminated_at = Some(now);
        self.live.remove(id);
        inst.actions.clear();
        inst.agent = Agent::default();
        self.facts.push(Fact::Terminated {
            instance: id.to_owned(),
            at: now,
        });
        // Its targets in running deployments can no longer succeed.
        let deps: Vec<String> = self
            .active_deployments()
            .filter(|d| d.is_target_in_flight(id))
            .map(|d| d.id.clone())
            .collect();
        for d in deps {
            self.finish_target(&d, id, TargetStatus::Failed);
        }
    }

    // ---- EC2 tags ---------------------------------------------------------------------------

    /// CreateTags: every tag (key, value) on every instance, in one call.
    pub fn create_tags(&mut self, instances: &[String], tags: &[(&str, &str)]) {
        self.count("CreateTags");
        for id in instances {
            if let Some(i) = self.instances.get_mut(id) {
                for (key, value) in tags {
                    i.tags.insert((*key).to_owned(), (*value).to_owned());
                }
            }
        }
    }

    /// DeleteTags: every key from every instance, in one call.
    pub fn delete_tags(&mut self, instances: &[String], keys: &[&str]) {
        self.count("DeleteTags");
        for id in instances {
            if let Some(i) = self.instances.get_mut(id) {
                for key in keys {
                    i.tags.remove(*key);
                }
            }
        }
    }

    // ---- CodeDeploy -------------------------------------------------------------------------

    pub fn get_deployment_group(&mut self, key: &GroupKey) -> Result<DeploymentGroup, ApiError> {
        self.count("GetDeploymentGroup");
        self.groups
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::DeploymentGroupDoesNotExist(format!("{}/{}", key.0, key.1)))
    }

    pub fn active_deployment(&self, key: &GroupKey) -> Option<&Deployment> {
        self.active_deployments()
            .find(|d| &d.group == key && d.status.is_active())
    }

    /// The deployments still in progress.
    pub fn active_deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.active.iter().filter_map(|id| self.deployments.get(id))
    }

    /// CreateDeployment [aws-facts §3.1]: one active deployment per group, else
    /// `DeploymentLimitExceededException` naming the active one; targets are the group's
    /// tag-selected instances *at creation* (CodeDeploy user guide, instances-tagging: the
    /// instances meeting the tag criteria "when a deployment to that deployment group is
    /// created"; tags changed later do not change a running deployment's targets); with
    /// `update_outdated_only`, up-to-date ones are skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn create_deployment(
        &mut self,
        key: &GroupKey,
        revision: Option<&str>,
        config: Option<&str>,
        update_outdated_only: bool,
        description: &str,
        creator: Creator,
    ) -> Result<String, ApiError> {
        self.count("CreateDeployment");
        let group =
            self.groups.get(key).cloned().ok_or_else(|| {
                ApiError::DeploymentGroupDoesNotExist(format!("{}/{}", key.0, key.1))
            })?;
        if let Some(active) = self.active_deployment(key) {
            let active = active.id.clone();
            self.facts.push(Fact::CreateRejected {
                group: key.clone(),
                active: active.clone(),
                at: self.now,
            });
            return Err(ApiError::DeploymentLimitExceeded {
                message: format!(
                    "The Deployment Group '{}' already has an active Deployment '{active}'",
                    key.1
                ),
                active,
            });
        }
        let revision = revision
            .map(str::to_owned)
            .or(group.target_revision.clone())
            .ok_or(ApiError::RevisionRequired)?;
        let config = config.and_then(DeployConfig::parse).unwrap_or(group.config);
        let id = format!("d-{:09X}", self.next());
        let mut targets = BTreeMap::new();
        let mut undispatched = VecDeque::new();
        for inst in self.live_instances() {
            let live = matches!(
                inst.state,
                InstanceState::PendingWait | InstanceState::InService
            );
            if !live || !group.selects(&inst.tags) {
                continue;
            }
            let up_to_date = inst.installed.get(key) == Some(&revision);
            let status = if update_outdated_only && up_to_date {
                TargetStatus::Skipped
            } else {
                undispatched.push_back(inst.id.clone());
                TargetStatus::Pending
            };
            targets.insert(
                inst.id.clone(),
                Target {
                    status,
                    started_at: None,
                    ended_at: None,
                },
            );
        }
        let dep = Deployment {
            id: id.clone(),
            group: key.clone(),
            revision,
            config,
            creator,
            description: description.to_owned(),
            status: DeploymentStatus::InProgress,
            targets,
            created_at: self.now,
            ended_at: None,
            undispatched,
            native: None,
        };
        self.facts.push(Fact::DeploymentCreated {
            deployment: id.clone(),
            group: key.clone(),
            creator,
            targets: dep.targets.keys().cloned().collect(),
            at: self.now,
        });
        self.active.insert(id.clone());
        self.deployments.insert(id.clone(), dep);
        self.publish_deployment(&id, "START");
        self.dispatch(&id);
        self.maybe_finish(&id);
        Ok(id)
    }

    pub fn get_deployment(&mut self, id: &str) -> Result<Deployment, ApiError> {
        self.count("GetDeployment");
        self.deployments
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::DeploymentDoesNotExist(id.to_owned()))
    }

    /// ListDeployments of a group (newest first), optionally only active ones.
    pub fn list_deployments(
        &mut self,
        key: &GroupKey,
        active_only: bool,
        since: Ms,
    ) -> Vec<String> {
        self.count("ListDeployments");
        let mut ids: Vec<(Ms, String)> = self
            .deployments
            .values()
            .filter(|d| {
                &d.group == key && (!active_only || d.status.is_active()) && d.created_at >= since
            })
            .map(|d| (d.created_at, d.id.clone()))
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids.into_iter().map(|(_, i)| i).collect()
    }

    /// StopDeployment [aws-facts §3.5]: in-flight targets fail, pending ones are skipped.
    pub fn stop_deployment(&mut self, id: &str) -> Result<(), ApiError> {
        self.count("StopDeployment");
        let Some(d) = self.deployments.get(id) else {
            return Err(ApiError::DeploymentDoesNotExist(id.to_owned()));
        };
        if !d.status.is_active() {
            return Err(ApiError::DeploymentAlreadyCompleted(id.to_owned()));
        }
        let targets: Vec<(String, TargetStatus)> = d
            .targets
            .iter()
            .map(|(i, t)| (i.clone(), t.status))
            .collect();
        for (inst, status) in targets {
            match status {
                TargetStatus::InProgress => {
                    if let Some(i) = self.instances.get_mut(&inst) {
                        i.agent.running = None;
                    }
                    self.set_target(id, &inst, TargetStatus::Failed);
                    self.publish_instance(id, &inst, "STOP");
                    self.start_next(&inst);
                }
                TargetStatus::Pending => {
                    if let Some(i) = self.instances.get_mut(&inst) {
                        i.agent.queue.retain(|(d, _)| d != id);
                    }
                    self.set_target(id, &inst, TargetStatus::Skipped);
                }
                _ => {}
            }
        }
        self.end_deployment(id, DeploymentStatus::Stopped);
        Ok(())
    }

    fn set_target(&mut self, dep: &str, inst: &str, status: TargetStatus) {
        let now = self.now;
        if let Some(t) = self
            .deployments
            .get_mut(dep)
            .and_then(|d| d.targets.get_mut(inst))
        {
            t.status = status;
            if status == TargetStatus::InProgress {
                t.started_at = Some(now);
            }
            if status.is_done() {
                t.ended_at = Some(now);
            }
        }
    }

    /// Hands targets to their agents as the deployment configuration allows.
    fn dispatch(&mut self, id: &str) {
        let now = self.now;
        let Some(d) = self.deployments.get_mut(id) else {
            return;
        };
        let total = d
            .targets
            .values()
            .filter(|t| t.status != TargetStatus::Skipped)
            .count();
        let in_flight = d
            .targets
            .iter()
            .filter(|(i, t)| !t.status.is_done() && !d.undispatched.contains(i))
            .count();
        let limit = match d.config {
            DeployConfig::OneAtATime => 1,
            DeployConfig::HalfAtATime => total.div_ceil(2).max(1),
            DeployConfig::AllAtOnce => usize::MAX,
        };
        let mut handed = Vec::new();
        while in_flight + handed.len() < limit {
            let Some(inst) = d.undispatched.pop_front() else {
                break;
            };
            // A target that ended before its turn (its instance terminated) is not handed out.
            if d.targets.get(&inst).is_some_and(|t| !t.status.is_done()) {
                handed.push(inst);
            }
        }
        for inst in handed {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.agent.queue.push_back((id.to_owned(), now));
            }
            self.start_next(&inst);
        }
    }

    /// The agent starts its next queued deployment, failing any whose first lifecycle event
    /// could not start within the limit [aws-facts §3.2].
    fn start_next(&mut self, inst: &str) {
        loop {
            let now = self.now;
            let Some(i) = self.instances.get_mut(inst) else {
                return;
            };
            // A terminated instance's agent runs nothing more.
            if i.agent.running.is_some() || i.state == InstanceState::Terminated {
                return;
            }
            let Some((dep, queued_at)) = i.agent.queue.pop_front() else {
                return;
            };
            if now.saturating_sub(queued_at) > FIRST_EVENT_START_LIMIT_MS {
                self.finish_target(&dep, inst, TargetStatus::Failed);
                continue;
            }
            let Some(group) = self.deployments.get(&dep).map(|d| d.group.clone()) else {
                continue;
            };
            let profile = self
                .groups
                .get(&group)
                .map(|g| g.profile)
                .unwrap_or(Profile {
                    min_ms: 1000,
                    max_ms: 1000,
                    fail_prob: 0.0,
                });
            let took = self.rng.range(profile.min_ms, profile.max_ms);
            let scripted = self
                .fail_next
                .get_mut(&group)
                .filter(|n| **n > 0)
                .map(|n| *n -= 1);
            let fails = self.rng.chance(profile.fail_prob) || scripted.is_some();
            if let Some(i) = self.instances.get_mut(inst) {
                i.agent.running = Some(Running {
                    deployment: dep.clone(),
                    ends_at: now + took,
                    fails,
                });
            }
            self.set_target(&dep, inst, TargetStatus::InProgress);
            self.publish_instance(&dep, inst, "START");
            return;
        }
    }

    fn finish_target(&mut self, dep: &str, inst: &str, status: TargetStatus) {
        let now = self.now;
        self.set_target(dep, inst, status);
        self.publish_instance(
            dep,
            inst,
            if status == TargetStatus::Succeeded {
                "SUCCESS"
            } else {
                "FAILURE"
            },
        );
        if status == TargetStatus::Succeeded
            && let Some((group, revision)) = self
                .deployments
                .get(dep)
                .map(|d| (d.group.clone(), d.revision.clone()))
            && let Some(i) = self.instances.get_mut(inst)
        {
            i.installed.insert(group.clone(), revision.clone());
            self.facts.push(Fact::Installed {
                instance: inst.to_owned(),
                group,
                revision,
                deployment: dep.to_owned(),
                at: now,
            });
        }
        if let Some(i) = self.instances.get_mut(inst)
            && i.agent
                .running
                .as_ref()
                .is_some_and(|r| r.deployment == dep)
        {
            i.agent.running = None;
        }
        self.dispatch(dep);
        self.maybe_finish(dep);
        self.start_next(inst);
    }

    /// A deployment ends when no target is left; it succeeds by its configuration's
    /// minimum-healthy rule (AllAtOnce: one success; HalfAtATime: half; OneAtATime: all).
    fn maybe_finish(&mut self, id: &str) {
        let Some(d) = self.deployments.get(id) else {
            return;
        };
        if !d.status.is_active() || d.targets.values().any(|t| !t.status.is_done()) {
            return;
        }
        let deployed: Vec<&Target> = d
            .targets
            .values()
            .filter(|t| t.status != TargetStatus::Skipped)
            .collect();
        let ok = deployed
            .iter()
            .filter(|t| t.status == TargetStatus::Succeeded)
            .count();
        let any = d.targets.len();
        let status = if any == 0 {
            DeploymentStatus::Failed // NO_INSTANCES
        } else if deployed.is_empty() {
            DeploymentStatus::Succeeded // everything already up to date
        } else {
            let needed = match d.config {
                DeployConfig::AllAtOnce => 1,
                DeployConfig::HalfAtATime => deployed.len().div_ceil(2),
                DeployConfig::OneAtATime => deployed.len(),
            };
            if ok >= needed {
                DeploymentStatus::Succeeded
            } else {
                DeploymentStatus::Failed
            }
        };
        self.end_deployment(id, status);
    }

    fn end_deployment(&mut self, id: &str, status: DeploymentStatus) {
        let now = self.now;
        if !status.is_active() {
            self.active.remove(id);
        }
        let Some(d) = self.deployments.get_mut(id) else {
            return;
        };
        d.status = status;
        d.ended_at = Some(now);
        // Targets never reached are skipped.
        for t in d.targets.values_mut() {
            if !t.status.is_done() {
                t.status = TargetStatus::Skipped;
                t.ended_at = Some(now);
            }
        }
        let undispatched: Vec<String> = d.undispatched.drain(..).collect();
        let (group, revision) = (d.group.clone(), d.revision.clone());
        for inst in undispatched {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.agent.queue.retain(|(q, _)| q != id);
            }
        }
        if status == DeploymentStatus::Succeeded
            && let Some(g) = self.groups.get_mut(&group)
        {
            g.target_revision = Some(revision);
        }
        self.facts.push(Fact::DeploymentEnded {
            deployment: id.to_owned(),
            group,
            status,
            at: now,
        });
        let state = match status {
            DeploymentStatus::Succeeded => "SUCCESS",
            DeploymentStatus::Stopped => "STOP",
            _ => "FAILURE",
        };
        self.publish_deployment(id, state);
        let native = self.deployments.get(id).and_then(|d| d.native.clone());
        if let Some((asg, hook, token)) = native {
            let result = if status == DeploymentStatus::Succeeded {
                HookResult::Continue
            } else {
                HookResult::Abandon
            };
            let _ = self.complete_lifecycle_action(&asg, &hook, Some(&token), None, result);
        }
    }

    /// `CodeDeploy Deployment State-change Notification` [aws-facts §1.3].
    fn publish_deployment(&mut self, id: &str, state: &str) {
        self.publish_codedeploy(id, None, state);
    }

    /// `CodeDeploy Instance State-change Notification` [aws-facts §1.3].
    fn publish_instance(&mut self, id: &str, inst: &str, state: &str) {
        self.publish_codedeploy(id, Some(inst), state);
    }

    /// The two CodeDeploy events share their envelope; the instance event adds the instance
    /// (in `detail` and first in `resources`).
    fn publish_codedeploy(&mut self, id: &str, inst: Option<&str>, state: &str) {
        let Some(d) = self.deployments.get(id) else {
            return;
        };
        let (app, dg) = d.group.clone();
        let event_id = self.uuid();
        let (region, account) = (&self.region, &self.account);
        let application = format!("arn:aws:codedeploy:{region}:{account}:application:{app}");
        let group = format!("arn:aws:codedeploy:{region}:{account}:deploymentgroup:{app}/{dg}");
        let mut detail = json!({"region": region, "application": app, "deploymentId": id, "state": state, "deploymentGroup": dg});
        let (detail_type, resources, instance_group) = match inst {
            None => (
                "CodeDeploy Deployment State-change Notification",
                vec![application, group],
                "9fd2fbef-2157-40d8-91e7-6845af69e2d2",
            ),
            Some(i) => (
                "CodeDeploy Instance State-change Notification",
                vec![
                    format!("arn:aws:ec2:{region}:{account}:instance/{i}"),
                    group,
                    application,
                ],
                "8cd3bfa8-9e72-4cbe-a1e5-da4efc7efd49",
            ),
        };
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("instanceGroupId".into(), instance_group.into());
            if let Some(i) = inst {
                obj.insert("instanceId".into(), i.into());
            }
        }
        let json = json!({
            "account": account, "region": region, "detail-type": detail_type,
            "source": "aws.codedeploy", "version": "0", "time": iso(self.now), "id": event_id,
            "resources": resources, "detail": detail,
        });
        self.outbox.push(Published {
            at: self.now,
            json,
            kind: EventKind::CodeDeploy,
        });
    }

    // ---- time -------------------------------------------------------------------------------

    /// When something happens next on its own (an agent finishing, a timeout, a replacement).
    pub fn next_due(&self) -> Option<Ms> {
        let agents = self
            .live_instances()
            .filter_map(|i| i.agent.running.as_ref().map(|r| r.ends_at));
        let actions = self.live_instances().flat_map(|i| {
            i.actions
                .iter()
                .map(|a| a.heartbeat_deadline.min(a.global_deadline))
        });
        let repl = self.replacements.iter().map(|(t, _)| *t);
        agents.chain(actions).chain(repl).min()
    }

    /// Advances time to `t`, running everything that falls due on the way, in time order.
    pub fn advance_to(&mut self, t: Ms) {
        while let Some(due) = self.next_due().filter(|d| *d <= t) {
            self.now = self.now.max(due);
            self.run_due();
        }
        self.now = self.now.max(t);
    }

    fn run_due(&mut self) {
        let now = self.now;
        let finished: Vec<(String, String, bool)> = self
            .live_instances()
            .filter_map(|i| {
                i.agent
                    .running
                    .as_ref()
                    .filter(|r| r.ends_at <= now)
                    .map(|r| (i.id.clone(), r.deployment.clone(), r.fails))
            })
            .collect();
        for (inst, dep, fails) in finished {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.agent.running = None;
            }
            let status = if fails {
                TargetStatus::Failed
            } else {
                TargetStatus::Succeeded
            };
            self.finish_target(&dep, &inst, status);
        }
        // CodeDeploy heartbeats its own hook's action while its deployment runs (every 5 min
        // [aws-facts §3.6]); modelled as the heartbeat timer never running out meanwhile.
        for d in self.active.iter().filter_map(|id| self.deployments.get(id)) {
            let Some((_, _, token)) = d.native.as_ref().filter(|_| d.status.is_active()) else {
                continue;
            };
            for id in d.targets.keys() {
                let Some(i) = self.instances.get_mut(id) else {
                    continue;
                };
                for a in i.actions.iter_mut().filter(|a| a.token == *token) {
                    a.heartbeat_deadline = (now + a.heartbeat_ms).min(a.global_deadline);
                }
            }
        }
        // Lifecycle actions that ran out of time get their hook's default result [aws-facts §2].
        let expired: Vec<(String, Action)> = self
            .live_instances()
            .flat_map(|i| {
                i.actions
                    .iter()
                    .filter(|a| a.heartbeat_deadline.min(a.global_deadline) <= now)
                    .map(|a| (i.id.clone(), a.clone()))
            })
            .collect();
        for (inst, a) in expired {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.actions.retain(|x| x.token != a.token);
            }
            self.facts.push(Fact::TimedOut {
                instance: inst.clone(),
                hook: a.hook.clone(),
                token: a.token.clone(),
                transition: a.transition,
                global: a.global_deadline <= now,
                result: a.default_result,
                at: now,
            });
            self.apply_result(&inst, a.transition, a.default_result);
        }
        let due: Vec<String> = self
            .replacements
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, a)| a.clone())
            .collect();
        self.replacements.retain(|(t, _)| *t > now);
        for asg in due {
            self.scale_out(&asg, 1);
        }
    }

    /// Takes the events published so far.
    pub fn drain(&mut self) -> Vec<Published> {
        std::mem::take(&mut self.outbox)
    }

    /// Active deployments that have `instance` as a target still in flight.
    pub fn in_flight_on(&self, instance: &str) -> BTreeSet<String> {
        self.active_deployments()
            .filter(|d| d.is_target_in_flight(instance))
            .map(|d| d.id.clone())
            .collect()
    }
}

/// RFC 3339 with milliseconds, as EventBridge writes `time`.
pub fn iso(ms: Ms) -> String {
    // Civil-from-days (Howard Hinnant), to keep the model free of a date crate.
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests;
