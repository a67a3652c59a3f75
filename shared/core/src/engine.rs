//! `decide(world, input, now) -> decision`: the whole orchestration logic, with no I/O.
//!
//! The rules (design brief §3), each implemented in one place below:
//! - **one deployment at a time per instance, in plan order**: an instance joins the waiting
//!   list of exactly one group (its current step) and carries only that group's gate, and
//!   only until its deployment exists (the **seal**: CodeDeploy fixes in-place targets at
//!   creation, so the gate is closed behind them and the instance needs no leave check);
//! - **one active deployment per group, batched**: a free group admits every waiting instance
//!   (up to `maxBatch`) into one deployment, after a short batch window; a busy group is waited
//!   on, never fought;
//! - **per-instance advance**: an instance moves on as soon as its own target finished;
//! - **heartbeats** well before half the heartbeat timeout, never planning past the global
//!   timeout (fail early when the remaining plan cannot fit);
//! - **retries** with exponential back-off, then the step's on-failure policy;
//! - **CONTINUE only when every step succeeded**, after a final revision check that re-runs
//!   any step whose group moved on, and only after every gate is open;
//! - **termination and "action gone"** end the pipeline, stop a deployment that serves only that
//!   instance and release what it held;
//! - the **repeated-failure breaker** holds instead of feeding an abandon/relaunch loop;
//! - **dedupe** on lifecycle token and event id; every other input is idempotent by state.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::*;
use crate::io::*;
use crate::plan::{OnFailure, Plan, PlanError, WarmPoolPolicy};
use crate::state::*;

/// Below this heartbeat timeout the periodic sweep (every 60 s, EventBridge's finest schedule)
/// cannot cover a lost timer message: 0.4 × timeout + 60 s must stay under the timeout.
pub const MIN_ROBUST_HEARTBEAT_SECS: u64 = 120;

/// Tunables of the engine. The defaults are what the functions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Ask CodeDeploy directly when a deployment has been quiet this long.
    pub poll_interval_ms: u64,
    /// A creation intent older than this is presumed to belong to a crashed invocation.
    /// Must exceed the queue function's timeout.
    pub create_lease_ms: u64,
    /// Heartbeat after this many thousandths of the heartbeat timeout (must stay below 500).
    pub heartbeat_permille: u64,
    /// Re-send `CheckRevisions` / `CompleteLifecycleAction` when unanswered this long.
    pub resend_ms: u64,
    /// Back-off after a retryable `CreateDeployment` failure.
    pub create_retry_ms: u64,
    /// How many recent event ids a record remembers.
    pub seen_capacity: usize,
    /// A pipeline still working this close to the global timeout fails rather than let the
    /// hook's default result decide.
    pub deadline_guard_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            poll_interval_ms: 60_000,
            create_lease_ms: 90_000,
            heartbeat_permille: 400,
            resend_ms: 30_000,
            create_retry_ms: 15_000,
            seen_capacity: 32,
            deadline_guard_ms: 30_000,
        }
    }
}

/// The records a decision may read, as loaded by the runner. `None` means "loaded, absent".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub instances: BTreeMap<InstanceId, Option<Instance>>,
    pub groups: BTreeMap<GroupKey, Option<Group>>,
}

impl World {
    pub fn instance(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.get(id).and_then(Option::as_ref)
    }
    pub fn group(&self, key: &GroupKey) -> Option<&Group> {
        self.groups.get(key).and_then(Option::as_ref)
    }

    /// Records the keys as loaded and absent (a store that has none of them).
    pub fn insert_absent(&mut self, keys: impl IntoIterator<Item = Key>) {
        for k in keys {
            match k {
                Key::Instance(i) => {
                    self.instances.entry(i).or_insert(None);
                }
                Key::Group(g) => {
                    self.groups.entry(g).or_insert(None);
                }
            }
        }
    }
}

/// What a decision changed and what must happen next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub commands: Vec<Command>,
    /// Records whose content changed (the runner writes exactly these, conditionally).
    pub changed: BTreeSet<Key>,
    /// Why nothing happened, for the log, when the input was a duplicate or stale.
    pub ignored: Option<String>,
}

/// The decision needs records the runner has not loaded yet; load them and decide again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("records not loaded: {0:?}")]
pub struct Missing(pub Vec<Key>);

#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub config: Config,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// Every record `input` may touch, given what is loaded so far. The runner loads these
    /// (at most two rounds: the instance, then the groups of its plan).
    pub fn keys_for(&self, world: &World, input: &Input) -> Vec<Key> {
        let (instances, groups) = primary_keys(input);
        let mut keys: BTreeSet<Key> = instances.iter().cloned().map(Key::Instance).collect();
        keys.extend(groups.into_iter().map(Key::Group));
        for id in &instances {
            if let Some(inst) = world.instance(id) {
                keys.extend(inst.plan.steps.iter().map(|s| Key::Group(s.group.clone())));
            }
        }
        keys.into_iter().collect()
    }

    /// The records `input` is about (its instance, its group), without the plan's groups:
    /// the ones the timer would look at to follow up on it.
    pub fn records_of(input: &Input) -> Vec<Key> {
        let (instances, groups) = primary_keys(input);
        instances
            .into_iter()
            .map(Key::Instance)
            .chain(groups.into_iter().map(Key::Group))
            .collect()
    }

    /// Decides what `input` means at `now`, updating `world` in place.
    pub fn decide(
        &self,
        world: &mut World,
        input: &Input,
        now: Millis,
    ) -> Result<Decision, Missing> {
        let missing: Vec<Key> = self
            .keys_for(world, input)
            .into_iter()
            .filter(|k| match k {
                Key::Instance(i) => !world.instances.contains_key(i),
                Key::Group(g) => !world.groups.contains_key(g),
            })
            .collect();
        if !missing.is_empty() {
            return Err(Missing(missing));
        }
        let before = world.clone();
        let (instances, groups) = primary_keys(input);
        let mut touched: BTreeSet<Key> = instances.into_iter().map(Key::Instance).collect();
        touched.extend(groups.into_iter().map(Key::Group));
        let mut cx = Cx {
            cfg: &self.config,
            w: world,
            now,
            out: Vec::new(),
            ignored: None,
            touched,
        };
        cx.handle(input);
        cx.finish(&before)
    }
}

fn primary_keys(input: &Input) -> (Vec<InstanceId>, Vec<GroupKey>) {
    match input {
        Input::Launch { event, plan, .. } => (
            vec![event.action.instance.clone()],
            plan.as_ref()
                .map(|p| p.steps.iter().map(|s| s.group.clone()).collect())
                .unwrap_or_default(),
        ),
        Input::Terminate { event } => (vec![event.action.instance.clone()], vec![]),
        Input::DeploymentEvent { group, .. }
        | Input::DeploymentPolled { group, .. }
        | Input::CreateAttempted { group, .. }
        | Input::GateSealed { group, .. }
        | Input::ResetBreaker { group } => (vec![], vec![group.clone()]),
        Input::TargetEvent {
            group, instance, ..
        } => (vec![instance.clone()], vec![group.clone()]),
        Input::RevisionsChecked { instance, .. }
        | Input::LeaveChecked { instance, .. }
        | Input::HeartbeatRecorded { instance, .. }
        | Input::ActionCompleted { instance, .. }
        | Input::ActionGone { instance, .. }
        | Input::Operator { instance, .. } => (vec![instance.clone()], vec![]),
        Input::Tick(Key::Instance(i)) => (vec![i.clone()], vec![]),
        Input::Tick(Key::Group(g)) => (vec![], vec![g.clone()]),
    }
}

/// Whether `event` is among a record's recent event ids; remembers it if not.
fn seen_before(seen: Option<&mut Vec<EventId>>, event: Option<&EventId>, cap: usize) -> bool {
    let (Some(seen), Some(event)) = (seen, event) else {
        return false;
    };
    if seen.contains(event) {
        return true;
    }
    Cx::remember(seen, event, cap);
    false
}

/// When a group may admit an instance that just joined its waiting list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// At once (a re-run, an operator retry, the last of a batch).
    Now,
    /// After the batch window, so that instances launched together share a deployment.
    Window,
    /// After the batch-follow window, unless the batch-mates catch up sooner.
    Follow,
}

/// Where an instance stands in its current group.
enum Standing {
    Waiting,
    /// Served by a deployment whose result for it is not known yet.
    InFlight {
        deployment: Option<DeploymentId>,
        admitted_at: Millis,
        /// Whether no other member of that deployment is still pending.
        sole: bool,
    },
    /// A result is known.
    Done(StepResult),
    /// Not known to the group at all (its record was lost or reset).
    Absent,
}

enum StepResult {
    Success {
        revision: Option<Revision>,
        deployment: Option<DeploymentId>,
        /// The deployment was sealed ([`Seal`]): nothing else can hold the instance.
        sealed: bool,
    },
    Failure(String),
}

struct Cx<'a> {
    cfg: &'a Config,
    w: &'a mut World,
    now: Millis,
    out: Vec<Command>,
    ignored: Option<String>,
    /// Instances and groups whose timers must be recomputed.
    touched: BTreeSet<Key>,
}

impl Cx<'_> {
    fn handle(&mut self, input: &Input) {
        match input {
            Input::Launch {
                event,
                plan,
                timeouts,
            } => self.on_launch(event, plan, *timeouts),
            Input::Terminate { event } => self.on_terminate(event),
            Input::DeploymentEvent {
                event_id,
                group,
                deployment,
                state,
            } => {
                if self.group_seen(group, event_id.as_ref()) {
                    return;
                }
                self.on_deployment(group, deployment, *state, &[]);
            }
            Input::DeploymentPolled {
                group,
                deployment,
                state,
                targets,
            } => self.on_deployment(group, deployment, *state, targets),
            Input::TargetEvent {
                event_id,
                group,
                deployment,
                instance,
                state,
            } => {
                if self.instance_seen(instance, event_id.as_ref()) {
                    return;
                }
                self.on_target(group, deployment, instance, *state);
            }
            Input::CreateAttempted {
                group,
                intent,
                outcome,
            } => self.on_create_outcome(group, intent, outcome),
            Input::GateSealed {
                group,
                deployment,
                state,
            } => self.on_gate_sealed(group, deployment, *state),
            Input::RevisionsChecked { instance, current } => self.on_revisions(instance, current),
            Input::LeaveChecked {
                instance,
                group,
                blocking,
            } => self.on_leave_checked(instance, group, blocking),
            Input::HeartbeatRecorded {
                instance,
                token,
                at,
            } => {
                if let Some(inst) = self.inst_mut(instance)
                    && &inst.action.token == token
                {
                    inst.last_heartbeat = inst.last_heartbeat.max(*at);
                    inst.heartbeat_sent = None;
                    self.probe_answered(instance, *at);
                }
            }
            Input::ActionCompleted { instance, token } => self.on_completed(instance, token),
            Input::ActionGone { instance, token } => self.on_gone(instance, token),
            Input::Tick(Key::Instance(i)) => self.on_instance_tick(i),
            Input::Tick(Key::Group(g)) => self.on_group_tick(g),
            Input::Operator { instance, action } => self.on_operator(instance, *action),
            Input::ResetBreaker { group } => {
                if let Some(g) = self.group_mut(group) {
                    g.breaker = Breaker::default();
                }
            }
        }
    }

    // ---- record access ----------------------------------------------------------------------

    fn inst(&self, id: &InstanceId) -> Option<&Instance> {
        self.w.instance(id)
    }
    fn inst_mut(&mut self, id: &InstanceId) -> Option<&mut Instance> {
        self.touched.insert(Key::Instance(id.clone()));
        self.w.instances.get_mut(id).and_then(Option::as_mut)
    }
    fn group_mut(&mut self, key: &GroupKey) -> Option<&mut Group> {
        self.touched.insert(Key::Group(key.clone()));
        self.w.groups.get_mut(key).and_then(Option::as_mut)
    }

    fn ignore(&mut self, why: impl Into<String>) {
        self.ignored = Some(why.into());
    }

    fn remember(seen: &mut Vec<EventId>, id: &EventId, cap: usize) {
        seen.push(id.clone());
        if seen.len() > cap {
            let excess = seen.len() - cap;
            seen.drain(..excess);
        }
    }

    /// Dedupe on event id for instance-keyed inputs. Returns true for a duplicate.
    fn instance_seen(&mut self, id: &InstanceId, event: Option<&EventId>) -> bool {
        let seen = self
            .w
            .instances
            .get_mut(id)
            .and_then(Option::as_mut)
            .map(|i| &mut i.seen);
        let duplicate = seen_before(seen, event, self.cfg.seen_capacity);
        self.note_duplicate(duplicate, event)
    }

    /// Dedupe on event id for group-keyed inputs. Returns true for a duplicate.
    fn group_seen(&mut self, key: &GroupKey, event: Option<&EventId>) -> bool {
        let seen = self
            .w
            .groups
            .get_mut(key)
            .and_then(Option::as_mut)
            .map(|g| &mut g.seen);
        let duplicate = seen_before(seen, event, self.cfg.seen_capacity);
        self.note_duplicate(duplicate, event)
    }

    fn note_duplicate(&mut self, duplicate: bool, event: Option<&EventId>) -> bool {
        if let (true, Some(e)) = (duplicate, event) {
            self.ignore(format!("duplicate event {e}"));
        }
        duplicate
    }

    fn metric(
        &mut self,
        name: MetricName,
        value: f64,
        unit: MetricUnit,
        asg: Option<String>,
        group: Option<GroupKey>,
    ) {
        self.out.push(Command::Metric(Metric {
            name,
            value,
            unit,
            asg,
            group,
        }));
    }

    fn alert(
        &mut self,
        kind: AlertKind,
        instance: Option<&InstanceId>,
        group: Option<&GroupKey>,
        message: String,
    ) {
        self.out.push(Command::Alert(Alert {
            kind,
            instance: instance.cloned(),
            group: group.cloned(),
            message,
        }));
    }

    // ---- lifecycle events -------------------------------------------------------------------

    fn on_launch(
        &mut self,
        ev: &LifecycleEvent,
        plan: &Result<Plan, PlanError>,
        timeouts: HookTimeouts,
    ) {
        let id = &ev.action.instance;
        if let Some(existing) = self.inst(id) {
            if existing.action.token == ev.action.token {
                self.ignore(format!("duplicate lifecycle token {}", ev.action.token));
                return;
            }
            if !existing.phase.is_finished() {
                // Auto Scaling issued a new action for this instance: the old one is over.
                self.end_pipeline(id, Outcome::Gone);
            }
        }
        let started_at = ev.time.min(self.now);
        let plan_ok = plan.as_ref().ok().cloned();
        let mut inst = Instance {
            id: id.clone(),
            action: ev.action.clone(),
            plan: plan_ok.clone().unwrap_or(Plan {
                steps: Vec::new(),
                warm_pool: WarmPoolPolicy::DeployOnExit,
                batch_window_secs: 0,
                batch_follow_secs: 0,
                max_batch: 1,
                breaker: crate::plan::BreakerPolicy {
                    threshold: 1,
                    window_secs: 1,
                },
            }),
            timeouts,
            started_at,
            global_deadline: started_at.plus_secs(timeouts.global_secs),
            last_heartbeat: started_at,
            heartbeat_sent: None,
            steps: vec![StepRecord::default(); plan_ok.as_ref().map_or(0, |p| p.steps.len())],
            phase: Phase::Finished {
                outcome: Outcome::Rejected,
                at: self.now,
            },
            seen: Vec::new(),
            wake_at: None,
        };
        if let Some(e) = &ev.event_id {
            Self::remember(&mut inst.seen, e, self.cfg.seen_capacity);
        }
        self.w.instances.insert(id.clone(), Some(inst));
        self.touched.insert(Key::Instance(id.clone()));

        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                self.alert(
                    AlertKind::PlanInvalid,
                    Some(id),
                    None,
                    format!(
                        "lifecycle hook {} of {}: {e}; instance left to the hook's default result",
                        ev.action.hook, ev.action.asg
                    ),
                );
                return;
            }
        };

        let deploy = !matches!(
            (ev.origin, ev.destination, plan.warm_pool),
            (_, Some(Place::WarmPool), WarmPoolPolicy::DeployOnExit)
                | (Some(Place::WarmPool), _, WarmPoolPolicy::DeployOnEntry)
        );
        if !deploy {
            self.complete(
                id,
                LifecycleResult::Continue,
                "warm-pool transition the plan does not deploy on".into(),
            );
            return;
        }
        if timeouts.heartbeat_secs < MIN_ROBUST_HEARTBEAT_SECS {
            self.alert(
                AlertKind::HeartbeatTimeoutTooShort,
                Some(id),
                None,
                format!(
                    "lifecycle hook {} has a {} s heartbeat timeout: below {MIN_ROBUST_HEARTBEAT_SECS} s a single lost timer message can miss a heartbeat; raise it",
                    ev.action.hook, timeouts.heartbeat_secs
                ),
            );
        }
        let need: u64 = plan.steps.iter().map(|s| s.timeout_secs).sum();
        if need > timeouts.global_secs {
            // A configuration error: every replacement would fail the same way, so hold
            // rather than feed an abandon/relaunch loop.
            let why = format!(
                "the plan's step timeouts add up to {need} s but the hook's global timeout is {} s (100 × heartbeat timeout, at most 48 h)",
                timeouts.global_secs
            );
            self.alert(AlertKind::PlanCannotFit, Some(id), None, why.clone());
            self.hold(id, None, why);
            return;
        }
        self.start_attempt(id, 0, Admit::Window);
    }

    fn on_terminate(&mut self, ev: &LifecycleEvent) {
        let id = &ev.action.instance;
        if let Some(inst) = self.inst(id)
            && !inst.phase.is_finished()
        {
            self.end_pipeline(id, Outcome::Terminated);
        }
        self.out.push(Command::CompleteAction {
            action: ev.action.clone(),
            result: LifecycleResult::Continue,
        });
    }

    fn on_completed(&mut self, id: &InstanceId, token: &Token) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        if &inst.action.token != token {
            return;
        }
        if let Phase::Completing { result, .. } = inst.phase {
            let all_done = inst.steps.iter().all(|s| s.installed.is_some());
            let outcome = match result {
                LifecycleResult::Abandon => Outcome::Abandoned,
                LifecycleResult::Continue if all_done && !inst.steps.is_empty() => {
                    Outcome::InService
                }
                LifecycleResult::Continue => Outcome::PassedThrough,
            };
            inst.phase = Phase::Finished { outcome, at: now };
        }
    }

    fn on_gone(&mut self, id: &InstanceId, token: &Token) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        if &inst.action.token != token || inst.phase.is_finished() {
            self.ignore("action-gone for an action already finished or replaced");
            return;
        }
        if let Phase::Completing { result, .. } = inst.phase {
            // Our completion landed earlier (the answer was lost) or the action timed out:
            // either way it is over and must not be completed again.
            let outcome = match result {
                LifecycleResult::Continue => Outcome::InService,
                LifecycleResult::Abandon => Outcome::Abandoned,
            };
            let now = self.now;
            if let Some(inst) = self.inst_mut(id) {
                inst.phase = Phase::Finished { outcome, at: now };
            }
            return;
        }
        self.end_pipeline(id, Outcome::Gone);
    }

    // ---- steps ------------------------------------------------------------------------------

    /// Starts an attempt of `step`: joins the group's waiting list.
    fn start_attempt(&mut self, id: &InstanceId, step: usize, admit: Admit) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        let remaining = inst.remaining_secs(step);
        let left = inst.global_deadline.since(now) / 1000;
        if now.plus_secs(remaining) > inst.global_deadline {
            self.fail_instance(
                id,
                Some(step),
                format!(
                    "the remaining plan needs up to {remaining} s but only {left} s are left before the lifecycle hook's global timeout"
                ),
                Some(AlertKind::PlanCannotFit),
            );
            return;
        }
        let max_batch = inst.plan.max_batch;
        let wait = match admit {
            Admit::Now => 0,
            Admit::Window => inst.plan.batch_window_secs,
            Admit::Follow => inst.plan.batch_follow_secs,
        };
        if let Some(inst) = self.inst_mut(id) {
            if let Some(r) = inst.steps.get_mut(step) {
                r.attempts += 1;
                r.started_at.get_or_insert(now);
            }
            inst.phase = Phase::Running {
                step,
                wait: StepWait::Queued { since: now },
            };
        }
        let group = self
            .w
            .groups
            .entry(s.group.clone())
            .or_insert(None)
            .get_or_insert_with(|| Group::new(s.group.clone(), s.gate.clone()));
        group.gate = s.gate.clone();
        group.config = s.deployment_config.clone();
        group.max_batch = max_batch;
        group.waiting.insert(id.clone(), now);
        let at = now.plus_secs(wait);
        group.admit_at = Some(group.admit_at.map_or(at, |a| a.min(at)));
        self.touched.insert(Key::Group(s.group.clone()));
        self.try_admit(&s.group);
    }

    /// Admits the waiting batch into one deployment if the group is free and the window closed.
    fn try_admit(&mut self, key: &GroupKey) {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return;
        };
        if g.active.is_some() || g.waiting.is_empty() || g.admit_at.is_none_or(|a| a > now) {
            return;
        }
        let mut queue: Vec<(Millis, InstanceId)> =
            g.waiting.iter().map(|(i, t)| (*t, i.clone())).collect();
        queue.sort();
        let batch: Vec<InstanceId> = queue
            .into_iter()
            .take(g.max_batch.max(1) as usize)
            .map(|(_, i)| i)
            .collect();
        let mut members = BTreeMap::new();
        for i in &batch {
            g.waiting.remove(i);
            members.insert(
                i.clone(),
                Member {
                    admitted_at: now,
                    status: MemberStatus::Pending,
                },
            );
        }
        let intent = IntentId(format!("{}-{}", now.0, g.seq));
        g.seq += 1;
        g.active = Some(Active::Creating {
            intent: intent.clone(),
            members,
            since: now,
            recovering: false,
        });
        g.admit_at = if g.waiting.is_empty() {
            None
        } else {
            Some(now)
        };
        let (gate, config) = (g.gate.clone(), g.config.clone());
        self.out.push(Command::OpenGate {
            gates: vec![gate],
            instances: batch.clone(),
        });
        self.out.push(Command::CreateDeployment {
            group: key.clone(),
            intent,
            instances: batch,
            config,
        });
    }

    /// Where `id` stands in `key`, without changing anything.
    fn standing(&self, id: &InstanceId, key: &GroupKey) -> Standing {
        let Some(g) = self.w.group(key) else {
            return Standing::Absent;
        };
        if g.waiting.contains_key(id) {
            return Standing::Waiting;
        }
        let sole = |members: &BTreeMap<InstanceId, Member>| {
            !members
                .iter()
                .any(|(i, m)| i != id && m.status == MemberStatus::Pending)
        };
        match &g.active {
            Some(Active::Creating { members, .. }) => {
                if let Some(m) = members.get(id) {
                    return Standing::InFlight {
                        deployment: None,
                        admitted_at: m.admitted_at,
                        sole: sole(members),
                    };
                }
            }
            Some(Active::Ours {
                members,
                deployment,
                revision,
                seal,
                ..
            }) => {
                if let Some(m) = members.get(id) {
                    return match m.status {
                        MemberStatus::Succeeded => Standing::Done(StepResult::Success {
                            revision: revision.clone(),
                            deployment: Some(deployment.clone()),
                            sealed: *seal == Seal::Sealed,
                        }),
                        MemberStatus::Failed => Standing::Done(StepResult::Failure(format!(
                            "deployment {deployment} failed on the instance"
                        ))),
                        // Skipped means "up to date" only if the deployment succeeds.
                        MemberStatus::Pending | MemberStatus::Skipped => Standing::InFlight {
                            deployment: Some(deployment.clone()),
                            admitted_at: m.admitted_at,
                            sole: sole(members),
                        },
                    };
                }
            }
            Some(Active::Foreign { .. }) | None => {}
        }
        for s in &g.settling {
            let Some(m) = s.members.get(id) else {
                continue;
            };
            let dep = s.deployment.as_ref().map_or_else(
                || "the deployment".to_owned(),
                |d| format!("deployment {d}"),
            );
            return match (s.outcome, m.status) {
                // Nothing was deployed, so nothing sealed the gate: the leave check closes it.
                (DeploymentEnd::NothingToDeploy, _) => Standing::Done(StepResult::Success {
                    revision: None,
                    deployment: None,
                    sealed: false,
                }),
                (DeploymentEnd::NotCreated, _) => Standing::Done(StepResult::Failure(
                    "the deployment could not be created".into(),
                )),
                (_, MemberStatus::Succeeded)
                | (DeploymentEnd::Succeeded, MemberStatus::Skipped) => {
                    Standing::Done(StepResult::Success {
                        revision: s.revision.clone(),
                        deployment: s.deployment.clone(),
                        sealed: s.sealed,
                    })
                }
                (_, MemberStatus::Failed) => {
                    Standing::Done(StepResult::Failure(format!("{dep} failed on the instance")))
                }
                (end, MemberStatus::Skipped) => Standing::Done(StepResult::Failure(format!(
                    "{dep} ended {end:?} before reaching the instance"
                ))),
                (_, MemberStatus::Pending) => Standing::InFlight {
                    deployment: s.deployment.clone(),
                    admitted_at: m.admitted_at,
                    sole: false,
                },
            };
        }
        Standing::Absent
    }

    /// Removes `id` from every list of `key` and returns whether a deployment it was the last
    /// pending member of must be stopped.
    fn leave_group(&mut self, id: &InstanceId, key: &GroupKey) -> Option<DeploymentId> {
        let g = self.group_mut(key)?;
        g.waiting.remove(id);
        let mut stop = None;
        if let Some(active) = &mut g.active {
            let deployment = active.deployment().cloned();
            if let Some(members) = active.members_mut()
                && let Some(m) = members.remove(id)
            {
                let others_pending = members.values().any(|m| m.status == MemberStatus::Pending);
                if m.status == MemberStatus::Pending && !others_pending {
                    stop = deployment;
                }
            }
        }
        for s in &mut g.settling {
            s.members.remove(id);
        }
        g.settling.retain(|s| !s.members.is_empty());
        if g.waiting.is_empty() {
            g.admit_at = None;
        }
        stop
    }

    /// Picks up the result of the current step, if the group has one for this instance.
    fn resolve(&mut self, id: &InstanceId) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Running { step, wait } = inst.phase.clone() else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step) else {
            return;
        };
        let key = s.group.clone();
        match (wait, self.standing(id, &key)) {
            (StepWait::Backoff { until }, _) => {
                if self.now >= until {
                    self.start_attempt(id, step, Admit::Window);
                }
            }
            // Waiting for the leave check (answered by `LeaveChecked`, re-sent by the timer).
            (StepWait::Leaving { .. }, _) => {}
            (_, Standing::Waiting) => {}
            (StepWait::Queued { .. }, Standing::Absent) => {
                // The group forgot the instance (record lost or reset): queue it again.
                self.start_attempt_again(id, step);
            }
            (StepWait::Draining { .. }, Standing::Absent) => {
                self.step_failed(id, step, "the attempt timed out".into());
            }
            (StepWait::Queued { .. }, Standing::InFlight { .. })
            | (StepWait::Draining { .. }, Standing::InFlight { .. }) => {}
            (wait, Standing::Done(result)) => {
                let hold_back = self.mates_to_come(id, &key);
                self.leave_group(id, &key);
                match (wait, result) {
                    (StepWait::Draining { .. }, _) => {
                        self.step_failed(id, step, "the attempt timed out".into())
                    }
                    (
                        _,
                        StepResult::Success {
                            revision,
                            sealed: true,
                            ..
                        },
                    ) => {
                        // Sealed: nothing else can hold the instance, so no leave check.
                        let admit = if hold_back { Admit::Follow } else { Admit::Now };
                        self.step_succeeded(id, step, revision, admit);
                    }
                    (
                        _,
                        StepResult::Success {
                            revision,
                            deployment,
                            sealed: false,
                        },
                    ) => self.leave(id, step, revision, deployment, hold_back),
                    (_, StepResult::Failure(why)) => {
                        self.step_failed(id, step, why);
                        if !hold_back {
                            self.nudge_next(id, step);
                        }
                    }
                }
            }
        }
    }

    /// The last pending member of a batch failed: batch-mates that already moved on to the
    /// next group need not wait out the follow window for it.
    fn nudge_next(&mut self, id: &InstanceId, step: usize) {
        let now = self.now;
        let Some(next) = self
            .inst(id)
            .and_then(|i| i.plan.steps.get(step + 1))
            .map(|s| s.group.clone())
        else {
            return;
        };
        if let Some(g) = self.group_mut(&next)
            && !g.waiting.is_empty()
            && g.admit_at.is_some_and(|a| a > now)
        {
            g.admit_at = Some(now);
        }
        self.try_admit(&next);
    }

    /// A step of an unsealed deployment succeeded: close its gate, then confirm nothing else
    /// holds the instance (one command, which the runner may run before this decision is
    /// committed).
    fn leave(
        &mut self,
        id: &InstanceId,
        step: usize,
        revision: Option<Revision>,
        done_in: Option<DeploymentId>,
        hold_back: bool,
    ) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        inst.phase = Phase::Running {
            step,
            wait: StepWait::Leaving {
                since: now,
                revision,
                hold_back,
                blocked_by: None,
            },
        };
        self.out.push(Command::CheckLeave {
            gate: s.gate,
            instance: id.clone(),
            group: s.group,
            done_in,
        });
    }

    fn on_leave_checked(
        &mut self,
        id: &InstanceId,
        key: &GroupKey,
        blocking: &Option<DeploymentId>,
    ) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Running {
            step,
            wait:
                StepWait::Leaving {
                    revision,
                    hold_back,
                    blocked_by,
                    ..
                },
        } = inst.phase.clone()
        else {
            self.ignore("leave check answer for an instance that is not leaving");
            return;
        };
        if inst.plan.steps.get(step).map(|s| &s.group) != Some(key) {
            self.ignore("leave check answer for another step");
            return;
        }
        let Some(d) = blocking else {
            if blocked_by.is_some() {
                // Another deployment ran on the instance after our step finished: what it left
                // there is unknown, so the step runs again (updateOutdatedInstancesOnly makes
                // that a no-op if nothing changed). Not a failure: no retry is spent.
                self.start_attempt_again(id, step);
            } else {
                let admit = if hold_back { Admit::Follow } else { Admit::Now };
                self.step_succeeded(id, step, revision, admit);
            }
            return;
        };
        // A deployment created while the gate was open still has the instance: wait for it.
        if let Some(inst) = self.inst_mut(id) {
            inst.phase = Phase::Running {
                step,
                wait: StepWait::Leaving {
                    since: now,
                    revision,
                    hold_back,
                    blocked_by: Some(d.clone()),
                },
            };
        }
        if let Some(g) = self.group_mut(key)
            && g.active.is_none()
        {
            g.active = Some(Active::Foreign {
                deployment: d.clone(),
                since: now,
                polled_at: now,
            });
        }
    }

    /// Like `start_attempt` but without counting a new attempt.
    fn start_attempt_again(&mut self, id: &InstanceId, step: usize) {
        if let Some(r) = self.inst_mut(id).and_then(|i| i.steps.get_mut(step)) {
            r.attempts = r.attempts.saturating_sub(1);
        }
        self.start_attempt(id, step, Admit::Now);
    }

    /// Whether batch-mates of `id` in `key` have yet to move on: members of the same deployment
    /// whose result is not a failure, whether still pending or finished but not picked up yet
    /// (each instance resolves on its own record, so the group's answer reaches them one by
    /// one). They will probably join the next group too: wait for them, up to
    /// `batchFollowSecs`; the last one to come admits the batch at once. A failed member retries
    /// its step and is not waited for.
    fn mates_to_come(&self, id: &InstanceId, key: &GroupKey) -> bool {
        let Some(g) = self.w.group(key) else {
            return false;
        };
        let mates = match g.active.as_ref().and_then(Active::members) {
            Some(members) if members.contains_key(id) => members,
            _ => match g.settling.iter().find(|s| s.members.contains_key(id)) {
                Some(s) => &s.members,
                None => return false,
            },
        };
        mates.keys().any(|mate| {
            mate != id
                && !matches!(
                    self.standing(mate, key),
                    Standing::Done(StepResult::Failure(_))
                )
        })
    }

    fn step_succeeded(
        &mut self,
        id: &InstanceId,
        step: usize,
        revision: Option<Revision>,
        admit: Admit,
    ) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        let asg = inst.action.asg.clone();
        let mut took = 0;
        if let Some(r) = inst.steps.get_mut(step) {
            r.installed = Some(revision);
            r.finished_at = Some(now);
            took = r.started_at.map_or(0, |t| now.since(t));
        }
        let next = inst.steps.iter().position(|r| r.installed.is_none());
        self.metric(
            MetricName::StepDuration,
            took as f64,
            MetricUnit::Milliseconds,
            Some(asg),
            Some(s.group.clone()),
        );
        if let Some(g) = self.group_mut(&s.group) {
            g.breaker = Breaker::default();
        }
        match next {
            Some(n) => self.start_attempt(id, n, admit),
            None => self.verify(id),
        }
    }

    fn verify(&mut self, id: &InstanceId) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Verifying { since: now };
        let groups = inst.plan.steps.iter().map(|s| s.group.clone()).collect();
        self.out.push(Command::CheckRevisions {
            instance: id.clone(),
            groups,
        });
    }

    fn step_failed(&mut self, id: &InstanceId, step: usize, why: String) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let Some(s) = inst.plan.steps.get(step).cloned() else {
            return;
        };
        let asg = inst.action.asg.clone();
        let attempts = inst.steps.get(step).map_or(0, |r| r.attempts);
        self.out.push(Command::CloseGate {
            gates: vec![s.gate.clone()],
            instances: vec![id.clone()],
        });
        if attempts <= s.retries {
            let backoff = s
                .retry_backoff_secs
                .saturating_mul(1 << attempts.saturating_sub(1).min(16));
            if let Some(inst) = self.inst_mut(id) {
                inst.phase = Phase::Running {
                    step,
                    wait: StepWait::Backoff {
                        until: now.plus_secs(backoff),
                    },
                };
            }
            self.metric(
                MetricName::StepRetry,
                1.0,
                MetricUnit::Count,
                Some(asg),
                Some(s.group),
            );
            return;
        }
        self.fail_instance(
            id,
            Some(step),
            format!(
                "step {} ({}) failed after {attempts} attempt(s): {why}",
                step + 1,
                s.group
            ),
            None,
        );
    }

    /// Applies the step's on-failure policy (and the breaker) to a failed pipeline.
    fn fail_instance(
        &mut self,
        id: &InstanceId,
        step: Option<usize>,
        reason: String,
        alert: Option<AlertKind>,
    ) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        let step_def = step.and_then(|s| inst.plan.steps.get(s)).cloned();
        let breaker = inst.plan.breaker;
        if let Some(kind) = alert {
            self.alert(
                kind,
                Some(id),
                step_def.as_ref().map(|s| &s.group),
                reason.clone(),
            );
        }
        let policy = step_def
            .as_ref()
            .map_or(OnFailure::Abandon, |s| s.on_failure);
        if policy == OnFailure::Hold {
            self.hold(id, step, reason);
            return;
        }
        if let Some(s) = &step_def
            && let Some(g) = self.group_mut(&s.group)
        {
            let window = breaker.window_secs.saturating_mul(1000);
            g.breaker.failures.retain(|t| now.since(*t) < window);
            if g.breaker.tripped_since.is_some()
                || g.breaker.failures.len() as u32 >= breaker.threshold
            {
                let first = g.breaker.tripped_since.is_none();
                g.breaker.tripped_since.get_or_insert(now);
                let n = g.breaker.failures.len();
                if first {
                    self.alert(
                        AlertKind::BreakerTripped,
                        Some(id),
                        Some(&s.group),
                        format!(
                            "{} caused {n} abandons within {} s: holding instances instead of abandoning them until an operator resets the breaker",
                            s.group, breaker.window_secs
                        ),
                    );
                }
                self.hold(
                    id,
                    step,
                    format!(
                        "{reason} (repeated-failure breaker of {} is tripped)",
                        s.group
                    ),
                );
                return;
            }
            g.breaker.failures.push(now);
        }
        let asg = self.inst(id).map(|i| i.action.asg.clone());
        self.metric(
            MetricName::Abandon,
            1.0,
            MetricUnit::Count,
            asg,
            step_def.map(|s| s.group),
        );
        self.complete(id, LifecycleResult::Abandon, reason);
    }

    fn hold(&mut self, id: &InstanceId, step: Option<usize>, reason: String) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Held {
            step,
            reason: reason.clone(),
            since: now,
        };
        let asg = inst.action.asg.clone();
        self.alert(
            AlertKind::InstanceHeld,
            Some(id),
            None,
            format!("instance held in Pending:Wait: {reason}"),
        );
        self.metric(MetricName::Held, 1.0, MetricUnit::Count, Some(asg), None);
    }

    fn complete(&mut self, id: &InstanceId, result: LifecycleResult, reason: String) {
        let now = self.now;
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        inst.phase = Phase::Completing {
            result,
            reason,
            since: now,
            probing: false,
        };
        let action = inst.action.clone();
        let all_done = !inst.steps.is_empty() && inst.steps.iter().all(|s| s.installed.is_some());
        let took = now.since(inst.started_at);
        if result == LifecycleResult::Continue && all_done {
            self.metric(
                MetricName::TimeToInService,
                took as f64,
                MetricUnit::Milliseconds,
                Some(action.asg.clone()),
                None,
            );
        }
        self.out.push(Command::CompleteAction { action, result });
    }

    /// Leaves every group of the plan, stopping a deployment that served only this instance.
    fn release(&mut self, id: &InstanceId) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        let groups: Vec<GroupKey> = inst.plan.steps.iter().map(|s| s.group.clone()).collect();
        for key in groups {
            if let Some(deployment) = self.leave_group(id, &key) {
                self.out.push(Command::StopDeployment {
                    group: key,
                    deployment,
                });
            }
        }
    }

    /// Ends the pipeline: releases what it held and records the outcome.
    fn end_pipeline(&mut self, id: &InstanceId, outcome: Outcome) {
        let now = self.now;
        self.release(id);
        if let Some(inst) = self.inst_mut(id) {
            inst.phase = Phase::Finished { outcome, at: now };
        }
    }

    /// A heartbeat sent at `at` succeeded. If it was the probe of a CONTINUE being re-sent, the
    /// action is still pending, so the first CONTINUE never landed: the gates opened for it
    /// close and the final check runs again, as if for the first time.
    fn probe_answered(&mut self, id: &InstanceId, at: Millis) {
        let Some(inst) = self.inst(id) else {
            return;
        };
        let Phase::Completing {
            probing: true,
            since,
            ..
        } = inst.phase
        else {
            return;
        };
        if at < since {
            return;
        }
        self.close_every_gate(id);
        self.verify(id);
    }

    /// Closes every gate of the instance's plan, in one call (idempotent: tagging is).
    fn close_every_gate(&mut self, id: &InstanceId) {
        let gates: Vec<_> = self
            .inst(id)
            .map(|i| i.plan.steps.iter().map(|s| s.gate.clone()).collect())
            .unwrap_or_default();
        self.out.push(Command::CloseGate {
            gates,
            instances: vec![id.clone()],
        });
    }

    fn on_revisions(&mut self, id: &InstanceId, current: &[GroupRevision]) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        if !matches!(inst.phase, Phase::Verifying { .. }) {
            self.ignore("revision check answer for an instance that is not verifying");
            return;
        }
        let mut stale = Vec::new();
        for (i, (s, r)) in inst.plan.steps.iter().zip(&inst.steps).enumerate() {
            let Some(cur) = current.iter().find(|c| c.group == s.group) else {
                self.ignore(format!("revision check answer lacks {}", s.group));
                return;
            };
            let ours = self
                .w
                .group(&s.group)
                .and_then(|g| g.active.as_ref())
                .and_then(|a| match a {
                    Active::Ours { deployment, .. } => Some(deployment),
                    _ => None,
                });
            if let Some(d) = &cur.active
                && Some(d) != ours
            {
                // Someone else is deploying to the group: wait for it, then check again. The
                // gate should be closed, but one opened for a CONTINUE that never landed (or a
                // close lost with a dead invocation) may have let that deployment in, and it
                // may install anything (a rollback, say): the step no longer counts as done,
                // so the check that follows runs it again at the group's current revision.
                self.ignore(format!(
                    "waiting for {d} on {} before the final check",
                    s.group
                ));
                if let Some(inst) = self.inst_mut(id) {
                    inst.phase = Phase::Verifying { since: now };
                    if let Some(r) = inst.steps.get_mut(i) {
                        r.installed = None;
                    }
                }
                return;
            }
            if r.installed.as_ref() != Some(&cur.revision) {
                stale.push(i);
            }
        }
        let gates: Vec<_> = inst.plan.steps.iter().map(|s| s.gate.clone()).collect();
        if let Some(&first) = stale.first() {
            if let Some(inst) = self.inst_mut(id) {
                for i in &stale {
                    if let Some(r) = inst.steps.get_mut(*i) {
                        *r = StepRecord::default();
                    }
                }
            }
            self.start_attempt(id, first, Admit::Now);
            return;
        }
        self.out.push(Command::OpenGate {
            gates,
            instances: vec![id.clone()],
        });
        self.complete(id, LifecycleResult::Continue, "every step succeeded".into());
    }

    // ---- CodeDeploy -------------------------------------------------------------------------

    fn on_target(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        id: &InstanceId,
        state: TargetState,
    ) {
        if !self.set_member_status(key, deployment, id, state) {
            self.ignore(format!(
                "{deployment} is not serving {id} for the orchestrator"
            ));
            return;
        }
        self.resolve(id);
    }

    /// Records a target's status on the member entry of `deployment`. Returns whether the
    /// instance is a member of that deployment.
    fn set_member_status(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        id: &InstanceId,
        state: TargetState,
    ) -> bool {
        let status = match state {
            TargetState::Pending | TargetState::InProgress => MemberStatus::Pending,
            TargetState::Succeeded => MemberStatus::Succeeded,
            TargetState::Failed | TargetState::Unknown => MemberStatus::Failed,
            TargetState::Skipped => MemberStatus::Skipped,
        };
        let Some(g) = self.group_mut(key) else {
            return false;
        };
        let entry = match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                members,
                ..
            }) if d == deployment => members.get_mut(id),
            _ => g
                .settling
                .iter_mut()
                .filter(|s| s.deployment.as_ref() == Some(deployment))
                .find_map(|s| s.members.get_mut(id)),
        };
        let Some(m) = entry else {
            return false;
        };
        if !m.status.is_terminal() {
            m.status = status;
        }
        true
    }

    fn on_deployment(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        state: DeploymentState,
        targets: &[(InstanceId, TargetState)],
    ) {
        let now = self.now;
        if self.w.group(key).is_none() {
            self.ignore(format!("no record of {key}"));
            return;
        }
        let mut woken: Vec<InstanceId> = Vec::new();
        for (i, t) in targets {
            if self.set_member_status(key, deployment, i, *t) {
                woken.push(i.clone());
            }
        }
        let Some(g) = self.group_mut(key) else {
            return;
        };
        match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                polled_at,
                ..
            }) if d == deployment => {
                *polled_at = now;
                if state.is_terminal() {
                    let end = match state {
                        DeploymentState::Succeeded => DeploymentEnd::Succeeded,
                        DeploymentState::Stopped => DeploymentEnd::Stopped,
                        _ => DeploymentEnd::Failed,
                    };
                    woken.extend(self.settle(key, end));
                } else {
                    // Members already resolved by an earlier answer may be waiting to be read.
                    woken.extend(targets.iter().map(|(i, _)| i.clone()));
                }
            }
            Some(Active::Ours { deployment: d, .. }) => {
                if state == DeploymentState::Started {
                    // A new deployment started, so ours ended unseen: ask about ours now.
                    let ours = d.clone();
                    self.poll(key, &ours);
                }
            }
            Some(Active::Foreign {
                deployment: d,
                polled_at,
                ..
            }) => {
                if d == deployment {
                    *polled_at = now;
                    if state.is_terminal() {
                        g.active = None;
                        if !g.waiting.is_empty() {
                            g.admit_at = Some(now);
                        }
                    }
                } else if state == DeploymentState::Started {
                    *d = deployment.clone();
                    *polled_at = now;
                }
            }
            Some(Active::Creating { .. }) => {
                // It may be our own deployment whose creation answer is not recorded yet; the
                // creation outcome (or its recovery) decides.
            }
            None => {
                let settled = g
                    .settling
                    .iter()
                    .any(|s| s.deployment.as_ref() == Some(deployment));
                if !settled
                    && matches!(
                        state,
                        DeploymentState::Started | DeploymentState::InProgress
                    )
                {
                    g.active = Some(Active::Foreign {
                        deployment: deployment.clone(),
                        since: now,
                        polled_at: now,
                    });
                }
            }
        }
        if let Some(g) = self.group_mut(key) {
            for s in &mut g.settling {
                if s.deployment.as_ref() == Some(deployment) {
                    s.polled_at = now;
                }
            }
        }
        self.try_admit(key);
        self.wake_all(woken);
    }

    /// Ends the group's own active deployment; members move to a settling entry. Returns the
    /// members whose result can be read now.
    fn settle(&mut self, key: &GroupKey, end: DeploymentEnd) -> Vec<InstanceId> {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return Vec::new();
        };
        let (deployment, revision, members, sealed) = match g.active.take() {
            Some(Active::Ours {
                deployment,
                revision,
                members,
                seal,
                ..
            }) => (Some(deployment), revision, members, seal == Seal::Sealed),
            Some(Active::Creating { members, .. }) => (None, None, members, false),
            other => {
                g.active = other;
                return Vec::new();
            }
        };
        if !g.waiting.is_empty() {
            g.admit_at = Some(now);
        }
        let ready: Vec<InstanceId> = members
            .iter()
            .filter(|(_, m)| {
                m.status.is_terminal()
                    || matches!(
                        end,
                        DeploymentEnd::NotCreated | DeploymentEnd::NothingToDeploy
                    )
            })
            .map(|(i, _)| i.clone())
            .collect();
        let unknown: Vec<InstanceId> = members
            .iter()
            .filter(|(_, m)| !m.status.is_terminal())
            .map(|(i, _)| i.clone())
            .collect();
        if !members.is_empty() {
            g.settling.push(Settling {
                deployment: deployment.clone(),
                revision,
                outcome: end,
                members,
                since: now,
                polled_at: now,
                sealed,
            });
        }
        if let Some(d) = deployment
            && !unknown.is_empty()
            && !matches!(
                end,
                DeploymentEnd::NotCreated | DeploymentEnd::NothingToDeploy
            )
        {
            self.out.push(Command::PollDeployment {
                group: key.clone(),
                deployment: d,
                instances: unknown,
            });
        }
        ready
    }

    fn poll(&mut self, key: &GroupKey, deployment: &DeploymentId) {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let mut instances = Vec::new();
        match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                members,
                polled_at,
                ..
            }) if d == deployment => {
                *polled_at = now;
                instances.extend(
                    members
                        .iter()
                        .filter(|(_, m)| !m.status.is_terminal())
                        .map(|(i, _)| i.clone()),
                );
            }
            Some(Active::Foreign {
                deployment: d,
                polled_at,
                ..
            }) if d == deployment => *polled_at = now,
            _ => {}
        }
        for s in &mut g.settling {
            if s.deployment.as_ref() == Some(deployment) {
                s.polled_at = now;
                instances.extend(
                    s.members
                        .iter()
                        .filter(|(_, m)| !m.status.is_terminal())
                        .map(|(i, _)| i.clone()),
                );
            }
        }
        self.out.push(Command::PollDeployment {
            group: key.clone(),
            deployment: deployment.clone(),
            instances,
        });
    }

    fn wake_all(&mut self, ids: Vec<InstanceId>) {
        let set: BTreeSet<InstanceId> = ids.into_iter().collect();
        for i in set {
            self.out.push(Command::Wakeup {
                key: Key::Instance(i),
                at: self.now,
            });
        }
    }

    fn on_create_outcome(&mut self, key: &GroupKey, intent: &IntentId, outcome: &CreateOutcome) {
        let now = self.now;
        let retry_at = now.plus_ms(self.cfg.create_retry_ms);
        let Some(g) = self.group_mut(key) else {
            self.ignore(format!("no record of {key}"));
            return;
        };
        let members = match &g.active {
            Some(Active::Creating {
                intent: i, members, ..
            }) if i == intent => members.clone(),
            _ => {
                self.ignore(format!(
                    "creation answer for {intent}, which is no longer pending"
                ));
                return;
            }
        };
        let gate = g.gate.clone();
        let ids: Vec<InstanceId> = members.keys().cloned().collect();
        match outcome {
            CreateOutcome::Created {
                deployment,
                revision,
            } => {
                let seal = if ids.is_empty() {
                    Seal::Open
                } else {
                    Seal::Pending { since: now }
                };
                g.active = Some(Active::Ours {
                    intent: intent.clone(),
                    deployment: deployment.clone(),
                    revision: revision.clone(),
                    members,
                    since: now,
                    polled_at: now,
                    seal,
                });
                self.metric(
                    MetricName::DeploymentCreated,
                    ids.len() as f64,
                    MetricUnit::Count,
                    None,
                    Some(key.clone()),
                );
                if ids.is_empty() {
                    // Every instance it was meant for left while it was being created.
                    self.out.push(Command::StopDeployment {
                        group: key.clone(),
                        deployment: deployment.clone(),
                    });
                } else {
                    // The targets are fixed now: close the gate behind them.
                    self.out.push(Command::SealGate {
                        group: key.clone(),
                        deployment: deployment.clone(),
                        gate,
                        instances: ids,
                    });
                }
            }
            CreateOutcome::Busy { deployment } => {
                // Someone else's deployment holds the group: wait for it, gates closed.
                for i in &ids {
                    g.waiting.insert(i.clone(), now);
                }
                g.active = Some(Active::Foreign {
                    deployment: deployment.clone(),
                    since: now,
                    polled_at: now,
                });
                if !ids.is_empty() {
                    self.out.push(Command::CloseGate {
                        gates: vec![gate],
                        instances: ids,
                    });
                }
            }
            CreateOutcome::NoRevision => {
                let ready = self.settle(key, DeploymentEnd::NothingToDeploy);
                self.wake_all(ready);
            }
            CreateOutcome::NotFound => {
                // The crashed creator never got as far as CreateDeployment: create it now.
                if let Some(Active::Creating {
                    since, recovering, ..
                }) = &mut g.active
                {
                    *since = now;
                    *recovering = false;
                }
                let config = g.config.clone();
                self.out.push(Command::OpenGate {
                    gates: vec![gate],
                    instances: ids.clone(),
                });
                self.out.push(Command::CreateDeployment {
                    group: key.clone(),
                    intent: intent.clone(),
                    instances: ids,
                    config,
                });
            }
            CreateOutcome::Failed {
                reason,
                retryable: true,
            } => {
                for i in &ids {
                    g.waiting.insert(i.clone(), now);
                }
                g.active = None;
                g.admit_at = Some(retry_at);
                self.out.push(Command::CloseGate {
                    gates: vec![gate],
                    instances: ids,
                });
                self.ignore(format!("CreateDeployment will be retried: {reason}"));
            }
            CreateOutcome::Failed {
                reason,
                retryable: false,
            } => {
                self.out.push(Command::CloseGate {
                    gates: vec![gate],
                    instances: ids,
                });
                self.alert(
                    AlertKind::CreateFailed,
                    None,
                    Some(key),
                    format!("CreateDeployment for {key} failed: {reason}"),
                );
                let ready = self.settle(key, DeploymentEnd::NotCreated);
                self.wake_all(ready);
            }
        }
        self.try_admit(key);
    }

    /// The seal's answer: the deployment's status, read after its members' gate was closed.
    fn on_gate_sealed(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        state: DeploymentState,
    ) {
        let Some(g) = self.group_mut(key) else {
            self.ignore(format!("no record of {key}"));
            return;
        };
        match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                seal,
                ..
            }) if d == deployment && *seal != Seal::Open => {
                if state.is_terminal() {
                    // Over before this close was confirmed: unless an earlier answer sealed
                    // it, another deployment may have taken a member through its open gate,
                    // so members leave through the check.
                    if *seal != Seal::Sealed {
                        *seal = Seal::Open;
                    }
                    self.on_deployment(key, deployment, state, &[]);
                } else {
                    *seal = Seal::Sealed;
                }
            }
            _ => self.ignore(format!("seal answer for {deployment}, which is not active")),
        }
    }

    // ---- timer and operator -----------------------------------------------------------------

    fn on_instance_tick(&mut self, id: &InstanceId) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        match inst.phase.clone() {
            Phase::Running {
                step,
                wait:
                    StepWait::Leaving {
                        since, blocked_by, ..
                    },
            } => {
                let every = match blocked_by {
                    Some(_) => self.cfg.poll_interval_ms,
                    None => self.cfg.resend_ms,
                };
                if now.since(since) >= every
                    && let Some((group, gate)) = inst
                        .plan
                        .steps
                        .get(step)
                        .map(|s| (s.group.clone(), s.gate.clone()))
                {
                    if let Some(Phase::Running {
                        wait: StepWait::Leaving { since, .. },
                        ..
                    }) = self.inst_mut(id).map(|i| &mut i.phase)
                    {
                        *since = now;
                    }
                    // The close may have been lost with the invocation that decided it: the
                    // check closes again (idempotent) before it asks.
                    self.out.push(Command::CheckLeave {
                        gate,
                        instance: id.clone(),
                        group,
                        done_in: None,
                    });
                }
            }
            Phase::Running { step, wait } => {
                let Some(key) = inst.plan.steps.get(step).map(|s| s.group.clone()) else {
                    return;
                };
                let timeout = inst.plan.steps.get(step).map_or(0, |s| s.timeout_secs);
                self.resolve(id);
                let still = self.inst(id).map(|i| i.phase.clone());
                if still
                    != Some(Phase::Running {
                        step,
                        wait: wait.clone(),
                    })
                {
                    return;
                }
                match (wait, self.standing(id, &key)) {
                    (
                        StepWait::Queued { .. },
                        Standing::InFlight {
                            deployment,
                            admitted_at,
                            sole,
                        },
                    ) if now >= admitted_at.plus_secs(timeout) => {
                        if sole && let Some(d) = &deployment {
                            self.out.push(Command::StopDeployment {
                                group: key.clone(),
                                deployment: d.clone(),
                            });
                        }
                        if let Some(inst) = self.inst_mut(id) {
                            inst.phase = Phase::Running {
                                step,
                                wait: StepWait::Draining {
                                    deployment,
                                    since: now,
                                },
                            };
                        }
                    }
                    // A stop lost with the invocation that decided it is sent again.
                    (
                        StepWait::Draining { .. },
                        Standing::InFlight {
                            deployment: Some(d),
                            sole: true,
                            ..
                        },
                    ) => {
                        self.out.push(Command::StopDeployment {
                            group: key.clone(),
                            deployment: d,
                        });
                    }
                    (StepWait::Queued { .. }, Standing::Waiting) if !self.fits(id, step) => {
                        self.leave_group(id, &key);
                        let left = self
                            .inst(id)
                            .map_or(0, |i| i.global_deadline.since(now) / 1000);
                        self.fail_instance(
                            id,
                            Some(step),
                            format!("still waiting for {key} with {left} s left before the global timeout: the remaining plan cannot fit"),
                            Some(AlertKind::PlanCannotFit),
                        );
                    }
                    _ => {}
                }
            }
            Phase::Verifying { since } if now.since(since) >= self.cfg.resend_ms => {
                // Checking again (an answer was lost, or a foreign deployment was waited on).
                // Every gate is closed while verifying; a close lost with a dead invocation
                // (after a probed CONTINUE, say) is sent again, as tagging is idempotent.
                self.close_every_gate(id);
                self.verify(id)
            }
            Phase::Completing { result, since, .. } if now.since(since) >= self.cfg.resend_ms => {
                let Some(inst) = self.inst_mut(id) else {
                    return;
                };
                let all_done =
                    !inst.steps.is_empty() && inst.steps.iter().all(|s| s.installed.is_some());
                let action = inst.action.clone();
                let continuing = result == LifecycleResult::Continue && all_done;
                if let Phase::Completing { since, probing, .. } = &mut inst.phase {
                    *since = now;
                    *probing = continuing;
                }
                if continuing {
                    // Re-sending a CONTINUE: no answer confirmed the first one, and the world
                    // may have moved since the final check (a user deployment of a new
                    // revision that the closed gates kept from this instance, say). A
                    // heartbeat tells whether the action is still pending: if it is, the
                    // CONTINUE never landed, and the gates close for the final check to run
                    // again (`probe_answered`); if the action is gone, it did land.
                    inst.heartbeat_sent = Some(now);
                    self.out.push(Command::RecordHeartbeat { action });
                } else {
                    self.out.push(Command::CompleteAction { action, result });
                }
            }
            _ => {}
        }
    }

    /// Whether the rest of the plan still fits before the global timeout.
    fn fits(&self, id: &InstanceId, step: usize) -> bool {
        self.inst(id)
            .is_none_or(|i| self.now.plus_secs(i.remaining_secs(step)) <= i.global_deadline)
    }

    fn on_group_tick(&mut self, key: &GroupKey) {
        let now = self.now;
        let (poll_every, lease, resend) = (
            self.cfg.poll_interval_ms,
            self.cfg.create_lease_ms,
            self.cfg.resend_ms,
        );
        self.try_admit(key);
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let mut polls: Vec<DeploymentId> = Vec::new();
        // A seal lost with its invocation (or throttled) is sent again, for the members still
        // pending: one that finished may have moved on and need its gate again later.
        if let Some(Active::Ours {
            deployment,
            members,
            seal: Seal::Pending { since },
            ..
        }) = &mut g.active
            && now.since(*since) >= resend
        {
            *since = now;
            let instances: Vec<InstanceId> = members
                .iter()
                .filter(|(_, m)| m.status == MemberStatus::Pending)
                .map(|(i, _)| i.clone())
                .collect();
            let (deployment, gate) = (deployment.clone(), g.gate.clone());
            self.out.push(Command::SealGate {
                group: key.clone(),
                deployment,
                gate,
                instances,
            });
        }
        let Some(g) = self.group_mut(key) else {
            return;
        };
        match &mut g.active {
            Some(Active::Creating {
                intent,
                since,
                recovering,
                ..
            }) if now.since(*since) >= lease => {
                *recovering = true;
                let from = *since;
                *since = now;
                let intent = intent.clone();
                self.out.push(Command::FindDeployment {
                    group: key.clone(),
                    intent,
                    since: from,
                });
            }
            Some(Active::Ours {
                deployment,
                polled_at,
                ..
            })
            | Some(Active::Foreign {
                deployment,
                polled_at,
                ..
            }) if now.since(*polled_at) >= poll_every => polls.push(deployment.clone()),
            _ => {}
        }
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let mut woken = Vec::new();
        for s in &mut g.settling {
            if now.since(s.polled_at) < poll_every {
                continue;
            }
            let unknown = s.members.values().any(|m| !m.status.is_terminal());
            match &s.deployment {
                Some(d) if unknown => polls.push(d.clone()),
                _ => {
                    // Results are known; wake members that have not read theirs yet.
                    woken.extend(s.members.keys().cloned());
                    s.polled_at = now;
                }
            }
        }
        polls.sort();
        polls.dedup();
        for d in polls {
            self.poll(key, &d);
        }
        self.wake_all(woken);
    }

    fn on_operator(&mut self, id: &InstanceId, action: OperatorAction) {
        let Some(inst) = self.inst(id) else {
            self.ignore(format!("no pipeline for {id}"));
            return;
        };
        match (action, inst.phase.clone()) {
            (_, Phase::Finished { .. }) | (_, Phase::Completing { .. }) => {
                self.ignore(format!("{id} is already finishing"));
            }
            (
                OperatorAction::Retry,
                Phase::Held {
                    step: Some(step), ..
                },
            ) => {
                if let Some(r) = self.inst_mut(id).and_then(|i| i.steps.get_mut(step)) {
                    r.attempts = 0;
                }
                self.start_attempt(id, step, Admit::Now);
            }
            (OperatorAction::Retry, Phase::Held { step: None, .. }) => self.verify(id),
            (OperatorAction::Retry, _) => self.ignore(format!("{id} is not held")),
            (OperatorAction::Abandon, _) => {
                self.release(id);
                self.complete(
                    id,
                    LifecycleResult::Abandon,
                    "abandoned by an operator".into(),
                );
            }
        }
    }

    // ---- bookkeeping ------------------------------------------------------------------------

    /// Heartbeats, the global deadline, and timers for every record the input touched.
    fn finish(mut self, before: &World) -> Result<Decision, Missing> {
        let touched: Vec<Key> = self.touched.iter().cloned().collect();
        for key in &touched {
            if let Key::Instance(id) = key {
                self.housekeep(id);
            }
        }
        for key in self.touched.clone() {
            self.schedule(&key);
        }
        // Drop group records with nothing left in them.
        let idle: Vec<GroupKey> = self
            .w
            .groups
            .iter()
            .filter(|(_, g)| g.as_ref().is_some_and(Group::is_idle))
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.w.groups.insert(k, None);
        }
        // Several rules may ask to stop the same deployment in one decision: once is enough.
        let mut stopped = BTreeSet::new();
        self.out.retain(|c| match c {
            Command::StopDeployment { deployment, .. } => stopped.insert(deployment.clone()),
            _ => true,
        });
        let mut changed = BTreeSet::new();
        for (id, rec) in &self.w.instances {
            if before.instances.get(id) != Some(rec) {
                changed.insert(Key::Instance(id.clone()));
            }
        }
        for (key, rec) in &self.w.groups {
            let was = before.groups.get(key);
            if was != Some(rec) && !(was.is_none() && rec.is_none()) {
                changed.insert(Key::Group(key.clone()));
            }
        }
        Ok(Decision {
            commands: self.out,
            changed,
            ignored: self.ignored,
        })
    }

    fn housekeep(&mut self, id: &InstanceId) {
        let now = self.now;
        let (permille, guard, resend) = (
            self.cfg.heartbeat_permille,
            self.cfg.deadline_guard_ms,
            self.cfg.resend_ms,
        );
        let Some(inst) = self.inst(id) else {
            return;
        };
        if inst.phase.is_finished() {
            return;
        }
        if now >= inst.global_deadline {
            // Auto Scaling has applied the hook's default result by now.
            self.end_pipeline(id, Outcome::Gone);
            return;
        }
        let working = matches!(inst.phase, Phase::Running { .. } | Phase::Verifying { .. });
        if working && now.plus_ms(guard) >= inst.global_deadline {
            let step = inst.phase.step();
            self.release(id);
            self.fail_instance(
                id,
                step,
                "the lifecycle hook's global timeout is about to expire with the plan unfinished"
                    .into(),
                Some(AlertKind::PlanCannotFit),
            );
        }
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        let interval = inst.timeouts.heartbeat_secs.saturating_mul(permille);
        let useful =
            inst.last_heartbeat.plus_secs(inst.timeouts.heartbeat_secs) < inst.global_deadline;
        // Only a confirmed heartbeat counts: one sent by an invocation that died is sent again.
        let unconfirmed = inst.heartbeat_sent.is_some_and(|t| now.since(t) < resend);
        if now >= inst.last_heartbeat.plus_ms(interval)
            && useful
            && !unconfirmed
            && !inst.phase.is_finished()
        {
            inst.heartbeat_sent = Some(now);
            let action = inst.action.clone();
            self.out.push(Command::RecordHeartbeat { action });
        }
    }

    fn schedule(&mut self, key: &Key) {
        let at = match key {
            Key::Instance(id) => self.instance_wake(id),
            Key::Group(g) => self.group_wake(g),
        };
        let slot = match key {
            Key::Instance(id) => self
                .w
                .instances
                .get_mut(id)
                .and_then(Option::as_mut)
                .map(|i| &mut i.wake_at),
            Key::Group(g) => self
                .w
                .groups
                .get_mut(g)
                .and_then(Option::as_mut)
                .map(|g| &mut g.wake_at),
        };
        let Some(slot) = slot else {
            return;
        };
        if *slot != at {
            *slot = at;
            if let Some(at) = at {
                self.out.push(Command::Wakeup {
                    key: key.clone(),
                    at,
                });
            }
        }
    }

    fn instance_wake(&self, id: &InstanceId) -> Option<Millis> {
        let inst = self.inst(id)?;
        if inst.phase.is_finished() {
            return None;
        }
        let cfg = self.cfg;
        let mut at = vec![inst.global_deadline];
        if inst.last_heartbeat.plus_secs(inst.timeouts.heartbeat_secs) < inst.global_deadline {
            let next = inst.last_heartbeat.plus_ms(
                inst.timeouts
                    .heartbeat_secs
                    .saturating_mul(cfg.heartbeat_permille),
            );
            at.push(match inst.heartbeat_sent {
                Some(sent) => next.max(sent.plus_ms(cfg.resend_ms)),
                None => next,
            });
        }
        match &inst.phase {
            Phase::Running { step, wait } => {
                let s = inst.plan.steps.get(*step)?;
                match wait {
                    StepWait::Backoff { until } => at.push(*until),
                    StepWait::Queued { .. } => match self.standing(id, &s.group) {
                        Standing::InFlight { admitted_at, .. } => {
                            at.push(admitted_at.plus_secs(s.timeout_secs))
                        }
                        Standing::Waiting => {
                            // The first moment the rest of the plan no longer fits (a wake
                            // time that is not in the future would never be rescheduled).
                            let remaining = inst.remaining_secs(*step);
                            at.push(Millis(
                                inst.global_deadline
                                    .0
                                    .saturating_sub(remaining.saturating_mul(1000))
                                    .saturating_add(1),
                            ));
                        }
                        Standing::Done(_) | Standing::Absent => at.push(self.now),
                    },
                    StepWait::Draining { .. } => at.push(self.now.plus_ms(cfg.poll_interval_ms)),
                    StepWait::Leaving {
                        since, blocked_by, ..
                    } => at.push(since.plus_ms(match blocked_by {
                        Some(_) => cfg.poll_interval_ms,
                        None => cfg.resend_ms,
                    })),
                }
            }
            Phase::Verifying { since } | Phase::Completing { since, .. } => {
                at.push(since.plus_ms(cfg.resend_ms))
            }
            Phase::Held { .. } | Phase::Finished { .. } => {}
        }
        at.into_iter().min()
    }

    fn group_wake(&self, key: &GroupKey) -> Option<Millis> {
        let g = self.w.group(key)?;
        let cfg = self.cfg;
        let mut at = Vec::new();
        match &g.active {
            None => {
                if !g.waiting.is_empty() {
                    at.extend(g.admit_at);
                }
            }
            Some(Active::Creating { since, .. }) => at.push(since.plus_ms(cfg.create_lease_ms)),
            Some(Active::Ours {
                polled_at, seal, ..
            }) => {
                at.push(polled_at.plus_ms(cfg.poll_interval_ms));
                if let Seal::Pending { since } = seal {
                    at.push(since.plus_ms(cfg.resend_ms));
                }
            }
            Some(Active::Foreign { polled_at, .. }) => {
                at.push(polled_at.plus_ms(cfg.poll_interval_ms))
            }
        }
        at.extend(
            g.settling
                .iter()
                .map(|s| s.polled_at.plus_ms(cfg.poll_interval_ms)),
        );
        at.into_iter().min()
    }
}
