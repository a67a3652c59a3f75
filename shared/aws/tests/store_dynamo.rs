//! The DynamoDB store against DynamoDB Local (started and stopped by the test, on a free port).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use support::dynamo_local::DynamoLocal;
use support::{Aws, ModelClock, ModelPorts, Wakeups};
use tokio::sync::Barrier;
use turnstile_aws::Runner;
use turnstile_aws::runner::{Adapters, Stdout};
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_aws::store::{Commit, Loaded, Record, Store, StoreError};
use turnstile_core::*;
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Hook, HookResult, Profile, Transition,
};

async fn store(db: &DynamoLocal, table: &str) -> DynamoStore {
    let s = DynamoStore::new(db.client(), table);
    s.create_table().await.unwrap();
    s
}

fn plan() -> Plan {
    Plan::parse(r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0"}]}"#).unwrap()
}

fn instance(id: &str, asg: &str, finished: bool) -> Instance {
    let mut engine_world = World::default();
    let input = Input::Launch {
        event: LifecycleEvent {
            event_id: None,
            action: ActionRef {
                asg: asg.into(),
                hook: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
                token: Some(format!("{:0>36}", id.len()).into()),
                instance: id.into(),
            },
            origin: None,
            destination: None,
            time: Millis(1_000_000),
        },
        plan: Ok(plan()),
        timeouts: HookTimeouts::from_heartbeat(600),
    };
    engine_world.instances.insert(id.into(), None);
    engine_world
        .groups
        .insert(GroupKey::new("app0", "dg0"), None);
    Engine::default()
        .decide(&mut engine_world, &input, Millis(1_000_000))
        .unwrap();
    let mut i = engine_world.instance(&id.into()).unwrap().clone();
    if finished {
        i.phase = Phase::Finished {
            outcome: Outcome::InService,
            at: Millis(2_000_000),
        };
        i.wake_at = None;
    }
    i
}

fn put(key: Key, record: Record, version: u64) -> Commit {
    Commit {
        writes: vec![(key, Some(record), version)],
        now: Millis(1_000_000),
        ..Commit::default()
    }
}

#[tokio::test]
async fn records_round_trip_with_versions() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t1").await;
    let i = instance("i-0001", "asg", false);
    let key = Key::Instance("i-0001".into());
    s.commit(put(key.clone(), Record::Instance(i.clone()), 0))
        .await
        .unwrap();
    let loaded = s
        .load(&[key.clone(), Key::Group(GroupKey::new("app0", "dg0"))])
        .await
        .unwrap();
    assert_eq!(
        loaded.world.instance(&"i-0001".into()),
        Some(&i),
        "what was written is what is read"
    );
    assert_eq!(loaded.version(&key), 1);
    assert_eq!(
        loaded.world.groups.get(&GroupKey::new("app0", "dg0")),
        Some(&None),
        "absent records load as None"
    );
    // a second create of the same record is a conflict
    assert!(matches!(
        s.commit(put(key.clone(), Record::Instance(i), 0)).await,
        Err(StoreError::Conflict)
    ));
}

#[tokio::test]
async fn two_concurrent_writers_exactly_one_wins() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t2").await;
    let key = Key::Instance("i-0002".into());
    let mut i = instance("i-0002", "asg", false);
    s.commit(put(key.clone(), Record::Instance(i.clone()), 0))
        .await
        .unwrap();
    let (a, b) = (s.clone(), s.clone());
    i.last_heartbeat = Millis(5);
    let (ia, mut ib) = (i.clone(), i.clone());
    ib.last_heartbeat = Millis(6);
    let (ka, kb) = (key.clone(), key.clone());
    let (ra, rb) = tokio::join!(
        async move { a.commit(put(ka, Record::Instance(ia), 1)).await },
        async move { b.commit(put(kb, Record::Instance(ib), 1)).await },
    );
    let wins = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
    assert_eq!(
        wins, 1,
        "exactly one of two writers at version 1 wins: {ra:?} {rb:?}"
    );
    assert!(matches!(ra.err().or(rb.err()), Some(StoreError::Conflict)));
    assert_eq!(
        s.load(std::slice::from_ref(&key))
            .await
            .unwrap()
            .version(&key),
        2
    );
}

/// A store whose first two loads wait for each other, so two invocations decide on the same
/// versions before either commits.
#[derive(Clone)]
struct Interleaved {
    inner: DynamoStore,
    barrier: Arc<Barrier>,
    loads: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store for Interleaved {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let r = self.inner.load(keys).await;
        if self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            self.barrier.wait().await;
        }
        r
    }
    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        self.inner.commit(c).await
    }
    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Key>, StoreError> {
        self.inner.due(now, limit).await
    }
    async fn in_flight(&self, asg: &str) -> Result<Vec<InstanceId>, StoreError> {
        self.inner.in_flight(asg).await
    }
    async fn awaiting_ready(
        &self,
        limit: usize,
    ) -> Result<Vec<(InstanceId, turnstile_core::Gate)>, StoreError> {
        self.inner.awaiting_ready(limit).await
    }
    async fn overflowed(
        &self,
        group: &GroupKey,
        limit: usize,
    ) -> Result<Vec<InstanceId>, StoreError> {
        self.inner.overflowed(group, limit).await
    }
    async fn deployment_group(&self, d: &DeploymentId) -> Result<Option<GroupKey>, StoreError> {
        self.inner.deployment_group(d).await
    }
}

fn cloud() -> Cloud {
    let mut c = Cloud::new(1);
    c.add_asg(Asg {
        name: "asg".into(),
        hooks: vec![Hook {
            name: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
            transition: Transition::Launching,
            heartbeat_secs: 600,
            default_result: HookResult::Abandon,
            metadata: None,
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

fn launch(id: &str, token: &str) -> Input {
    Input::Launch {
        event: LifecycleEvent {
            event_id: Some(format!("ev-{id}").into()),
            action: ActionRef {
                asg: "asg".into(),
                hook: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
                token: Some(token.into()),
                instance: id.into(),
            },
            origin: None,
            destination: None,
            time: Millis(1_000_000),
        },
        plan: Ok(plan()),
        timeouts: HookTimeouts::from_heartbeat(600),
    }
}

#[tokio::test]
async fn concurrent_invocations_on_one_group_the_loser_re_decides() {
    let db = DynamoLocal::start();
    let inner = store(&db, "turnstile-t3").await;
    let s = Interleaved {
        inner: inner.clone(),
        barrier: Arc::new(Barrier::new(2)),
        loads: Arc::default(),
    };
    let aws = Aws::new(cloud());
    let runner = Arc::new(Runner::<ModelPorts<_, Stdout>>::new(
        Engine::default(),
        Adapters {
            store: s,
            lifecycle: aws.clone(),
            deployments: aws.clone(),
            tags: aws.clone(),
            timer: Wakeups::default(),
            clock: ModelClock(aws.clone()),
            observer: Stdout,
        },
    ));
    let (r1, r2) = (runner.clone(), runner.clone());
    let (a, b) = tokio::join!(
        async move {
            r1.handle(launch("i-000a", "tok-a"), Some("ev-a".into()))
                .await
        },
        async move {
            r2.handle(launch("i-000b", "tok-b"), Some("ev-b".into()))
                .await
        },
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.conflicts + b.conflicts,
        1,
        "both created the group record; one had to re-decide"
    );
    let g = inner
        .load(&[Key::Group(GroupKey::new("app0", "dg0"))])
        .await
        .unwrap();
    let waiting: BTreeSet<_> = g
        .world
        .group(&GroupKey::new("app0", "dg0"))
        .unwrap()
        .waiting
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        waiting,
        BTreeSet::from(["i-000a".into(), "i-000b".into()]),
        "neither invocation's work was lost"
    );
}

#[tokio::test]
async fn replaying_the_same_event_is_idempotent() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t4").await;
    let aws = Aws::new(cloud());
    let runner = Runner::<ModelPorts<_, Stdout>>::new(
        Engine::default(),
        Adapters {
            store: s.clone(),
            lifecycle: aws.clone(),
            deployments: aws.clone(),
            tags: aws.clone(),
            timer: Wakeups::default(),
            clock: ModelClock(aws.clone()),
            observer: Stdout,
        },
    );
    let first = runner
        .handle(launch("i-000c", "tok-c"), Some("ev-c".into()))
        .await
        .unwrap();
    assert!(!first.duplicate && first.decisions == 1);
    let key = Key::Instance("i-000c".into());
    let before = s.load(std::slice::from_ref(&key)).await.unwrap();
    let again = runner
        .handle(launch("i-000c", "tok-c"), Some("ev-c".into()))
        .await
        .unwrap();
    assert!(
        again.duplicate,
        "the processed event id is recorded with the decision"
    );
    // A redelivery may mean the first invocation died after its commit, so the runner looks at
    // the event's records again, as their timer would: nothing is due, so nothing changes.
    assert_eq!(
        again.decisions,
        Engine::records_of(&launch("i-000c", "tok-c")).len(),
        "one look at the instance and at each group of its plan"
    );
    let after = s.load(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(
        before.version(&key),
        after.version(&key),
        "the launch was not applied again"
    );
    assert_eq!(before.world, after.world);
}

#[tokio::test]
async fn finished_records_get_a_ttl_and_leave_the_in_flight_index() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t5").await;
    let key = Key::Instance("i-000d".into());
    s.commit(put(
        key.clone(),
        Record::Instance(instance("i-000d", "asg", false)),
        0,
    ))
    .await
    .unwrap();
    assert_eq!(
        s.in_flight("asg").await.unwrap(),
        vec![InstanceId::from("i-000d")]
    );
    s.commit(put(
        key.clone(),
        Record::Instance(instance("i-000d", "asg", true)),
        1,
    ))
    .await
    .unwrap();
    let raw = db
        .client()
        .get_item()
        .table_name("turnstile-t5")
        .key("pk", AttributeValue::S("I#i-000d".into()))
        .key("sk", AttributeValue::S("I".into()))
        .send()
        .await
        .unwrap();
    let item = raw.item.unwrap();
    assert_eq!(
        item.get("ttl"),
        Some(&AttributeValue::N((2_000 + 7 * 24 * 3600).to_string())),
        "finished at 2000 s + 7 days"
    );
    assert!(!item.contains_key("asg_inflight"));
    assert!(s.in_flight("asg").await.unwrap().is_empty());
    let desc = db
        .client()
        .describe_time_to_live()
        .table_name("turnstile-t5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        desc.time_to_live_description.and_then(|d| d.attribute_name),
        Some("ttl".into())
    );
}

#[tokio::test]
async fn in_flight_and_due_queries_at_1000_instances() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t6").await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..1100u32 {
        let s = s.clone();
        tasks.spawn(async move {
            let (asg, finished) = match n {
                0..1000 => ("fleet-a", false),
                1000..1050 => ("fleet-b", false),
                _ => ("fleet-a", true),
            };
            let id = format!("i-{n:08x}");
            let rec = instance(&id, asg, finished);
            s.commit(put(
                Key::Instance(id.as_str().into()),
                Record::Instance(rec),
                0,
            ))
            .await
            .unwrap();
        });
        while tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let a: BTreeSet<_> = s.in_flight("fleet-a").await.unwrap().into_iter().collect();
    assert_eq!(
        a.len(),
        1000,
        "every in-flight instance of fleet-a, none finished, none of fleet-b"
    );
    assert!(
        a.contains(&InstanceId::from("i-00000000")) && !a.contains(&InstanceId::from("i-00000400"))
    );
    assert_eq!(s.in_flight("fleet-b").await.unwrap().len(), 50);
    // every in-flight record wakes for its heartbeat; none is due before then
    let wake = instance("i-x", "a", false).wake_at.unwrap();
    assert!(s.due(Millis(wake.0 - 1), 5000).await.unwrap().is_empty());
    let due = s.due(wake, 5000).await.unwrap();
    assert_eq!(due.len(), 1050);
    assert!(due.iter().all(|d| matches!(d, Key::Instance(_))));
}

#[tokio::test]
async fn event_dedupe_and_deployment_index() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t7").await;
    let commit = Commit {
        event: Some("e-1".into()),
        deployments: vec![("d-1".into(), GroupKey::new("a", "g"))],
        now: Millis(10_000),
        ..Commit::default()
    };
    s.commit(commit.clone()).await.unwrap();
    assert_eq!(
        s.deployment_group(&"d-1".into()).await.unwrap(),
        Some(GroupKey::new("a", "g"))
    );
    assert_eq!(s.deployment_group(&"d-2".into()).await.unwrap(), None);
    assert!(
        matches!(s.commit(Commit { deployments: vec![], ..commit }).await, Err(StoreError::Duplicate(e)) if e.as_str() == "e-1")
    );
}

/// The largest group record the default plan can make: a deployment of 1,000 instances
/// (`maxBatch` defaults to CodeDeploy's limit) and 1,000 more waiting behind it, with real
/// instance ids and a full dedupe list, stays within DynamoDB's 400 KB item limit.
#[tokio::test]
async fn a_group_record_with_a_full_batch_and_a_full_queue_fits_in_one_item() {
    let db = DynamoLocal::start();
    let s = store(&db, "turnstile-t8").await;
    let key = GroupKey::new(
        "an-application-with-a-long-name",
        "a-deployment-group-with-a-long-name",
    );
    let mut g = Group::new(
        key.clone(),
        Gate {
            key: "turnstile:an-application-with-a-long-name".into(),
            value: "open".into(),
        },
    );
    let id = |n: u32| InstanceId::from(format!("i-0{n:016x}").as_str());
    let members = (0..1000)
        .map(|n| {
            (
                id(n),
                Member {
                    admitted_at: Millis(1_700_000_000_000),
                    status: MemberStatus::Pending,
                },
            )
        })
        .collect();
    g.active = Some(Active::Creating {
        intent: IntentId("1700000000000-12".into()),
        members,
        since: Millis(1_700_000_000_000),
    });
    g.waiting = (1000..2000)
        .map(|n| (id(n), Millis(1_700_000_000_000 + u64::from(n))))
        .collect();
    g.seen = (0..64)
        .map(|n| EventId::from(format!("{n:08x}-ffce-0a32-1f2a-1aa46a997f38").as_str()))
        .collect();
    let k = Key::Group(key.clone());
    s.commit(put(k.clone(), Record::Group(g.clone()), 0))
        .await
        .unwrap();
    let loaded = s.load(&[k]).await.unwrap();
    assert_eq!(loaded.world.group(&key), Some(&g));
}
