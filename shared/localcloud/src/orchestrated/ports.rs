//! The runner the functions use on the local cloud, and the ports only the local cloud has:
//! the model's clock, timer messages held until simulated time reaches them, and a sink for
//! the functions' metric lines. The one place that names the runner's type parameters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use turnstile_aws::autoscaling::AutoScaling;
use turnstile_aws::codedeploy::CodeDeploy;
use turnstile_aws::ports::{Clock, PortError, Timer};
use turnstile_aws::runner::{Adapters, Observer, Ports, Runner};
use turnstile_aws::sqs::delay_secs;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_aws::tags::Ec2Tags;
use turnstile_core::{Engine, Key, Millis};
use turnstile_events::wakeup_body;
use turnstile_model::Ms;

use crate::wire::Simulator;

/// The simulated clock the functions read: the model's.
#[derive(Clone)]
pub struct SimClock(pub Arc<Simulator>);

impl Clock for SimClock {
    fn now(&self) -> Millis {
        Millis(self.0.cloud().now)
    }
}

/// Timer messages held until simulated time reaches them, then sent to the queue.
#[derive(Clone)]
pub struct LocalTimer {
    clock: SimClock,
    due: Arc<Mutex<BTreeMap<(Ms, u64), String>>>,
}

impl LocalTimer {
    pub(crate) fn new(clock: SimClock) -> Self {
        Self {
            clock,
            due: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Ms, u64), String>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next(&self) -> Option<Ms> {
        self.lock().keys().next().map(|(t, _)| *t)
    }

    pub(crate) fn take_due(&self, now: Ms) -> Vec<String> {
        let mut due = self.lock();
        let later = due.split_off(&(now + 1, 0));
        std::mem::replace(&mut *due, later).into_values().collect()
    }
}

impl Timer for LocalTimer {
    async fn wake(&self, key: &Key, at: Millis) -> Result<(), PortError> {
        let now = self.clock.now();
        // The same rule as the SQS port: beyond 15 minutes the sweep finds it.
        let Some(delay) = delay_secs(now, at) else {
            return Ok(());
        };
        let when = now.0 + u64::try_from(delay).unwrap_or(0) * 1000;
        let mut due = self.lock();
        let n = due.len() as u64;
        due.insert((when, n), wakeup_body(key));
        Ok(())
    }
}

/// Collects the functions' embedded-metric lines (on Lambda they go to stdout for CloudWatch).
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Vec<serde_json::Value>>>);

impl Metrics {
    pub(crate) fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Observer for Metrics {
    fn before(&self, _: &turnstile_core::Command) -> Result<(), turnstile_aws::RunError> {
        Ok(())
    }

    fn emit(&self, line: String) {
        if let Ok(v) = serde_json::from_str(&line) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(v);
        }
    }
}

/// The orchestrated run's wiring: the real SDK adapters against the simulator and DynamoDB
/// Local, simulated time, wakeups held locally, metric lines collected.
pub(crate) struct LocalPorts;

impl Ports for LocalPorts {
    type Store = DynamoStore;
    type Lifecycle = AutoScaling<SimClock>;
    type Deployments = CodeDeploy;
    type Tags = Ec2Tags;
    type Timer = LocalTimer;
    type Clock = SimClock;
    type Observer = Metrics;
}

pub(crate) type LocalRunner = Runner<LocalPorts>;

/// The functions' runner: state in `store`, AWS calls to the simulator at `front`, time from
/// `clock`, timer messages to `timer`, metric lines to `metrics`.
pub(crate) fn runner(
    store: DynamoStore,
    front: &SdkConfig,
    clock: SimClock,
    timer: LocalTimer,
    metrics: Metrics,
) -> LocalRunner {
    Runner::new(
        Engine::default(),
        Adapters {
            store,
            lifecycle: AutoScaling::with_clock(
                aws_sdk_autoscaling::Client::new(front),
                clock.clone(),
            ),
            deployments: CodeDeploy::new(aws_sdk_codedeploy::Client::new(front)),
            tags: Ec2Tags::new(aws_sdk_ec2::Client::new(front)),
            timer,
            clock,
            observer: metrics,
        },
    )
}
