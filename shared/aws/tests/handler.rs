//! The queue function's batch handling, on a batch that mixes every kind of input, and how soon
//! each failed record comes back (fast redelivery).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use support::{Aws, ModelPorts, Wakeups, model_runner};
use turnstile_aws::Runner;
use turnstile_aws::handler::{Disposition, handle_batch};
use turnstile_aws::ports::{PortError, Visibility};
use turnstile_aws::redelivery::{Backoff, Redelivery, jitter};
use turnstile_aws::runner::Stdout;
use turnstile_aws::store::Store;
use turnstile_aws::store::memory::MemoryStore;
use turnstile_core::{Key, Phase};
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
    received(
        &bodies
            .iter()
            .map(|(id, b)| (*id, b.clone(), 1))
            .collect::<Vec<_>>(),
    )
}

/// A batch whose records were each received `n` times (`ApproximateReceiveCount`), with the
/// receipt handle `rh-<message id>`.
fn received(records: &[(&str, String, u32)]) -> SqsEvent {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, body, n)| serde_json::json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body, "attributes": {"ApproximateReceiveCount": n.to_string()}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// A visibility port that records every call (receipt handle, seconds) and may fail them all.
#[derive(Clone, Default)]
struct Recorded {
    calls: Arc<Mutex<Vec<(String, u32)>>>,
    fail: bool,
}

impl Recorded {
    fn calls(&self) -> Vec<(String, u32)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Visibility for Recorded {
    async fn visible_in(&self, receipt_handle: &str, secs: u32) -> Result<(), PortError> {
        self.calls
            .lock()
            .unwrap()
            .push((receipt_handle.to_owned(), secs));
        if self.fail {
            return Err(PortError::Transient {
                op: "ChangeMessageVisibility",
                source: "Rate exceeded".into(),
            });
        }
        Ok(())
    }
}

fn redelivery(port: &Recorded) -> Redelivery<Recorded> {
    Redelivery {
        seed: 17,
        ..Redelivery::new(port.clone())
    }
}

type TestRunner = Runner<ModelPorts<MemoryStore, Stdout>>;

fn runner_over(aws: &Aws, store: &MemoryStore) -> TestRunner {
    model_runner(aws, store.clone(), Wakeups::default(), Stdout)
}

/// The launch event of one new instance of the test fleet.
fn launch_event(aws: &Aws) -> String {
    aws.lock().scale_out("fleet", 1);
    aws.lock().drain().remove(0).json.to_string()
}

#[tokio::test]
async fn a_mixed_batch_processes_the_valid_event_once_and_reports_only_the_bad_ones() {
    let aws = Aws::new(cloud());
    let store = MemoryStore::new();
    let runner = runner_over(&aws, &store);
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
    let (response, dispositions) =
        handle_batch(&runner, &redelivery(&Recorded::default()), event).await;

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
    let runner = runner_over(&aws, &MemoryStore::new());
    let event: SqsEvent =
        serde_json::from_value(serde_json::json!({"Records": [{"messageId": "m-1"}]})).unwrap();
    let (response, d) = handle_batch(&runner, &redelivery(&Recorded::default()), event).await;
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
    let runner = runner_over(&aws, &store);
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
        &redelivery(&Recorded::default()),
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
    let (response, d) = handle_batch(
        &runner,
        &redelivery(&Recorded::default()),
        batch(&[("m-term", terminate)]),
    )
    .await;
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

/// A transient failure (every AWS call throttled: the launch's DescribeLifecycleHooks fails
/// before anything is read or written) comes back after the back-off of its receive count, by
/// ChangeMessageVisibility on its own receipt handle: on the third receive, 10 to 20 s.
#[tokio::test]
async fn redeliver_a_transient_failure_after_the_backoff_of_its_receive_count() {
    let aws = Aws::with_faults(
        cloud(),
        turnstile_localcloud::direct::Injector::new(1, 1.0, 0.0, false),
    );
    let store = MemoryStore::new();
    let runner = runner_over(&aws, &store);
    let port = Recorded::default();
    let event = received(&[("m-launch", launch_event(&aws), 3)]);
    let (response, d) = handle_batch(&runner, &redelivery(&port), event).await;
    assert!(matches!(&d[0], Disposition::Retry(_)), "{d:?}");
    assert_eq!(response.batch_item_failures.len(), 1);
    let want = Backoff::default().delay_secs(3, jitter(17, "m-launch", 3));
    assert_eq!(port.calls(), vec![("rh-m-launch".to_owned(), want)]);
    assert!((10..=20).contains(&want), "{want}");
    let first = received(&[("m-launch", launch_event(&aws), 1)]);
    let port = Recorded::default();
    handle_batch(&runner, &redelivery(&port), first).await;
    let calls = port.calls();
    let [(_, secs)] = calls.as_slice() else {
        panic!("{calls:?}")
    };
    assert!((3..=5).contains(secs), "the first receive: {secs} s");
}

/// A processed record, a duplicate and an acknowledged one are deleted by Lambda: no
/// visibility call for any of them.
#[tokio::test]
async fn redeliver_nothing_for_a_success_a_duplicate_or_an_ignored_message() {
    let aws = Aws::new(cloud());
    let store = MemoryStore::new();
    let runner = runner_over(&aws, &store);
    let port = Recorded::default();
    let launch = launch_event(&aws);
    let event = batch(&[
        ("m-launch", launch.clone()),
        ("m-again", launch),
        ("m-test", fixture("sqs-test-notification.json")),
    ]);
    let (response, d) = handle_batch(&runner, &redelivery(&port), event).await;
    assert_eq!(d[0], Disposition::Processed);
    assert_eq!(d[1], Disposition::Duplicate);
    assert!(matches!(&d[2], Disposition::Ignored(_)), "{d:?}");
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(port.calls(), vec![], "nothing to make visible again");
}

/// A poison message is made visible at once (it reaches the dead-letter queue after its five
/// receives within seconds); a permanent failure (the hook cannot be described) is left to the
/// queue's visibility timeout.
#[tokio::test]
async fn redeliver_poison_at_once_and_a_permanent_failure_at_the_visibility_timeout() {
    let aws = Aws::new(cloud());
    let store = MemoryStore::new();
    let runner = runner_over(&aws, &store);
    let launch = launch_event(&aws);
    aws.lock().asgs.get_mut("fleet").unwrap().hooks.clear();
    let port = Recorded::default();
    let event = received(&[("m-poison", "{not json".into(), 2), ("m-launch", launch, 2)]);
    let (response, d) = handle_batch(&runner, &redelivery(&port), event).await;
    assert!(matches!(&d[0], Disposition::Poison(_)), "{d:?}");
    assert!(matches!(&d[1], Disposition::Failed(_)), "{d:?}");
    assert_eq!(response.batch_item_failures.len(), 2, "both come back");
    assert_eq!(port.calls(), vec![("rh-m-poison".to_owned(), 0)]);
}

/// A failed ChangeMessageVisibility is logged and ignored: the batch's result is what it would
/// have been, and the next record's visibility is still set.
#[tokio::test]
async fn redeliver_failing_visibility_calls_do_not_fail_the_batch() {
    let aws = Aws::with_faults(
        cloud(),
        turnstile_localcloud::direct::Injector::new(1, 1.0, 0.0, false),
    );
    let store = MemoryStore::new();
    let runner = runner_over(&aws, &store);
    let port = Recorded {
        fail: true,
        ..Recorded::default()
    };
    let event = received(&[
        ("m-launch", launch_event(&aws), 1),
        ("m-poison", "{not json".into(), 1),
        ("m-test", fixture("sqs-test-notification.json"), 1),
    ]);
    let (response, d) = handle_batch(&runner, &redelivery(&port), event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["m-launch", "m-poison"]);
    assert!(matches!(&d[2], Disposition::Ignored(_)), "{d:?}");
    let handles: Vec<String> = port.calls().into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        handles,
        vec!["rh-m-launch", "rh-m-poison"],
        "both were tried"
    );
}
