//! Fuzz target (bolero; `make fuzz` runs it longer): decoding a DynamoDB item into a record.
//! The table is turnstile's own, but an item an operator edited by hand, one written by an
//! older or newer release, or one cut short must be an error naming the record, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use turnstile_aws::store::Record;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_core::{
    ActionRef, Engine, GroupKey, HookTimeouts, Input, Key, LifecycleEvent, Millis, Plan, World,
};
use turnstile_fuzzing::{Edit, mutate};

/// The items of a launched instance and its first step's group, as the store writes them.
fn corpus() -> Vec<HashMap<String, AttributeValue>> {
    let plan = Plan::parse(r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0"}],"readiness":{"tag":"ready"}}"#).unwrap();
    let mut world = World::default();
    world.instances.insert("i-0123456789abcdef0".into(), None);
    world.groups.insert(GroupKey::new("app0", "dg0"), None);
    let launch = Input::Launch {
        event: LifecycleEvent {
            event_id: None,
            action: ActionRef {
                asg: "fleet".into(),
                hook: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
                token: Some("00000000-0000-0000-0000-000000000001".into()),
                instance: "i-0123456789abcdef0".into(),
            },
            origin: None,
            destination: None,
            time: Millis(1_000_000),
        },
        plan: Ok(plan),
        timeouts: HookTimeouts::from_heartbeat(600),
    };
    let engine = Engine::default();
    engine
        .decide(&mut world, &launch, Millis(1_000_000))
        .unwrap();
    let ready = Input::InstanceTagged {
        instance: "i-0123456789abcdef0".into(),
        tags: vec![("ready".into(), "true".into())],
        at: Millis(1_060_000),
    };
    let mut later = world.clone();
    engine
        .decide(&mut later, &ready, Millis(1_060_000))
        .unwrap();
    let mut items = Vec::new();
    for w in [world, later] {
        for (id, inst) in w.instances {
            if let Some(i) = inst {
                items.push(DynamoStore::item_of(&Key::Instance(id), &Record::Instance(i)).unwrap());
            }
        }
        for (g, group) in w.groups {
            if let Some(x) = group {
                items.push(DynamoStore::item_of(&Key::Group(g), &Record::Group(x)).unwrap());
            }
        }
    }
    items
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Vec<u8> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone().into_bytes(),
        Some(AttributeValue::N(n)) => n.clone().into_bytes(),
        _ => Vec::new(),
    }
}

/// Never panics: a mutated record text, partition key or version, or the record as a
/// DynamoDB map (items written before records were text), decodes to a record or to an error
/// that names the item.
#[test]
fn fuzz_dynamodb_item_decoding_never_panics() {
    let items = corpus();
    assert!(items.len() >= 3);
    let mut recs: Vec<Vec<u8>> = items.iter().map(|i| text(i, "rec")).collect();
    recs.extend(turnstile_fuzzing::seeds(
        "tests/fixtures/fuzz/dynamodb-item",
        &[""],
    ));
    let pks: Vec<Vec<u8>> = items.iter().map(|i| text(i, "pk")).collect();
    let vers: Vec<Vec<u8>> = items.iter().map(|i| text(i, "ver")).collect();
    bolero::check!()
        .with_type::<(u16, Vec<Edit>, u8, Vec<Edit>)>()
        .for_each(|(pick, rec_edits, part, key_edits)| {
            let base = &items[usize::from(*pick) % items.len()];
            let mut item = base.clone();
            let rec = String::from_utf8_lossy(&mutate(&recs, *pick, rec_edits)).into_owned();
            let value = match part % 4 {
                // The old shape: the record as a map, when the mutation is still JSON.
                0 => serde_json::from_str::<serde_json::Value>(&rec)
                    .ok()
                    .and_then(|v| serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(v).ok())
                    .unwrap_or(AttributeValue::S(rec)),
                _ => AttributeValue::S(rec),
            };
            item.insert("rec".into(), value);
            match part % 4 {
                1 => {
                    let pk = String::from_utf8_lossy(&mutate(&pks, *pick, key_edits)).into_owned();
                    item.insert("pk".into(), AttributeValue::S(pk));
                }
                2 => {
                    let v = String::from_utf8_lossy(&mutate(&vers, *pick, key_edits)).into_owned();
                    item.insert("ver".into(), AttributeValue::N(v));
                }
                3 => {
                    item.remove(["pk", "ver", "rec"][usize::from(*pick) % 3]);
                }
                _ => {}
            }
            if let Err(e) = DynamoStore::decode_item(&item) {
                assert!(!e.to_string().is_empty());
                assert!(
                    !e.is_retryable(),
                    "a corrupt item is not a transient failure: {e}"
                );
            }
        });
}
