//! Crash injection: for a multi-step plan, the runner dies before each command in turn (so
//! after every command of a crash-free run); the message is redelivered and the timer replays
//! what was left. Every lifecycle action must still complete exactly once, with CONTINUE, and
//! no instance may ever have two deployments in flight.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeMap;

use support::{Aws, CrashAt, ModelClock, Wakeups};
use turnstile_aws::Runner;
use turnstile_aws::store::memory::MemoryStore;
use turnstile_aws::store::{Due, Store};
use turnstile_core::{Engine, Input, Millis, Phase};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Fact, Hook, HookResult, InstanceState, Ms, Profile,
    Transition,
};

const STEPS: usize = 3;
const VISIBILITY_MS: Ms = 30_000;
const SWEEP_MS: Ms = 60_000;
const HORIZON_MS: Ms = 4 * 3600 * 1000;

type TestRunner = Runner<MemoryStore, Aws, Aws, Aws, Wakeups, ModelClock, CrashAt>;

fn cloud() -> Cloud {
    let steps: Vec<String> = (0..STEPS)
        .map(|i| {
            format!(r#"{{"application":"app{i}","deploymentGroup":"dg{i}","gateTag":"gate-{i}"}}"#)
        })
        .collect();
    let plan = format!(
        r#"{{"version":1,"steps":[{}],"batchWindowSecs":1}}"#,
        steps.join(",")
    );
    let mut c = Cloud::new(3);
    c.add_asg(Asg {
        name: "fleet".into(),
        hooks: vec![Hook {
            name: "launch".into(),
            transition: Transition::Launching,
            heartbeat_secs: 600,
            default_result: HookResult::Abandon,
            metadata: Some(plan),
        }],
        replace_after_ms: None,
    });
    for i in 0..STEPS {
        c.add_group(DeploymentGroup {
            app: format!("app{i}"),
            name: format!("dg{i}"),
            tag_set: vec![vec![(format!("gate-{i}"), "open".into())]],
            target_revision: Some(format!("rev-{i}")),
            config: DeployConfig::AllAtOnce,
            profile: Profile {
                min_ms: 30_000,
                max_ms: 30_000,
                fail_prob: 0.0,
            },
        });
    }
    c.now = 1_000_000;
    c
}

struct Run {
    aws: Aws,
    store: MemoryStore,
    wakeups: Wakeups,
    runner: TestRunner,
    inbox: BTreeMap<(Ms, u64), String>,
    seq: u64,
    crashes: u32,
    violations: Vec<String>,
}

impl Run {
    fn new(crash: CrashAt) -> Self {
        let aws = Aws::new(cloud());
        let store = MemoryStore::new();
        let wakeups = Wakeups::default();
        let runner = Runner::new(
            Engine::default(),
            store.clone(),
            aws.clone(),
            aws.clone(),
            aws.clone(),
            wakeups.clone(),
            ModelClock(aws.clone()),
            crash,
        );
        Self {
            aws,
            store,
            wakeups,
            runner,
            inbox: BTreeMap::new(),
            seq: 0,
            crashes: 0,
            violations: Vec::new(),
        }
    }

    fn now(&self) -> Ms {
        self.aws.lock().now
    }

    fn requeue(&mut self, body: String, at: Ms) {
        self.seq += 1;
        self.inbox.insert((at, self.seq), body);
    }

    /// Delivers one message like Lambda's event source mapping: a failed invocation puts it
    /// back after the visibility timeout.
    async fn deliver(&mut self, body: String) {
        let msg = turnstile_events::parse(&body).unwrap();
        let result = match self.runner.input_of(msg).await {
            Ok(Some((input, event))) => self.runner.handle(input, event).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            assert!(e.is_retryable(), "{e}");
            self.crashes += 1;
            let at = self.now() + VISIBILITY_MS;
            self.requeue(body, at);
        }
    }

    async fn tick(&mut self, input: Input) {
        if self.runner.handle(input, None).await.is_err() {
            self.crashes += 1; // the sweep will find the record again
        }
    }

    async fn run(&mut self) {
        self.aws.lock().scale_out("fleet", 2);
        let mut next_sweep = self.now() + SWEEP_MS;
        let end = self.now() + HORIZON_MS;
        loop {
            let published = self.aws.lock().drain();
            for p in published {
                self.requeue(p.json.to_string(), p.at);
            }
            let now = self.now();
            let message = self.inbox.keys().next().copied().filter(|(t, _)| *t <= now);
            let wakeup = {
                let mut w = self.wakeups.0.lock().unwrap();
                let k = w.keys().next().copied().filter(|(t, _)| t.0 <= now);
                k.and_then(|k| w.remove(&k))
            };
            if let Some(k) = message {
                let body = self.inbox.remove(&k).unwrap();
                if let Some(key) = wakeup {
                    let n = self
                        .wakeups
                        .1
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.wakeups.0.lock().unwrap().insert((Millis(now), n), key);
                }
                self.deliver(body).await;
            } else if let Some(key) = wakeup {
                self.tick(Input::Tick(key)).await;
            } else if now >= next_sweep {
                next_sweep = now + SWEEP_MS;
                for due in self.store.due(Millis(now), 1000).await.unwrap() {
                    match due {
                        Due::Outbox(id) => {
                            if self.runner.replay(&id).await.is_err() {
                                self.crashes += 1;
                            }
                        }
                        Due::Record(key) => self.tick(Input::Tick(key)).await,
                    }
                }
            } else {
                let waiting = self
                    .aws
                    .lock()
                    .instances
                    .values()
                    .any(|i| i.state == InstanceState::PendingWait);
                if !waiting && self.inbox.is_empty() && self.store.pending_outboxes() == 0 {
                    break;
                }
                let next = [
                    self.inbox.keys().next().map(|(t, _)| *t),
                    self.wakeups
                        .0
                        .lock()
                        .unwrap()
                        .keys()
                        .next()
                        .map(|(t, _)| t.0),
                    Some(next_sweep),
                    self.aws.lock().next_due(),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
                if next > end {
                    break;
                }
                self.aws.lock().advance_to(next.max(now));
            }
            self.check_gates();
            let c = self.aws.lock();
            for i in c
                .instances
                .values()
                .filter(|i| i.state == InstanceState::PendingWait)
            {
                let on = c.in_flight_on(&i.id);
                if on.len() > 1 {
                    self.violations
                        .push(format!("invariant 1: {} has {on:?} in flight", i.id));
                }
            }
        }
    }

    /// Gate hygiene, whenever no interrupted decision is pending: an instance on step k carries
    /// at most gate k; a verifying one carries none. (A lost CloseGate would leave a finished
    /// step's gate open, letting a later deployment of that group reach the busy instance.)
    fn check_gates(&mut self) {
        if self.store.pending_outboxes() > 0 {
            return;
        }
        let world = self.store.snapshot();
        let c = self.aws.lock();
        for i in c
            .instances
            .values()
            .filter(|i| i.state == InstanceState::PendingWait)
        {
            let Some(rec) = world.instance(&i.id.as_str().into()) else {
                continue;
            };
            let allowed: Vec<String> = match &rec.phase {
                Phase::Running { step, .. } => vec![format!("gate-{step}")],
                Phase::Verifying { .. } => vec![],
                _ => continue,
            };
            let open: Vec<&String> = i.tags.keys().filter(|k| k.starts_with("gate-")).collect();
            if open.iter().any(|g| !allowed.contains(g)) {
                let v = format!("gate hygiene: {} in {:?} carries {open:?}", i.id, rec.phase);
                if !self.violations.contains(&v) {
                    self.violations.push(v);
                }
            }
        }
    }

    /// Every launch action completed exactly once, with CONTINUE, and every group is on every
    /// instance; nothing left in the outbox.
    fn check(&self, label: &str) {
        assert!(self.violations.is_empty(), "{label}: {:?}", self.violations);
        let c = self.aws.lock();
        let mut completions: BTreeMap<&str, Vec<HookResult>> = BTreeMap::new();
        for f in &c.facts {
            match f {
                Fact::Completed { token, result, .. } => {
                    completions.entry(token).or_default().push(*result)
                }
                Fact::TimedOut { instance, .. } => {
                    panic!("{label}: the lifecycle action of {instance} timed out")
                }
                _ => {}
            }
        }
        assert_eq!(c.instances.len(), 2, "{label}");
        assert_eq!(completions.len(), 2, "{label}: {completions:?}");
        for (token, results) in &completions {
            assert_eq!(
                results,
                &vec![HookResult::Continue],
                "{label}: action {token} completed {results:?}"
            );
        }
        for i in c.instances.values() {
            assert_eq!(i.state, InstanceState::InService, "{label}: {}", i.id);
            for g in 0..STEPS {
                assert_eq!(
                    i.installed
                        .get(&(format!("app{g}"), format!("dg{g}")))
                        .map(String::as_str),
                    Some(format!("rev-{g}").as_str()),
                    "{label}: {} group {g}",
                    i.id
                );
            }
        }
        assert_eq!(
            self.store.pending_outboxes(),
            0,
            "{label}: commands left undone"
        );
    }
}

#[tokio::test]
async fn every_action_completes_once_whatever_command_the_runner_dies_at() {
    // A crash-free run counts the effectful commands.
    let counter = CrashAt::default();
    let mut baseline = Run::new(counter.clone());
    baseline.run().await;
    baseline.check("no crash");
    let commands = -counter.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        commands > 20,
        "a 3-step plan for two instances runs many commands ({commands})"
    );

    eprintln!("crash-free run: {commands} effectful commands; crashing before each in turn");
    let mut recovered = 0;
    for n in 1..=commands {
        let crash = CrashAt::default();
        crash.arm(n);
        let mut run = Run::new(crash);
        run.run().await;
        assert!(run.crashes >= 1, "crash {n} was injected");
        run.check(&format!("crash before command {n} of {commands}"));
        recovered += 1;
    }
    eprintln!("{recovered} crashed runs recovered");
}
