//! Property tests: random plans, launches, terminations, user deployments, and duplicated /
//! reordered / delayed / dropped events, driven through the real core against the AWS model.
//! Invariants 1–7 (docs/design.md "Invariants") are checked after every step (see `Sim`).
//!
//! `PROPTEST_CASES` overrides the case count (default 1000 per property). A failure prints the
//! minimal scenario proptest shrank it to; replay it with `Scenario::run`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use proptest::prelude::*;
use turnstile_model::DeployConfig;
use turnstile_sim::{Faults, Scenario, Script, StepSpec};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn step() -> impl Strategy<Value = StepSpec> {
    (
        0u32..=2,
        prop_oneof![4 => Just(600u64), 1 => Just(1800u64)],
        prop::bool::weighted(0.15),
        prop_oneof![3 => Just(DeployConfig::AllAtOnce), 1 => Just(DeployConfig::OneAtATime), 1 => Just(DeployConfig::HalfAtATime)],
        5_000u64..60_000,
        0u64..120_000,
        prop_oneof![5 => Just(0.0), 3 => Just(0.1), 2 => Just(0.35), 1 => Just(1.0)],
        prop::bool::weighted(0.95),
    )
        .prop_map(|(retries, timeout_secs, hold, config, min_ms, spread, fail_prob, has_revision)| StepSpec {
            retries,
            timeout_secs,
            hold_on_failure: hold,
            config,
            min_ms,
            max_ms: min_ms + spread,
            fail_prob,
            has_revision,
        })
}

fn script() -> impl Strategy<Value = Vec<(u64, Script)>> {
    let launches = prop::collection::vec(
        (0u64..600_000, 1usize..=5).prop_map(|(t, n)| (t, Script::Launch(n))),
        1..=4,
    );
    let terminations = prop::collection::vec(
        (0u64..1_200_000, 0usize..50).prop_map(|(t, n)| (t, Script::Terminate(n))),
        0..=2,
    );
    let users = prop::collection::vec(
        (0u64..1_200_000, 0usize..4, any::<bool>()).prop_map(|(t, g, new)| {
            (
                t,
                Script::UserDeploy {
                    group: g,
                    new_revision: new,
                },
            )
        }),
        0..=2,
    );
    (launches, terminations, users).prop_map(|(mut a, b, c)| {
        a.extend(b);
        a.extend(c);
        a
    })
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        prop_oneof![Just(0.0), 0.0f64..0.3],
        prop_oneof![Just(0.0), 0.0f64..0.3],
        prop_oneof![Just(0.0), 0.0f64..0.3],
        prop_oneof![Just(0u64), 0u64..20_000],
    )
        .prop_map(
            |(duplicate, drop_codedeploy, drop_wakeup, max_delay_ms)| Faults {
                duplicate,
                drop_codedeploy,
                drop_lifecycle: 0.0,
                drop_wakeup,
                max_delay_ms,
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        prop::collection::vec(step(), 1..=4),
        prop_oneof![Just(30u64), Just(60), Just(300), Just(600)],
        0u64..=5,
        1u32..=3,
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(10_000u64))],
        script(),
        faults(),
    )
        .prop_map(
            |(
                seed,
                steps,
                heartbeat_secs,
                batch_window_secs,
                breaker_threshold,
                terminate_hook,
                replace_after_ms,
                script,
                mut faults,
            )| {
                // Below MIN_ROBUST_HEARTBEAT_SECS the core only promises heartbeats when every timer
                // message arrives (and alerts about the hook); test exactly that guarantee.
                if heartbeat_secs < turnstile_core::engine::MIN_ROBUST_HEARTBEAT_SECS {
                    faults.drop_wakeup = 0.0;
                }
                Scenario {
                    seed,
                    steps,
                    heartbeat_secs,
                    batch_window_secs,
                    breaker_threshold,
                    terminate_hook,
                    replace_after_ms,
                    script,
                    faults,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Invariants 1–7 hold under random plans, fleets, user deployments and delivery faults.
    #[test]
    fn invariants_hold_under_faults(s in scenario()) {
        let report = s.run();
        prop_assert!(report.violations.is_empty(), "violations: {:#?}\nreport: {report:?}", report.violations);
    }

    /// Instances launched together with uniform durations and no faults are served by exactly
    /// one deployment per group, and all go InService (batching, docs/design.md "Rules", rule 3).
    #[test]
    fn a_burst_is_served_by_one_deployment_per_group(
        seed in any::<u64>(),
        n in 1usize..=20,
        groups in 1usize..=6,
        window in 1u64..=5,
        duration in 10_000u64..120_000,
    ) {
        let s = Scenario {
            seed,
            steps: (0..groups).map(|_| StepSpec {
                retries: 0, timeout_secs: 1800, hold_on_failure: false, config: DeployConfig::AllAtOnce,
                min_ms: duration, max_ms: duration, fail_prob: 0.0, has_revision: true,
            }).collect(),
            heartbeat_secs: 300,
            batch_window_secs: window,
            breaker_threshold: 3,
            terminate_hook: false,
            replace_after_ms: None,
            script: vec![(0, Script::Launch(n))],
            faults: Faults::NONE,
        };
        let r = s.run();
        prop_assert!(r.violations.is_empty(), "{:#?}", r.violations);
        prop_assert_eq!(r.in_service, n);
        prop_assert_eq!(r.deployments_per_group, vec![1; groups]);
    }

    /// The same scenario replays to the same report (determinism makes failures reproducible).
    #[test]
    fn runs_are_deterministic(s in scenario()) {
        prop_assert_eq!(s.run(), s.run());
    }
}
