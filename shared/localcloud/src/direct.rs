//! The real runner without HTTP: ports implemented directly over the AWS model, the model's
//! clock, and a driver that delivers events the way Lambda and SQS would. The deterministic
//! simulation (`shared/aws/tests/dst.rs`), the crash tests and `make bench` use it.

pub mod driver;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use turnstile_aws::ports::{
    Clock, Deployments, HookInfo, LaunchHooks, Lifecycle, PortError, Tags, Timer, Waiting,
};
use turnstile_core::{
    ActionRef, CreateOutcome, DeploymentId, DeploymentState, Gate, GroupKey, GroupRevision,
    HookTimeouts, InstanceId, IntentId, Key, LeaveFound, LifecycleResult, Millis, Place,
    TargetState,
};
use turnstile_model::{ApiError, Cloud, InstanceState, Transition};
use turnstile_sim::exec;

/// The model, shared by every port (one AWS account), and the faults the ports and the store
/// inject.
#[derive(Clone)]
pub struct Aws(pub Arc<Mutex<Cloud>>, pub Injector, Prefetched);

/// Revisions read ahead by `Deployments::prefetch`, with the (model) time they were read.
type Prefetched = Arc<Mutex<BTreeMap<GroupKey, (turnstile_model::Ms, Option<String>)>>>;

/// How long a prefetched revision stays good, as in the CodeDeploy adapter.
const PREFETCH_TTL_MS: turnstile_model::Ms = 10_000;

impl Aws {
    pub fn new(cloud: Cloud) -> Self {
        Self::with_faults(cloud, Injector::default())
    }
    pub fn with_faults(cloud: Cloud, injector: Injector) -> Self {
        Self(Arc::new(Mutex::new(cloud)), injector, Prefetched::default())
    }
    pub fn lock(&self) -> MutexGuard<'_, Cloud> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn fault(&self, op: &'static str) -> Result<(), PortError> {
        self.1.note(op);
        if self.1.scripted(op) || self.1.throttle() {
            return Err(PortError::Transient {
                op,
                source: "Rate exceeded (injected throttling)".into(),
            });
        }
        Ok(())
    }
}

/// Seeded fault injection: throttled AWS calls, conditional-write conflicts, and yielding at
/// every store call so that concurrent invocations interleave.
#[derive(Clone, Default)]
pub struct Injector(Arc<Mutex<InjectorState>>);

#[derive(Default)]
struct InjectorState {
    rng: Option<turnstile_model::Rng>,
    throttle: f64,
    conflict: f64,
    interleave: bool,
    pub throttled: u64,
    pub conflicts: u64,
    /// When recording, every AWS call and store operation in order.
    log: Option<Vec<&'static str>>,
    /// Calls that fail transiently the next n times they are made ([`Injector::fail_next`]).
    scripted: BTreeMap<&'static str, u32>,
}

impl Injector {
    pub fn new(seed: u64, throttle: f64, conflict: f64, interleave: bool) -> Self {
        Self(Arc::new(Mutex::new(InjectorState {
            rng: Some(turnstile_model::Rng::new(seed)),
            throttle,
            conflict,
            interleave,
            throttled: 0,
            conflicts: 0,
            log: None,
            scripted: BTreeMap::new(),
        })))
    }

    /// Makes the next `times` calls of `op` (e.g. `"RecordLifecycleActionHeartbeat"`) fail
    /// transiently, as a throttled call does: for tests of one failure at one place.
    pub fn fail_next(&self, op: &'static str, times: u32) {
        self.lock().scripted.insert(op, times);
    }

    fn scripted(&self, op: &'static str) -> bool {
        let mut s = self.lock();
        match s.scripted.get_mut(op) {
            Some(left) if *left > 0 => {
                *left -= 1;
                s.throttled += 1;
                true
            }
            _ => false,
        }
    }

    /// Starts recording every AWS call and store operation.
    pub fn record(&self) {
        self.lock().log = Some(Vec::new());
    }

    /// Whether operations are being recorded.
    pub fn recording(&self) -> bool {
        self.lock().log.is_some()
    }

    /// Records `op` if recording.
    pub fn note(&self, op: &'static str) {
        if let Some(log) = self.lock().log.as_mut() {
            log.push(op);
        }
    }

    /// The recorded operations so far.
    pub fn recorded(&self) -> Vec<&'static str> {
        self.lock().log.clone().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, InjectorState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn draw(&self, conflict: bool) -> bool {
        let mut s = self.lock();
        let p = if conflict { s.conflict } else { s.throttle };
        let hit = p > 0.0 && s.rng.as_mut().is_some_and(|r| r.chance(p));
        if hit && conflict {
            s.conflicts += 1;
        } else if hit {
            s.throttled += 1;
        }
        hit
    }

    fn throttle(&self) -> bool {
        self.draw(false)
    }

    fn conflict(&self) -> bool {
        self.draw(true)
    }

    fn interleave(&self) -> bool {
        self.lock().interleave
    }

    /// Throttled calls and injected conflicts so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.throttled, s.conflicts)
    }
}

/// The port error for a model call that failed: a lifecycle action that is gone, or a
/// permanent error.
fn gone(op: &'static str, e: ApiError) -> PortError {
    match e {
        ApiError::NoActiveAction(message) => PortError::Gone { op, message },
        other => PortError::Permanent {
            op,
            source: format!("{other:?}").into(),
        },
    }
}

impl Lifecycle for Aws {
    async fn complete(&self, a: &ActionRef, r: LifecycleResult) -> Result<(), PortError> {
        self.fault("CompleteLifecycleAction")?;
        exec::complete_action(&mut self.lock(), a, r)
            .map_err(|e| gone("CompleteLifecycleAction", e))
    }
    async fn heartbeat(&self, a: &ActionRef) -> Result<(), PortError> {
        self.fault("RecordLifecycleActionHeartbeat")?;
        exec::record_heartbeat(&mut self.lock(), a)
            .map_err(|e| gone("RecordLifecycleActionHeartbeat", e))
    }
    async fn hook(&self, asg: &str, hook: &str) -> Result<HookInfo, PortError> {
        self.fault("DescribeLifecycleHooks")?;
        let h = self
            .lock()
            .describe_hook(asg, hook)
            .ok_or_else(|| PortError::Permanent {
                op: "DescribeLifecycleHooks",
                source: "no such hook".into(),
            })?;
        Ok(HookInfo {
            timeouts: HookTimeouts::from_heartbeat(h.heartbeat_secs),
            metadata: h.metadata,
        })
    }
    async fn launch_hooks(&self, asg: &str) -> Result<LaunchHooks, PortError> {
        self.fault("DescribeLifecycleHooks")?;
        let hooks = self
            .lock()
            .describe_hooks(asg)
            .ok_or_else(|| PortError::Permanent {
                op: "DescribeLifecycleHooks",
                source: format!("Group {asg} not found").into(),
            })?;
        Ok(hooks
            .into_iter()
            .filter(|h| h.transition == Transition::Launching)
            .map(|h| {
                let info = HookInfo {
                    timeouts: HookTimeouts::from_heartbeat(h.heartbeat_secs),
                    metadata: h.metadata,
                };
                (h.name, info)
            })
            .collect())
    }
    async fn waiting(&self, asgs: &[String]) -> Result<Vec<Waiting>, PortError> {
        self.fault("DescribeAutoScalingGroups")?;
        let groups = self.lock().describe_groups(asgs);
        Ok(groups
            .into_iter()
            .flat_map(|(asg, members)| {
                members
                    .into_iter()
                    .filter(|(_, state)| *state == InstanceState::PendingWait)
                    .map(move |(id, _)| Waiting {
                        asg: asg.clone(),
                        instance: InstanceId(id),
                        place: Place::AutoScalingGroup,
                    })
            })
            .collect())
    }
}

impl Deployments for Aws {
    async fn create(
        &self,
        g: &GroupKey,
        intent: &IntentId,
        config: Option<&str>,
    ) -> Result<CreateOutcome, PortError> {
        // The adapter reads the group's target revision first (unless it was read ahead, a
        // moment ago, beside the commit that decided the creation), then creates.
        let now = self.lock().now;
        let ahead = self
            .2
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(g)
            .filter(|(at, _)| now.saturating_sub(*at) < PREFETCH_TTL_MS)
            .map(|(_, revision)| revision);
        if ahead.is_none() {
            self.1.note("GetDeploymentGroup");
        }
        self.fault("CreateDeployment")?;
        exec::create_deployment(&mut self.lock(), g, intent, config, ahead)
            .map_err(|e| gone("GetDeployment", e))
    }
    async fn prefetch(&self, g: &GroupKey) {
        // Concurrent with the commit in the runner: not a round trip of its own.
        if self.fault("‖ GetDeploymentGroup (next group)").is_err() {
            return;
        }
        let mut c = self.lock();
        let now = c.now;
        if let Ok(revision) = exec::target_revision(&mut c, g) {
            self.2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(g.clone(), (now, revision));
        }
    }
    async fn find(
        &self,
        g: &GroupKey,
        intent: &IntentId,
        since: Millis,
    ) -> Result<CreateOutcome, PortError> {
        self.fault("ListDeployments")?;
        exec::find_deployment(&mut self.lock(), g, intent, since)
            .map_err(|e| gone("GetDeployment", e))
    }
    async fn status(
        &self,
        d: &DeploymentId,
        instances: &[InstanceId],
    ) -> Result<(DeploymentState, Vec<(InstanceId, TargetState)>), PortError> {
        self.fault("GetDeployment")?;
        exec::poll_deployment(&mut self.lock(), d, instances).map_err(|e| gone("GetDeployment", e))
    }
    async fn stop(&self, d: &DeploymentId) -> Result<(), PortError> {
        self.fault("StopDeployment")?;
        exec::stop_deployment(&mut self.lock(), d).map_err(|e| gone("StopDeployment", e))
    }
    async fn revision(&self, g: &GroupKey) -> Result<GroupRevision, PortError> {
        self.fault("GetDeploymentGroup")?;
        Ok(exec::group_revision(&mut self.lock(), g))
    }
    async fn holding(
        &self,
        g: &GroupKey,
        i: &InstanceId,
        done_in: Option<&DeploymentId>,
        since: Option<Millis>,
    ) -> Result<LeaveFound, PortError> {
        self.fault(if since.is_some() {
            "ListDeployments"
        } else {
            "GetDeploymentGroup"
        })?;
        exec::holding(&mut self.lock(), g, i, done_in, since).map_err(|e| gone("GetDeployment", e))
    }
}

impl Tags for Aws {
    async fn open(&self, gates: &[Gate], instances: &[InstanceId]) -> Result<(), PortError> {
        self.fault("CreateTags")?;
        exec::open_gates(&mut self.lock(), gates, instances);
        Ok(())
    }
    async fn close(&self, gates: &[Gate], instances: &[InstanceId]) -> Result<(), PortError> {
        self.fault("DeleteTags")?;
        exec::close_gates(&mut self.lock(), gates, instances);
        Ok(())
    }
    async fn read(
        &self,
        instances: &[InstanceId],
        keys: &[String],
    ) -> Result<Vec<(InstanceId, String, String)>, PortError> {
        self.fault("DescribeTags")?;
        Ok(exec::read_tags(&mut self.lock(), instances, keys))
    }
}

/// Collects wakeups; the test delivers them.
#[derive(Clone, Default)]
pub struct Wakeups(
    pub Arc<Mutex<BTreeMap<(Millis, u64), Key>>>,
    pub Arc<AtomicU64>,
);

impl Timer for Wakeups {
    async fn wake(&self, key: &Key, at: Millis) -> Result<(), PortError> {
        let n = self.1.fetch_add(1, Ordering::Relaxed);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((at, n), key.clone());
        Ok(())
    }
}

/// The model's clock.
#[derive(Clone)]
pub struct ModelClock(pub Aws);

impl Clock for ModelClock {
    fn now(&self) -> Millis {
        Millis(self.0.lock().now)
    }
}

/// DynamoDB work a store did: reads, transactions, and items written (records, processed event
/// ids and deployment index entries each count as one write).
#[derive(Debug, Clone, Default)]
pub struct StoreCounts {
    pub loads: Arc<AtomicU64>,
    pub commits: Arc<AtomicU64>,
    pub items: Arc<AtomicU64>,
}

/// A store that counts what goes through it.
#[derive(Clone)]
pub struct Counted<S> {
    pub inner: S,
    pub counts: StoreCounts,
    /// Conflicts to inject, and whether to yield at every call.
    pub faults: Injector,
}

impl<S> Counted<S> {
    async fn yield_if_interleaving(&self) {
        if self.faults.interleave() {
            tokio::task::yield_now().await;
        }
    }
}

impl<S: turnstile_aws::store::Store> turnstile_aws::store::Store for Counted<S> {
    async fn load(
        &self,
        keys: &[Key],
    ) -> Result<turnstile_aws::store::Loaded, turnstile_aws::store::StoreError> {
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        self.faults.note("DynamoDB read");
        self.yield_if_interleaving().await;
        self.inner.load(keys).await
    }

    async fn commit(
        &self,
        commit: turnstile_aws::store::Commit,
    ) -> Result<(), turnstile_aws::store::StoreError> {
        let items =
            commit.writes.len() + usize::from(commit.event.is_some()) + commit.deployments.len();
        self.yield_if_interleaving().await;
        if self.faults.conflict() {
            return Err(turnstile_aws::store::StoreError::Conflict);
        }
        self.counts.commits.fetch_add(1, Ordering::Relaxed);
        self.counts.items.fetch_add(items as u64, Ordering::Relaxed);
        self.faults.note("DynamoDB write");
        self.inner.commit(commit).await
    }

    async fn due(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Key>, turnstile_aws::store::StoreError> {
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.due(now, limit).await
    }

    async fn awaiting_ready(
        &self,
        limit: usize,
    ) -> Result<Vec<(InstanceId, turnstile_core::Gate)>, turnstile_aws::store::StoreError> {
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.awaiting_ready(limit).await
    }

    async fn overflowed(
        &self,
        group: &GroupKey,
        limit: usize,
    ) -> Result<Vec<InstanceId>, turnstile_aws::store::StoreError> {
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.overflowed(group, limit).await
    }

    async fn in_flight(
        &self,
        asg: &str,
    ) -> Result<Vec<InstanceId>, turnstile_aws::store::StoreError> {
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.in_flight(asg).await
    }

    async fn deployment_group(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<GroupKey>, turnstile_aws::store::StoreError> {
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.deployment_group(deployment).await
    }
}

/// A runner observer that neither crashes nor prints: benchmarks discard the metric lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl turnstile_aws::Observer for Quiet {
    fn before(&self, _: &turnstile_core::Command) -> Result<(), turnstile_aws::RunError> {
        Ok(())
    }

    fn emit(&self, _line: String) {}
}

/// The runner over the model's ports and `store`, with its timer messages in `wakeups`.
pub fn model_runner<S: turnstile_aws::store::Store, O: turnstile_aws::Observer>(
    aws: &Aws,
    store: S,
    wakeups: Wakeups,
    observer: O,
) -> turnstile_aws::Runner<ModelPorts<S, O>> {
    turnstile_aws::Runner::new(
        turnstile_core::Engine::default(),
        turnstile_aws::runner::Adapters {
            store,
            lifecycle: aws.clone(),
            deployments: aws.clone(),
            tags: aws.clone(),
            timer: wakeups,
            clock: ModelClock(aws.clone()),
            observer,
        },
    )
}

/// A visibility port that accepts every change: for tests whose messages all succeed.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyVisibility;

impl turnstile_aws::ports::Visibility for AnyVisibility {
    async fn visible_in(&self, _: &str, _: u32) -> Result<(), PortError> {
        Ok(())
    }
}

/// The runner wired to the model: every port over [`Aws`], wakeups collected by [`Wakeups`],
/// the model's clock; the store `S` and the observer `O` chosen by the test.
pub struct ModelPorts<S, O>(std::marker::PhantomData<(S, O)>);

impl<S: turnstile_aws::store::Store, O: turnstile_aws::Observer> turnstile_aws::Ports
    for ModelPorts<S, O>
{
    type Store = S;
    type Lifecycle = Aws;
    type Deployments = Aws;
    type Tags = Aws;
    type Timer = Wakeups;
    type Clock = ModelClock;
    type Observer = O;
}
