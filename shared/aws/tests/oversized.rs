//! Bounded group records: a burst of 5,000 instances waiting on one deployment group, through
//! the real runner with the store on DynamoDB Local and Auto Scaling, EC2 and CodeDeploy in the
//! model. The group record lists at most `Config::group_capacity` instances; the rest wait in
//! their own records and join as room frees. Every record stays under 100 KB and every
//! instance is deployed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use aws_lambda_events::event::sqs::SqsEvent;
use support::dynamo_local::DynamoLocal;
use support::{AnyVisibility, Aws, Wakeups, group_app0, launch_hook, model_runner};
use turnstile_aws::handler::{handle_batch, sweep};
use turnstile_aws::redelivery::Redelivery;
use turnstile_aws::runner::{Observer, RunError};
use turnstile_aws::store::dynamo::{DynamoStore, item_size_bytes};
use turnstile_aws::store::{Record, Store};
use turnstile_core::{
    Command, Config, DEFAULT_LAUNCH_HOOK, Engine, GroupKey, Input, Key, Millis, StepWait,
};
use turnstile_model::{Asg, Cloud, EventKind, InstanceState};

const INSTANCES: usize = 5_000;
const LIMIT_BYTES: usize = 100 * 1024;

/// Metric lines are not needed here: 5,000 instances print too many. It counts the commands
/// run, by kind, for the trace (`OVERSIZED_TRACE=1`, which `make oversized` sets).
#[derive(Clone, Default)]
struct Quiet(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>);

impl Observer for Quiet {
    fn before(&self, c: &Command) -> Result<(), RunError> {
        let debug = format!("{c:?}");
        let kind = debug
            .split(|ch: char| !ch.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_owned();
        *self.0.lock().unwrap().entry(kind).or_default() += 1;
        Ok(())
    }
    fn emit(&self, _: String) {}
}

fn cloud() -> Cloud {
    let mut c = Cloud::new(21);
    c.add_asg(Asg {
        name: "fleet".into(),
        hooks: vec![launch_hook(
            DEFAULT_LAUNCH_HOOK,
            900,
            Some(r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0","timeoutSecs":3600}],"maxBatch":1000}"#),
        )],
        replace_after_ms: None,
    });
    c.add_group(group_app0(60_000, 120_000));
    c.now = 1_000_000;
    c
}

fn batch(bodies: &[String]) -> SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| serde_json::json!({"messageId": format!("m-{i}"), "receiptHandle": "rh", "body": body, "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// The group record's size as stored, and how many instances it lists.
async fn group_size(store: &DynamoStore) -> (usize, usize) {
    let key = Key::Group(GroupKey::new("app0", "dg0"));
    let loaded = store.load(std::slice::from_ref(&key)).await.unwrap();
    let Some(g) = loaded.world.group(&GroupKey::new("app0", "dg0")).cloned() else {
        return (0, 0);
    };
    let listed = g.listed();
    let item = DynamoStore::item_of(&key, &Record::Group(g)).unwrap();
    (item_size_bytes(&item), listed)
}

/// About 10 minutes on two cores (DynamoDB Local commits about 200 transactions a second, and
/// each of 5,000 instances launches, joins, heartbeats, leaves and completes, several
/// transactions each): not part of `make test`; `make oversized` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10 minutes on DynamoDB Local: run it with `make oversized`"]
async fn oversized_burst_of_5000_on_one_group_keeps_every_record_small_and_deploys_all() {
    let db = DynamoLocal::start();
    let aws = Aws::new(cloud());
    let store = DynamoStore::new(db.client(), "oversized");
    store.create_table().await.unwrap();
    let wakeups = Wakeups::default();
    let config = Config::default();
    let capacity = config.group_capacity;
    let quiet = Quiet::default();
    let mut runner = model_runner(&aws, store.clone(), wakeups.clone(), quiet.clone());
    let started_at = std::time::Instant::now();
    runner.engine = Engine::new(config);
    aws.lock().scale_out("fleet", INSTANCES);

    let (mut largest, mut most_listed, mut overflowed_seen) = (0, 0, false);
    let mut next_sweep = aws.lock().now + 60_000;
    let horizon = aws.lock().now + 6 * 3600 * 1000;
    loop {
        let now = aws.lock().now;
        // Lifecycle events only. CodeDeploy's per-target events would each rewrite the 60 KB
        // group record (5,000 of them, about 20 ms each on DynamoDB Local); without them the
        // group's poll of its deployment answers a whole batch in one decision. Every other
        // test covers the per-target path; this one is about the size of the records.
        let published: Vec<String> = aws
            .lock()
            .drain()
            .into_iter()
            .filter(|p| p.kind == EventKind::Lifecycle)
            .map(|p| p.json.to_string())
            .collect();
        let started = std::time::Instant::now();
        for (n, chunk) in published.chunks(10).enumerate() {
            if std::env::var("OVERSIZED_TRACE").is_ok() && n % 100 == 0 && n > 0 {
                eprintln!(
                    "batch {n} of {} after {:?}",
                    published.len() / 10,
                    started.elapsed()
                );
            }
            let (response, _) =
                handle_batch(&runner, &Redelivery::new(AnyVisibility), batch(chunk)).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        let due: Vec<Key> = {
            let mut w = wakeups.0.lock().unwrap();
            let later = w.split_off(&(Millis(now + 1), 0));
            std::mem::replace(&mut *w, later).into_values().collect()
        };
        let mut decisions = 0;
        for key in &due {
            decisions += runner
                .handle(Input::Tick(key.clone()), None)
                .await
                .unwrap()
                .decisions;
        }
        if std::env::var("OVERSIZED_TRACE").is_ok() && (!due.is_empty() || !published.is_empty()) {
            let mut commands = quiet.0.lock().unwrap();
            eprintln!(
                "t={} s after {:?}: {} events, {} timers, {decisions} decisions, commands {commands:?}",
                (now - 1_000_000) / 1000,
                started_at.elapsed(),
                published.len(),
                due.len(),
            );
            commands.clear();
        }
        if !published.is_empty() || !due.is_empty() {
            continue;
        }
        if now >= next_sweep {
            next_sweep = now + 60_000;
            sweep(&runner, Millis(now), 1000, &[]).await.unwrap();
            let (bytes, listed) = group_size(&store).await;
            largest = largest.max(bytes);
            most_listed = most_listed.max(listed);
            if std::env::var("OVERSIZED_TRACE").is_ok() {
                let c = aws.lock();
                let up = c
                    .instances
                    .values()
                    .filter(|i| i.state == InstanceState::InService)
                    .count();
                eprintln!(
                    "t={} s in service {up} listed {listed} bytes {bytes} deployments {}",
                    (now - 1_000_000) / 1000,
                    c.deployments.len()
                );
            }
            if !overflowed_seen {
                // While the burst is larger than the list, the rest wait in their own records.
                let probe = aws.lock().instances.keys().last().cloned().unwrap();
                let rec = store
                    .load(&[Key::Instance(probe.as_str().into())])
                    .await
                    .unwrap();
                overflowed_seen = rec.world.instance(&probe.as_str().into()).is_some_and(|i| {
                    matches!(
                        i.phase,
                        turnstile_core::Phase::Running {
                            wait: StepWait::Overflow { .. },
                            ..
                        }
                    )
                });
            }
            continue;
        }
        let done = aws
            .lock()
            .instances
            .values()
            .all(|i| i.state == InstanceState::InService);
        if done || now > horizon {
            break;
        }
        let next_wakeup = wakeups.0.lock().unwrap().keys().next().map(|(t, _)| t.0);
        let next = [next_wakeup, Some(next_sweep), aws.lock().next_due()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        aws.lock().advance_to(next.max(now));
    }

    let cloud = aws.lock();
    let in_service = cloud
        .instances
        .values()
        .filter(|i| i.state == InstanceState::InService && i.installed.len() == 1)
        .count();
    assert_eq!(
        in_service, INSTANCES,
        "every instance deployed and in service"
    );
    assert!(overflowed_seen, "the burst overflowed the group's list");
    assert!(most_listed <= capacity, "listed {most_listed} > {capacity}");
    assert!(
        largest < LIMIT_BYTES,
        "the group record reached {largest} bytes"
    );
    println!(
        "5,000 instances: group record at most {largest} bytes listing {most_listed}; {} deployments",
        cloud.deployments.len()
    );
}
