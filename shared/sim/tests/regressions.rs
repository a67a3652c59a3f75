//! Scenarios the property tests found, each named after the bug it exposed. On failure the
//! full trace of inputs and commands is printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use turnstile_model::DeployConfig;
use turnstile_sim::scenario::report;
use turnstile_sim::{Faults, Report, Scenario, Script, StepSpec};

fn step(
    config: DeployConfig,
    retries: u32,
    timeout_secs: u64,
    min_ms: u64,
    max_ms: u64,
    fail_prob: f64,
    has_revision: bool,
) -> StepSpec {
    StepSpec {
        retries,
        timeout_secs,
        hold_on_failure: false,
        config,
        min_ms,
        max_ms,
        fail_prob,
        has_revision,
    }
}

/// Runs `s` with a trace, fails with the trace on any violation, and reports the run.
fn assert_clean(s: &Scenario) -> Report {
    let mut sim = s.build();
    sim.trace = Some(Vec::new());
    sim.run(s.horizon_ms());
    sim.finish();
    if !sim.violations.is_empty() {
        for line in sim.trace.as_deref().unwrap_or_default() {
            eprintln!("{line}");
        }
        panic!("violations: {:#?}", sim.violations);
    }
    report(&sim, s.steps.len())
}

fn faults(duplicate: f64, drop_codedeploy: f64, drop_wakeup: f64, max_delay_ms: u64) -> Faults {
    Faults {
        duplicate,
        drop_codedeploy,
        drop_lifecycle: 0.0,
        drop_wakeup,
        max_delay_ms,
    }
}

/// A user deployment started in the moment between our deployment's end and the orchestrator
/// hearing of it captured an instance through its still-open gate; the instance then started
/// its next step with that deployment still in flight (invariant 1). Fixed by the leave check.
#[test]
fn foreign_deployment_caught_through_an_open_gate() {
    let st = |min, max, rev| step(DeployConfig::AllAtOnce, 0, 600, min, max, 0.0, rev);
    assert_clean(&Scenario {
        seed: 5825603462602440090,
        steps: vec![
            st(56875, 99475, true),
            st(5000, 5000, false),
            st(5000, 5000, true),
        ],
        heartbeat_secs: 30,
        batch_window_secs: 2,
        breaker_threshold: 1,
        terminate_hook: false,
        replace_after_ms: None,
        script: vec![
            (448367, Script::Launch(5)),
            (
                518566,
                Script::UserDeploy {
                    group: 3,
                    new_revision: false,
                },
            ),
        ],
        faults: faults(0.0, 0.0, 0.0, 4987),
    });
}

/// A plan that fits the global timeout exactly put the wake time at the launch instant; the
/// tick then computed the same past time and never scheduled the heartbeat (invariant 7).
#[test]
fn exact_fit_wake_time_must_lie_in_the_future() {
    assert_clean(&Scenario {
        seed: 0,
        steps: vec![
            step(DeployConfig::AllAtOnce, 0, 600, 5000, 10003, 0.35, true),
            step(DeployConfig::AllAtOnce, 0, 1800, 5000, 5001, 0.1, true),
            step(DeployConfig::AllAtOnce, 0, 600, 5000, 5001, 0.0, false),
        ],
        heartbeat_secs: 30,
        batch_window_secs: 0,
        breaker_threshold: 1,
        terminate_hook: false,
        replace_after_ms: Some(10000),
        script: vec![(17576, Script::Launch(5))],
        faults: faults(0.0, 0.25525001463756575, 0.0, 0),
    });
}

/// A group with no revision yet got one from a user mid-pipeline; the final check re-ran that
/// step after a later one, which is plan order per pass, not a violation (checker fixed).
#[test]
fn re_run_after_final_check_is_in_order() {
    assert_clean(&Scenario {
        seed: 1921124639867257602,
        steps: vec![
            step(DeployConfig::AllAtOnce, 0, 600, 5000, 5001, 0.0, false),
            step(DeployConfig::AllAtOnce, 1, 600, 5000, 82836, 0.1, true),
        ],
        heartbeat_secs: 30,
        batch_window_secs: 4,
        breaker_threshold: 1,
        terminate_hook: false,
        replace_after_ms: None,
        script: vec![
            (35154, Script::Launch(1)),
            (31154, Script::Launch(3)),
            (
                122016,
                Script::UserDeploy {
                    group: 2,
                    new_revision: true,
                },
            ),
        ],
        faults: faults(0.2975984441804467, 0.0, 0.0, 0),
    });
}

/// Short heartbeat timeouts with lost timer messages: the core alerts, and the harness only
/// drops wakeups for hooks of at least MIN_ROBUST_HEARTBEAT_SECS.
#[test]
fn robust_heartbeats_survive_lost_timer_messages() {
    assert_clean(&Scenario {
        seed: 0,
        steps: vec![step(
            DeployConfig::AllAtOnce,
            0,
            600,
            5000,
            5000,
            0.35,
            false,
        )],
        heartbeat_secs: 120,
        batch_window_secs: 1,
        breaker_threshold: 1,
        terminate_hook: false,
        replace_after_ms: None,
        script: vec![(0, Script::Launch(2)), (0, Script::Launch(4))],
        faults: faults(0.0036, 0.0, 0.5, 0),
    });
}

/// Two batch-mates with equal durations, two groups: a sealed member moved on the moment its
/// own target succeeded, so the first to finish opened group 2's batch window alone and the
/// second needed another deployment of group 2 (found by `a_burst_is_served_by_one_deployment_
/// per_group`, seed 0, n 2, window 1 s, 60 s durations).
#[test]
fn sealed_batch_mates_reach_the_next_group_together() {
    let s = Scenario {
        seed: 0,
        steps: (0..2)
            .map(|_| step(DeployConfig::AllAtOnce, 0, 1800, 60_000, 60_000, 0.0, true))
            .collect(),
        heartbeat_secs: 300,
        batch_window_secs: 1,
        breaker_threshold: 3,
        terminate_hook: false,
        replace_after_ms: None,
        script: vec![(0, Script::Launch(2))],
        faults: Faults::NONE,
    };
    let r = assert_clean(&s);
    assert_eq!(r.in_service, 2);
    assert_eq!(
        r.deployments_per_group,
        vec![1, 1],
        "one deployment per group"
    );
}
