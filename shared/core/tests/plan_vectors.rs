//! The shared plan test vectors (tests/fixtures/plan-vectors.json): every vector goes through
//! `Plan::parse`, and the issues it reports must be the vector's, field and reason, in order.
//! The CDK construct (infra/cdk) checks the same vectors with its own validator, so the two
//! validators cannot drift apart.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde::Deserialize;
use turnstile_core::plan::{Plan, PlanIssue};

#[derive(Debug, Deserialize)]
struct Vector {
    name: String,
    plan: serde_json::Value,
    ok: bool,
    #[serde(default)]
    issues: Vec<PlanIssue>,
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
    for v in &vectors {
        // Compact JSON: the same text, byte for byte in length, as the construct's JSON.stringify.
        let json = serde_json::to_string(&v.plan).expect("serialize plan");
        let got = match Plan::parse(&json) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues,
        };
        if v.ok != got.is_empty() || got != v.issues {
            failures.push(format!(
                "{}:\n  want ok={} {:?}\n  got  {:?}",
                v.name, v.ok, v.issues, got
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} vectors differ:\n{}",
            failures.len(),
            vectors.len(),
            failures.join("\n")
        );
    }
}
