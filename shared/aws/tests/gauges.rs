//! The gauges the timer publishes every sweep, read from DynamoDB Local: an instance held stays
//! counted (and its alarm true) at every sweep until an operator acts, unlike the alert line
//! that fired once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::{Arc, Mutex};

use support::dynamo_local::DynamoLocal;
use support::{Aws, ModelClock, Wakeups, group_app0, launch_hook, model_runner};
use turnstile_aws::handler::sweep;
use turnstile_aws::ports::Clock;
use turnstile_aws::runner::{Observer, RunError};
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_core::{Command, DEFAULT_LAUNCH_HOOK, GroupKey, Input, Request};
use turnstile_model::{Asg, Cloud, EventKind};

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

impl Observer for Collect {
    fn before(&self, _: &Command) -> Result<(), RunError> {
        Ok(())
    }
    fn emit(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

const FITS: &str =
    r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0"}]}"#;
/// 43,200 s cannot fit a 300 s hook's 30,000 s global timeout: held at launch.
const CANNOT_FIT: &str = r#"{"version":1,"steps":[{"application":"app0","deploymentGroup":"dg0","gateTag":"gate-0","timeoutSecs":43200}]}"#;

fn cloud() -> Cloud {
    let mut c = Cloud::new(3);
    for (name, plan) in [("fleet", FITS), ("held", CANNOT_FIT)] {
        c.add_asg(Asg {
            name: name.into(),
            hooks: vec![launch_hook(DEFAULT_LAUNCH_HOOK, 300, Some(plan))],
            replace_after_ms: None,
        });
    }
    c.add_group(group_app0(600_000, 600_000));
    c.now = 1_000_000;
    c
}

fn stack_line(lines: &[String]) -> serde_json::Value {
    lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v.get("InFlight").is_some() && v.get("AutoScalingGroup").is_none())
        .expect("a stack-wide gauge line")
}

#[tokio::test]
async fn gauges_count_held_and_paused_pipelines_at_every_sweep_until_an_operator_acts() {
    let db = DynamoLocal::start();
    let store = DynamoStore::new(db.client(), "gauges");
    store.create_table().await.unwrap();
    let aws = Aws::new(cloud());
    let lines = Collect::default();
    let runner = model_runner(&aws, store, Wakeups::default(), lines.clone());
    let pause = Input::Pause {
        group: GroupKey::new("app0", "dg0"),
        paused: true,
        request: Request {
            id: "op-1".into(),
            actor: "AIDA:alice".into(),
            reason: "mirror down".into(),
        },
    };
    runner.handle(pause, None).await.unwrap();
    aws.lock().scale_out("fleet", 2);
    aws.lock().scale_out("held", 1);
    let events: Vec<String> = aws
        .lock()
        .drain()
        .into_iter()
        .filter(|p| p.kind == EventKind::Lifecycle)
        .map(|p| p.json.to_string())
        .collect();
    for body in events {
        let msg = turnstile_events::parse(&body).unwrap();
        let (input, event) = runner.input_of(msg).await.unwrap().unwrap();
        runner.handle(input, event).await.unwrap();
    }
    let managed = vec!["fleet".to_owned(), "held".to_owned()];
    for sweep_n in 0..2 {
        aws.lock().now += 60_000;
        lines.0.lock().unwrap().clear();
        let now = ModelClock(aws.clone()).now();
        sweep(&runner, now, 500, &managed).await.unwrap();
        let got = lines.0.lock().unwrap().clone();
        let total = stack_line(&got);
        assert_eq!(
            (
                total["InFlight"].as_f64(),
                total["HeldNow"].as_f64(),
                total["WaitingOnPause"].as_f64()
            ),
            (Some(3.0), Some(1.0), Some(2.0)),
            "sweep {sweep_n}: {total}"
        );
        assert!(total["OldestPipelineAge"].as_f64().unwrap() >= 60_000.0);
        let left = total["DeadlineLeft"].as_f64().unwrap();
        assert!(left > 0.0 && left < 30_000_000.0, "{left}");
        let per_group: Vec<serde_json::Value> = got
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("AutoScalingGroup").is_some() && v.get("InFlight").is_some())
            .collect();
        assert_eq!(per_group.len(), 2, "one line per managed group");
    }
}
