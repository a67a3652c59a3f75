//! The shared plan test vectors (tests/fixtures/plan-vectors.json): every vector goes through
//! `Plan::parse`, and the issues it reports must be the vector's, field and reason, in order.
//! A valid vector with a `fit` also goes through the fit check the engine makes on a launch
//! from EC2: `Plan::budget_secs()` must be its `budgetSecs`, and a launch on a hook with its
//! heartbeat timeout must raise exactly its `cannotFit` alert (or none). The CDK construct
//! (infra/cdk) checks the same vectors with its own validator and fit check, so the two cannot
//! drift apart.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde::Deserialize;
use turnstile_core::plan::{Plan, PlanIssue};
use turnstile_core::{
    ActionRef, AlertKind, Command, Engine, EventId, HookTimeouts, Input, LifecycleEvent, Millis,
    Missing, World,
};

#[derive(Debug, Deserialize)]
struct Vector {
    name: String,
    plan: serde_json::Value,
    ok: bool,
    #[serde(default)]
    issues: Vec<PlanIssue>,
    fit: Option<Fit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fit {
    hook: String,
    heartbeat_secs: u64,
    budget_secs: u64,
    cannot_fit: Option<String>,
}

/// The `PlanCannotFit` alerts of one launch from EC2 of a fresh instance on `fit.hook`.
fn cannot_fit_alerts(plan: Plan, fit: &Fit) -> Vec<String> {
    let now = Millis::from_secs(1_000_000);
    let input = Input::Launch {
        event: LifecycleEvent {
            event_id: Some(EventId("ev-vector".into())),
            action: ActionRef {
                asg: "asg".into(),
                hook: fit.hook.clone(),
                token: Some("tok".into()),
                instance: "i-vector".into(),
            },
            origin: None,
            destination: None,
            time: now,
        },
        plan: Ok(plan),
        timeouts: HookTimeouts::from_heartbeat(fit.heartbeat_secs),
    };
    let engine = Engine::default();
    let mut world = World::default();
    let decision = loop {
        match engine.decide(&mut world, &input, now) {
            Ok(d) => break d,
            Err(Missing(keys)) => world.insert_absent(keys),
        }
    };
    decision
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Alert(a) if a.kind == AlertKind::PlanCannotFit => Some(a.message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_shared_plan_vector_gets_the_same_verdict_and_messages() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/plan-vectors.json");
    let text = std::fs::read_to_string(&path).expect("read plan-vectors.json");
    let vectors: Vec<Vector> =
        serde_json::from_str(&text).expect("plan-vectors.json is a list of vectors");
    assert!(
        vectors.len() >= 20,
        "expected the full vector set, found {}",
        vectors.len()
    );
    let mut failures = Vec::new();
    let mut fits = 0;
    for v in &vectors {
        // Compact JSON: the same text, byte for byte in length, as the construct's JSON.stringify.
        let json = serde_json::to_string(&v.plan).expect("serialize plan");
        let (plan, got) = match Plan::parse(&json) {
            Ok(p) => (Some(p), Vec::new()),
            Err(e) => (None, e.issues),
        };
        if v.ok != got.is_empty() || got != v.issues {
            failures.push(format!(
                "{}:\n  want ok={} {:?}\n  got  {:?}",
                v.name, v.ok, v.issues, got
            ));
        }
        match (&v.fit, plan) {
            (Some(fit), Some(plan)) => {
                fits += 1;
                if plan.budget_secs() != fit.budget_secs {
                    failures.push(format!(
                        "{}: budget_secs() is {}, the vector says {}",
                        v.name,
                        plan.budget_secs(),
                        fit.budget_secs
                    ));
                }
                let alerts = cannot_fit_alerts(plan, fit);
                let want: Vec<String> = fit.cannot_fit.iter().cloned().collect();
                if alerts != want {
                    failures.push(format!(
                        "{}: PlanCannotFit alerts\n  want {want:?}\n  got  {alerts:?}",
                        v.name
                    ));
                }
            }
            (Some(_), None) => failures.push(format!("{}: a fit needs a valid plan", v.name)),
            (None, _) => {}
        }
    }
    assert!(fits >= 5, "expected the fit vectors, found {fits}");
    if !failures.is_empty() {
        panic!(
            "{} of {} vectors differ:\n{}",
            failures.len(),
            vectors.len(),
            failures.join("\n")
        );
    }
}
