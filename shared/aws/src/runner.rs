//! The runner: for one input, load the records → the core decides → commit the new records and
//! the processed event id atomically → run the commands → feed their answers back as inputs.
//!
//! Crash safety: a decision is durable before any of its commands runs, except those the core
//! marks as safe to run early (reads, the leave check): their answers are decided into the
//! same commit, and a chain lost before it is decided again. If the invocation dies
//! before the commit, the message is redelivered and decided again; if it dies after, every
//! record the decision left waiting carries a wake time, and the core re-sends what an answer
//! never confirmed (the creation intent's lookup, gate changes, checks, heartbeats, the
//! completion). Every command is idempotent: tags; `CreateDeployment` adopts the deployment
//! that carries its intent; a second `CompleteLifecycleAction` answers "gone", which the core
//! reads as done. (Replaying a dead invocation's commands instead was tried and is wrong: they
//! can be stale by the time they run; see docs/design.md.)

use std::collections::{BTreeSet, VecDeque};

use turnstile_core::{
    ActionRef, Command, CreateOutcome, Decision, DeploymentId, Engine, EventId, Gate, GroupKey,
    Input, InstanceId, IntentId, Key, LeaveFound, LifecycleResult, Millis, Missing, World,
};
use turnstile_events::Message;

use crate::ports::{Clock, Deployments, Lifecycle, PortError, Tags, Timer};
use crate::store::{Commit, Loaded, Record, Store, StoreError};

/// How often a decision is retried after conflicting writes before the input is handed back.
pub const MAX_CONFLICTS: u32 = 8;
/// "Wake now" ticks handled in the same invocation; more go through the timer.
pub const INLINE_WAKEUPS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {0} conflicting attempts")]
    Contention(u32),
    #[error("{command}: {source}")]
    Port {
        command: &'static str,
        #[source]
        source: PortError,
    },
    /// Injected by tests to simulate the process dying.
    #[error("crashed (test injection)")]
    Crashed,
}

impl RunError {
    /// Whether handing the message back for a later retry can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Store(e) => e.is_retryable(),
            RunError::Contention(_) | RunError::Crashed => true,
            RunError::Port { source, .. } => source.is_retryable(),
        }
    }
}

/// What handling one input did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Decisions committed (the input and the answers it led to).
    pub decisions: usize,
    /// Commands run.
    pub commands: usize,
    /// The input's event had been processed before.
    pub duplicate: bool,
    /// Why inputs changed nothing, for the log.
    pub ignored: Vec<String>,
    /// Conflicting commits that were re-decided.
    pub conflicts: u32,
}

/// Watches the runner from outside: called before each command runs (tests use it to simulate
/// a crash), and handed each embedded-metric line. (Not a lifecycle hook: those are Auto
/// Scaling's.)
pub trait Observer: Send + Sync {
    fn before(&self, command: &Command) -> Result<(), RunError>;

    /// Writes one embedded-metric-format line. On Lambda that is stdout, which CloudWatch reads;
    /// the local cloud collects them instead.
    fn emit(&self, line: String) {
        println!("{line}");
    }
}

/// The production observer: injects nothing, writes metric lines to stdout.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl Observer for Stdout {
    fn before(&self, _: &Command) -> Result<(), RunError> {
        Ok(())
    }
}

/// The types a runner is wired to, named once: one per port, plus the store, the clock and the
/// observer. Production names the AWS adapters (`bootstrap::AwsPorts`); tests and the local
/// cloud name model-backed ones. Implemented by a marker type; the values are [`Adapters`].
pub trait Ports {
    type Store: Store;
    type Lifecycle: Lifecycle;
    type Deployments: Deployments;
    type Tags: Tags;
    type Timer: Timer;
    type Clock: Clock;
    type Observer: Observer;
}

/// The values plugged into a runner's ports.
pub struct Adapters<P: Ports> {
    pub store: P::Store,
    pub lifecycle: P::Lifecycle,
    pub deployments: P::Deployments,
    pub tags: P::Tags,
    pub timer: P::Timer,
    pub clock: P::Clock,
    pub observer: P::Observer,
}

/// Wall time spent inside the core's `decide` (CPU-bound: it does no I/O), for benchmarks.
#[derive(Debug, Default)]
pub struct CoreTime {
    pub nanos: std::sync::atomic::AtomicU64,
    pub decisions: std::sync::atomic::AtomicU64,
}

impl CoreTime {
    fn record(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.decisions.fetch_add(1, Relaxed);
    }
}

/// Rounds of early commands chained into one commit (leave check → admission is one).
const MAX_CHAIN: usize = 4;
/// A chain stops growing at this many changed records (DynamoDB takes 100 per transaction).
const CHAIN_MAX_RECORDS: usize = 16;

/// What a committed chain of decisions left to run.
struct Chain {
    /// Commands to run now that the decisions are durable.
    commands: Vec<Command>,
    /// An early command failed and could succeed later.
    failed: Option<RunError>,
}

/// A chain of decisions on one read of the records, not yet committed.
struct Decided {
    decisions: usize,
    ignored: Vec<String>,
    changed: BTreeSet<Key>,
    deployments: Vec<(DeploymentId, GroupKey)>,
    /// What is left to run once the chain is committed, timers deduplicated.
    commands: Vec<Command>,
    /// An early command failed and could succeed later.
    failed: Option<RunError>,
}

/// One conditional write: the key, the new record (`None` deletes), the version it was read at.
type Write = (Key, Option<Record>, u64);

/// The conditional writes for the `changed` records (`None` deletes), each at the version it
/// was read at; and the version each will have once written (0: deleted).
fn writes_of(
    changed: &BTreeSet<Key>,
    world: &World,
    loaded: &Loaded,
) -> (Vec<Write>, Vec<(Key, u64)>) {
    let writes: Vec<Write> = changed
        .iter()
        .map(|k| {
            let rec = match k {
                Key::Instance(i) => world.instance(i).cloned().map(Record::Instance),
                Key::Group(g) => world.group(g).cloned().map(Record::Group),
            };
            (k.clone(), rec, loaded.version(k))
        })
        .collect();
    let written = writes
        .iter()
        .map(|(k, rec, v)| (k.clone(), if rec.is_some() { v + 1 } else { 0 }))
        .collect();
    (writes, written)
}

/// The deployment → group index entry an answer implies.
fn created(input: &Input) -> Vec<(DeploymentId, GroupKey)> {
    match input {
        Input::CreateAttempted {
            group,
            outcome: CreateOutcome::Created { deployment, .. },
            ..
        } => vec![(deployment.clone(), group.clone())],
        _ => Vec::new(),
    }
}

/// Keeps the timers a chain of decisions still needs: the last one for each record, and
/// none that a later decision moved (a record's scheduled wake is its `wake_at`; a wake "now"
/// nudges another record and is kept).
fn latest_timers(commands: Vec<Command>, world: &World, now: Millis) -> Vec<Command> {
    let mut seen = std::collections::HashSet::new();
    let scheduled = |key: &Key| match key {
        Key::Instance(i) => world.instance(i).and_then(|r| r.wake_at),
        Key::Group(g) => world.group(g).and_then(|r| r.wake_at),
    };
    let mut kept: Vec<Command> = commands
        .into_iter()
        .rev()
        .filter(|c| match c {
            Command::Wakeup { key, at } => {
                let nudge = *at <= now;
                (nudge || scheduled(key) == Some(*at)) && seen.insert((key.clone(), nudge))
            }
            _ => true,
        })
        .collect();
    kept.reverse();
    kept
}

/// How many instances' plan groups a warm runner remembers (see [`Runner::load`]).
const PLAN_HINTS: usize = 10_000;

pub struct Runner<P: Ports> {
    pub engine: Engine,
    pub core_time: CoreTime,
    /// The groups of each instance's plan, remembered across invocations of a warm function so
    /// that one read fetches an instance together with its groups.
    plan_hints: std::sync::Mutex<std::collections::HashMap<InstanceId, Vec<Key>>>,
    pub ports: Adapters<P>,
}

fn name(c: &Command) -> &'static str {
    match c {
        Command::OpenGate { .. } => "OpenGate",
        Command::CloseGate { .. } => "CloseGate",
        Command::CreateDeployment { .. } => "CreateDeployment",
        Command::FindDeployment { .. } => "FindDeployment",
        Command::StopDeployment { .. } => "StopDeployment",
        Command::PollDeployment { .. } => "PollDeployment",
        Command::CheckLeave { .. } => "CheckLeave",
        Command::SealGate { .. } => "SealGate",
        Command::CheckRevisions { .. } => "CheckRevisions",
        Command::RecordHeartbeat { .. } => "RecordHeartbeat",
        Command::CompleteAction { .. } => "CompleteAction",
        Command::Wakeup { .. } => "Wakeup",
        Command::Metric(_) => "Metric",
        Command::Alert(_) => "Alert",
        Command::WakeOverflowed { .. } => "WakeOverflowed",
    }
}

impl<P: Ports> Runner<P> {
    pub fn new(engine: Engine, ports: Adapters<P>) -> Self {
        Self {
            engine,
            core_time: CoreTime::default(),
            plan_hints: std::sync::Mutex::default(),
            ports,
        }
    }

    /// Handles one input (and every answer it leads to). `event` is recorded as processed in the
    /// same transaction as the first decision; a redelivered event is acknowledged as duplicate.
    pub async fn handle(&self, input: Input, event: Option<EventId>) -> Result<Outcome, RunError> {
        let mut out = Outcome::default();
        let mut queue: VecDeque<(Input, Option<EventId>)> = VecDeque::from([(input, event)]);
        let mut inline_wakeups = 0;
        // The records as this invocation last wrote them: the answers that follow usually need
        // the same records, and reading them again would only add round trips. A record someone
        // else changed meanwhile fails the conditional write and is read afresh.
        let mut known: Option<Loaded> = None;
        while let Some((input, event)) = queue.pop_front() {
            let chain = match self
                .decide_and_commit(&input, event, &mut out, &mut known)
                .await
            {
                Ok(x) => x,
                Err(RunError::Store(StoreError::Duplicate(e))) => {
                    tracing::info!(event_id = %e, "event already processed");
                    out.duplicate = true;
                    // A redelivered message often means the invocation that processed it died
                    // after its commit, before its commands and timers ran. Look at its records
                    // now, as their timer would, rather than at the next sweep.
                    queue.extend(
                        Engine::records_of(&input)
                            .into_iter()
                            .map(|k| (Input::Tick(k), None)),
                    );
                    continue;
                }
                Err(e) => {
                    self.alert_if_too_large(&e);
                    return Err(e);
                }
            };
            if let Some(source) = chain.failed {
                // An early command failed after its decision was decided: the decision is
                // committed without that answer, and the core re-sends on the record's timer.
                self.set_timers(chain.commands.iter()).await;
                return Err(source);
            }
            let answers = self
                .run(&chain.commands, &mut out, &mut inline_wakeups)
                .await?;
            queue.extend(answers.into_iter().map(|a| (a, None)));
        }
        Ok(out)
    }

    /// Turns a parsed queue message into the core's input and the event id to dedupe on.
    /// `None` for messages that need no action (the test notification, other event types).
    /// A launch needs the hook's timeouts, described once and cached by the adapter; its plan is
    /// the event's metadata (or the hook's, if the event carries none).
    pub async fn input_of(
        &self,
        message: Message,
    ) -> Result<Option<(Input, Option<EventId>)>, RunError> {
        let (timeouts, metadata) = match message.hook_to_describe() {
            Some((asg, hook)) => {
                let hook = self
                    .ports
                    .lifecycle
                    .hook(asg, hook)
                    .await
                    .map_err(|source| RunError::Port {
                        command: "DescribeLifecycleHooks",
                        source,
                    })?;
                (Some(hook.timeouts), hook.metadata)
            }
            None => (None, None),
        };
        Ok(message.into_input(timeouts, metadata))
    }

    /// Remembers the plan groups of the instances in `world`, read or just written (a launch
    /// writes a record no read has seen: the next input about it, often its first step's
    /// result, then reads its groups with it, in one round trip).
    fn remember_plans(&self, world: &World) {
        if let Ok(mut hints) = self.plan_hints.lock() {
            if hints.len() > PLAN_HINTS {
                hints.clear();
            }
            for inst in world.instances.values().flatten() {
                let groups = inst
                    .plan
                    .steps
                    .iter()
                    .map(|s| Key::Group(s.group.clone()))
                    .collect();
                hints.insert(inst.id.clone(), groups);
            }
        }
    }

    async fn load(&self, input: &Input, world_keys: Vec<Key>) -> Result<Loaded, RunError> {
        let mut keys = world_keys;
        // A timer tick is mostly a heartbeat, which reads no group: its groups are loaded only
        // if the decision asks for them.
        let tick = matches!(input, Input::Tick(Key::Instance(_)));
        if !tick && let Ok(hints) = self.plan_hints.lock() {
            let extra: Vec<Key> = keys
                .iter()
                .filter_map(|k| match k {
                    Key::Instance(i) => hints.get(i),
                    Key::Group(_) => None,
                })
                .flatten()
                .cloned()
                .collect();
            keys.extend(extra);
        }
        keys.sort();
        keys.dedup();
        let mut loaded = self.ports.store.load(&keys).await?;
        self.remember_plans(&loaded.world);
        let more: Vec<Key> = self
            .engine
            .keys_for(&loaded.world, input)
            .into_iter()
            .filter(|k| !loaded.versions.contains_key(k))
            .collect();
        if !more.is_empty() {
            loaded.merge(self.ports.store.load(&more).await?);
        }
        Ok(loaded)
    }

    /// Decides `input` on the loaded records, loading what the core asks for.
    async fn decide_loaded(
        &self,
        world: &mut World,
        loaded: &mut Loaded,
        input: &Input,
        now: Millis,
    ) -> Result<Decision, RunError> {
        loop {
            let started = std::time::Instant::now();
            let decided = self.engine.decide(world, input, now);
            self.core_time.record(started.elapsed());
            match decided {
                Ok(d) => return Ok(d),
                Err(Missing(keys)) => {
                    let extra = self.ports.store.load(&keys).await?;
                    world.instances.extend(extra.world.instances.clone());
                    world.groups.extend(extra.world.groups.clone());
                    loaded.merge(extra);
                }
            }
        }
    }

    /// Decides `input`, chains the answers of the commands that may run before the commit
    /// ([`Command::may_run_early`]: the leave check, reads), and commits every record the
    /// chain changed in one conditional transaction. Returns the commands left to run.
    ///
    /// Chaining takes round trips off the path between two steps: the decision to leave a
    /// step and the decision to enter the next were two commits; they are one now. Running an
    /// early command for a decision that is then lost (a crash, a conflicting write) leaves
    /// nothing wrong: it is decided again, and the command runs again or is not needed.
    async fn decide_and_commit(
        &self,
        input: &Input,
        event: Option<EventId>,
        out: &mut Outcome,
        known: &mut Option<Loaded>,
    ) -> Result<Chain, RunError> {
        for attempt in 0..MAX_CONFLICTS {
            let mut loaded = self.loaded_for(input, known.take()).await?;
            let now = self.ports.clock.now();
            let mut world = loaded.world.clone();
            let decided = self
                .decide_chain(&mut world, &mut loaded, input, now, out)
                .await?;
            let (writes, written) = writes_of(&decided.changed, &world, &loaded);
            let commit = Commit {
                writes,
                event: event.clone(),
                deployments: decided.deployments,
                now,
            };
            let (committed, unset) = self.commit_beside(commit, &decided.commands).await;
            match committed {
                Ok(()) => {
                    self.remember_plans(&world);
                    loaded.world = world;
                    loaded.versions.extend(written);
                    *known = Some(loaded);
                    out.decisions += decided.decisions;
                    out.ignored.extend(decided.ignored);
                    out.commands += decided.commands.len() - unset.len();
                    return Ok(Chain {
                        commands: unset,
                        failed: decided.failed,
                    });
                }
                Err(StoreError::Conflict) => {
                    out.conflicts += 1;
                    tracing::debug!(attempt, "conflicting write; deciding again");
                    tokio::time::sleep(std::time::Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Contention(MAX_CONFLICTS))
    }

    /// The records `input` needs: those this invocation last wrote when they cover it,
    /// otherwise read afresh.
    async fn loaded_for(&self, input: &Input, known: Option<Loaded>) -> Result<Loaded, RunError> {
        let cached = known.filter(|k| {
            self.engine
                .keys_for(&k.world, input)
                .iter()
                .all(|key| k.versions.contains_key(key))
        });
        match cached {
            Some(k) => Ok(k),
            None => {
                let keys = self.engine.keys_for(&World::default(), input);
                self.load(input, keys).await
            }
        }
    }

    /// Decides `input` on `world`, then keeps running the early commands and deciding their
    /// answers while every command left is early or bookkeeping (at most [`MAX_CHAIN`] rounds,
    /// [`CHAIN_MAX_RECORDS`] changed records). Nothing is committed.
    async fn decide_chain(
        &self,
        world: &mut World,
        loaded: &mut Loaded,
        input: &Input,
        now: Millis,
        out: &mut Outcome,
    ) -> Result<Decided, RunError> {
        let first = self.decide_loaded(world, loaded, input, now).await?;
        let mut d = Decided {
            decisions: 1,
            ignored: first.ignored.into_iter().collect(),
            changed: first.changed,
            deployments: created(input),
            commands: Vec::new(),
            failed: None,
        };
        let mut later: Vec<Command> = Vec::new();
        let mut pending = first.commands;
        for _ in 0..MAX_CHAIN {
            let early = pending.iter().any(Command::may_run_early)
                && pending
                    .iter()
                    .all(|c| c.may_run_early() || c.is_bookkeeping())
                && d.changed.len() < CHAIN_MAX_RECORDS;
            if !early {
                break;
            }
            let (now_run, bookkeeping): (Vec<Command>, Vec<Command>) = std::mem::take(&mut pending)
                .into_iter()
                .partition(Command::may_run_early);
            later.extend(bookkeeping);
            let mut answers = Vec::new();
            for c in &now_run {
                match self.run_one(c, out, &mut 0).await {
                    Ok(answer) => answers.extend(answer),
                    Err(e @ RunError::Port { .. }) => {
                        d.failed = Some(e);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            for a in &answers {
                let next = self.decide_loaded(world, loaded, a, now).await?;
                d.decisions += 1;
                d.ignored.extend(next.ignored);
                d.changed.extend(next.changed);
                d.deployments.extend(created(a));
                pending.extend(next.commands);
            }
            if d.failed.is_some() {
                break;
            }
        }
        later.extend(pending);
        d.commands = latest_timers(later, world, now);
        Ok(d)
    }

    /// Commits, and meanwhile sets the decision's timers and reads the target revision of the
    /// groups about to get a deployment (so that `CreateDeployment` right after the commit
    /// needs no read of its own). Returns the commit's result and the commands still to run:
    /// all but the timers that were set.
    ///
    /// Timers are set beside the commit, not after the decision's commands: once the commit
    /// is done, so are they, and nothing that happens to the invocation afterwards (a failing
    /// call, the process dying before a command) can lose the timer that re-sends what it did
    /// not do. Set last, a timer died with such an invocation and the record waited for the
    /// minute sweep; in stress mode three of those in a row outlasted a 300 s heartbeat
    /// timeout (seeds 411, 2594, 3491, 4104). A commit that loses only costs a timer that finds
    /// nothing to do. Timers due now are not timers but nudges: they run with the commands
    /// (an inline tick).
    async fn commit_beside(
        &self,
        commit: Commit,
        commands: &[Command],
    ) -> (Result<(), StoreError>, Vec<Command>) {
        let now = commit.now;
        let prefetch = async {
            for c in commands {
                if let Command::CreateDeployment { group, .. } = c {
                    self.ports.deployments.prefetch(group).await;
                }
            }
        };
        let timers = async {
            let mut set = vec![false; commands.len()];
            for (c, set) in commands.iter().zip(&mut set) {
                if let Command::Wakeup { key, at } = c
                    && *at > now
                {
                    match self.ports.timer.wake(key, *at).await {
                        Ok(()) => *set = true,
                        // Left to run after the other commands, as any failing command is.
                        Err(e) => {
                            tracing::warn!(error = %e, "could not set a timer beside the commit")
                        }
                    }
                }
            }
            set
        };
        let (committed, (), set) = tokio::join!(self.ports.store.commit(commit), prefetch, timers);
        let unset = commands
            .iter()
            .zip(set)
            .filter(|(_, set)| !set)
            .map(|(c, _)| c.clone())
            .collect();
        (committed, unset)
    }

    /// Sets the timers among `commands` (after a failure, so that the record is looked at
    /// again on time rather than at the next sweep).
    async fn set_timers(&self, commands: impl Iterator<Item = &Command>) {
        for c in commands {
            if let Command::Wakeup { key, at } = c
                && let Err(e) = self.ports.timer.wake(key, *at).await
            {
                tracing::warn!(error = %e, "could not set a timer after a failed command; the sweep will find the record");
            }
        }
    }

    /// Runs commands in order; returns the answers to feed back. A transient failure stops the
    /// run (the core re-sends what it needs on its timers); a permanent one is logged and
    /// skipped, since retrying cannot help.
    async fn run(
        &self,
        commands: &[Command],
        out: &mut Outcome,
        inline_wakeups: &mut usize,
    ) -> Result<Vec<Input>, RunError> {
        let mut answers = Vec::new();
        // Heartbeats first: they depend on nothing else in the decision, and a failing call
        // later in the list (throttling, a dead dependency) must not starve them.
        let (beats, rest): (Vec<&Command>, Vec<&Command>) = commands
            .iter()
            .partition(|c| matches!(c, Command::RecordHeartbeat { .. }));
        let ordered: Vec<&Command> = beats.into_iter().chain(rest).collect();
        for (i, c) in ordered.iter().enumerate() {
            match self.run_one(c, out, inline_wakeups).await {
                Ok(answer) => answers.extend(answer),
                // Nothing else in a decision depends on a heartbeat, so one that failed holds
                // nothing up: the rest still runs, and the core sends the heartbeat again on
                // the record's timer (set beside the commit). Stopping here left a gate close
                // behind a throttled heartbeat to the next try (stress mode, seed 18076: a
                // final check's gates stayed open past the 150 s gate hygiene allows).
                Err(RunError::Port { command, source })
                    if matches!(c, Command::RecordHeartbeat { .. }) =>
                {
                    tracing::warn!(command, error = %source, "heartbeat failed; the core sends it again");
                }
                Err(e @ RunError::Port { .. }) => {
                    // The decision is committed; the core re-sends what this run did not do
                    // when the record's timer fires. A timer the commit could not set is
                    // still in the list: it is set now, or only the sweep would find the
                    // record.
                    self.set_timers(ordered.iter().skip(i + 1).copied()).await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answers)
    }

    /// Runs one command and returns its answer. A failure that a retry can mend is returned
    /// as `RunError::Port`; one that it cannot is logged and gives no answer.
    async fn run_one(
        &self,
        c: &Command,
        out: &mut Outcome,
        inline_wakeups: &mut usize,
    ) -> Result<Option<Input>, RunError> {
        self.ports.observer.before(c)?;
        out.commands += 1;
        match self.execute(c, inline_wakeups).await {
            Ok(answer) => Ok(answer),
            Err(source) if source.is_retryable() => Err(RunError::Port {
                command: name(c),
                source,
            }),
            Err(source) => {
                tracing::error!(command = name(c), error = %source, "command failed and cannot succeed on retry");
                Ok(None)
            }
        }
    }

    /// Runs one command through its port; the answer, if the command has one.
    async fn execute(
        &self,
        c: &Command,
        inline_wakeups: &mut usize,
    ) -> Result<Option<Input>, PortError> {
        let tags = &self.ports.tags;
        let deployments = &self.ports.deployments;
        Ok(match c {
            Command::OpenGate { gates, instances } => {
                tags.open(gates, instances).await?;
                None
            }
            Command::CloseGate { gates, instances } => {
                tags.close(gates, instances).await?;
                None
            }
            Command::CreateDeployment {
                group,
                intent,
                config,
                ..
            } => Some(self.create(group, intent, config.as_deref()).await),
            Command::FindDeployment {
                group,
                intent,
                since,
            } => Some(Input::CreateAttempted {
                group: group.clone(),
                intent: intent.clone(),
                outcome: deployments.find(group, intent, *since).await?,
            }),
            Command::StopDeployment { deployment, .. } => {
                deployments.stop(deployment).await?;
                None
            }
            Command::PollDeployment {
                group,
                deployment,
                instances,
            } => {
                let (state, targets) = deployments.status(deployment, instances).await?;
                Some(Input::DeploymentPolled {
                    group: group.clone(),
                    deployment: deployment.clone(),
                    state,
                    targets,
                })
            }
            Command::SealGate {
                group,
                deployment,
                gate,
                instances,
            } => Some(self.seal(group, deployment, gate, instances).await?),
            Command::CheckLeave {
                gate,
                instance,
                group,
                done_in,
                since,
            } => Some(
                self.check_leave(gate, instance, group, done_in.as_ref(), *since)
                    .await?,
            ),
            Command::CheckRevisions {
                instance,
                groups,
                asked_at,
                since,
            } => Some(
                self.check_revisions(instance, groups, *asked_at, *since)
                    .await?,
            ),
            Command::RecordHeartbeat { action } => self.heartbeat(action).await?,
            Command::CompleteAction { action, result } => self.complete(action, *result).await?,
            Command::Wakeup { key, at } => {
                if *at <= self.ports.clock.now() && *inline_wakeups < INLINE_WAKEUPS {
                    *inline_wakeups += 1;
                    Some(Input::Tick(key.clone()))
                } else {
                    self.ports.timer.wake(key, *at).await?;
                    None
                }
            }
            Command::Metric(m) => {
                // Embedded metric format: CloudWatch reads metrics from the log stream.
                let line = crate::emf::metric_line(m, self.ports.clock.now());
                self.ports.observer.emit(line);
                None
            }
            Command::WakeOverflowed { group, room } => {
                Some(self.wake_overflowed(group, *room).await?)
            }
            Command::Alert(a) => {
                tracing::error!(alert = ?a.kind, instance_id = a.instance.as_ref().map(|i| i.as_str()), group = ?a.group, "{}", a.message);
                let line = crate::emf::alert_line(a, self.ports.clock.now());
                self.ports.observer.emit(line);
                None
            }
        })
    }

    /// `WakeOverflowed`: the longest-waiting instances outside the group's full list get a
    /// timer message now, so they join as soon as there is room.
    async fn wake_overflowed(&self, group: &GroupKey, room: usize) -> Result<Input, PortError> {
        let found = self
            .ports
            .store
            .overflowed(group, room)
            .await
            .map_err(|e| {
                let op = "Query overflow index";
                if e.is_retryable() {
                    PortError::Transient {
                        op,
                        source: Box::new(e),
                    }
                } else {
                    PortError::Permanent {
                        op,
                        source: Box::new(e),
                    }
                }
            })?;
        let now = self.ports.clock.now();
        for id in &found {
            self.ports
                .timer
                .wake(&Key::Instance(id.clone()), now)
                .await?;
        }
        Ok(Input::OverflowWoken {
            group: group.clone(),
            woken: found.len(),
            room,
        })
    }

    /// A record too large to store fails every write for good: say which, why it matters and
    /// what to do, as an alert, rather than leave only a dead-lettered message.
    fn alert_if_too_large(&self, e: &RunError) {
        let RunError::Store(StoreError::TooLarge { key, bytes }) = e else {
            return;
        };
        let (instance, group) = match crate::store::key_of(key) {
            Some(Key::Instance(i)) => (Some(i), None),
            Some(Key::Group(g)) => (None, Some(g)),
            None => (None, None),
        };
        let alert = turnstile_core::Alert {
            kind: turnstile_core::AlertKind::RecordTooLarge,
            instance,
            group,
            message: format!(
                "record {key} would be {bytes} bytes, over DynamoDB's 400 KB item limit: no decision about it can be stored, and its messages go to the dead-letter queue. Report it with the record's key; lowering the plan's maxBatch for that group reduces the record"
            ),
        };
        tracing::error!(alert = ?alert.kind, group = ?alert.group, "{}", alert.message);
        self.ports
            .observer
            .emit(crate::emf::alert_line(&alert, self.ports.clock.now()));
    }

    /// `CreateDeployment`'s answer. A failure is the answer too (`Failed`, retryable or not):
    /// the core decides what to do about it.
    async fn create(&self, group: &GroupKey, intent: &IntentId, config: Option<&str>) -> Input {
        let outcome = match self.ports.deployments.create(group, intent, config).await {
            Ok(o) => o,
            Err(e) => CreateOutcome::Failed {
                reason: e.to_string(),
                retryable: e.is_retryable(),
            },
        };
        Input::CreateAttempted {
            group: group.clone(),
            intent: intent.clone(),
            outcome,
        }
    }

    /// `SealGate`'s answer. The gate is closed first: the status read after it is what proves
    /// the seal.
    async fn seal(
        &self,
        group: &GroupKey,
        deployment: &DeploymentId,
        gate: &Gate,
        instances: &[InstanceId],
    ) -> Result<Input, PortError> {
        self.ports
            .tags
            .close(std::slice::from_ref(gate), instances)
            .await?;
        let (state, _) = self.ports.deployments.status(deployment, &[]).await?;
        Ok(Input::GateSealed {
            group: group.clone(),
            deployment: deployment.clone(),
            state,
        })
    }

    /// `CheckLeave`'s answer: the instance's gate closed, then what other deployment of the
    /// group reached it.
    async fn check_leave(
        &self,
        gate: &Gate,
        instance: &InstanceId,
        group: &GroupKey,
        done_in: Option<&DeploymentId>,
        since: Option<Millis>,
    ) -> Result<Input, PortError> {
        self.ports
            .tags
            .close(std::slice::from_ref(gate), std::slice::from_ref(instance))
            .await?;
        let found = self
            .ports
            .deployments
            .holding(group, instance, done_in, since)
            .await?;
        Ok(Input::LeaveChecked {
            instance: instance.clone(),
            group: group.clone(),
            found,
        })
    }

    /// `CheckRevisions`' answer: each group's current target revision, in order; looking back
    /// from `since`, also what reached the instance since (a deployment still running on it
    /// counts as the group's active one).
    async fn check_revisions(
        &self,
        instance: &InstanceId,
        groups: &[GroupKey],
        asked_at: Millis,
        since: Option<Millis>,
    ) -> Result<Input, PortError> {
        let mut current = Vec::with_capacity(groups.len());
        for g in groups {
            let mut revision = self.ports.deployments.revision(g).await?;
            if let Some(since) = since {
                match self
                    .ports
                    .deployments
                    .holding(g, instance, None, Some(since))
                    .await?
                {
                    LeaveFound::Clear => {}
                    LeaveFound::Held(d) => {
                        revision.active.get_or_insert(d);
                    }
                    LeaveFound::Touched(d) => revision.touched = Some(d),
                }
            }
            current.push(revision);
        }
        Ok(Input::RevisionsChecked {
            instance: instance.clone(),
            current,
            asked_at,
        })
    }

    /// `RecordHeartbeat`'s answer; an action that is gone is an answer, not a failure.
    async fn heartbeat(&self, action: &ActionRef) -> Result<Option<Input>, PortError> {
        match self.ports.lifecycle.heartbeat(action).await {
            Ok(()) => Ok(Some(Input::HeartbeatRecorded {
                instance: action.instance.clone(),
                token: action.token.clone(),
                at: self.ports.clock.now(),
            })),
            Err(e) if e.is_gone() => Ok(Some(Input::ActionGone {
                instance: action.instance.clone(),
                token: action.token.clone(),
            })),
            Err(e) => Err(e),
        }
    }

    /// `CompleteAction`'s answer; an action that is gone is an answer, not a failure.
    async fn complete(
        &self,
        action: &ActionRef,
        result: LifecycleResult,
    ) -> Result<Option<Input>, PortError> {
        match self.ports.lifecycle.complete(action, result).await {
            Ok(()) => Ok(Some(Input::ActionCompleted {
                instance: action.instance.clone(),
                token: action.token.clone(),
            })),
            Err(e) if e.is_gone() => Ok(Some(Input::ActionGone {
                instance: action.instance.clone(),
                token: action.token.clone(),
            })),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use turnstile_core::Group;

    fn wake(key: &Key, at: u64) -> Command {
        Command::Wakeup {
            key: key.clone(),
            at: Millis(at),
        }
    }

    #[test]
    fn a_chain_keeps_each_records_final_timer_and_every_nudge() {
        let (busy, gone) = (GroupKey::new("app", "busy"), GroupKey::new("app", "gone"));
        let gate = Gate {
            key: "gate".into(),
            value: "open".into(),
        };
        let mut group = Group::new(busy.clone(), gate);
        group.wake_at = Some(Millis(9_000));
        let mut world = World::default();
        world.groups.insert(busy.clone(), Some(group));
        world.groups.insert(gone.clone(), None);
        let (b, g) = (Key::Group(busy), Key::Group(gone));
        let now = Millis(1_000);
        let kept = latest_timers(
            vec![
                wake(&b, 5_000), // set by the first decision, moved by the second
                wake(&b, 1_000), // a nudge: look now
                wake(&g, 7_000), // the record was deleted later in the chain
                Command::Metric(turnstile_core::Metric {
                    name: turnstile_core::MetricName::Held,
                    value: 1.0,
                    unit: turnstile_core::MetricUnit::Count,
                    asg: None,
                    group: None,
                }),
                wake(&b, 9_000),
                wake(&b, 9_000),
            ],
            &world,
            now,
        );
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[0], wake(&b, 1_000));
        assert!(matches!(kept[1], Command::Metric(_)));
        assert_eq!(kept[2], wake(&b, 9_000));
    }
}
