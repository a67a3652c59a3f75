//! The queue function's batch handling, on a batch that mixes every kind of input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use aws_lambda_events::event::sqs::SqsEvent;
use support::{Aws, ModelClock, ModelPorts, Wakeups};
use turnstile_aws::Runner;
use turnstile_aws::handler::{Disposition, handle_batch};
use turnstile_aws::runner::{Adapters, Stdout};
use turnstile_aws::store::Store;
use turnstile_aws::store::memory::MemoryStore;
use turnstile_core::{Engine, Key, Phase};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Hook, HookResult, Profile, Transition,
};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn cloud() -> Cloud {
    let mut c = Cloud::new(9);
    c.add_asg(Asg {
        name: "fleet".into(),
        hooks: vec![Hook {
            name: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
            transition: Transition::Launching,
            heartbeat_secs: 600,
            default_result: HookResult::Abandon,
            metadata: Some(r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0"}]}"#.into()),
        }],
        replace_after_ms: None,
    });
    c.add_group(DeploymentGroup {
        app: "app0".into(),
        name: "dg0".into(),
        tag_set: vec![vec![("gate-0".into(), "open".into())]],
        target_revision: Some("rev".into()),
        config: DeployConfig::AllAtOnce,
        profile: Profile {
            min_ms: 1000,
            max_ms: 1000,
            fail_prob: 0.0,
        },
    });
    c.now = 1_000_000;
    c
}

fn batch(bodies: &[(&str, String)]) -> SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .map(|(id, body)| serde_json::json!({"messageId": id, "receiptHandle": "rh", "body": body, "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn a_mixed_batch_processes_the_valid_event_once_and_reports_only_the_bad_ones() {
    let aws = Aws::new(cloud());
    let store = MemoryStore::new();
    let runner = Runner::<ModelPorts<_, Stdout>>::new(
        Engine::default(),
        Adapters {
            store: store.clone(),
            lifecycle: aws.clone(),
            deployments: aws.clone(),
            tags: aws.clone(),
            timer: Wakeups::default(),
            clock: ModelClock(aws.clone()),
            observer: Stdout,
        },
    );
    let instance = aws.lock().scale_out("fleet", 1).remove(0);
    let launch = aws.lock().drain().remove(0).json.to_string();

    let event = batch(&[
        ("m-launch", launch.clone()),
        ("m-duplicate", launch),
        ("m-test", fixture("sqs-test-notification.json")),
        (
            "m-malformed",
            "{\"detail-type\": \"EC2 Instance-launch".into(),
        ),
        ("m-unknown", fixture("eventbridge-launch-successful.json")),
        (
            "m-no-instance",
            fixture("sqs-direct-notification-empty-instance-id.json"),
        ),
    ]);
    let (response, dispositions) = handle_batch(&runner, event).await;

    assert_eq!(dispositions[0], Disposition::Processed);
    assert_eq!(
        dispositions[1],
        Disposition::Duplicate,
        "same event id: acknowledged, not processed twice"
    );
    assert!(
        matches!(&dispositions[2], Disposition::Ignored(w) if w.contains("TestNotification")),
        "{:?}",
        dispositions[2]
    );
    assert!(
        matches!(&dispositions[3], Disposition::Poison(w) if w.contains("not JSON")),
        "{:?}",
        dispositions[3]
    );
    assert!(
        matches!(&dispositions[4], Disposition::Ignored(w) if w.contains("EC2 Instance Launch Successful")),
        "{:?}",
        dispositions[4]
    );
    assert!(
        matches!(&dispositions[5], Disposition::Poison(w) if w.contains("EC2InstanceId")),
        "{:?}",
        dispositions[5]
    );

    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["m-malformed", "m-no-instance"],
        "only unparseable messages go back (and on to the DLQ)"
    );
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0]["itemIdentifier"],
        "m-malformed"
    );

    let loaded = store
        .load(&[Key::Instance(instance.as_str().into())])
        .await
        .unwrap();
    let rec = loaded.world.instance(&instance.as_str().into()).unwrap();
    assert!(
        matches!(rec.phase, Phase::Running { step: 0, .. }),
        "the launch was processed: {:?}",
        rec.phase
    );
    assert_eq!(
        loaded.version(&Key::Instance(instance.as_str().into())),
        1,
        "written once"
    );
}

#[tokio::test]
async fn a_record_without_a_body_is_a_poison_message_not_a_panic() {
    let aws = Aws::new(cloud());
    let runner = Runner::<ModelPorts<_, Stdout>>::new(
        Engine::default(),
        Adapters {
            store: MemoryStore::new(),
            lifecycle: aws.clone(),
            deployments: aws.clone(),
            tags: aws.clone(),
            timer: Wakeups::default(),
            clock: ModelClock(aws.clone()),
            observer: Stdout,
        },
    );
    let event: SqsEvent =
        serde_json::from_value(serde_json::json!({"Records": [{"messageId": "m-1"}]})).unwrap();
    let (response, d) = handle_batch(&runner, event).await;
    assert!(matches!(&d[0], Disposition::Poison(_)));
    assert_eq!(response.batch_item_failures.len(), 1);
}

/// A direct-to-SQS hook notification (the hook's notification target is turnstile's queue) in
/// the shape of `tests/fixtures/<name>`, for `hook` on the test fleet's `instance`.
fn direct_notification(name: &str, hook: &str, instance: &str, token: &str) -> String {
    let mut n: serde_json::Value = serde_json::from_str(&fixture(name)).unwrap();
    n["LifecycleHookName"] = hook.into();
    n["AutoScalingGroupName"] = "fleet".into();
    n["EC2InstanceId"] = instance.into();
    n["LifecycleActionToken"] = token.into();
    n.to_string()
}

/// Own hooks only, through the handler: another tool's hooks notify turnstile's queue
/// directly. Its launch notification is acknowledged and changes nothing; its terminate
/// notification ends the pipeline (the instance is going away) and is never completed.
#[tokio::test]
async fn foreign_hook_direct_notifications_are_acknowledged_and_never_completed() {
    let mut c = cloud();
    let hooks = &mut c.asgs.get_mut("fleet").unwrap().hooks;
    for (name, transition) in [
        ("bootstrap-agent", Transition::Launching),
        ("ship-logs", Transition::Terminating),
    ] {
        hooks.push(Hook {
            name: name.into(),
            transition,
            heartbeat_secs: 600,
            default_result: HookResult::Continue,
            metadata: None,
        });
    }
    let aws = Aws::new(c);
    let store = MemoryStore::new();
    let runner = Runner::<ModelPorts<_, Stdout>>::new(
        Engine::default(),
        Adapters {
            store: store.clone(),
            lifecycle: aws.clone(),
            deployments: aws.clone(),
            tags: aws.clone(),
            timer: Wakeups::default(),
            clock: ModelClock(aws.clone()),
            observer: Stdout,
        },
    );
    let instance = aws.lock().scale_out("fleet", 1).remove(0);
    let token_of = |hook: &str| {
        aws.lock().instances[&instance]
            .actions
            .iter()
            .find(|a| a.hook == hook)
            .unwrap()
            .token
            .clone()
    };
    let own = token_of(turnstile_core::DEFAULT_LAUNCH_HOOK);
    let theirs = token_of("bootstrap-agent");
    let launch = aws.lock().drain().remove(0).json.to_string();
    let foreign = direct_notification(
        "sqs-direct-launch-notification.json",
        "bootstrap-agent",
        &instance,
        &theirs,
    );
    let (response, d) = handle_batch(
        &runner,
        batch(&[("m-launch", launch), ("m-foreign", foreign)]),
    )
    .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "acknowledged: {d:?}"
    );
    let key = Key::Instance(instance.as_str().into());
    let loaded = store.load(std::slice::from_ref(&key)).await.unwrap();
    let rec = loaded.world.instance(&instance.as_str().into()).unwrap();
    assert_eq!(
        rec.action.token.as_ref().map(|t| t.as_str()),
        Some(own.as_str()),
        "turnstile's pipeline is not replaced"
    );
    assert!(
        matches!(rec.phase, Phase::Running { step: 0, .. }),
        "{:?}",
        rec.phase
    );
    assert_eq!(
        loaded.version(&key),
        1,
        "the foreign notification wrote nothing"
    );

    aws.lock().terminate(&instance);
    let ship = token_of("ship-logs");
    let terminate = direct_notification(
        "sqs-direct-terminate-notification.json",
        "ship-logs",
        &instance,
        &ship,
    );
    let (response, d) = handle_batch(&runner, batch(&[("m-term", terminate)])).await;
    assert!(response.batch_item_failures.is_empty(), "{d:?}");
    let loaded = store.load(std::slice::from_ref(&key)).await.unwrap();
    let rec = loaded.world.instance(&instance.as_str().into()).unwrap();
    assert!(
        matches!(
            rec.phase,
            Phase::Finished {
                outcome: turnstile_core::Outcome::Terminated,
                ..
            }
        ),
        "the pipeline ended: {:?}",
        rec.phase
    );
    let cloud = aws.lock();
    let touched: Vec<&str> = cloud
        .lifecycle_calls
        .iter()
        .map(|c| c.hook.as_str())
        .filter(|h| *h != turnstile_core::DEFAULT_LAUNCH_HOOK)
        .collect();
    assert!(touched.is_empty(), "other hooks were called: {touched:?}");
    assert_eq!(
        cloud.instances[&instance].state,
        turnstile_model::InstanceState::TerminatingWait,
        "ship-logs is still its owner's to complete"
    );
}
