//! Scenarios as TOML files: the fleet, the deployment groups with their duration distributions
//! and failure rates, the plan options, what happens over time, the faults and the seed.
//! `scenarios/default.toml` is the one `make demo` runs; its comments document every field.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;
use turnstile_model::{
    AgentStart, Asg, Bootstrap, Cloud, Creator, DeployConfig, DeploymentGroup, Hook, HookOwner,
    HookResult, Ms, Profile, Transition, WarmPoolSpec,
};

/// The orchestrator's launch hook on the fleet: the stack's default name, which the handlers
/// own with their default configuration.
pub const LAUNCH_HOOK: &str = turnstile_core::DEFAULT_LAUNCH_HOOK;
/// The orchestrator's terminate hook (the stack's `<LaunchHookName>-terminate`).
pub const TERMINATE_HOOK: &str = turnstile_core::DEFAULT_TERMINATE_HOOK;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    /// Simulated seconds per wall-clock second; 0 runs as fast as the machine allows (time
    /// jumps to the next thing that can happen whenever nothing is in flight).
    #[serde(default)]
    pub clock_scale: f64,
    /// The run ends this long after the last scripted event, or earlier once every instance
    /// has settled and nothing is left to do.
    #[serde(default = "default_horizon")]
    pub horizon_secs: u64,
    pub fleet: Fleet,
    #[serde(default)]
    pub orchestrator: Orchestrator,
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub faults: Faults,
}

fn default_horizon() -> u64 {
    7200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub auto_scaling_group: String,
    /// The lifecycle hooks' heartbeat timeout, 30..=7200 s.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_timeout_secs: u64,
    #[serde(default = "yes")]
    pub terminate_hook: bool,
    /// Auto Scaling launches a replacement this long after an instance is abandoned.
    #[serde(default = "default_replace")]
    pub replace_after_secs: Option<u64>,
    /// Other tools' lifecycle hooks on the same group, beside turnstile's.
    #[serde(default)]
    pub foreign_hooks: Vec<ForeignHook>,
    /// Each new instance's bootstrap (user data, cfn-init) and when its CodeDeploy agent
    /// starts; absent: the agent runs from launch.
    #[serde(default)]
    pub bootstrap: Option<BootstrapSpec>,
    /// The group's warm pool; absent: none.
    #[serde(default)]
    pub warm_pool: Option<WarmPoolToml>,
}

/// A new instance's bootstrap, as the model runs it [aws-behaviour §3.6 Bootstrap and the agent].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSpec {
    /// Its duration, drawn uniformly from `[min, max]` seconds.
    pub secs: [u64; 2],
    /// Probability that it never finishes.
    #[serde(default)]
    pub never_rate: f64,
    /// `after-bootstrap` (the agent starts when the bootstrap is done, the order AWS
    /// documents) | `at-boot` (the agent runs at once and a deployment that starts before the
    /// bootstrap is done fails).
    #[serde(default = "default_agent")]
    pub agent: String,
    /// The tag (value `true`) the instance sets on itself when its bootstrap is done.
    #[serde(default)]
    pub ready_tag: Option<String>,
}

fn default_agent() -> String {
    "after-bootstrap".into()
}

/// The fleet's warm pool [aws-behaviour §2 Warm pools].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmPoolToml {
    /// Scale-in returns instances to the pool instead of terminating them.
    #[serde(default)]
    pub reuse_on_scale_in: bool,
    /// How long a stopped instance takes to boot again when it leaves the pool.
    #[serde(default = "default_restart")]
    pub restart_secs: u64,
}

fn default_restart() -> u64 {
    30
}

/// The plan's readiness signal (`readiness` in the plan).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessToml {
    pub tag: String,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// `abandon` | `hold` | `start`.
    #[serde(default)]
    pub on_timeout: Option<String>,
}

/// A lifecycle hook turnstile does not own, and what its owner does with each action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignHook {
    pub name: String,
    /// `launch` | `terminate`.
    pub transition: String,
    /// Default: the fleet's `heartbeat_timeout_secs`.
    #[serde(default)]
    pub heartbeat_timeout_secs: Option<u64>,
    /// `CONTINUE` | `ABANDON` (AWS's default), applied when the action times out.
    #[serde(default = "default_abandon")]
    pub default_result: String,
    /// The owner completes each action this long after it began (heartbeating meanwhile);
    /// absent: nobody completes it and it times out to `default_result`.
    #[serde(default)]
    pub complete_after_secs: Option<u64>,
    /// `CONTINUE` | `ABANDON`: what the owner completes it with.
    #[serde(default = "default_continue")]
    pub result: String,
    /// The hook's notification metadata (another tool's, not a plan).
    #[serde(default)]
    pub metadata: Option<String>,
}

fn default_abandon() -> String {
    "ABANDON".into()
}
fn default_continue() -> String {
    "CONTINUE".into()
}

fn hook_result(s: &str) -> Option<HookResult> {
    match s {
        "CONTINUE" => Some(HookResult::Continue),
        "ABANDON" => Some(HookResult::Abandon),
        _ => None,
    }
}

impl ForeignHook {
    fn transition(&self) -> Option<Transition> {
        match self.transition.as_str() {
            "launch" => Some(Transition::Launching),
            "terminate" => Some(Transition::Terminating),
            _ => None,
        }
    }
}

fn agent_start(s: &str) -> Option<AgentStart> {
    match s {
        "after-bootstrap" => Some(AgentStart::AfterBootstrap),
        "at-boot" => Some(AgentStart::AtBoot),
        _ => None,
    }
}

fn default_heartbeat() -> u64 {
    300
}
fn default_replace() -> Option<u64> {
    Some(30)
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Orchestrator {
    #[serde(default = "default_batch_window")]
    pub batch_window_secs: u64,
    #[serde(default = "default_breaker")]
    pub breaker_threshold: u32,
    #[serde(default = "default_backoff")]
    pub retry_backoff_secs: u64,
    /// At most this many instances in one deployment (1: per-instance serial deployments).
    #[serde(default)]
    pub max_batch: Option<u32>,
    /// Hold the first step until the instance tags itself ready.
    #[serde(default)]
    pub readiness: Option<ReadinessToml>,
    /// The plan's `warmPool` policy: `deployOnExit` (default) | `deployOnEntry` | `deployOnBoth`.
    #[serde(default)]
    pub warm_pool: Option<String>,
}

fn default_batch_window() -> u64 {
    2
}
fn default_breaker() -> u32 {
    3
}
fn default_backoff() -> u64 {
    10
}

impl Default for Orchestrator {
    fn default() -> Self {
        Self {
            batch_window_secs: default_batch_window(),
            breaker_threshold: default_breaker(),
            retry_backoff_secs: default_backoff(),
            max_batch: None,
            readiness: None,
            warm_pool: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub application: String,
    pub deployment_group: String,
    /// `CodeDeployDefault.OneAtATime` | `HalfAtATime` | `AllAtOnce`.
    #[serde(default = "default_config")]
    pub config: String,
    /// One instance's deployment takes a duration drawn uniformly from `[min, max]` seconds.
    pub duration_secs: [u64; 2],
    /// Probability that one instance's deployment fails.
    #[serde(default)]
    pub fail_rate: f64,
    /// The first N per-instance deployments of this group fail (scripted failures).
    #[serde(default)]
    pub fail_first: u32,
    /// The group's last successful revision; without one the step is skipped.
    #[serde(default = "default_revision")]
    pub revision: Option<String>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// `abandon` | `hold`.
    #[serde(default = "default_on_failure")]
    pub on_failure: String,
}

fn default_config() -> String {
    "CodeDeployDefault.AllAtOnce".into()
}
fn default_revision() -> Option<String> {
    Some("v1".into())
}
fn default_retries() -> u32 {
    2
}
fn default_timeout() -> u64 {
    1800
}
fn default_on_failure() -> String {
    "abandon".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at_secs: u64,
    /// Scale out by this many instances.
    #[serde(default)]
    pub launch: Option<usize>,
    /// Terminate this many instances that are still waiting in `Pending:Wait` (oldest first).
    #[serde(default)]
    pub terminate: Option<usize>,
    /// A user's own deployment on a managed group.
    #[serde(default)]
    pub user_deployment: Option<UserDeployment>,
    /// A message body put on the orchestrator's queue as is (bad input, test notifications).
    #[serde(default)]
    pub raw_message: Option<String>,
    /// Launch this many instances into the warm pool (`fleet.warm_pool`).
    #[serde(default)]
    pub fill_warm_pool: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDeployment {
    pub application: String,
    pub deployment_group: String,
    pub revision: String,
    /// Its first N instance deployments fail (it runs with the group's own config, which
    /// decides whether the deployment as a whole still succeeds).
    #[serde(default)]
    pub fail_first: u32,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Probability that a CodeDeploy event never reaches the queue.
    #[serde(default)]
    pub drop_codedeploy: f64,
    /// Probability that a lifecycle event (launch or terminate) never reaches the queue:
    /// EventBridge delivers on a best-effort basis. The timer sweep adopts lost launches.
    #[serde(default)]
    pub drop_lifecycle: f64,
    /// Probability that a message is delivered twice (same body, same event id), as SQS and
    /// EventBridge may.
    #[serde(default)]
    pub duplicate: f64,
    /// Probability that an AWS call to the simulator is throttled.
    #[serde(default)]
    pub throttle: f64,
    /// Probability that handling a message fails transiently before its first write (its
    /// first DynamoDB read fails, as a throttled read or a cold dependency would), drawn anew
    /// for every receive but the last one the queue allows (a fault that outlasts every retry
    /// is an outage, not a transient failure).
    #[serde(default)]
    pub transient: f64,
    /// Probability that an instance's tag-change event never reaches the queue: EventBridge
    /// delivers tag events on a best-effort basis. The timer sweep reads the tags of every
    /// instance still waiting for readiness.
    #[serde(default)]
    pub drop_tag: f64,
}

/// What the scripted timeline does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Launch(usize),
    Terminate(usize),
    UserDeployment {
        group: (String, String),
        revision: String,
        fail_first: u32,
    },
    RawMessage(String),
    FillWarmPool(usize),
}

/// Which fleet to build: the orchestrator's hooks, CodeDeploy's own per-group hooks, or one
/// launch hook completed by a user-data script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Native,
    Orchestrator,
    UserData,
}

/// The launch hook a user-data script completes.
pub const USER_DATA_HOOK: &str = "user-data";

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {field}: {problem}")]
    Invalid {
        path: String,
        field: String,
        problem: String,
    },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&name, &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: name.to_owned(),
            source: Box::new(source),
        })?;
        s.validate()
            .map_err(|(field, problem)| ScenarioError::Invalid {
                path: name.to_owned(),
                field,
                problem,
            })?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let hb = self.fleet.heartbeat_timeout_secs;
        if !(30..=7200).contains(&hb) {
            return Err((
                "fleet.heartbeat_timeout_secs".into(),
                format!("{hb} is outside 30..=7200"),
            ));
        }
        for (i, h) in self.fleet.foreign_hooks.iter().enumerate() {
            let at = |f: &str| format!("fleet.foreign_hooks[{i}].{f}");
            if h.transition().is_none() {
                return Err((
                    at("transition"),
                    format!("`{}`: expected launch or terminate", h.transition),
                ));
            }
            if [LAUNCH_HOOK, TERMINATE_HOOK, USER_DATA_HOOK].contains(&h.name.as_str())
                || self
                    .fleet
                    .foreign_hooks
                    .iter()
                    .take(i)
                    .any(|o| o.name == h.name)
            {
                return Err((
                    at("name"),
                    format!("`{}` is already a hook of the fleet", h.name),
                ));
            }
            if h.name
                .starts_with("CodeDeploy-managed-automatic-launch-deployment-hook")
            {
                return Err((at("name"), "reserved for CodeDeploy's own hooks".into()));
            }
            if let Some(t) = h.heartbeat_timeout_secs
                && !(30..=7200).contains(&t)
            {
                return Err((
                    at("heartbeat_timeout_secs"),
                    format!("{t} is outside 30..=7200"),
                ));
            }
            for (f, v) in [("default_result", &h.default_result), ("result", &h.result)] {
                if hook_result(v).is_none() {
                    return Err((at(f), format!("`{v}`: expected CONTINUE or ABANDON")));
                }
            }
        }
        if self.groups.is_empty() {
            return Err((
                "groups".into(),
                "at least one deployment group is needed".into(),
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            let at = |f: &str| format!("groups[{i}].{f}");
            if DeployConfig::parse(&g.config).is_none() {
                return Err((
                    at("config"),
                    format!("unknown deployment config `{}`", g.config),
                ));
            }
            let [lo, hi] = g.duration_secs;
            if lo == 0 || lo > hi {
                return Err((
                    at("duration_secs"),
                    format!("[{lo}, {hi}] must be 0 < min <= max"),
                ));
            }
            if !(0.0..=1.0).contains(&g.fail_rate) {
                return Err((at("fail_rate"), "must be within 0..=1".into()));
            }
            if !matches!(g.on_failure.as_str(), "abandon" | "hold") {
                return Err((
                    at("on_failure"),
                    format!("`{}`: expected abandon or hold", g.on_failure),
                ));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            let set = usize::from(e.launch.is_some())
                + usize::from(e.terminate.is_some())
                + usize::from(e.user_deployment.is_some())
                + usize::from(e.raw_message.is_some())
                + usize::from(e.fill_warm_pool.is_some());
            if set != 1 {
                return Err((
                    format!("events[{i}]"),
                    "exactly one of launch, terminate, user_deployment, raw_message, fill_warm_pool"
                        .into(),
                ));
            }
            if e.fill_warm_pool.is_some() && self.fleet.warm_pool.is_none() {
                return Err((
                    format!("events[{i}].fill_warm_pool"),
                    "the fleet has no warm pool (fleet.warm_pool)".into(),
                ));
            }
            if let Some(u) = &e.user_deployment
                && !self.groups.iter().any(|g| {
                    g.application == u.application && g.deployment_group == u.deployment_group
                })
            {
                return Err((
                    format!("events[{i}].user_deployment"),
                    format!(
                        "{}/{} is not a group of this scenario",
                        u.application, u.deployment_group
                    ),
                ));
            }
        }
        for (field, p) in [
            ("faults.drop_codedeploy", self.faults.drop_codedeploy),
            ("faults.drop_lifecycle", self.faults.drop_lifecycle),
            ("faults.duplicate", self.faults.duplicate),
            ("faults.throttle", self.faults.throttle),
            ("faults.transient", self.faults.transient),
            ("faults.drop_tag", self.faults.drop_tag),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err((field.into(), "must be within 0..=1".into()));
            }
        }
        if let Some(b) = &self.fleet.bootstrap {
            let [lo, hi] = b.secs;
            if lo > hi {
                return Err((
                    "fleet.bootstrap.secs".into(),
                    format!("[{lo}, {hi}] must be min <= max"),
                ));
            }
            if !(0.0..=1.0).contains(&b.never_rate) {
                return Err((
                    "fleet.bootstrap.never_rate".into(),
                    "must be within 0..=1".into(),
                ));
            }
            if agent_start(&b.agent).is_none() {
                return Err((
                    "fleet.bootstrap.agent".into(),
                    format!("`{}`: expected after-bootstrap or at-boot", b.agent),
                ));
            }
        }
        // The plan is checked as the core will read it: a scenario with an invalid plan is
        // a mistake in the scenario, not a test of the core's plan validation.
        if let Err(e) = turnstile_core::Plan::parse(&self.plan_json()) {
            return Err(("orchestrator".into(), e.to_string()));
        }
        Ok(())
    }

    /// The plan steps as (application, deployment group).
    pub fn steps(&self) -> Vec<(String, String)> {
        self.groups
            .iter()
            .map(|g| (g.application.clone(), g.deployment_group.clone()))
            .collect()
    }

    pub fn gate_tag(app: &str) -> String {
        format!("turnstile:gate:{app}")
    }

    /// The plan, as the launch hook's notification metadata.
    pub fn plan_json(&self) -> String {
        let steps: Vec<serde_json::Value> = self
            .groups
            .iter()
            .map(|g| {
                json!({
                    "application": g.application,
                    "deploymentGroup": g.deployment_group,
                    "gateTag": Self::gate_tag(&g.application),
                    "retries": g.retries,
                    "retryBackoffSecs": self.orchestrator.retry_backoff_secs,
                    "timeoutSecs": g.timeout_secs,
                    "onFailure": g.on_failure,
                })
            })
            .collect();
        let mut plan = json!({
            "version": 1,
            "steps": steps,
            "batchWindowSecs": self.orchestrator.batch_window_secs,
            "breaker": {"threshold": self.orchestrator.breaker_threshold, "windowSecs": 3600},
        });
        if let Some(o) = plan.as_object_mut() {
            if let Some(n) = self.orchestrator.max_batch {
                o.insert("maxBatch".into(), json!(n));
            }
            if let Some(r) = &self.orchestrator.readiness {
                let mut doc = json!({"tag": r.tag});
                if let Some(d) = doc.as_object_mut() {
                    if let Some(t) = r.timeout_secs {
                        d.insert("timeoutSecs".into(), json!(t));
                    }
                    if let Some(p) = &r.on_timeout {
                        d.insert("onTimeout".into(), json!(p));
                    }
                }
                o.insert("readiness".into(), doc);
            }
            if let Some(w) = &self.orchestrator.warm_pool {
                o.insert("warmPool".into(), json!(w));
            }
        }
        plan.to_string()
    }

    /// The scripted timeline, in time order.
    pub fn script(&self) -> Vec<(Ms, Action)> {
        let mut v: Vec<(Ms, Action)> = self
            .events
            .iter()
            .filter_map(|e| {
                let a = if let Some(n) = e.launch {
                    Action::Launch(n)
                } else if let Some(n) = e.terminate {
                    Action::Terminate(n)
                } else if let Some(body) = &e.raw_message {
                    Action::RawMessage(body.clone())
                } else if let Some(n) = e.fill_warm_pool {
                    Action::FillWarmPool(n)
                } else {
                    let u = e.user_deployment.as_ref()?;
                    Action::UserDeployment {
                        group: (u.application.clone(), u.deployment_group.clone()),
                        revision: u.revision.clone(),
                        fail_first: u.fail_first,
                    }
                };
                Some((e.at_secs * 1000, a))
            })
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    pub fn horizon_ms(&self) -> Ms {
        let last = self.events.iter().map(|e| e.at_secs).max().unwrap_or(0);
        (last + self.horizon_secs) * 1000
    }

    /// The modelled account: the fleet with either the orchestrator's hooks or CodeDeploy's own
    /// per-group launch hooks, and the deployment groups (selecting instances by gate tag).
    pub fn cloud(&self, mode: Mode) -> Cloud {
        let mut cloud = Cloud::new(self.seed);
        let asg = &self.fleet.auto_scaling_group;
        let hb = self.fleet.heartbeat_timeout_secs;
        let mut hooks = Vec::new();
        if mode == Mode::UserData {
            hooks.push(Hook {
                name: USER_DATA_HOOK.into(),
                transition: Transition::Launching,
                heartbeat_secs: 3600,
                default_result: HookResult::Abandon,
                metadata: None,
            });
        }
        if mode == Mode::Orchestrator {
            hooks.push(Hook {
                name: LAUNCH_HOOK.into(),
                transition: Transition::Launching,
                heartbeat_secs: hb,
                default_result: HookResult::Abandon,
                metadata: Some(self.plan_json()),
            });
            if self.fleet.terminate_hook {
                hooks.push(Hook {
                    name: TERMINATE_HOOK.into(),
                    transition: Transition::Terminating,
                    heartbeat_secs: hb,
                    default_result: HookResult::Continue,
                    metadata: None,
                });
            }
        }
        for f in &self.fleet.foreign_hooks {
            let (Some(transition), Some(default_result), Some(result)) = (
                f.transition(),
                hook_result(&f.default_result),
                hook_result(&f.result),
            ) else {
                continue; // rejected by `validate`
            };
            hooks.push(Hook {
                name: f.name.clone(),
                transition,
                heartbeat_secs: f.heartbeat_timeout_secs.unwrap_or(hb),
                default_result,
                metadata: f.metadata.clone(),
            });
            if let Some(secs) = f.complete_after_secs {
                cloud.hook_owners.insert(
                    (asg.clone(), f.name.clone()),
                    HookOwner {
                        after_ms: secs * 1000,
                        result,
                    },
                );
            }
        }
        cloud.add_asg(Asg {
            name: asg.clone(),
            hooks,
            replace_after_ms: self.fleet.replace_after_secs.map(|s| s * 1000),
        });
        if let Some(b) = &self.fleet.bootstrap {
            let [lo, hi] = b.secs;
            cloud.set_bootstrap(
                asg,
                Bootstrap {
                    min_ms: lo * 1000,
                    max_ms: hi * 1000,
                    never_prob: b.never_rate,
                    agent: agent_start(&b.agent).unwrap_or_default(),
                    ready_tag: b.ready_tag.clone().map(|k| (k, "true".to_owned())),
                },
            );
        }
        if let Some(w) = &self.fleet.warm_pool {
            cloud.put_warm_pool(
                asg,
                WarmPoolSpec {
                    reuse_on_scale_in: w.reuse_on_scale_in,
                    restart_ms: w.restart_secs * 1000,
                },
            );
        }
        for g in &self.groups {
            let [lo, hi] = g.duration_secs;
            cloud.add_group(DeploymentGroup {
                app: g.application.clone(),
                name: g.deployment_group.clone(),
                tag_set: vec![vec![(Self::gate_tag(&g.application), "open".into())]],
                target_revision: g.revision.clone(),
                config: DeployConfig::parse(&g.config).unwrap_or(DeployConfig::AllAtOnce),
                profile: Profile {
                    min_ms: lo * 1000,
                    max_ms: hi * 1000,
                    fail_prob: g.fail_rate,
                },
            });
            if g.fail_first > 0 {
                cloud.fail_next.insert(
                    (g.application.clone(), g.deployment_group.clone()),
                    g.fail_first,
                );
            }
            if mode == Mode::Native {
                cloud.associate_asg(asg, &(g.application.clone(), g.deployment_group.clone()));
            }
        }
        cloud
    }
}

/// Applies one scripted action to the model.
pub fn apply(cloud: &mut Cloud, asg: &str, action: &Action) {
    match action {
        Action::Launch(n) => {
            cloud.scale_out(asg, *n);
        }
        Action::Terminate(n) => {
            let mut waiting: Vec<(Ms, String)> = cloud
                .instances
                .values()
                .filter(|i| i.state == turnstile_model::InstanceState::PendingWait)
                .map(|i| (i.launched_at, i.id.clone()))
                .collect();
            waiting.sort();
            for (_, id) in waiting.into_iter().take(*n) {
                cloud.terminate(&id);
            }
        }
        // Only the orchestrator's queue takes these; the run loop sends them.
        Action::RawMessage(_) => {}
        Action::FillWarmPool(n) => {
            cloud.fill_warm_pool(asg, *n);
        }
        Action::UserDeployment {
            group,
            revision,
            fail_first,
        } => {
            if *fail_first > 0 {
                cloud.fail_next.insert(group.clone(), *fail_first);
            }
            let _ = cloud.create_deployment(
                group,
                Some(revision),
                None,
                false,
                "deployment by a user",
                Creator::User,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Scenario {
        let path = format!("{}/../../scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
        Scenario::load(Path::new(&path)).unwrap()
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let dir = format!("{}/../../scenarios", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }

    #[test]
    fn foreign_hooks_sit_beside_turnstiles_with_their_owners() {
        let s = file("foreign-hooks.toml");
        let cloud = s.cloud(Mode::Orchestrator);
        let asg = &cloud.asgs["shared-fleet"];
        let hooks: Vec<(&str, Transition, HookResult)> = asg
            .hooks
            .iter()
            .map(|h| (h.name.as_str(), h.transition, h.default_result))
            .collect();
        assert_eq!(
            hooks,
            [
                (LAUNCH_HOOK, Transition::Launching, HookResult::Abandon),
                (
                    TERMINATE_HOOK,
                    Transition::Terminating,
                    HookResult::Continue
                ),
                (
                    "bootstrap-agent",
                    Transition::Launching,
                    HookResult::Abandon
                ),
                ("audit-hook", Transition::Launching, HookResult::Continue),
                ("ship-logs", Transition::Terminating, HookResult::Continue),
            ]
        );
        let owner = |h: &str| {
            cloud
                .hook_owners
                .get(&("shared-fleet".into(), h.into()))
                .copied()
        };
        assert_eq!(
            owner("bootstrap-agent"),
            Some(HookOwner {
                after_ms: 400_000,
                result: HookResult::Continue
            })
        );
        assert_eq!(owner("audit-hook"), None, "nobody completes it");
        assert!(owner("ship-logs").is_some());
    }

    /// The fast-redelivery scenario: hooks that time out long before the queue's visibility
    /// timeout would bring a failed message back, and transient faults on every receive.
    #[test]
    fn redeliver_scenario_has_hooks_shorter_than_the_visibility_timeout() {
        let s = file("redeliver.toml");
        assert_eq!(s.fleet.heartbeat_timeout_secs, 120);
        assert!(s.fleet.heartbeat_timeout_secs < crate::orchestrated::VISIBILITY_TIMEOUT_SECS);
        assert!((s.faults.transient - 0.2).abs() < f64::EPSILON);
        let poison = s
            .script()
            .into_iter()
            .filter(
                |(_, a)| matches!(a, Action::RawMessage(b) if turnstile_events::parse(b).is_err()),
            )
            .count();
        assert_eq!(poison, 2, "two messages that can only be dead-lettered");
        assert_eq!(file("default.toml").faults.transient, 0.0, "off by default");
    }

    #[test]
    fn redeliver_transient_is_a_probability() {
        let toml = "name = \"t\"\n[fleet]\nauto_scaling_group = \"a\"\n[[groups]]\napplication = \"x\"\ndeployment_group = \"y\"\nduration_secs = [1, 2]\n[faults]\ntransient = 1.5\n";
        match Scenario::parse("t", toml) {
            Err(ScenarioError::Invalid { field, .. }) => assert_eq!(field, "faults.transient"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_foreign_hook_is_checked_field_by_field() {
        let base = |hook: &str| {
            format!(
                "name = \"t\"\n[fleet]\nauto_scaling_group = \"a\"\n[[fleet.foreign_hooks]]\n{hook}\n[[groups]]\napplication = \"x\"\ndeployment_group = \"y\"\nduration_secs = [1, 2]\n"
            )
        };
        for (hook, field) in [
            ("name = \"h\"\ntransition = \"scale\"", "transition"),
            (
                "name = \"turnstile-launch\"\ntransition = \"launch\"",
                "name",
            ),
            (
                "name = \"h\"\ntransition = \"launch\"\nresult = \"MAYBE\"",
                "result",
            ),
            (
                "name = \"h\"\ntransition = \"launch\"\nheartbeat_timeout_secs = 5",
                "heartbeat_timeout_secs",
            ),
        ] {
            match Scenario::parse("t", &base(hook)) {
                Err(ScenarioError::Invalid { field: f, .. }) => {
                    assert_eq!(f, format!("fleet.foreign_hooks[0].{field}"), "{hook}");
                }
                other => panic!("{hook}: {other:?}"),
            }
        }
    }
}
