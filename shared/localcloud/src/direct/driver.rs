//! Drives the real runner (in-memory store, ports over the AWS model) through simulated time the
//! way Lambda and SQS would: published events become queue messages (duplicated, delayed and
//! lost as configured), a failed message comes back when the queue handler would make it
//! visible again (a transient failure after the handler's back-off for its receive count,
//! anything else after the queue's visibility timeout), wakeups are delayed messages, and the
//! timer sweeps what is due every minute. Invariants are checked after every step.

use std::collections::{BTreeMap, BTreeSet};

use turnstile_aws::redelivery::{Backoff, jitter};
use turnstile_aws::store::Store;
use turnstile_aws::store::memory::MemoryStore;
use turnstile_aws::{Observer, Runner};
use turnstile_core::{Input, Millis, Phase};
use turnstile_model::{Cloud, EventKind, Ms, Rng};
use turnstile_sim::invariants::Invariants;
use turnstile_sim::{Script, Scripted};

use super::{Aws, Counted, Injector, ModelPorts, StoreCounts, Wakeups, model_runner};
use crate::orchestrated::MAX_RECEIVE_COUNT;

/// The queue's visibility timeout (the SAM template's 360 s): when a failed message whose
/// visibility the handler did not change comes back.
pub const VISIBILITY_TIMEOUT_MS: Ms = 360_000;
pub const SWEEP_MS: Ms = 60_000;

/// A message on the queue: its body, an id (for the handler's jitter, as SQS's message id
/// is) and how often it was received.
struct Queued {
    body: String,
    id: String,
    receives: u32,
}

/// Delivery faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub duplicate: f64,
    pub drop_codedeploy: f64,
    /// Probability that a launch lifecycle event is lost (the sweep's adoption recovers it).
    pub drop_launch: f64,
    pub max_delay_ms: Ms,
    /// Probability that an AWS call is throttled (a transient port error).
    pub throttle: f64,
    /// Probability that a store commit fails with a conditional-write conflict.
    pub conflict: f64,
    /// Handle the messages of a batch two at a time, concurrently, interleaving at every store
    /// call (as two Lambda invocations would).
    pub concurrent: bool,
}

/// What the functions did: invocations (a batch of up to ten messages, or one timer sweep),
/// messages handled, wakeups delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    pub invocations: u64,
    pub messages: u64,
    pub wakeups: u64,
    pub sweeps: u64,
}

/// What became of one delivered message.
enum Attempt {
    Done,
    Unparsed,
    Failed(turnstile_aws::RunError),
}

/// Messages Lambda's SQS event source mapping hands one invocation.
pub const BATCH: usize = 10;

pub struct Driver<H: Observer> {
    pub aws: Aws,
    pub store: MemoryStore,
    pub store_counts: StoreCounts,
    pub work: Work,
    /// Check the invariants after every this many steps (1: always; the checks read the whole
    /// state, so large benchmark runs check less often). They are checked at the end regardless.
    pub check_every: u64,
    steps: u64,
    wakeups: Wakeups,
    pub runner: Runner<ModelPorts<Counted<MemoryStore>, H>>,
    inbox: BTreeMap<(Ms, u64), Queued>,
    seq: u64,
    rng: Rng,
    /// The handler's redelivery curve, and the seed of its jitter.
    backoff: Backoff,
    seed: u64,
    /// Failed receives that came back, and messages dead-lettered after their last receive.
    pub redeliveries: u64,
    pub dead_lettered: u64,
    faults: Faults,
    script: BTreeMap<(Ms, u64), Script>,
    scripted: Scripted,
    /// Plan groups in plan order: gate hygiene and the revision check use them.
    plan: Vec<(String, String)>,
    pub crashes: u32,
    pub violations: Vec<String>,
    /// Prints every delivery that mentions this text (an instance id, say) with the simulated
    /// time, its outcome and the instance's phase after it: how a failing seed is read.
    pub trace: Option<String>,
    /// Whether the end of a run checks that every instance reached a terminal state. A
    /// benchmark whose horizon cuts a slow contender short turns it off.
    pub check_end: bool,
    checker: Invariants,
    /// The template's EventBridge rules: only what they match reaches the queue.
    rules: [serde_json::Value; 4],
}

impl<H: Observer> Driver<H> {
    pub fn new(
        cloud: Cloud,
        observer: H,
        faults: Faults,
        seed: u64,
        plan: Vec<(String, String)>,
    ) -> Self {
        let injector = Injector::new(
            seed ^ 0x1f7,
            faults.throttle,
            faults.conflict,
            faults.concurrent,
        );
        let asgs: Vec<&str> = cloud.asgs.keys().map(String::as_str).collect();
        let apps: Vec<&str> = cloud.groups.keys().map(|(app, _)| app.as_str()).collect();
        let rules = crate::rules::rule_patterns(&asgs, &apps);
        // The model-level invariants (1, 3, 4, 6, and gates open at InService), with the plan's
        // gates and the launch hook read off the world; timeouts (5, 7) are judged against the
        // store's records instead.
        let mut checker = Invariants::for_cloud(&cloud, plan.clone());
        checker.timeouts = false;
        let aws = Aws::with_faults(cloud, injector.clone());
        let store = MemoryStore::new();
        let wakeups = Wakeups::default();
        let store_counts = StoreCounts::default();
        let store_port = Counted {
            inner: store.clone(),
            counts: store_counts.clone(),
            faults: injector,
        };
        let runner = model_runner(&aws, store_port, wakeups.clone(), observer);
        Self {
            aws,
            store,
            store_counts,
            work: Work::default(),
            check_every: 1,
            steps: 0,
            wakeups,
            runner,
            inbox: BTreeMap::new(),
            seq: 0,
            rng: Rng::new(seed ^ 0xd51),
            backoff: Backoff::default(),
            seed,
            redeliveries: 0,
            dead_lettered: 0,
            faults,
            script: BTreeMap::new(),
            scripted: Scripted::default(),
            plan,
            crashes: 0,
            violations: Vec::new(),
            trace: None,
            check_end: true,
            checker,
            rules,
        }
    }

    pub fn schedule(&mut self, at: Ms, what: Script) {
        self.seq += 1;
        self.script.insert((at, self.seq), what);
    }

    pub fn now(&self) -> Ms {
        self.aws.lock().now
    }

    fn enqueue(&mut self, body: String, at: Ms) {
        self.seq += 1;
        let id = format!("m-{}", self.seq);
        self.requeue(
            Queued {
                body,
                id,
                receives: 0,
            },
            at,
        );
    }

    fn requeue(&mut self, message: Queued, at: Ms) {
        self.seq += 1;
        self.inbox.insert((at, self.seq), message);
    }

    fn violation(&mut self, v: String) {
        if !self.violations.contains(&v) {
            self.violations.push(v);
        }
    }

    /// Published events become messages, with the configured faults.
    fn publish(&mut self) {
        let published = self.aws.lock().drain();
        for p in published {
            if !crate::rules::routed(&self.rules, &p.json) {
                continue;
            }
            if p.kind == EventKind::CodeDeploy && self.rng.chance(self.faults.drop_codedeploy) {
                continue;
            }
            // Drawn only when enabled, so seeds without the fault replay as they always did.
            let launch = p.kind == EventKind::Lifecycle
                && p.json.get("detail-type").and_then(|t| t.as_str())
                    == Some("EC2 Instance-launch Lifecycle Action");
            if launch && self.faults.drop_launch > 0.0 && self.rng.chance(self.faults.drop_launch) {
                continue;
            }
            let copies = if self.rng.chance(self.faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.range(0, self.faults.max_delay_ms);
                self.enqueue(p.json.to_string(), p.at + delay);
            }
        }
    }

    /// One message, as Lambda's event source mapping delivers it; what became of it.
    async fn attempt(runner: &Runner<ModelPorts<Counted<MemoryStore>, H>>, body: &str) -> Attempt {
        let Ok(msg) = turnstile_events::parse(body) else {
            return Attempt::Unparsed;
        };
        let result = match runner.input_of(msg).await {
            Ok(Some((input, event))) => runner.handle(input, event).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Attempt::Done,
            Err(e) => Attempt::Failed(e),
        }
    }

    fn traced(&self, what: &str, attempt: &Attempt) {
        let Some(needle) = self.trace.as_deref() else {
            return;
        };
        if !what.contains(needle) {
            return;
        }
        let world = self.store.snapshot();
        let phase = world
            .instances
            .iter()
            .filter(|(id, _)| id.as_str().contains(needle))
            .filter_map(|(_, i)| {
                i.as_ref().map(|i| {
                    format!(
                        "{:?} heartbeat {:?} sent {:?} wake {:?}",
                        i.phase, i.last_heartbeat, i.heartbeat_sent, i.wake_at
                    )
                })
            })
            .collect::<Vec<_>>();
        let outcome = match attempt {
            Attempt::Done => "done".to_string(),
            Attempt::Unparsed => "unparsed".to_string(),
            Attempt::Failed(e) => format!("failed: {e}"),
        };
        let what: String = what.chars().take(300).collect();
        let calls = self.aws.1.recorded();
        eprintln!(
            "[{}] {what}\n    calls {calls:?}\n    -> {outcome}; {phase:?}",
            self.now()
        );
    }

    /// Applies what became of a message: a failure comes back when the handler would make it
    /// visible again (`turnstile_aws::redelivery`), unless that was its last receive: then SQS
    /// moves it to the dead-letter queue (the invariants then say whether anything was lost).
    fn settle(&mut self, message: Queued, attempt: Attempt) {
        self.traced(&message.body, &attempt);
        match attempt {
            Attempt::Done => {}
            Attempt::Unparsed => self.violation(format!(
                "the model published a body the parser rejects: {}",
                message.body
            )),
            Attempt::Failed(e) => {
                let delay = if e.is_retryable() {
                    let j = jitter(self.seed, &message.id, message.receives);
                    u64::from(self.backoff.delay_secs(message.receives, j)) * 1000
                } else {
                    self.violation(format!("a message failed for good: {e}"));
                    VISIBILITY_TIMEOUT_MS
                };
                self.crashes += 1;
                if message.receives >= MAX_RECEIVE_COUNT {
                    self.dead_lettered += 1;
                    return;
                }
                self.redeliveries += 1;
                let at = self.now() + delay;
                self.requeue(message, at);
            }
        }
    }

    /// A message received once more.
    fn receive(mut message: Queued) -> Queued {
        message.receives += 1;
        message
    }

    async fn deliver(&mut self, message: Queued) {
        let message = Self::receive(message);
        // Marks the start of the critical path `make bench` measures (only when recording).
        if self.aws.1.recording()
            && message.body.contains("\"SUCCESS\"")
            && message.body.contains("Instance State-change")
        {
            self.aws.1.note("<instance SUCCESS event>");
        }
        if self.trace.is_some() {
            self.aws.1.record();
        }
        let attempt = Self::attempt(&self.runner, &message.body).await;
        self.settle(message, attempt);
    }

    /// Two messages at once, interleaved at every store call (two concurrent invocations).
    async fn deliver_pair(&mut self, a: Queued, b: Queued) {
        let (a, b) = (Self::receive(a), Self::receive(b));
        let (x, y) = tokio::join!(
            Self::attempt(&self.runner, &a.body),
            Self::attempt(&self.runner, &b.body)
        );
        self.settle(a, x);
        self.settle(b, y);
    }

    async fn tick(&mut self, input: Input) {
        let what = format!("{input:?}");
        if self.trace.is_some() {
            self.aws.1.record();
        }
        let attempt = match self.runner.handle(input, None).await {
            Ok(_) => Attempt::Done,
            Err(e) => {
                self.crashes += 1; // the sweep finds the record again
                Attempt::Failed(e)
            }
        };
        self.traced(&what, &attempt);
    }

    /// The sweep's readiness pass, as the timer function runs it: the readiness tags of every
    /// instance still waiting, read in one call. A failure waits for the next sweep.
    async fn readiness(&mut self, now: Ms) {
        if self.trace.is_some() {
            self.aws.1.record();
        }
        let result = turnstile_aws::readiness::probe(&self.runner, Millis(now), 1000).await;
        self.pass_done("<readiness pass>", result);
    }

    /// A sweep pass is over: a failure counts as a crash (the next sweep runs it again).
    fn pass_done<T>(&mut self, what: &str, result: Result<T, turnstile_aws::RunError>) {
        let attempt = match result {
            Ok(_) => Attempt::Done,
            Err(e) => {
                self.crashes += 1;
                Attempt::Failed(e)
            }
        };
        self.traced(what, &attempt);
    }

    /// The sweep's second half, as the timer function runs it: adopt the launches of every
    /// group whose events were lost. A failure waits for the next sweep.
    async fn adopt(&mut self) {
        let managed: Vec<String> = self.aws.lock().asgs.keys().cloned().collect();
        if self.trace.is_some() {
            self.aws.1.record();
        }
        let result = turnstile_aws::adopt::adopt(&self.runner, &managed).await;
        self.pass_done("<adoption pass>", result);
    }

    fn run_script(&mut self, what: Script) {
        self.scripted.apply(&mut self.aws.lock(), &self.plan, what);
    }

    /// Runs until nothing is left to do or `horizon` (simulated ms from now) passes.
    pub async fn run(&mut self, horizon: Ms) {
        let end = self.now() + horizon;
        let mut next_sweep = self.now() + SWEEP_MS;
        loop {
            self.publish();
            let now = self.now();
            let script = self
                .script
                .keys()
                .next()
                .copied()
                .filter(|(t, _)| *t <= now);
            let message = self.inbox.keys().next().copied().filter(|(t, _)| *t <= now);
            let wakeup = {
                let mut w = self.wakeups.0.lock().unwrap_or_else(|p| p.into_inner());
                let k = w.keys().next().copied().filter(|(t, _)| t.0 <= now);
                k.and_then(|k| w.remove(&k))
            };
            if let Some(k) = script {
                if let Some(what) = self.script.remove(&k) {
                    self.run_script(what);
                }
                self.requeue_wakeup(wakeup, now);
            } else if message.is_some() {
                self.invoke_batch(now).await;
                self.requeue_wakeup(wakeup, now);
            } else if let Some(key) = wakeup {
                self.aws.1.note("<timer message>");
                // A timer message: its own delivery (it would share batches on a busy queue).
                self.work.invocations += 1;
                self.work.wakeups += 1;
                self.tick(Input::Tick(key)).await;
            } else if now >= next_sweep {
                next_sweep = now + SWEEP_MS;
                self.work.invocations += 1;
                self.work.sweeps += 1;
                let due = self.store.due(Millis(now), 1000).await.unwrap_or_default();
                for key in due {
                    self.tick(Input::Tick(key)).await;
                }
                self.readiness(now).await;
                self.adopt().await;
            } else if !self.idle(now, next_sweep, end) {
                break;
            }
            self.steps += 1;
            if self.check_every > 0 && self.steps.is_multiple_of(self.check_every) {
                self.check();
            }
        }
        self.finish();
    }

    /// One invocation of the queue function: up to ten messages that are visible now.
    async fn invoke_batch(&mut self, now: Ms) {
        self.work.invocations += 1;
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let Some(k) = self.inbox.keys().next().copied().filter(|(t, _)| *t <= now) else {
                break;
            };
            if let Some(message) = self.inbox.remove(&k) {
                batch.push(message);
            }
        }
        self.work.messages += batch.len() as u64;
        let mut batch = batch.into_iter();
        while let Some(a) = batch.next() {
            match batch.next() {
                Some(b) if self.faults.concurrent => self.deliver_pair(a, b).await,
                Some(b) => {
                    self.deliver(a).await;
                    self.deliver(b).await;
                }
                None => self.deliver(a).await,
            }
        }
    }

    /// Nothing is due now: moves the model's clock to the next thing that can happen. Returns
    /// false when the run is over (nothing waits, or the next thing is past `end`).
    fn idle(&mut self, now: Ms, next_sweep: Ms, end: Ms) -> bool {
        let waiting = self
            .aws
            .lock()
            .instances
            .values()
            .any(|i| !i.actions.is_empty());
        if !waiting && self.inbox.is_empty() && self.script.is_empty() {
            return false;
        }
        let w = self
            .wakeups
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .next()
            .map(|(t, _)| t.0);
        let next = [
            self.script.keys().next().map(|(t, _)| *t),
            self.inbox.keys().next().map(|(t, _)| *t),
            w,
            Some(next_sweep),
            self.aws.lock().next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end);
        if next > end {
            return false;
        }
        self.aws.lock().advance_to(next.max(now));
        true
    }

    fn requeue_wakeup(&mut self, wakeup: Option<turnstile_core::Key>, now: Ms) {
        if let Some(key) = wakeup {
            let n = self
                .wakeups
                .1
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.wakeups
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((Millis(now), n), key);
        }
    }

    /// The invariants (docs/design.md "Invariants") that hold at every moment.
    fn check(&mut self) {
        let world = self.store.snapshot();
        let now = self.now();
        self.checker
            .check_with_records(&self.aws.lock(), &world, now);
        for v in std::mem::take(&mut self.checker.violations) {
            self.violation(v);
        }
    }

    /// The instances held with an alert (kept in Pending:Wait until an operator acts).
    pub fn held(&self) -> BTreeSet<String> {
        self.store
            .snapshot()
            .instances
            .into_values()
            .flatten()
            .filter(|r| matches!(r.phase, Phase::Held { .. }))
            .map(|r| r.id.0)
            .collect()
    }

    /// The end of a run: every instance reached a terminal state (or is held with an alert),
    /// and those in service carry every gate.
    fn finish(&mut self) {
        self.check();
        if !self.check_end {
            return;
        }
        let held = self.held();
        self.checker.finish(&self.aws.lock(), &held);
        for v in std::mem::take(&mut self.checker.violations) {
            self.violation(v);
        }
    }
}
