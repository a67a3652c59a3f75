//! # turnstile-sim
//!
//! Drives the real core against the AWS model in simulated time: the model's events (real
//! EventBridge JSON) go through the real parser, with duplicates, reordering, delays and losses
//! injected; the core's commands run against the model; the timer path is a periodic sweep plus
//! delayed wakeups. After every step the design brief's invariants (§5) are checked.
//!
//! The command executor here mirrors what the AWS runner does (explicit revision,
//! `updateOutdatedInstancesOnly`, adoption of a deployment that carries the intent).

pub mod scenario;
pub mod timeline;
pub use scenario::{Report, Scenario, StepSpec};

use std::collections::BTreeMap;

use turnstile_core::{
    ActionRef, Alert, AlertKind, Command, CreateOutcome, DeploymentId, DeploymentState, Engine,
    GroupKey, GroupRevision, HookTimeouts, Input, InstanceId, Key, LifecycleResult, Millis,
    Missing, Phase, Plan, Revision, TargetState, World,
};
use turnstile_events::Message;
use turnstile_model::{
    ApiError, Cloud, Creator, DeploymentStatus, EventKind, Fact, HookResult, Ms, Rng, TargetStatus,
    Transition,
};

/// What CodeDeploy would answer about a deployment and some of its targets (GetDeployment and
/// BatchGetDeploymentTargets), in the core's terms.
pub fn deployment_status(
    d: &turnstile_model::Deployment,
    instances: &[InstanceId],
) -> (DeploymentState, Vec<(InstanceId, TargetState)>) {
    let state = match d.status {
        DeploymentStatus::InProgress => DeploymentState::InProgress,
        DeploymentStatus::Succeeded => DeploymentState::Succeeded,
        DeploymentStatus::Failed => DeploymentState::Failed,
        DeploymentStatus::Stopped => DeploymentState::Stopped,
    };
    let targets = instances
        .iter()
        .map(|i| {
            let s = match d.targets.get(&i.0).map(|t| t.status) {
                Some(TargetStatus::Pending) => TargetState::Pending,
                Some(TargetStatus::InProgress) => TargetState::InProgress,
                Some(TargetStatus::Succeeded) => TargetState::Succeeded,
                Some(TargetStatus::Failed) => TargetState::Failed,
                Some(TargetStatus::Skipped) => TargetState::Skipped,
                None => TargetState::Unknown,
            };
            (i.clone(), s)
        })
        .collect();
    (state, targets)
}

/// Marks deployments the orchestrator creates (the real adapter writes the same marker).
pub const INTENT_MARKER: &str = "turnstile intent=";

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
    launched: Vec<String>,
    /// When the orchestrator ran a final revision check per instance (re-runs may follow).
    verified: BTreeMap<String, Vec<Ms>>,
    facts_seen: usize,
    user_revisions: u64,
}

impl Sim {
    pub fn new(
        cloud: Cloud,
        engine: Engine,
        faults: Faults,
        seed: u64,
        plan_groups: Vec<GroupKey>,
    ) -> Self {
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
            launched: Vec::new(),
            verified: BTreeMap::new(),
            facts_seen: 0,
            user_revisions: 0,
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
        match what {
            Script::Launch(n) => {
                let asgs: Vec<String> = self.cloud.asgs.keys().cloned().collect();
                for asg in asgs {
                    let ids = self.cloud.scale_out(&asg, n);
                    self.launched.extend(ids);
                }
            }
            Script::Terminate(n) => {
                if let Some(id) = self.launched.get(n % self.launched.len().max(1)).cloned() {
                    self.cloud.terminate(&id);
                }
            }
            Script::UserDeploy {
                group,
                new_revision,
            } => {
                let Some(key) = self
                    .plan_groups
                    .get(group % self.plan_groups.len().max(1))
                    .cloned()
                else {
                    return;
                };
                let k = (key.application.clone(), key.deployment_group.clone());
                let revision = if new_revision {
                    self.user_revisions += 1;
                    Some(format!("rev-user-{}", self.user_revisions))
                } else {
                    None
                };
                let _ = self.cloud.create_deployment(
                    &k,
                    revision.as_deref(),
                    None,
                    false,
                    "a user's deployment",
                    Creator::User,
                );
            }
        }
    }

    fn input_of(&mut self, m: Message) -> Option<Input> {
        Some(match m {
            Message::Launch(l) => {
                let hook = self
                    .cloud
                    .describe_hook(&l.event.action.asg, &l.event.action.hook)?;
                let plan = Plan::parse(l.metadata.as_deref().unwrap_or(""));
                Input::Launch {
                    event: l.event,
                    plan,
                    timeouts: HookTimeouts::from_heartbeat(hook.heartbeat_secs),
                }
            }
            Message::Terminate(l) => Input::Terminate { event: l.event },
            Message::Deployment {
                event_id,
                group,
                deployment,
                state,
            } => Input::DeploymentEvent {
                event_id,
                group,
                deployment,
                state,
            },
            Message::Target {
                event_id,
                group,
                deployment,
                instance,
                state,
            } => Input::TargetEvent {
                event_id,
                group,
                deployment,
                instance,
                state,
            },
            Message::Wakeup(key) => Input::Tick(key),
            Message::Ignored(_) => return None,
        })
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

    fn execute(&mut self, c: Command) -> Vec<Input> {
        let now = self.cloud.now;
        match c {
            Command::OpenGate { gates, instances } => {
                let ids: Vec<String> = instances.iter().map(|i| i.0.clone()).collect();
                let tags: Vec<(&str, &str)> = gates
                    .iter()
                    .map(|g| (g.key.as_str(), g.value.as_str()))
                    .collect();
                self.cloud.create_tags(&ids, &tags);
                vec![]
            }
            Command::CloseGate { gates, instances } => {
                let ids: Vec<String> = instances.iter().map(|i| i.0.clone()).collect();
                let keys: Vec<&str> = gates.iter().map(|g| g.key.as_str()).collect();
                self.cloud.delete_tags(&ids, &keys);
                vec![]
            }
            Command::CreateDeployment {
                group,
                intent,
                config,
                ..
            } => {
                let k = (group.application.clone(), group.deployment_group.clone());
                let outcome = match self.cloud.get_deployment_group(&k) {
                    Err(e) => CreateOutcome::Failed {
                        reason: format!("{e:?}"),
                        retryable: false,
                    },
                    Ok(g) => match g.target_revision.clone() {
                        None => CreateOutcome::NoRevision,
                        Some(rev) => {
                            let desc = format!("{INTENT_MARKER}{intent}");
                            match self.cloud.create_deployment(
                                &k,
                                Some(&rev),
                                config.as_deref(),
                                true,
                                &desc,
                                Creator::User,
                            ) {
                                Ok(d) => CreateOutcome::Created {
                                    deployment: DeploymentId(d),
                                    revision: Some(Revision(rev)),
                                },
                                Err(ApiError::DeploymentLimitExceeded { active, .. }) => {
                                    let desc_active = self
                                        .cloud
                                        .get_deployment(&active)
                                        .map(|d| (d.description, d.revision))
                                        .ok();
                                    match desc_active {
                                        Some((d, rev)) if d == desc => CreateOutcome::Created {
                                            deployment: DeploymentId(active),
                                            revision: Some(Revision(rev)),
                                        },
                                        Some((d, _)) if d.starts_with(INTENT_MARKER) => {
                                            self.violation(format!("invariant 2: CreateDeployment for {group} ({intent}) while the orchestrator's own {active} ({d}) was active"));
                                            CreateOutcome::Busy {
                                                deployment: DeploymentId(active),
                                            }
                                        }
                                        _ => CreateOutcome::Busy {
                                            deployment: DeploymentId(active),
                                        },
                                    }
                                }
                                Err(e) => CreateOutcome::Failed {
                                    reason: format!("{e:?}"),
                                    retryable: false,
                                },
                            }
                        }
                    },
                };
                vec![Input::CreateAttempted {
                    group,
                    intent,
                    outcome,
                }]
            }
            Command::FindDeployment {
                group,
                intent,
                since,
            } => {
                let k = (group.application.clone(), group.deployment_group.clone());
                let desc = format!("{INTENT_MARKER}{intent}");
                let found = self
                    .cloud
                    .list_deployments(&k, false, since.0)
                    .into_iter()
                    .filter_map(|d| self.cloud.get_deployment(&d).ok())
                    .find(|d| d.description == desc);
                let outcome = match found {
                    Some(d) => CreateOutcome::Created {
                        deployment: DeploymentId(d.id),
                        revision: Some(Revision(d.revision)),
                    },
                    None => CreateOutcome::NotFound,
                };
                vec![Input::CreateAttempted {
                    group,
                    intent,
                    outcome,
                }]
            }
            Command::StopDeployment { deployment, .. } => {
                let _ = self.cloud.stop_deployment(&deployment.0);
                vec![]
            }
            Command::PollDeployment {
                group,
                deployment,
                instances,
            } => {
                let Ok(d) = self.cloud.get_deployment(&deployment.0) else {
                    return vec![];
                };
                let (state, targets) = deployment_status(&d, &instances);
                vec![Input::DeploymentPolled {
                    group,
                    deployment,
                    state,
                    targets,
                }]
            }
            Command::SealGate {
                group,
                deployment,
                gate,
                instances,
            } => {
                let ids: Vec<String> = instances.iter().map(|i| i.0.clone()).collect();
                self.cloud.delete_tags(&ids, &[gate.key.as_str()]);
                let Ok(d) = self.cloud.get_deployment(&deployment.0) else {
                    return vec![];
                };
                let (state, _) = deployment_status(&d, &[]);
                vec![Input::GateSealed {
                    group,
                    deployment,
                    state,
                }]
            }
            Command::CheckLeave {
                gate,
                instance,
                group,
                ..
            } => {
                self.cloud
                    .delete_tags(std::slice::from_ref(&instance.0), &[gate.key.as_str()]);
                // GetDeploymentGroup's last attempted deployment, then its target for the instance.
                let k = (group.application.clone(), group.deployment_group.clone());
                let _ = self.cloud.get_deployment_group(&k);
                let active = self.cloud.active_deployment(&k).map(|d| d.id.clone());
                let blocking = active.and_then(|d| {
                    let dep = self.cloud.get_deployment(&d).ok()?;
                    dep.is_target_in_flight(&instance.0)
                        .then_some(DeploymentId(d))
                });
                vec![Input::LeaveChecked {
                    instance,
                    group,
                    blocking,
                }]
            }
            Command::CheckRevisions { instance, groups } => {
                self.verified
                    .entry(instance.0.clone())
                    .or_default()
                    .push(now);
                let current = groups
                    .into_iter()
                    .map(|g| {
                        let k = (g.application.clone(), g.deployment_group.clone());
                        let revision = self
                            .cloud
                            .get_deployment_group(&k)
                            .ok()
                            .and_then(|x| x.target_revision)
                            .map(Revision);
                        let active = self
                            .cloud
                            .active_deployment(&k)
                            .map(|d| DeploymentId(d.id.clone()));
                        GroupRevision {
                            group: g,
                            revision,
                            active,
                        }
                    })
                    .collect();
                vec![Input::RevisionsChecked { instance, current }]
            }
            Command::RecordHeartbeat { action } => {
                match self.cloud.record_heartbeat(
                    &action.asg,
                    &action.hook,
                    Some(&action.token.0),
                    None,
                ) {
                    Ok(()) => vec![Input::HeartbeatRecorded {
                        instance: action.instance.clone(),
                        token: action.token.clone(),
                        at: Millis(now),
                    }],
                    Err(_) => vec![Input::ActionGone {
                        instance: action.instance,
                        token: action.token,
                    }],
                }
            }
            Command::CompleteAction { action, result } => self.complete(action, result),
            Command::Wakeup { key, at } => {
                if !self.rng.chance(self.faults.drop_wakeup) {
                    self.push(at.0.max(now), Item::Tick(key));
                }
                vec![]
            }
            Command::Metric(_) => vec![],
            Command::Alert(a) => {
                self.stats.alerts.push(a);
                vec![]
            }
        }
    }

    fn complete(&mut self, action: ActionRef, result: LifecycleResult) -> Vec<Input> {
        let r = match result {
            LifecycleResult::Continue => HookResult::Continue,
            LifecycleResult::Abandon => HookResult::Abandon,
        };
        if result == LifecycleResult::Continue {
            self.check_continue(&action);
        }
        match self.cloud.complete_lifecycle_action(
            &action.asg,
            &action.hook,
            Some(&action.token.0),
            None,
            r,
        ) {
            Ok(()) => vec![Input::ActionCompleted {
                instance: action.instance,
                token: action.token,
            }],
            Err(_) => vec![Input::ActionGone {
                instance: action.instance,
                token: action.token,
            }],
        }
    }

    /// Invariants 3, 4 and 6 at the moment the orchestrator answers CONTINUE for a launch.
    fn check_continue(&mut self, action: &ActionRef) {
        for v in self.continue_violations(action) {
            self.violation(v);
        }
    }

    fn continue_violations(&self, action: &ActionRef) -> Vec<String> {
        let mut found = Vec::new();
        let Some(rec) = self.world.instance(&action.instance) else {
            return found;
        };
        if rec.action.token != action.token {
            return found; // a terminate action
        }
        let Some(inst) = self.cloud.instances.get(&action.instance.0) else {
            return found;
        };
        for s in &rec.plan.steps {
            let k = (
                s.group.application.clone(),
                s.group.deployment_group.clone(),
            );
            let installed = inst.installed.get(&k);
            let current = self
                .cloud
                .groups
                .get(&k)
                .and_then(|g| g.target_revision.as_ref());
            if installed != current {
                found.push(format!(
                    "invariant 3/6: CONTINUE for {} but {} has {:?} installed while the group's revision is {:?}",
                    action.instance, s.group, installed, current
                ));
            }
        }
        // Invariant 4: installs follow plan order; going back to an earlier group is only a
        // re-run after a final revision check found it stale.
        let checks = self
            .verified
            .get(&action.instance.0)
            .cloned()
            .unwrap_or_default();
        let mut last: Option<(usize, Ms)> = None;
        for f in &self.cloud.facts {
            let Fact::Installed {
                instance,
                group,
                at,
                ..
            } = f
            else {
                continue;
            };
            if instance != &action.instance.0 {
                continue;
            }
            let Some(i) = rec.plan.steps.iter().position(|s| {
                s.group.application == group.0 && s.group.deployment_group == group.1
            }) else {
                continue;
            };
            if let Some((prev, prev_at)) = last
                && i < prev
                && !checks.iter().any(|c| *c >= prev_at && c <= at)
            {
                found.push(format!(
                    "invariant 4: {} received step {} after step {} without a final check between",
                    action.instance,
                    i + 1,
                    prev + 1
                ));
            }
            last = Some((i, *at));
        }
        found
    }

    /// Invariants that follow from what the model recorded: an action the orchestrator owns
    /// never runs out of time while it is working on it (5, 7).
    fn check_facts(&mut self) {
        let new: Vec<Fact> = self
            .cloud
            .facts
            .get(self.facts_seen..)
            .unwrap_or_default()
            .to_vec();
        self.facts_seen = self.cloud.facts.len();
        for f in new {
            let Fact::TimedOut {
                instance,
                token,
                transition,
                global,
                ..
            } = f
            else {
                continue;
            };
            let rec = self
                .world
                .instance(&InstanceId(instance.clone()))
                .filter(|r| r.action.token.0 == token);
            let verdict = match (transition, rec) {
                // Nobody heard of it: acceptable only when lifecycle events may be lost.
                (_, None) if self.faults.drop_lifecycle > 0.0 => None,
                (Transition::Terminating, None) => {
                    Some("5: a terminate action timed out".to_owned())
                }
                (Transition::Launching, None) => {
                    Some("5: a launch action timed out unrecorded".to_owned())
                }
                (_, Some(rec)) => match &rec.phase {
                    Phase::Held { .. } if global => None,
                    Phase::Finished {
                        outcome: turnstile_core::Outcome::Rejected,
                        ..
                    } => None,
                    phase if global => Some(format!("5 (global timeout) in phase {phase:?}")),
                    phase => Some(format!("7 (heartbeat missed) in phase {phase:?}")),
                },
            };
            if let Some(v) = verdict {
                self.violations
                    .push(format!("invariant {v}: lifecycle action of {instance}"));
            }
        }
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
        // Invariant 1: an instance in its pipeline never has two deployments in flight.
        let mut found = Vec::new();
        for inst in self.cloud.instances.values() {
            if inst.state != turnstile_model::InstanceState::PendingWait {
                continue;
            }
            let on = self.cloud.in_flight_on(&inst.id);
            if on.len() > 1 {
                found.push(format!(
                    "invariant 1: {} has deployments {on:?} in flight",
                    inst.id
                ));
            }
        }
        for v in found {
            self.violation(v);
        }
        // Invariant 2 holds in the model by construction (DeploymentLimitExceeded); the
        // orchestrator fighting its own deployment is caught where CreateDeployment runs.
    }

    /// Checks at the end of a run: every instance past its global timeout reached a terminal
    /// state (younger ones may legitimately still be working when the horizon cuts the run).
    pub fn finish(&mut self) {
        let now = self.cloud.now;
        let mut found = Vec::new();
        for inst in self.cloud.instances.values() {
            let expired = inst.actions.iter().any(|a| a.global_deadline <= now);
            if inst.state == turnstile_model::InstanceState::PendingWait && expired {
                let rec = self.world.instance(&InstanceId(inst.id.clone()));
                let held = rec.is_some_and(|r| matches!(r.phase, Phase::Held { .. }));
                if !held {
                    found.push(format!(
                        "invariant 5: {} still waits at the end (record: {:?})",
                        inst.id,
                        rec.map(|r| &r.phase)
                    ));
                }
            }
        }
        let held_without_alert: Vec<String> = self
            .world
            .instances
            .values()
            .flatten()
            .filter(|r| matches!(r.phase, Phase::Held { .. }))
            .filter(|r| {
                !self.stats.alerts.iter().any(|a| {
                    a.kind == AlertKind::InstanceHeld && a.instance.as_ref() == Some(&r.id)
                })
            })
            .map(|r| r.id.0.clone())
            .collect();
        found.extend(
            held_without_alert
                .into_iter()
                .map(|id| format!("invariant 5: {id} held without an alert")),
        );
        for v in found {
            self.violation(v);
        }
    }

    /// Instances launched so far.
    pub fn launched(&self) -> &[String] {
        &self.launched
    }
}
