//! The runner the functions use on the local cloud, and the ports only the local cloud has:
//! the model's clock, timer messages held until simulated time reaches them, the visibility
//! the queue function asks for (in simulated time), the store with `faults.transient`
//! injected, and a sink for the functions' metric lines. The one place that names the
//! runner's type parameters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use turnstile_aws::autoscaling::AutoScaling;
use turnstile_aws::codedeploy::CodeDeploy;
use turnstile_aws::ports::{Clock, PortError, Timer, Visibility};
use turnstile_aws::runner::{Adapters, Observer, Ports, Runner};
use turnstile_aws::sqs::delay_secs;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_aws::store::{Commit, Loaded, Store, StoreError};
use turnstile_aws::tags::Ec2Tags;
use turnstile_core::{DeploymentId, Engine, GroupKey, InstanceId, Key, Millis};
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

/// The visibility the queue function asked for (`ChangeMessageVisibility`), per receipt
/// handle, as the simulated time the message is to be visible again. moto counts visibility in
/// wall time, which stands for nothing here, so the local event source mapping keeps failed
/// messages hidden in moto and makes each visible again when simulated time reaches what the
/// function asked for, or the queue's visibility timeout if it asked nothing.
#[derive(Clone)]
pub struct LocalVisibility {
    clock: SimClock,
    asked: Arc<Mutex<HashMap<String, Ms>>>,
}

impl LocalVisibility {
    pub(crate) fn new(clock: SimClock) -> Self {
        Self {
            clock,
            asked: Arc::default(),
        }
    }

    /// When the message received with `receipt_handle` is to be visible again, if the
    /// function asked (and forgets the request: a receipt handle is good for one receive).
    pub(crate) fn take(&self, receipt_handle: &str) -> Option<Ms> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(receipt_handle)
    }
}

impl Visibility for LocalVisibility {
    async fn visible_in(&self, receipt_handle: &str, secs: u32) -> Result<(), PortError> {
        let at = self.clock.now().0 + u64::from(secs) * 1000;
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(receipt_handle.to_owned(), at);
        Ok(())
    }
}

/// The store the functions use: DynamoDB Local, with `faults.transient` injected. The event
/// source mapping arms it with the number of messages of the batch that are to fail, and puts
/// those messages first (a standard queue promises no order, so that is a batch SQS could
/// deliver): each armed read then fails the first store read of one of them, before it wrote
/// anything, as a throttled read would. A token a message did not use (it read nothing) goes
/// to the next message's first read; the mapping disarms the store once the batch is done, so
/// the timer sweep never sees these faults.
#[derive(Clone)]
pub struct TransientStore {
    inner: DynamoStore,
    armed: Arc<AtomicU32>,
    injected: Arc<AtomicU64>,
}

impl TransientStore {
    pub(crate) fn new(inner: DynamoStore) -> Self {
        Self {
            inner,
            armed: Arc::default(),
            injected: Arc::default(),
        }
    }

    /// The next `reads` reads fail.
    pub(crate) fn arm(&self, reads: u32) {
        self.armed.store(reads, Ordering::SeqCst);
    }

    pub(crate) fn disarm(&self) {
        self.armed.store(0, Ordering::SeqCst);
    }

    /// Reads failed so far.
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }
}

impl Store for TransientStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let take = |n: u32| n.checked_sub(1);
        if self
            .armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            .is_ok()
        {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Transient {
                op: "BatchGetItem",
                source: "injected transient failure (faults.transient)".into(),
            });
        }
        self.inner.load(keys).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.inner.commit(commit).await
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

    async fn deployment_group(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<GroupKey>, StoreError> {
        self.inner.deployment_group(deployment).await
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
/// Local (with transient read faults), simulated time, wakeups held locally, metric lines
/// collected.
pub(crate) struct LocalPorts;

impl Ports for LocalPorts {
    type Store = TransientStore;
    type Lifecycle = AutoScaling<SimClock>;
    type Deployments = CodeDeploy;
    type Tags = Ec2Tags;
    type Timer = LocalTimer;
    type Clock = SimClock;
    type Observer = Metrics;
}

pub(crate) type LocalRunner = Runner<LocalPorts>;

/// The functions' runner: state in `store` (through [`TransientStore`]), AWS calls to the simulator at `front`, time from
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
            store: TransientStore::new(store),
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
