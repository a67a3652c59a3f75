//! # turnstile-sim
//!
//! Drives the real core against the AWS model in simulated time: the model's events (real
//! EventBridge JSON) go through the real parser, with duplicates, reordering, delays and losses
//! injected; the core's commands run against the model; the timer path is a periodic sweep plus
//! delayed wakeups. After every step the invariants (docs/design.md "Invariants") are checked.
//!
//! Commands run through [`exec`], the AWS semantics the local cloud's model-backed ports share
//! (explicit revision, `updateOutdatedInstancesOnly`, adoption of a deployment that carries the
//! intent); the invariants are [`invariants`], the checker the local cloud reuses.

pub mod exec;
pub mod invariants;
pub mod scenario;
pub mod timeline;
pub use scenario::{Report, Scenario, StepSpec};

use std::collections::BTreeMap;

use invariants::Invariants;

use turnstile_core::{
    ActionRef, Alert, Command, CreateOutcome, DeploymentId, Engine, GroupKey, HookTimeouts, Input,
    IntentId, Key, LifecycleResult, Millis, Missing, World,
};
use turnstile_events::Message;
use turnstile_model::{Cloud, Creator, EventKind, Ms, Rng};

pub use exec::deployment_status;

/// Faults the scheduler injects into deliveries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a delivered event is delivered again.
    pub duplicate: f64,
    /// Probability that a CodeDeploy event is lost (EventBridge delivery is best effort).
    pub drop_codedeploy: f64,
    /// Probability that a lifecycle event is lost.
    pub drop_lifecycle: f64,
    /// Probability that a delayed wakeup message is lost (the sweep must recover).
    pub drop_wakeup: f64,
    /// Each delivery is delayed uniformly in `[0, max_delay_ms]`, which also reorders.
    pub max_delay_ms: Ms,
}

impl Faults {
    pub const NONE: Faults = Faults {
        duplicate: 0.0,
        drop_codedeploy: 0.0,
        drop_lifecycle: 0.0,
        drop_wakeup: 0.0,
        max_delay_ms: 0,
    };
}

/// Something scripted to happen at a time.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// Scale out by n.
    Launch(usize),
    /// Terminate the n-th instance ever launched (modulo the count), if it still runs.
    Terminate(usize),
    /// A user deploys to group `n` of the plan (a new revision if `new_revision`).
    UserDeploy { group: usize, new_revision: bool },
}

/// What a script did so far: the instances it launched (`Terminate` counts in them) and the
/// revisions its user deployed. The simulator and the runner's driver apply scripts with it.
#[derive(Debug, Clone, Default)]
pub struct Scripted {
    launched: Vec<String>,
    user_revisions: u64,
}

impl Scripted {
    /// Does what the script says in the model; `plan` is the plan's groups, in plan order.
    pub fn apply(&mut self, cloud: &mut Cloud, plan: &[(String, String)], what: Script) {
        match what {
            Script::Launch(n) => {
                let asgs: Vec<String> = cloud.asgs.keys().cloned().collect();
                for asg in asgs {
                    let ids = cloud.scale_out(&asg, n);
                    self.launched.extend(ids);
                }
            }
            Script::Terminate(n) => {
                if let Some(id) = self.launched.get(n % self.launched.len().max(1)).cloned() {
                    cloud.terminate(&id);
                }
            }
            Script::UserDeploy {
                group,
                new_revision,
            } => {
                let Some(k) = plan.get(group % plan.len().max(1)) else {
                    return;
                };
                let revision = new_revision.then(|| {
                    self.user_revisions += 1;
                    format!("rev-user-{}", self.user_revisions)
                });
                let _ = cloud.create_deployment(
                    k,
                    revision.as_deref(),
                    None,
                    false,
                    "a user's deployment",
                    Creator::User,
                );
            }
        }
    }

    /// Instances launched so far.
    pub fn launched(&self) -> &[String] {
        &self.launched
    }
}

/// How often the timer sweep runs (the scheduled timer function).
pub const SWEEP_MS: Ms = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Body(String),
    Tick(Key),
    Sweep,
    Script(usize),
}

/// Counters for summaries and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub inputs: u64,
    pub messages: u64,
    pub commands: u64,
    pub record_writes: u64,
    pub alerts: Vec<Alert>,
}

pub struct Sim {
    pub cloud: Cloud,
    pub engine: Engine,
    pub world: World,
    pub faults: Faults,
    pub stats: Stats,
    /// Invariant violations found so far (empty means all held); each reported once.
    pub violations: Vec<String>,
    /// When set, every input and command is recorded here (for replaying a failing seed).
    pub trace: Option<Vec<String>>,
    queue: BTreeMap<(Ms, u64), Item>,
    seq: u64,
    rng: Rng,
    script: Vec<(Ms, Script)>,
    /// Plan groups by step index (for scripted user deployments and checks).
    pub plan_groups: Vec<GroupKey>,
    scripted: Scripted,
    /// The invariants checked against the orchestrator's records, and what they remember.
    invariants: Invariants,
}

impl Sim {
    pub fn new(
        cloud: Cloud,
        engine: Engine,
        faults: Faults,
        seed: u64,
        plan_groups: Vec<GroupKey>,
    ) -> Self {
        let plan_steps = plan_groups
            .iter()
            .map(|g| (g.application.clone(), g.deployment_group.clone()))
            .collect();
        let invariants = Invariants::for_cloud(&cloud, plan_steps);
        let mut sim = Self {
            cloud,
            engine,
            world: World::default(),
            faults,
            stats: Stats::default(),
            violations: Vec::new(),
            trace: None,
            queue: BTreeMap::new(),
            seq: 0,
            rng: Rng::new(seed ^ 0x5eed),
            script: Vec::new(),
            plan_groups,
            scripted: Scripted::default(),
            invariants,
        };
        sim.push(SWEEP_MS, Item::Sweep);
        sim
    }

    pub fn schedule(&mut self, at: Ms, what: Script) {
        let i = self.script.len();
        self.script.push((at, what));
        self.push(at, Item::Script(i));
    }

    fn push(&mut self, at: Ms, item: Item) {
        self.seq += 1;
        self.queue.insert((at, self.seq), item);
    }

    /// Runs until `until` (simulated ms) or until nothing is left to do.
    pub fn run(&mut self, until: Ms) {
        loop {
            let next_item = self.queue.keys().next().map(|(t, _)| *t);
            let next_cloud = self.cloud.next_due();
            let next = match (next_item, next_cloud) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.cloud.advance_to(next);
            self.collect_events();
            self.check_facts();
            if let Some(key) = self
                .queue
                .keys()
                .next()
                .copied()
                .filter(|(t, _)| *t <= self.cloud.now)
                && let Some(item) = self.queue.remove(&key)
            {
                self.handle_item(item);
                self.collect_events();
                self.check_facts();
                self.check_state();
            }
            if !self.pending_work() {
                break;
            }
        }
    }

    /// Whether anything can still happen (scripted actions, events in flight, instances waiting).
    fn pending_work(&self) -> bool {
        let waiting = self.cloud.instances.values().any(|i| !i.actions.is_empty());
        let scripted = self
            .queue
            .values()
            .any(|i| matches!(i, Item::Script(_) | Item::Body(_)));
        let running = self
            .cloud
            .deployments
            .values()
            .any(|d| d.status.is_active());
        waiting || scripted || running
    }

    fn collect_events(&mut self) {
        for p in self.cloud.drain() {
            let drop = match p.kind {
                EventKind::CodeDeploy => self.faults.drop_codedeploy,
                EventKind::Lifecycle => self.faults.drop_lifecycle,
                // The simulation's plans have no readiness signal, so no rule of the stack
                // routes a tag change here (gate tags are turnstile's own writes); skipped
                // before any draw, so seeds replay as they did.
                EventKind::Tag => continue,
            };
            if self.rng.chance(drop) {
                continue;
            }
            let body = p.json.to_string();
            let copies = if self.rng.chance(self.faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.range(0, self.faults.max_delay_ms);
                self.push(p.at + delay, Item::Body(body.clone()));
            }
        }
    }

    fn handle_item(&mut self, item: Item) {
        match item {
            Item::Body(body) => {
                self.stats.messages += 1;
                match turnstile_events::parse(&body) {
                    Ok(m) => {
                        if let Some(input) = self.input_of(m) {
                            self.process(input);
                        }
                    }
                    Err(e) => self.violation(format!(
                        "the model published a body the parser rejects: {e}: {body}"
                    )),
                }
            }
            Item::Tick(key) => {
                self.stats.messages += 1;
                self.process(Input::Tick(key));
            }
            Item::Sweep => {
                let now = Millis(self.cloud.now);
                let due: Vec<Key> = self
                    .world
                    .instances
                    .iter()
                    .filter_map(|(id, r)| {
                        r.as_ref()
                            .and_then(|r| r.wake_at)
                            .filter(|w| *w <= now)
                            .map(|_| Key::Instance(id.clone()))
                    })
                    .chain(self.world.groups.iter().filter_map(|(k, r)| {
                        r.as_ref()
                            .and_then(|r| r.wake_at)
                            .filter(|w| *w <= now)
                            .map(|_| Key::Group(k.clone()))
                    }))
                    .collect();
                for key in due {
                    self.process(Input::Tick(key));
                }
                if self.pending_work() {
                    self.push(self.cloud.now + SWEEP_MS, Item::Sweep);
                }
            }
            Item::Script(i) => {
                let Some((_, what)) = self.script.get(i).cloned() else {
                    return;
                };
                self.run_script(what);
            }
        }
    }

    fn run_script(&mut self, what: Script) {
        let plan: Vec<(String, String)> = self
            .plan_groups
            .iter()
            .map(|g| (g.application.clone(), g.deployment_group.clone()))
            .collect();
        self.scripted.apply(&mut self.cloud, &plan, what);
    }

    /// The core's input for a message, as the runner makes it (the launch hook described).
    fn input_of(&mut self, m: Message) -> Option<Input> {
        let hook = m
            .hook_to_describe()
            .and_then(|(asg, hook)| self.cloud.describe_hook(asg, hook));
        let timeouts = hook
            .as_ref()
            .map(|h| HookTimeouts::from_heartbeat(h.heartbeat_secs));
        m.into_input(timeouts, hook.and_then(|h| h.metadata))
            .map(|(input, _)| input)
    }

    /// Decides one input and everything its commands answer, like the runner does.
    pub fn process(&mut self, input: Input) {
        let mut queue = vec![input];
        while !queue.is_empty() {
            let input = queue.remove(0);
            self.stats.inputs += 1;
            let now = Millis(self.cloud.now);
            if let Some(t) = &mut self.trace {
                t.push(format!("{now} IN  {input:?}"));
            }
            let decision = loop {
                match self.engine.decide(&mut self.world, &input, now) {
                    Ok(d) => break d,
                    Err(Missing(keys)) => self.world.insert_absent(keys),
                }
            };
            self.stats.record_writes += decision.changed.len() as u64;
            if let (Some(t), Some(why)) = (&mut self.trace, &decision.ignored) {
                t.push(format!("{now}     ignored: {why}"));
            }
            for c in decision.commands {
                self.stats.commands += 1;
                if let Some(t) = &mut self.trace {
                    t.push(format!("{now}   -> {c:?}"));
                }
                queue.extend(self.execute(c));
            }
        }
    }

    /// Runs one command against the model ([`exec`]) and answers what the runner would. A
    /// call that fails answers nothing: the record's timer re-sends it, as after a port error.
    fn execute(&mut self, c: Command) -> Vec<Input> {
        let now = self.cloud.now;
        let cloud = &mut self.cloud;
        let answer = match c {
            Command::OpenGate { gates, instances } => {
                exec::open_gates(cloud, &gates, &instances);
                None
            }
            Command::CloseGate { gates, instances } => {
                exec::close_gates(cloud, &gates, &instances);
                None
            }
            Command::CreateDeployment {
                group,
                intent,
                config,
                ..
            } => self.create(group, intent, config.as_deref()),
            Command::FindDeployment {
                group,
                intent,
                since,
            } => exec::find_deployment(cloud, &group, &intent, since)
                .ok()
                .map(|outcome| Input::CreateAttempted {
                    group,
                    intent,
                    outcome,
                }),
            Command::StopDeployment { deployment, .. } => {
                let _ = exec::stop_deployment(cloud, &deployment);
                None
            }
            Command::PollDeployment {
                group,
                deployment,
                instances,
            } => exec::poll_deployment(cloud, &deployment, &instances)
                .ok()
                .map(|(state, targets)| Input::DeploymentPolled {
                    group,
                    deployment,
                    state,
                    targets,
                }),
            Command::SealGate {
                group,
                deployment,
                gate,
                instances,
            } => exec::seal_gate(cloud, &deployment, &gate, &instances)
                .ok()
                .map(|state| Input::GateSealed {
                    group,
                    deployment,
                    state,
                }),
            Command::CheckLeave {
                gate,
                instance,
                group,
                done_in,
                since,
            } => exec::check_leave(cloud, &gate, &instance, &group, done_in.as_ref(), since)
                .ok()
                .map(|found| Input::LeaveChecked {
                    instance,
                    group,
                    found,
                }),
            Command::CheckRevisions {
                instance,
                groups,
                asked_at,
                since,
            } => {
                self.invariants.revisions_checked(&instance, now);
                let current = exec::check_revisions(&mut self.cloud, &instance, &groups, since);
                Some(Input::RevisionsChecked {
                    instance,
                    current,
                    asked_at,
                })
            }
            Command::RecordHeartbeat { action } => Some(self.heartbeat(action)),
            Command::CompleteAction { action, result } => Some(self.complete(action, result)),
            Command::WakeOverflowed { group, room } => {
                // The store's `overflow` index: the longest waiting first.
                let mut waiting: Vec<(Millis, turnstile_core::InstanceId)> = self
                    .world
                    .instances
                    .values()
                    .flatten()
                    .filter_map(|i| {
                        let (g, since) = i.overflowed_on()?;
                        (*g == group).then(|| (since, i.id.clone()))
                    })
                    .collect();
                waiting.sort();
                waiting.truncate(room);
                let woken = waiting.len();
                for (_, id) in waiting {
                    self.push(now, Item::Tick(Key::Instance(id)));
                }
                Some(Input::OverflowWoken { group, woken, room })
            }
            Command::Wakeup { key, at } => {
                if !self.rng.chance(self.faults.drop_wakeup) {
                    self.push(at.0.max(now), Item::Tick(key));
                }
                None
            }
            Command::Metric(_) => None,
            Command::Alert(a) => {
                self.stats.alerts.push(a);
                None
            }
        };
        answer.into_iter().collect()
    }

    /// CreateDeployment, checking invariant 2 on a `Busy` answer.
    fn create(&mut self, group: GroupKey, intent: IntentId, config: Option<&str>) -> Option<Input> {
        let outcome = exec::create_deployment(&mut self.cloud, &group, &intent, config, None);
        if let Ok(CreateOutcome::Busy { deployment }) = &outcome {
            self.check_own_busy(&group, &intent, deployment);
        }
        outcome.ok().map(|outcome| Input::CreateAttempted {
            group,
            intent,
            outcome,
        })
    }

    fn heartbeat(&mut self, action: ActionRef) -> Input {
        match exec::record_heartbeat(&mut self.cloud, &action) {
            Ok(()) => Input::HeartbeatRecorded {
                instance: action.instance,
                token: action.token,
                at: Millis(self.cloud.now),
            },
            Err(_) => Input::ActionGone {
                instance: action.instance,
                token: action.token,
            },
        }
    }

    /// Invariant 2, where CreateDeployment runs.
    fn check_own_busy(&mut self, group: &GroupKey, intent: &IntentId, active: &DeploymentId) {
        if let Some(v) = Invariants::own_deployment_busy(&self.cloud, group, intent, active) {
            self.violation(v);
        }
    }

    fn complete(&mut self, action: ActionRef, result: LifecycleResult) -> Input {
        if result == LifecycleResult::Continue {
            self.check_continue(&action);
        }
        match exec::complete_action(&mut self.cloud, &action, result) {
            Ok(()) => Input::ActionCompleted {
                instance: action.instance,
                token: action.token,
            },
            Err(_) => Input::ActionGone {
                instance: action.instance,
                token: action.token,
            },
        }
    }

    /// Invariants 3, 4 and 6 at the moment the orchestrator answers CONTINUE for a launch.
    fn check_continue(&mut self, action: &ActionRef) {
        for v in self
            .invariants
            .on_continue(&self.cloud, &self.world, action)
        {
            self.violation(v);
        }
    }

    /// Invariants 5 and 7, from what the model recorded (reported as they are found).
    fn check_facts(&mut self) {
        let lost = self.faults.drop_lifecycle > 0.0;
        let found = self.invariants.timeouts(&self.cloud, &self.world, lost);
        self.violations.extend(found);
    }

    fn violation(&mut self, v: String) {
        if !self.violations.contains(&v) {
            if let Some(t) = &mut self.trace {
                t.push(format!("{} VIOLATION {v}", self.cloud.now));
            }
            self.violations.push(v);
        }
    }

    /// Invariants that hold at every moment.
    fn check_state(&mut self) {
        for v in Invariants::in_flight(&self.cloud) {
            self.violation(v);
        }
    }

    /// Checks at the end of a run (see [`Invariants::at_end`]).
    pub fn finish(&mut self) {
        for v in Invariants::at_end(&self.cloud, &self.world, &self.stats.alerts) {
            self.violation(v);
        }
    }

    /// Instances launched so far.
    pub fn launched(&self) -> &[String] {
        &self.scripted.launched
    }
}
