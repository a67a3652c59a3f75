//! Fuzz target (bolero; `make fuzz` runs it longer): the SQS message body parser reads
//! whatever reaches the queue: EventBridge events, hook notifications, SNS envelopes, timer and
//! operator messages, and anything else someone allowed to send puts there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use turnstile_core::{HookTimeouts, InstanceId, Key};
use turnstile_events::{parse, wakeup_body};
use turnstile_fuzzing::{Edit, mutate, seeds};

/// Never panics, and a parsed message always becomes an input (or nothing) without panicking;
/// a parse error names its field when it blames one.
#[test]
fn fuzz_sqs_message_body_parser_never_panics() {
    let mut corpus = seeds("tests/fixtures", &[".json"]);
    corpus.push(wakeup_body(&Key::Instance(InstanceId::from("i-0123456789abcdef0"))).into_bytes());
    corpus.extend(seeds("tests/fixtures/fuzz/sqs-body", &[""]));
    assert!(corpus.len() > 10, "the fixtures seed the corpus");
    bolero::check!()
        .with_type::<(u16, Vec<Edit>)>()
        .for_each(|(pick, edits)| {
            let body = String::from_utf8_lossy(&mutate(&corpus, *pick, edits)).into_owned();
            match parse(&body) {
                Ok(m) => {
                    let _ = m.into_input(Some(HookTimeouts::from_heartbeat(300)), None);
                }
                Err(e) => {
                    assert!(e.field().is_none_or(|f| !f.is_empty()), "{e}");
                    assert!(!e.to_string().is_empty());
                }
            }
        });
}
