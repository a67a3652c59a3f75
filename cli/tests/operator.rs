//! The operator's actions end to end: the command line in-process sends its message to a real
//! SQS queue (moto server); the queue function's real handler takes it from there with the
//! records on DynamoDB Local and Auto Scaling, EC2 and CodeDeploy in the model. The actor the
//! records keep is the message's SQS sender (moto's fixed `SenderId`), not anything the body
//! says.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use support::{DynamoLocal, Ran, run};
use turnstile_aws::Runner;
use turnstile_aws::handler::handle_batch;
use turnstile_aws::redelivery::Redelivery;
use turnstile_aws::store::Store;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_cli::Exit;
use turnstile_core::{GroupKey, Input, Key, Millis, NoteOutcome};
use turnstile_localcloud::direct::{AnyVisibility, Aws, ModelPorts, Quiet, Wakeups, model_runner};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, EventKind, Hook, HookResult, InstanceState, Profile,
    Transition,
};

/// moto's `SenderId` for every message (moto/sqs/models.py `DEFAULT_SENDER_ID`).
const MOTO_SENDER: &str = "AIDAIT2UOQQY3AUEKVGXU";
const TABLE: &str = "operator";

/// One step on app0/dg0, no retries, and a breaker that holds from the third failure within
/// an hour.
fn cloud() -> Cloud {
    let mut c = Cloud::new(11);
    c.add_asg(Asg {
        name: "fleet".into(),
        hooks: vec![Hook {
            name: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
            transition: Transition::Launching,
            heartbeat_secs: 600,
            default_result: HookResult::Abandon,
            metadata: Some(
                r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0","timeoutSecs":1800}],"batchWindowSecs":1,"defaults":{"retries":0},"breaker":{"threshold":2,"windowSecs":3600}}"#.into(),
            ),
        }],
        replace_after_ms: None,
    });
    c.add_group(DeploymentGroup {
        app: "app0".into(),
        name: "dg0".into(),
        tag_set: vec![vec![("gate-0".into(), "open".into())]],
        target_revision: Some("rev-0".into()),
        config: DeployConfig::AllAtOnce,
        profile: Profile {
            min_ms: 60_000,
            max_ms: 60_000,
            fail_prob: 1.0,
        },
    });
    c.now = 1_000_000;
    c
}

type Local = Runner<ModelPorts<DynamoStore, Quiet>>;

/// The local stand-ins, the model, and the queue function's runner over them.
struct World {
    _wire: turnstile_localcloud::wire::Server,
    autoscaling: aws_sdk_autoscaling::Client,
    _db: DynamoLocal,
    _moto: turnstile_harness::Service,
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    aws: Aws,
    wakeups: Wakeups,
    runner: Local,
}

async fn world() -> World {
    world_with(cloud()).await
}

/// The world over `c`, its Auto Scaling API also served by the wire simulator (a copy of `c`:
/// the hooks and their plans are what the CLI reads there).
async fn world_with(c: Cloud) -> World {
    let sim = turnstile_localcloud::wire::Simulator::new(
        c.clone(),
        turnstile_localcloud::wire::WireFaults::default(),
        1,
    );
    let wire = turnstile_localcloud::wire::serve(sim).await.unwrap();
    let autoscaling =
        aws_sdk_autoscaling::Client::new(&turnstile_harness::sdk_config(&wire.endpoint()).await);
    let db = DynamoLocal::start();
    let moto = turnstile_harness::moto_server().unwrap();
    let conf = turnstile_harness::sdk_config(&moto.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = sqs
        .create_queue()
        .queue_name("turnstile-operator")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let store = DynamoStore::new(db.client(), TABLE);
    store.create_table().await.unwrap();
    let aws = Aws::new(c);
    let wakeups = Wakeups::default();
    let runner = model_runner(&aws, store, wakeups.clone(), Quiet);
    World {
        _wire: wire,
        autoscaling,
        dynamo: db.client(),
        _db: db,
        _moto: moto,
        sqs,
        queue,
        aws,
        wakeups,
        runner,
    }
}

impl World {
    fn ctx(&self) -> turnstile_cli::Context {
        let mut c = support::ctx(self.aws.lock().now, Some(self.dynamo.clone()));
        c.sqs = Some(self.sqs.clone());
        c.autoscaling = Some(self.autoscaling.clone());
        c
    }

    /// `turnstile ARGS... --table T --queue-url Q`, while the queue function handles what
    /// arrives on the queue (as Lambda's event source mapping would), until the command ends.
    async fn act(&self, args: &[&str]) -> Ran {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--table",
            TABLE,
            "--queue-url",
            &self.queue,
            "--poll-ms",
            "50",
        ]);
        let cli = run(&all, self.ctx());
        let done = std::sync::atomic::AtomicBool::new(false);
        let pump = async {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                self.pump().await;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let cli = async {
            let r = cli.await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        };
        let (ran, ()) = tokio::join!(cli, pump);
        ran
    }

    /// One receive from the queue, handled by the real batch handler; handled messages are
    /// deleted, as the event source mapping does.
    async fn pump(&self) {
        let got = self
            .sqs
            .receive_message()
            .queue_url(&self.queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return;
        }
        let event =
            turnstile_localcloud::orchestrated::sqs_event(&messages, "arn:aws:sqs:local").unwrap();
        let (response, _) =
            handle_batch(&self.runner, &Redelivery::new(AnyVisibility), event).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        for m in &messages {
            self.sqs
                .delete_message()
                .queue_url(&self.queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }

    /// Runs the model and the functions until nothing is due before `horizon_ms` from now:
    /// every published lifecycle and CodeDeploy event is handled, every timer fires.
    async fn settle(&self, horizon_ms: u64) {
        let end = self.aws.lock().now + horizon_ms;
        loop {
            let now = self.aws.lock().now;
            let published: Vec<String> = self
                .aws
                .lock()
                .drain()
                .into_iter()
                .filter(|p| matches!(p.kind, EventKind::Lifecycle | EventKind::CodeDeploy))
                .map(|p| p.json.to_string())
                .collect();
            for body in &published {
                let msg = turnstile_events::parse(body).unwrap();
                if let Some((input, event)) = self.runner.input_of(msg).await.unwrap() {
                    self.runner.handle(input, event).await.unwrap();
                }
            }
            let due: Vec<Key> = {
                let mut w = self.wakeups.0.lock().unwrap();
                let later = w.split_off(&(Millis(now + 1), 0));
                std::mem::replace(&mut *w, later).into_values().collect()
            };
            for key in &due {
                self.runner
                    .handle(Input::Tick(key.clone()), None)
                    .await
                    .unwrap();
            }
            if !published.is_empty() || !due.is_empty() {
                continue;
            }
            let next_wakeup = self
                .wakeups
                .0
                .lock()
                .unwrap()
                .keys()
                .next()
                .map(|(t, _)| t.0);
            let Some(next) = [next_wakeup, self.aws.lock().next_due()]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= end)
            else {
                break;
            };
            self.aws.lock().advance_to(next.max(now));
        }
    }

    fn state(&self, id: &str) -> InstanceState {
        self.aws.lock().instances[id].state
    }

    /// Launches instances one at a time, each until its pipeline has decided.
    async fn launch_one_by_one(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = self.aws.lock().scale_out("fleet", 1).remove(0);
            self.settle(10 * 60_000).await;
            ids.push(id);
        }
        ids
    }

    async fn status(&self) -> serde_json::Value {
        let ran = run(
            &[
                "status", "--table", TABLE, "--asg", "fleet", "--output", "json",
            ],
            self.ctx(),
        )
        .await;
        assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
        ran.json()
    }
}

fn held_reasons(status: &serde_json::Value) -> Vec<(String, String)> {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["phase"] == "held")
        .map(|i| {
            (
                i["instance"].as_str().unwrap().to_owned(),
                i["heldReason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_resets_a_tripped_breaker_and_retries_both_held_instances_into_service() {
    let w = world().await;
    let ids = w.launch_one_by_one(4).await;
    assert_eq!(
        ids.iter().map(|i| w.state(i)).collect::<Vec<_>>(),
        [
            InstanceState::Terminated,
            InstanceState::Terminated,
            InstanceState::PendingWait,
            InstanceState::PendingWait
        ],
        "two abandons, then the breaker holds"
    );
    let held = held_reasons(&w.status().await);
    assert_eq!(
        held.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        [ids[2].as_str(), ids[3].as_str()],
        "status lists both as held"
    );
    for (i, why) in &held {
        assert!(why.contains("breaker"), "{i} held for: {why}");
    }

    // A retry before the reset is accepted by the command line; the operator fixes the cause.
    w.aws
        .lock()
        .groups
        .get_mut(&("app0".into(), "dg0".into()))
        .unwrap()
        .profile
        .fail_prob = 0.0;
    let reset = w
        .act(&[
            "breaker",
            "reset",
            "app0",
            "dg0",
            "--reason",
            "bad revision rolled back",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(reset.exit, Exit::Ok, "{}\n{}", reset.out, reset.err);
    let doc = reset.json();
    assert_eq!(doc["schema"], "turnstile.action/v1");
    assert_eq!(doc["state"], "applied");
    assert_eq!(doc["actor"], MOTO_SENDER, "the actor is the SQS sender");
    for id in &ids[2..] {
        let r = w
            .act(&["retry", id, "--reason", "bad revision rolled back"])
            .await;
        assert_eq!(r.exit, Exit::Ok, "{}\n{}", r.out, r.err);
        assert!(
            r.out.contains("applied by AIDAIT2UOQQY3AUEKVGXU"),
            "{}",
            r.out
        );
    }
    w.settle(30 * 60_000).await;
    for id in &ids[2..] {
        assert_eq!(w.state(id), InstanceState::InService, "{id}");
    }
    // The records keep who did what and why.
    let group = w.runner.ports.store.clone();
    let loaded =
        turnstile_aws::store::Store::load(&group, &[Key::Group(GroupKey::new("app0", "dg0"))])
            .await
            .unwrap();
    let note = loaded
        .world
        .group(&GroupKey::new("app0", "dg0"))
        .unwrap()
        .operator[0]
        .clone();
    assert_eq!(
        (
            note.action.as_str(),
            note.actor.as_str(),
            note.reason.as_str(),
            note.outcome
        ),
        (
            "reset-breaker",
            MOTO_SENDER,
            "bad revision rolled back",
            NoteOutcome::Applied
        )
    );
    let show = run(
        &["show", &ids[2], "--table", TABLE, "--output", "json"],
        w.ctx(),
    )
    .await;
    assert_eq!(show.exit, Exit::Ok, "{}", show.err);
    assert!(
        show.out.contains(MOTO_SENDER),
        "show tells who: {}",
        show.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_abandon_completes_with_abandon_and_a_second_one_is_refused() {
    let w = world().await;
    let ids = w.launch_one_by_one(3).await;
    let held = ids[2].clone();
    assert_eq!(w.state(&held), InstanceState::PendingWait);

    let unconfirmed = w.act(&["abandon", &held, "--reason", "bad AMI"]).await;
    assert_eq!(unconfirmed.exit, Exit::Usage, "no --yes without a terminal");
    assert!(unconfirmed.err.contains("--yes"), "{}", unconfirmed.err);

    let dry = w
        .act(&[
            "abandon",
            &held,
            "--reason",
            "bad AMI",
            "--dry-run",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(dry.exit, Exit::Ok, "{}", dry.err);
    assert_eq!(dry.json()["state"], "dry-run");
    assert_eq!(dry.json()["message"]["action"], "abandon");

    let r = w
        .act(&["abandon", &held, "--reason", "bad AMI", "--yes"])
        .await;
    assert_eq!(r.exit, Exit::Ok, "{}\n{}", r.out, r.err);
    w.settle(60_000).await;
    assert_eq!(
        w.state(&held),
        InstanceState::Terminated,
        "ABANDON terminates it"
    );
    // Completions go by token: the two the failures abandoned, and the operator's one.
    let abandons = || {
        w.aws
            .lock()
            .lifecycle_calls
            .iter()
            .filter(|c| c.matched)
            .filter(|c| {
                c.operation == turnstile_model::LifecycleOperation::Complete(HookResult::Abandon)
            })
            .count()
    };
    assert_eq!(abandons(), 3);

    let again = w
        .act(&["abandon", &held, "--reason", "again", "--yes"])
        .await;
    assert_eq!(again.exit, Exit::Precondition, "{}", again.err);
    assert!(again.err.contains("already finishing"), "{}", again.err);

    assert_eq!(abandons(), 3, "the refused second abandon made no call");

    let not_held = w
        .act(&["retry", "i-00000000000000fff", "--reason", "x"])
        .await;
    assert_eq!(not_held.exit, Exit::NotFound, "{}", not_held.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pause_during_a_burst_creates_nothing_until_resume_and_loses_no_instance() {
    let w = world().await;
    w.aws
        .lock()
        .groups
        .get_mut(&("app0".into(), "dg0".into()))
        .unwrap()
        .profile
        .fail_prob = 0.0;
    let p = w
        .act(&[
            "pause",
            "app0",
            "dg0",
            "--reason",
            "package mirror down",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(p.exit, Exit::Ok, "{}\n{}", p.out, p.err);
    assert_eq!(p.json()["state"], "applied");

    let ids = w.aws.lock().scale_out("fleet", 5);
    // Three heartbeat timeouts: every instance must still be waiting, kept alive.
    w.settle(30 * 60_000).await;
    assert_eq!(w.aws.lock().deployments.len(), 0, "paused: nothing created");
    for id in &ids {
        assert_eq!(w.state(id), InstanceState::PendingWait, "{id} waits");
    }
    let status = w.status().await;
    let group = &status["groups"][0];
    assert_eq!(group["paused"]["by"], MOTO_SENDER, "{status}");
    assert_eq!(group["waiting"], 5);

    let again = w.act(&["pause", "app0", "dg0", "--reason", "twice"]).await;
    assert_eq!(again.exit, Exit::Precondition, "{}", again.err);
    // The warning names the nearest deadline a longer pause would outlive.
    let dry = w
        .act(&[
            "pause",
            "app0",
            "dg0",
            "--reason",
            "x",
            "--dry-run",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(dry.exit, Exit::Precondition, "already paused: {}", dry.err);

    let r = w
        .act(&["resume", "app0", "dg0", "--reason", "mirror is back"])
        .await;
    assert_eq!(r.exit, Exit::Ok, "{}\n{}", r.out, r.err);
    w.settle(30 * 60_000).await;
    for id in &ids {
        assert_eq!(w.state(id), InstanceState::InService, "{id}");
    }
    assert_eq!(
        w.aws.lock().deployments.len(),
        1,
        "the five waited together and went in one deployment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pause_asg_pauses_every_group_of_the_plan_and_nothing_of_another_tools_hook() {
    let mut c = cloud();
    let asg = c.asgs.get_mut("fleet").unwrap();
    asg.hooks[0].metadata = Some(
        r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0"},{"application":"app1","deploymentGroup":"dg1","gateTag":"gate-1"}],"batchWindowSecs":1}"#.into(),
    );
    // Another tool's launch hook, whose metadata happens to read as a plan: not turnstile's.
    asg.hooks.push(Hook {
        name: "other-tool-launch".into(),
        transition: Transition::Launching,
        heartbeat_secs: 600,
        default_result: HookResult::Continue,
        metadata: Some(
            r#"{"version":1,"steps":[{"application":"app9","deploymentGroup":"dg9","gateTag":"gate-9"}]}"#.into(),
        ),
    });
    let w = world_with(c).await;
    let p = w
        .act(&[
            "pause",
            "--asg",
            "fleet",
            "--reason",
            "mirror down",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(p.exit, Exit::Ok, "{}\n{}", p.out, p.err);
    let doc = p.json();
    assert_eq!(doc["schema"], "turnstile.actions/v1");
    let acted: Vec<(String, String)> = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["target"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        acted,
        [
            ("app0/dg0".to_owned(), "applied".to_owned()),
            ("app1/dg1".to_owned(), "applied".to_owned())
        ],
        "every group of turnstile's plan, in order, and not app9/dg9"
    );
    let paused_by = |w: &World| {
        let keys = [
            Key::Group(GroupKey::new("app0", "dg0")),
            Key::Group(GroupKey::new("app1", "dg1")),
            Key::Group(GroupKey::new("app9", "dg9")),
        ];
        let store = DynamoStore::new(w.dynamo.clone(), TABLE);
        async move {
            let loaded = store.load(&keys).await.unwrap();
            keys.iter()
                .map(|k| match k {
                    Key::Group(g) => loaded
                        .world
                        .group(g)
                        .and_then(|r| r.paused.as_ref())
                        .map(|p| p.actor.clone()),
                    Key::Instance(_) => None,
                })
                .collect::<Vec<_>>()
        }
    };
    let sender = Some(MOTO_SENDER.to_owned());
    assert_eq!(
        paused_by(&w).await,
        [sender.clone(), sender, None],
        "turnstile's two groups paused by the SQS sender; the other tool's untouched"
    );

    // Again: both are already paused; nothing is sent, and it says so.
    let again = w
        .act(&["pause", "--asg", "fleet", "--reason", "twice", "-o", "json"])
        .await;
    assert_eq!(again.exit, Exit::Precondition, "{}", again.err);
    assert!(
        again.json()["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "not-sent"
                && a["refused"].as_str().unwrap().contains("already paused")),
        "{}",
        again.out
    );

    let r = w
        .act(&["resume", "--asg", "fleet", "--reason", "mirror is back"])
        .await;
    assert_eq!(r.exit, Exit::Ok, "{}\n{}", r.out, r.err);
    assert_eq!(r.out.lines().count(), 2, "one line per group: {}", r.out);
    assert_eq!(paused_by(&w).await, [None, None, None], "both resumed");

    // An Auto Scaling group without turnstile's hook: nothing to pause, exit 4.
    let none = w
        .act(&["pause", "--asg", "no-such-fleet", "--reason", "x"])
        .await;
    assert_eq!(none.exit, Exit::NotFound, "{}", none.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pause_warns_of_the_nearest_global_deadline_before_it_is_applied() {
    let w = world().await;
    w.aws.lock().scale_out("fleet", 2);
    w.settle(10_000).await; // admitted: a deployment of the two is running
    let dry = w
        .act(&[
            "pause",
            "app0",
            "dg0",
            "--reason",
            "x",
            "--dry-run",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(dry.exit, Exit::Ok, "{}", dry.err);
    let warnings = dry.json()["warnings"].as_array().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = warnings[0].as_str().unwrap();
    assert!(text.contains("must finish by"), "{text}");
    assert!(dry.err.contains("warning:"), "{}", dry.err);
    assert_eq!(dry.json()["state"], "dry-run", "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_skip_failed_step_lets_a_held_instance_in_without_it_and_says_so() {
    let w = world().await;
    let ids = w.launch_one_by_one(3).await;
    let held = ids[2].clone();
    assert_eq!(w.state(&held), InstanceState::PendingWait);

    let wrong = w
        .act(&[
            "skip-failed-step",
            &held,
            "--step-group",
            "app9/dg9",
            "--reason",
            "x",
            "--yes",
        ])
        .await;
    assert_eq!(wrong.exit, Exit::Precondition, "{}", wrong.err);
    assert!(wrong.err.contains("not at app9/dg9"), "{}", wrong.err);
    let unconfirmed = w
        .act(&[
            "skip-failed-step",
            &held,
            "--step-group",
            "app0/dg0",
            "--reason",
            "x",
        ])
        .await;
    assert_eq!(unconfirmed.exit, Exit::Usage, "{}", unconfirmed.err);

    let r = w
        .act(&[
            "skip-failed-step",
            &held,
            "--step-group",
            "app0/dg0",
            "--reason",
            "app0 is optional on this fleet",
            "--yes",
        ])
        .await;
    assert_eq!(r.exit, Exit::Ok, "{}\n{}", r.out, r.err);
    w.settle(10 * 60_000).await;
    assert_eq!(w.state(&held), InstanceState::InService, "in, without app0");
    let show = run(&["show", &held, "--table", TABLE], w.ctx()).await;
    assert_eq!(show.exit, Exit::Ok, "{}", show.err);
    assert!(
        show.out.contains(&format!("skipped by {MOTO_SENDER}")),
        "{}",
        show.out
    );
    assert!(
        show.out.contains("skip-failed-step"),
        "the note: {}",
        show.out
    );
}
