//! Test support: running the command line in-process, DynamoDB Local (started by
//! `turnstile-harness` on a free port, stopped by PID on drop), and real pipeline records
//! written by the real runner over the AWS model (as `shared/aws/tests/support` does).
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_cli::{Context, Exit};
use turnstile_core::{GroupKey, Input, Key};
use turnstile_localcloud::direct::{Aws, Quiet, Wakeups, model_runner};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, EventKind, Hook, HookResult, Profile, Transition,
};

/// What one run printed.
pub struct Ran {
    pub exit: Exit,
    pub out: String,
    pub err: String,
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.out))
    }
}

/// A context with a fixed clock, no environment, empty stdin, and `dynamo` as the client.
pub fn ctx(now_ms: u64, dynamo: Option<aws_sdk_dynamodb::Client>) -> Context {
    Context {
        now: DateTime::<Utc>::from_timestamp_millis(now_ms as i64).unwrap(),
        managed_groups: None,
        color: false,
        stdin: Box::new(std::io::empty()),
        dynamo,
        sqs: None,
        autoscaling: None,
        interactive: false,
    }
}

/// Runs `turnstile ARGS...` in-process.
pub async fn run(args: &[&str], ctx: Context) -> Ran {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let exit = turnstile_cli::run_args(
        std::iter::once("turnstile").chain(args.iter().copied()),
        ctx,
        &mut out,
        &mut err,
    )
    .await;
    Ran {
        exit,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// DynamoDB Local, stopped by PID when dropped.
pub struct DynamoLocal(turnstile_harness::Service);

impl DynamoLocal {
    pub fn start() -> Self {
        match turnstile_harness::dynamodb_local() {
            Ok(s) => Self(s),
            Err(e) => panic!("{e}"),
        }
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        turnstile_harness::dynamodb_client(&self.0)
    }

    pub fn endpoint(&self) -> String {
        self.0.endpoint()
    }
}

pub const FLEET: &str = "fleet";
/// A fleet whose hook's heartbeat timeout (300 s → global 30,000 s) cannot fit its plan's
/// 43,200 s step: the core holds every launch there.
pub const HELD_FLEET: &str = "held-fleet";

fn plan(steps: &[(&str, &str, &str, u64)]) -> String {
    let steps: Vec<String> = steps
        .iter()
        .map(|(app, dg, gate, t)| {
            format!(
                r#"{{"application":"{app}","deploymentGroup":"{dg}","gateTag":"{gate}","timeoutSecs":{t}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"version":1,"steps":[{}],"batchWindowSecs":1}}"#,
        steps.join(",")
    )
}

fn cloud() -> Cloud {
    let mut c = Cloud::new(7);
    let hook = |heartbeat_secs, metadata| Hook {
        name: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
        transition: Transition::Launching,
        heartbeat_secs,
        default_result: HookResult::Abandon,
        metadata: Some(metadata),
    };
    c.add_asg(Asg {
        name: FLEET.into(),
        hooks: vec![hook(
            600,
            plan(&[
                ("app0", "dg0", "gate-0", 1800),
                ("app1", "dg1", "gate-1", 1800),
            ]),
        )],
        replace_after_ms: None,
    });
    c.add_asg(Asg {
        name: HELD_FLEET.into(),
        hooks: vec![hook(300, plan(&[("app2", "dg2", "gate-2", 43_200)]))],
        replace_after_ms: None,
    });
    for i in 0..3 {
        c.add_group(DeploymentGroup {
            app: format!("app{i}"),
            name: format!("dg{i}"),
            tag_set: vec![vec![(format!("gate-{i}"), "open".into())]],
            target_revision: Some(format!("rev-{i}")),
            config: DeployConfig::AllAtOnce,
            profile: Profile {
                min_ms: 60_000,
                max_ms: 60_000,
                fail_prob: 0.0,
            },
        });
    }
    c.now = 1_000_000;
    c
}

/// The records of a small fleet, written to DynamoDB Local by the real runner:
/// two instances of `fleet` admitted into one deployment of `app0/dg0` (step 1 of 2), and
/// one instance of `held-fleet` held at launch because its plan cannot fit the hook.
pub struct Fleet {
    pub aws: Aws,
    pub store: DynamoStore,
    pub deploying: Vec<String>,
    pub held: String,
}

impl Fleet {
    /// The model's clock, in milliseconds since the epoch.
    pub fn now(&self) -> u64 {
        self.aws.lock().now
    }
}

pub async fn fleet(db: &DynamoLocal, table: &str) -> Fleet {
    let store = DynamoStore::new(db.client(), table);
    store.create_table().await.unwrap();
    let aws = Aws::new(cloud());
    let runner = model_runner(&aws, store.clone(), Wakeups::default(), Quiet);
    let (deploying, held, events) = {
        let mut c = aws.lock();
        let deploying = c.scale_out(FLEET, 2);
        let held = c.scale_out(HELD_FLEET, 1);
        let events: Vec<String> = c
            .drain()
            .into_iter()
            .filter(|p| p.kind == EventKind::Lifecycle)
            .map(|p| p.json.to_string())
            .collect();
        (deploying, held, events)
    };
    assert_eq!(events.len(), 3, "one launch event per instance");
    for body in events {
        let msg = turnstile_events::parse(&body).unwrap();
        let (input, event) = runner.input_of(msg).await.unwrap().unwrap();
        runner.handle(input, event).await.unwrap();
    }
    // The batch window has closed: the group's timer admits both instances into one deployment.
    aws.lock().now += 2_000;
    runner
        .handle(Input::Tick(Key::Group(GroupKey::new("app0", "dg0"))), None)
        .await
        .unwrap();
    Fleet {
        aws,
        store,
        deploying,
        held: held.into_iter().next().unwrap(),
    }
}
