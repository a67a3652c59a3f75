//! Deterministic simulation of the real runner: every seed draws a plan, a fleet, failure
//! rates, launches, terminations, user deployments, delivery faults (duplicates, delays,
//! lost CodeDeploy events), throttled AWS calls, conditional-write conflicts, concurrent
//! invocations (two messages of a batch at once, interleaved at every store call) and runner
//! crashes before random commands, then checks the invariants (docs/design.md "Invariants") after every step.
//!
//! `DST_SEEDS` (default 10000) seeds from `DST_SEED_START` (default 0); `DST_SEED=n` replays one
//! seed and prints what it did; `DST_CRASH` and `DST_THROTTLE` (probabilities) override the
//! drawn crash and throttling rates to hunt rare bugs (stress mode is `DST_CRASH=0.05
//! DST_THROTTLE=0.1`, what `make soak STRESS=1` runs); with `DST_SEED`, `DST_TRACE=<text>` prints
//! every delivery that mentions the text (an instance id) and the instance's phase after it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::Mutex;

use support::driver::{Driver, Faults};
use turnstile_aws::runner::{Observer, RunError};
use turnstile_core::Command;
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Hook as AsgHook, HookResult, Ms, Profile, Rng,
    Transition,
};
use turnstile_sim::Script;

/// Crashes the runner before a command with the given probability (seeded).
struct RandomCrash {
    rng: Mutex<Rng>,
    p: f64,
}

impl Observer for RandomCrash {
    fn before(&self, c: &Command) -> Result<(), RunError> {
        if matches!(c, Command::Metric(_) | Command::Alert(_)) {
            return Ok(());
        }
        let crash = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .chance(self.p);
        if crash {
            Err(RunError::Crashed)
        } else {
            Ok(())
        }
    }
}

struct World {
    cloud: Cloud,
    script: Vec<(Ms, Script)>,
    faults: Faults,
    crash: f64,
    plan: Vec<(String, String)>,
    summary: String,
}

fn pick<T: Copy>(r: &mut Rng, xs: &[T]) -> T {
    xs[r.range(0, xs.len() as u64 - 1) as usize]
}

/// Crash and throttling rates that override the drawn ones.
#[derive(Debug, Clone, Copy, Default)]
struct Stress {
    crash: Option<f64>,
    throttle: Option<f64>,
}

impl Stress {
    /// Stress mode: runner crashes before 5 % of commands, 10 % of AWS calls failing after
    /// the SDK's retries.
    const MODE: Stress = Stress {
        crash: Some(0.05),
        throttle: Some(0.1),
    };

    fn from_env() -> Self {
        Self {
            crash: env_f64("DST_CRASH"),
            throttle: env_f64("DST_THROTTLE"),
        }
    }
}

fn world(seed: u64, stress: Stress) -> World {
    let mut r = Rng::new(seed);
    let steps = r.range(1, 4) as usize;
    let heartbeat = pick(&mut r, &[300u64, 600]);
    let plan: Vec<(String, String)> = (0..steps)
        .map(|i| (format!("app{i}"), format!("dg{i}")))
        .collect();
    let step_json: Vec<String> = (0..steps)
        .map(|i| format!(r#"{{"application":"app{i}","deploymentGroup":"dg{i}","gateTag":"gate-{i}","retries":{},"timeoutSecs":900}}"#, r.range(0, 2)))
        .collect();
    let plan_json = format!(
        r#"{{"version":1,"steps":[{}],"batchWindowSecs":{},"retryBackoffSecs":10}}"#,
        step_json.join(","),
        r.range(0, 3)
    );
    let plan_json = plan_json.replace(
        r#","retryBackoffSecs":10}"#,
        r#","defaults":{"retryBackoffSecs":10}}"#,
    );
    let mut cloud = Cloud::new(seed);
    let mut hooks = vec![AsgHook {
        name: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
        transition: Transition::Launching,
        heartbeat_secs: heartbeat,
        default_result: HookResult::Abandon,
        metadata: Some(plan_json),
    }];
    if r.chance(0.5) {
        hooks.push(AsgHook {
            name: turnstile_core::DEFAULT_TERMINATE_HOOK.into(),
            transition: Transition::Terminating,
            heartbeat_secs: heartbeat,
            default_result: HookResult::Continue,
            metadata: None,
        });
    }
    cloud.add_asg(Asg {
        name: "fleet".into(),
        hooks,
        replace_after_ms: Some(10_000),
    });
    for (i, (app, dg)) in plan.iter().enumerate() {
        let min = r.range(5_000, 60_000);
        cloud.add_group(DeploymentGroup {
            app: app.clone(),
            name: dg.clone(),
            tag_set: vec![vec![(format!("gate-{i}"), "open".into())]],
            target_revision: r.chance(0.95).then(|| format!("rev-{i}")),
            config: pick(
                &mut r,
                &[
                    DeployConfig::AllAtOnce,
                    DeployConfig::AllAtOnce,
                    DeployConfig::HalfAtATime,
                    DeployConfig::OneAtATime,
                ],
            ),
            profile: Profile {
                min_ms: min,
                max_ms: min + r.range(0, 90_000),
                fail_prob: pick(&mut r, &[0.0, 0.0, 0.05, 0.2]),
            },
        });
    }
    cloud.now = 1_000_000;
    let t0 = cloud.now;
    let mut script = Vec::new();
    for _ in 0..r.range(1, 3) {
        script.push((
            t0 + r.range(0, 300_000),
            Script::Launch(r.range(1, 5) as usize),
        ));
    }
    for _ in 0..r.range(0, 2) {
        script.push((
            t0 + r.range(0, 600_000),
            Script::Terminate(r.range(0, 20) as usize),
        ));
    }
    for _ in 0..r.range(0, 2) {
        script.push((
            t0 + r.range(0, 600_000),
            Script::UserDeploy {
                group: r.range(0, 3) as usize,
                new_revision: r.chance(0.5),
            },
        ));
    }
    let mut faults = Faults {
        duplicate: pick(&mut r, &[0.0, 0.05, 0.2]),
        drop_codedeploy: pick(&mut r, &[0.0, 0.05, 0.2]),
        max_delay_ms: pick(&mut r, &[0, 2_000, 15_000]),
        ..Faults::default()
    };
    // Crashes before up to 1 % of commands. Stress mode's 5 % is far beyond what Lambda does.
    let crash = pick(&mut r, &[0.0, 0.005, 0.01]);
    // Throttled AWS calls (a port error is what is left after the SDK's own three attempts, so
    // a few percent is already a bad day), conditional-write conflicts, and concurrent
    // invocations racing on the same records.
    faults.throttle = pick(&mut r, &[0.0, 0.0, 0.01, 0.03]);
    faults.conflict = pick(&mut r, &[0.0, 0.0, 0.02, 0.1]);
    faults.concurrent = r.chance(0.5);
    // Lost launch events, recovered by the sweep's adoption (drawn last so the draws above keep
    // their values for every seed).
    faults.drop_launch = pick(&mut r, &[0.0, 0.0, 0.05, 0.3]);
    // Stress knobs for hunting rare bugs (`DST_CRASH=0.05 DST_THROTTLE=0.1` is stress mode,
    // docs/design.md "Stress mode") override the draws.
    let crash = stress.crash.unwrap_or(crash);
    faults.throttle = stress.throttle.unwrap_or(faults.throttle);
    let summary = format!(
        "{steps} step(s), heartbeat {heartbeat} s, script {script:?}, faults {faults:?}, crash probability {crash}"
    );
    World {
        cloud,
        script,
        faults,
        crash,
        plan,
        summary,
    }
}

/// What a passing run did: runner crashes recovered, instances, failed receives redelivered,
/// messages dead-lettered.
type Ran = (u32, usize, u64, u64);

async fn run(seed: u64, verbose: bool) -> Result<Ran, String> {
    run_with(
        seed,
        verbose,
        turnstile_core::Config::default(),
        Stress::from_env(),
    )
    .await
}

async fn run_with(
    seed: u64,
    verbose: bool,
    config: turnstile_core::Config,
    stress: Stress,
) -> Result<Ran, String> {
    let w = world(seed, stress);
    let hook = RandomCrash {
        rng: Mutex::new(Rng::new(seed ^ 0xc4a5)),
        p: w.crash,
    };
    let mut d = Driver::new(w.cloud, hook, w.faults, seed, w.plan);
    d.runner.engine = turnstile_core::Engine::new(config);
    if verbose {
        d.trace = std::env::var("DST_TRACE").ok();
    }
    for (at, what) in w.script {
        d.schedule(at, what);
    }
    d.run(8 * 3600 * 1000).await;
    let instances = d.aws.lock().instances.len();
    if verbose {
        eprintln!(
            "seed {seed}: {}\n  {} instance(s), {} crash(es), {} redelivered receive(s), {} dead-lettered, violations {:?}",
            w.summary, instances, d.crashes, d.redeliveries, d.dead_lettered, d.violations
        );
    }
    if d.violations.is_empty() {
        Ok((d.crashes, instances, d.redeliveries, d.dead_lettered))
    } else {
        Err(format!(
            "seed {seed} ({}): {:?}\n  replay: DST_SEED={seed} cargo test -p turnstile-aws --test dst -- --nocapture",
            w.summary, d.violations
        ))
    }
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds that fail on an issue listed as open in docs/design.md, reported on every run and
/// replayed with `DST_SEED=<n>`; a seed that starts passing must leave this list. None is open:
/// the last two (4663, a heartbeat gap while leaving; 7913, a CONTINUE re-sent after a user
/// changed a revision) are fixed, and their stories are in docs/design.md.
const KNOWN_OPEN: &[u64] = &[];

// Paused time: the runner's back-off sleeps after injected conflicts cost no wall time.
#[tokio::test(start_paused = true)]
async fn invariants_hold_for_every_seed() {
    if let Some(seed) = env("DST_SEED") {
        run(seed, true).await.unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let (start, count) = (
        env("DST_SEED_START").unwrap_or(0),
        env("DST_SEEDS").unwrap_or(10_000),
    );
    let (mut crashes, mut instances, mut failures) = (0u64, 0usize, Vec::new());
    let (mut fixed, mut redeliveries, mut dead_lettered) = (Vec::new(), 0u64, Vec::new());
    for seed in start..start + count {
        match run(seed, false).await {
            Ok((c, i, r, dead)) => {
                crashes += u64::from(c);
                instances += i;
                redeliveries += r;
                if dead > 0 {
                    dead_lettered.push(seed);
                }
                if KNOWN_OPEN.contains(&seed) {
                    fixed.push(seed);
                }
            }
            Err(e) if KNOWN_OPEN.contains(&seed) => {
                eprintln!("known open issue, still failing: {e}");
            }
            Err(e) => failures.push((seed, e)),
        }
    }
    assert!(
        fixed.is_empty(),
        "seeds {fixed:?} pass now: remove them from KNOWN_OPEN and the open issues"
    );
    eprintln!(
        "{count} seeds: {instances} instances, {crashes} runner crashes recovered, {redeliveries} failed receives redelivered, {} seed(s) dead-lettered a message {dead_lettered:?}, {} failing seed(s)",
        dead_lettered.len(),
        failures.len()
    );
    // Which rules broke, counted once per seed: safety (1, 3, 4, 6) against timing (5/7, gate
    // hygiene), which only a fault rate beyond what retries absorb can break.
    let mut kinds = std::collections::BTreeMap::<&str, Vec<u64>>::new();
    for (seed, f) in &failures {
        for kind in [
            "invariant 1:",
            "invariant 2:",
            "invariant 3",
            "invariant 4:",
            "invariant 5/7:",
            "invariant 6:",
            "gate hygiene:",
        ] {
            if f.contains(kind) {
                kinds
                    .entry(kind.trim_end_matches(':'))
                    .or_default()
                    .push(*seed);
            }
        }
    }
    if !kinds.is_empty() {
        eprintln!("failing seeds per broken rule: {kinds:?}");
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every seed of 0–19,999 that stress mode failed on the way to the fixes of docs/design.md
/// "Stress mode": missed heartbeats (411 and 14 more), an instance in service with a user's
/// failed revision (2837, 6630), two users' deployments while a CONTINUE was unconfirmed (2472,
/// 3612, 6245, 7827, 8136, 11241), gates left open (8220, 18076) and lost launches adopted too
/// late because an adoption check failed (10369, 12354, 14409, 14446, 17367, 17726, 17867). A
/// seed's run changes with the code, so these replays pin little on their own; `make soak
/// STRESS=1` is the check that counts.
const STRESS_FAILED: &[u64] = &[
    411, 2472, 2594, 2625, 2837, 3094, 3491, 3612, 4104, 4667, 5176, 5828, 6021, 6118, 6221, 6245,
    6314, 6630, 7827, 8136, 8220, 8243, 8375, 10369, 11241, 12354, 14409, 14446, 17367, 17726,
    17867, 18076,
];

#[tokio::test(start_paused = true)]
async fn stress_mode_seeds_that_once_failed_pass() {
    let mut failures = Vec::new();
    for &seed in STRESS_FAILED {
        if let Err(e) = run_with(seed, false, turnstile_core::Config::default(), Stress::MODE).await
        {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The simulation bites: an engine whose heartbeat comes only when the timeout is due is caught.
#[tokio::test(start_paused = true)]
async fn a_broken_rule_is_caught() {
    let broken = turnstile_core::Config {
        heartbeat_permille: 1000,
        ..turnstile_core::Config::default()
    };
    let mut failing = 0;
    for seed in 0..200 {
        if run_with(seed, false, broken.clone(), Stress::from_env())
            .await
            .is_err()
        {
            failing += 1;
        }
    }
    assert!(
        failing > 0,
        "heartbeats at the timeout went unnoticed in 200 seeds"
    );
    eprintln!("heartbeat at 100 % of the timeout: {failing} of 200 seeds fail");
}
