//! Fuzz target (bolero; `make fuzz` runs it longer): the plan parser reads outside input, a
//! lifecycle hook's metadata that anyone allowed to put a hook may write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use turnstile_core::Plan;
use turnstile_fuzzing::{Edit, mutate};

/// Every plan of the shared vectors (valid and invalid), as the text a hook would carry.
fn corpus() -> Vec<Vec<u8>> {
    let path = turnstile_fuzzing::root().join("tests/fixtures/plan-vectors.json");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    vectors
        .iter()
        .filter_map(|v| v.get("plan"))
        .map(|p| match p {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        })
        .collect()
}

/// Never panics; what it accepts is within the documented limits and reads back the same
/// from its own document, so a plan turnstile acts on is exactly the plan it reports. (Its
/// first run found that the document of a plan with many steps outgrows a hook's metadata:
/// `Plan::from_json` reads documents of any length, `plan.rs`
/// `plan_document_of_a_full_plan_may_exceed_the_metadata_limit_and_still_reads_back`.)
#[test]
fn fuzz_plan_parser_never_panics_and_what_it_accepts_round_trips() {
    let mut corpus = corpus();
    corpus.extend(turnstile_fuzzing::seeds("tests/fixtures/fuzz/plan", &[""]));
    assert!(corpus.len() > 10, "the vectors seed the corpus");
    bolero::check!()
        .with_type::<(u16, Vec<Edit>)>()
        .for_each(|(pick, edits)| {
            let text = String::from_utf8_lossy(&mutate(&corpus, *pick, edits)).into_owned();
            match Plan::parse(&text) {
                Ok(plan) => {
                    assert!(!plan.steps.is_empty() && plan.steps.len() <= 20, "{text}");
                    let again = Plan::from_json(&plan.to_document().to_string());
                    assert_eq!(again.as_ref(), Ok(&plan), "{text}");
                }
                Err(e) => {
                    assert!(!e.issues.is_empty(), "{text}");
                    assert!(e.issues.iter().all(|i| !i.field.is_empty()), "{e}");
                }
            }
        });
}
