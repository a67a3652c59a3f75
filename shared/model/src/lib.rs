//! # turnstile-model
//!
//! A deterministic, in-memory model of the AWS behaviour turnstile depends on: EC2 Auto Scaling
//! lifecycle hooks, EC2 instance tags, and CodeDeploy in-place deployments with the CodeDeploy
//! agent. It has no I/O and no clock of its own: the caller advances time.
//!
//! Every behaviour cites the entry of `docs/aws-behaviour.md` it models (`[aws-behaviour §x]`).
//! The model is shared by the property tests, the deterministic simulation and the local
//! cloud's wire-protocol simulator, so the three agree on what AWS does.
//!
//! Events are emitted as the JSON AWS publishes to EventBridge (the real envelope), so whoever
//! consumes them exercises the same parser as production.

use std::collections::{BTreeMap, BTreeSet};

mod agent;
mod autoscaling;
mod codedeploy;
mod events;
pub mod rng;
mod tags;
mod time;
mod types;

pub use events::iso;
pub use rng::Rng;
pub use tags::AsgTag;
pub use types::{
    Action, AgentStart, ApiError, Asg, Bootstrap, Creator, DeployConfig, Deployment,
    DeploymentGroup, DeploymentStatus, EventKind, FIRST_EVENT_START_LIMIT_MS, Fact,
    GLOBAL_TIMEOUT_CAP_MS, GroupKey, Hook, HookOwner, HookResult, Instance, InstanceState,
    LifecycleCall, LifecycleOperation, Ms, Place, Profile, Published, Target, TargetStatus,
    Transition, WarmPoolSpec,
};
pub(crate) use types::{Agent, Boot, Power, Progress, Running};

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
    /// Every CompleteLifecycleAction and RecordLifecycleActionHeartbeat served, in order.
    pub lifecycle_calls: Vec<LifecycleCall>,
    /// Other tools' hooks, by (Auto Scaling group, hook name), and what their owner does.
    pub hook_owners: BTreeMap<(String, String), HookOwner>,
    /// Owners' completions still to come: (when, instance, token, result).
    owner_completions: Vec<(Ms, String, String, HookResult)>,
    replacements: Vec<(Ms, String)>,
    /// Launch hooks CodeDeploy installed for a deployment group associated with the group.
    pub native_hooks: BTreeMap<(String, String), GroupKey>,
    /// Tags of each Auto Scaling group, in key order [aws-behaviour §2 Auto Scaling group tags].
    pub asg_tags: BTreeMap<String, Vec<AsgTag>>,
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
    /// How each Auto Scaling group's instances bootstrap (none: the agent runs from launch)
    /// [aws-behaviour §3.6 Bootstrap and the agent].
    pub bootstraps: BTreeMap<String, Bootstrap>,
    /// Each Auto Scaling group's warm pool, if it has one [aws-behaviour §2 Warm pools].
    pub warm_pools: BTreeMap<String, WarmPoolSpec>,
    /// Draws the ids of tag change events, apart from `rng`, so that publishing them does not
    /// change what a seed does elsewhere.
    tag_rng: Rng,
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
            lifecycle_calls: Vec::new(),
            hook_owners: BTreeMap::new(),
            owner_completions: Vec::new(),
            replacements: Vec::new(),
            native_hooks: BTreeMap::new(),
            asg_tags: BTreeMap::new(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            fail_next: BTreeMap::new(),
            active: BTreeSet::new(),
            live: BTreeSet::new(),
            bootstraps: BTreeMap::new(),
            warm_pools: BTreeMap::new(),
            tag_rng: Rng::new(seed ^ 0x7461_675f_6576_656e),
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
        uuid_from(&mut self.rng)
    }

    /// A uuid for a tag change event, from its own generator.
    fn tag_uuid(&mut self) -> String {
        uuid_from(&mut self.tag_rng)
    }

    pub fn add_asg(&mut self, asg: Asg) {
        self.asgs.insert(asg.name.clone(), asg);
    }

    /// How the group's instances launched from now on bootstrap.
    pub fn set_bootstrap(&mut self, asg: &str, bootstrap: Bootstrap) {
        self.bootstraps.insert(asg.to_owned(), bootstrap);
    }

    /// PutWarmPool: gives the group a warm pool (or changes it) [aws-behaviour §2 Warm pools].
    pub fn put_warm_pool(&mut self, asg: &str, spec: WarmPoolSpec) {
        self.count("PutWarmPool");
        self.warm_pools.insert(asg.to_owned(), spec);
    }

    pub fn add_group(&mut self, g: DeploymentGroup) {
        self.groups.insert(g.key(), g);
    }
}

fn uuid_from(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests;
