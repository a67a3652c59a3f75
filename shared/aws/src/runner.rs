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

use std::collections::VecDeque;

use turnstile_core::{
    Command, CreateOutcome, Decision, Engine, EventId, Input, Key, Millis, Missing, World,
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

/// Called before each command runs; tests use it to simulate a crash.
pub trait Hook: Send + Sync {
    fn before(&self, command: &Command) -> Result<(), RunError>;

    /// Writes one embedded-metric-format line. On Lambda that is stdout, which CloudWatch reads;
    /// the local cloud collects them instead.
    fn emit(&self, line: String) {
        println!("{line}");
    }
}

/// No hook.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl Hook for NoHook {
    fn before(&self, _: &Command) -> Result<(), RunError> {
        Ok(())
    }
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

/// The deployment → group index entry an answer implies.
fn created(input: &Input) -> Vec<(turnstile_core::DeploymentId, turnstile_core::GroupKey)> {
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

pub struct Runner<S, L, D, T, W, C, H = NoHook> {
    pub engine: Engine,
    pub core_time: CoreTime,
    /// The groups of each instance's plan, remembered across invocations of a warm function so
    /// that one read fetches an instance together with its groups.
    plan_hints: std::sync::Mutex<std::collections::HashMap<turnstile_core::InstanceId, Vec<Key>>>,
    pub store: S,
    pub lifecycle: L,
    pub deployments: D,
    pub tags: T,
    pub timer: W,
    pub clock: C,
    pub hook: H,
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
    }
}

impl<S, L, D, T, W, C, H> Runner<S, L, D, T, W, C, H>
where
    S: Store,
    L: Lifecycle,
    D: Deployments,
    T: Tags,
    W: Timer,
    C: Clock,
    H: Hook,
{
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        store: S,
        lifecycle: L,
        deployments: D,
        tags: T,
        timer: W,
        clock: C,
        hook: H,
    ) -> Self {
        Self {
            engine,
            core_time: CoreTime::default(),
            plan_hints: std::sync::Mutex::default(),
            store,
            lifecycle,
            deployments,
            tags,
            timer,
            clock,
            hook,
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
                Err(e) => return Err(e),
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
                let hook =
                    self.lifecycle
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

    async fn load(&self, input: &Input, world_keys: Vec<Key>) -> Result<Loaded, RunError> {
        let mut keys = world_keys;
        if let Ok(hints) = self.plan_hints.lock() {
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
        let mut loaded = self.store.load(&keys).await?;
        if let Ok(mut hints) = self.plan_hints.lock() {
            if hints.len() > PLAN_HINTS {
                hints.clear();
            }
            for inst in loaded.world.instances.values().flatten() {
                let groups = inst
                    .plan
                    .steps
                    .iter()
                    .map(|s| Key::Group(s.group.clone()))
                    .collect();
                hints.insert(inst.id.clone(), groups);
            }
        }
        let more: Vec<Key> = self
            .engine
            .keys_for(&loaded.world, input)
            .into_iter()
            .filter(|k| !loaded.versions.contains_key(k))
            .collect();
        if !more.is_empty() {
            loaded.merge(self.store.load(&more).await?);
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
                    let extra = self.store.load(&keys).await?;
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
            let cached = known.take().filter(|k| {
                self.engine
                    .keys_for(&k.world, input)
                    .iter()
                    .all(|key| k.versions.contains_key(key))
            });
            let mut loaded = match cached {
                Some(k) => k,
                None => {
                    let keys = self.engine.keys_for(&World::default(), input);
                    self.load(input, keys).await?
                }
            };
            let now = self.clock.now();
            let mut world = loaded.world.clone();
            let first = self
                .decide_loaded(&mut world, &mut loaded, input, now)
                .await?;
            let mut decisions = 1;
            let mut ignored: Vec<String> = first.ignored.into_iter().collect();
            let mut changed = first.changed;
            let mut deployments = created(input);
            let mut later: Vec<Command> = Vec::new();
            let mut pending = first.commands;
            let mut failed = None;
            for _ in 0..MAX_CHAIN {
                let early = pending.iter().any(Command::may_run_early)
                    && pending
                        .iter()
                        .all(|c| c.may_run_early() || c.is_bookkeeping())
                    && changed.len() < CHAIN_MAX_RECORDS;
                if !early {
                    break;
                }
                let (now_run, bookkeeping): (Vec<Command>, Vec<Command>) =
                    std::mem::take(&mut pending)
                        .into_iter()
                        .partition(Command::may_run_early);
                later.extend(bookkeeping);
                let mut answers = Vec::new();
                for c in &now_run {
                    match self.run_one(c, out, &mut 0).await {
                        Ok(answer) => answers.extend(answer),
                        Err(e @ RunError::Port { .. }) => {
                            failed = Some(e);
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                for a in &answers {
                    let d = self.decide_loaded(&mut world, &mut loaded, a, now).await?;
                    decisions += 1;
                    ignored.extend(d.ignored);
                    changed.extend(d.changed);
                    deployments.extend(created(a));
                    pending.extend(d.commands);
                }
                if failed.is_some() {
                    break;
                }
            }
            later.extend(pending);
            let commands = latest_timers(later, &world, now);
            let writes: Vec<(Key, Option<Record>, u64)> = changed
                .iter()
                .map(|k| {
                    let rec = match k {
                        Key::Instance(i) => world.instance(i).cloned().map(Record::Instance),
                        Key::Group(g) => world.group(g).cloned().map(Record::Group),
                    };
                    (k.clone(), rec, loaded.version(k))
                })
                .collect();
            let written: Vec<(Key, u64)> = writes
                .iter()
                .map(|(k, rec, v)| (k.clone(), if rec.is_some() { v + 1 } else { 0 }))
                .collect();
            let commit = Commit {
                writes,
                event: event.clone(),
                deployments,
                now,
            };
            // The groups about to get a deployment: their target revision is read while the
            // commit is in flight, so `CreateDeployment` right after it needs no read of its
            // own. A commit that loses only wastes the read.
            let prefetch = async {
                for c in &commands {
                    if let Command::CreateDeployment { group, .. } = c {
                        self.deployments.prefetch(group).await;
                    }
                }
            };
            let (committed, ()) = tokio::join!(self.store.commit(commit), prefetch);
            match committed {
                Ok(()) => {
                    loaded.world = world;
                    loaded.versions.extend(written);
                    *known = Some(loaded);
                    out.decisions += decisions;
                    out.ignored.extend(ignored);
                    return Ok(Chain { commands, failed });
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

    /// Sets the timers among `commands` (after a failure, so that the record is looked at
    /// again on time rather than at the next sweep).
    async fn set_timers(&self, commands: impl Iterator<Item = &Command>) {
        for c in commands {
            if let Command::Wakeup { key, at } = c
                && let Err(e) = self.timer.wake(key, *at).await
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
                Err(e @ RunError::Port { .. }) => {
                    // The decision is committed; the core re-sends what this run did not do
                    // when the record's timer fires. Its timers come last in the list, so they
                    // are set now: otherwise only the periodic sweep would find the record.
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
        self.hook.before(c)?;
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

    async fn execute(
        &self,
        c: &Command,
        inline_wakeups: &mut usize,
    ) -> Result<Option<Input>, PortError> {
        Ok(match c {
            Command::OpenGate { gates, instances } => {
                self.tags.open(gates, instances).await?;
                None
            }
            Command::CloseGate { gates, instances } => {
                self.tags.close(gates, instances).await?;
                None
            }
            Command::CreateDeployment {
                group,
                intent,
                config,
                ..
            } => {
                let outcome = match self
                    .deployments
                    .create(group, intent, config.as_deref())
                    .await
                {
                    Ok(o) => o,
                    Err(e) => CreateOutcome::Failed {
                        reason: e.to_string(),
                        retryable: e.is_retryable(),
                    },
                };
                Some(Input::CreateAttempted {
                    group: group.clone(),
                    intent: intent.clone(),
                    outcome,
                })
            }
            Command::FindDeployment {
                group,
                intent,
                since,
            } => {
                let outcome = self.deployments.find(group, intent, *since).await?;
                Some(Input::CreateAttempted {
                    group: group.clone(),
                    intent: intent.clone(),
                    outcome,
                })
            }
            Command::StopDeployment { deployment, .. } => {
                self.deployments.stop(deployment).await?;
                None
            }
            Command::PollDeployment {
                group,
                deployment,
                instances,
            } => {
                let (state, targets) = self.deployments.status(deployment, instances).await?;
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
            } => {
                // Close first: the status read after it is what proves the seal.
                self.tags
                    .close(std::slice::from_ref(gate), instances)
                    .await?;
                let (state, _) = self.deployments.status(deployment, &[]).await?;
                Some(Input::GateSealed {
                    group: group.clone(),
                    deployment: deployment.clone(),
                    state,
                })
            }
            Command::CheckLeave {
                gate,
                instance,
                group,
                done_in,
            } => {
                self.tags
                    .close(std::slice::from_ref(gate), std::slice::from_ref(instance))
                    .await?;
                let blocking = self
                    .deployments
                    .holding(group, instance, done_in.as_ref())
                    .await?;
                Some(Input::LeaveChecked {
                    instance: instance.clone(),
                    group: group.clone(),
                    blocking,
                })
            }
            Command::CheckRevisions { instance, groups } => {
                let mut current = Vec::with_capacity(groups.len());
                for g in groups {
                    current.push(self.deployments.revision(g).await?);
                }
                Some(Input::RevisionsChecked {
                    instance: instance.clone(),
                    current,
                })
            }
            Command::RecordHeartbeat { action } => match self.lifecycle.heartbeat(action).await {
                Ok(()) => Some(Input::HeartbeatRecorded {
                    instance: action.instance.clone(),
                    token: action.token.clone(),
                    at: self.clock.now(),
                }),
                Err(e) if e.is_gone() => Some(Input::ActionGone {
                    instance: action.instance.clone(),
                    token: action.token.clone(),
                }),
                Err(e) => return Err(e),
            },
            Command::CompleteAction { action, result } => {
                match self.lifecycle.complete(action, *result).await {
                    Ok(()) => Some(Input::ActionCompleted {
                        instance: action.instance.clone(),
                        token: action.token.clone(),
                    }),
                    Err(e) if e.is_gone() => Some(Input::ActionGone {
                        instance: action.instance.clone(),
                        token: action.token.clone(),
                    }),
                    Err(e) => return Err(e),
                }
            }
            Command::Wakeup { key, at } => {
                if *at <= self.clock.now() && *inline_wakeups < INLINE_WAKEUPS {
                    *inline_wakeups += 1;
                    Some(Input::Tick(key.clone()))
                } else {
                    self.timer.wake(key, *at).await?;
                    None
                }
            }
            Command::Metric(m) => {
                // Embedded metric format: CloudWatch reads metrics from the log stream.
                self.hook.emit(crate::emf::metric_line(m, self.clock.now()));
                None
            }
            Command::Alert(a) => {
                tracing::error!(alert = ?a.kind, instance_id = a.instance.as_ref().map(|i| i.as_str()), group = ?a.group, "{}", a.message);
                self.hook.emit(crate::emf::alert_line(a, self.clock.now()));
                None
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use turnstile_core::{Gate, Group, GroupKey};

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
