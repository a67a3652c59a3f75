//! One scenario run on the local cloud.
//!
//! - **Native**: the fleet with CodeDeploy's own per-group launch hooks, as most teams run
//!   today. CodeDeploy and Auto Scaling talk to each other inside the model; nothing of ours
//!   runs.
//! - **Orchestrator**: the fleet with the orchestrator's hooks. The model publishes the real
//!   event JSON to an EventBridge bus on moto, whose rules (the SAM template's patterns) route
//!   it to an SQS queue on moto. An event source mapping like Lambda's receives batches of up to
//!   ten, invokes the real queue handler (`turnstile_aws::handler::handle_batch`), deletes what
//!   succeeded and leaves failures for redelivery (after `maxReceiveCount` receives, the
//!   dead-letter queue). The timer function's sweep runs every simulated minute. The handlers
//!   call the simulator over its wire protocols and keep their state in DynamoDB Local.
//!
//! Time is simulated. It stands still while the functions work and jumps to the next thing that
//! can happen (a deployment finishing, a timeout, a timer message, the next sweep, the next
//! scripted event) once nothing is in flight; with `clock_scale > 0` each jump also takes
//! `jump / clock_scale` of wall time. SQS's `DelaySeconds` counts wall time, so timer
//! messages are held by the local timer port and sent to the queue when simulated time reaches
//! them (the production port uses `DelaySeconds`; both go through the same queue and handler).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::json;
use turnstile_aws::autoscaling::AutoScaling;
use turnstile_aws::codedeploy::CodeDeploy;
use turnstile_aws::handler::{self, Disposition};
use turnstile_aws::ports::{Clock, PortError, Timer};
use turnstile_aws::runner::{Hook, Runner};
use turnstile_aws::sqs::delay_secs;
use turnstile_aws::store::Store;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_aws::tags::Ec2Tags;
use turnstile_core::{Engine, Key, Millis, Phase};
use turnstile_events::wakeup_body;
use turnstile_model::{Cloud, EventKind, InstanceState, Ms, Published, Rng};

use crate::checks::{self, Checker};
use crate::scenario::{Mode, Scenario, apply};
use crate::stack::{CallCounter, Stack};
use crate::wire::{self, Simulator, WireFaults};

/// How often the timer function runs (the SAM template's `rate(1 minute)`).
pub const SWEEP_EVERY_MS: Ms = 60_000;
/// The SAM template's `maxReceiveCount`.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// Visibility timeout of the local queue, in wall-clock seconds (the template's is 360 s; a
/// failed message comes back sooner here so a run does not wait on it).
pub const LOCAL_VISIBILITY_SECS: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("local stand-in: {0}")]
    Stack(String),
    #[error("{op} failed: {message}")]
    Aws { op: &'static str, message: String },
}

fn aws_err(op: &'static str) -> impl Fn(String) -> RunError {
    move |message| RunError::Aws { op, message }
}

fn sdk<E: std::fmt::Debug>(op: &'static str) -> impl Fn(E) -> RunError {
    move |e| RunError::Aws {
        op,
        message: format!("{e:?}"),
    }
}

/// What the functions did during a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    /// Invocations of the queue function (one per batch) and of the timer function.
    pub queue_invocations: u64,
    pub timer_invocations: u64,
    pub messages: u64,
    pub duplicates_injected: u64,
    pub events_dropped: u64,
    pub redeliveries: u64,
    pub dead_lettered: u64,
    pub dispositions: BTreeMap<String, u64>,
    pub dynamodb_calls: u64,
    pub sqs_sends: u64,
    pub throttled: u64,
    /// Alerts the functions raised, and every embedded-metric line they wrote.
    pub alerts: u64,
    pub metric_lines: u64,
}

/// Everything a run left behind, for the report and for tests.
pub struct RunRecord {
    pub mode: Mode,
    pub cloud: Cloud,
    pub activity: Activity,
    pub violations: Vec<String>,
    pub checks: u64,
    /// Instances the orchestrator holds (on-failure `hold`), from its DynamoDB records.
    pub held: BTreeSet<String>,
    /// Instances that had two deployments in flight at once.
    pub collided: BTreeSet<String>,
    pub wall: Duration,
}

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
    fn new(clock: SimClock) -> Self {
        Self {
            clock,
            due: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Ms, u64), String>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> Option<Ms> {
        self.lock().keys().next().map(|(t, _)| *t)
    }

    fn take_due(&self, now: Ms) -> Vec<String> {
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
    fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Hook for Metrics {
    fn before(&self, _: &turnstile_core::Command) -> Result<(), turnstile_aws::RunError> {
        Ok(())
    }

    fn emit(&self, line: String) {
        if let Ok(v) = serde_json::from_str(&line) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(v);
        }
    }
}

type LocalRunner =
    Runner<DynamoStore, AutoScaling<SimClock>, CodeDeploy, Ec2Tags, LocalTimer, SimClock, Metrics>;

/// Runs `scenario` in `mode`. The orchestrator mode needs the stack.
pub async fn run(
    stack: Option<&Stack>,
    scenario: &Scenario,
    mode: Mode,
) -> Result<RunRecord, RunError> {
    match (mode, stack) {
        (Mode::Native, _) => Ok(run_native(scenario)),
        (Mode::UserData, _) => Ok(crate::userdata::run(scenario)),
        (Mode::Orchestrator, Some(stack)) => run_orchestrated(stack, scenario).await,
        (Mode::Orchestrator, None) => Err(RunError::Stack(
            "the orchestrator run needs DynamoDB Local and moto".into(),
        )),
    }
}

/// Nothing is left to happen in the model: no instance waiting on a hook, no deployment in
/// progress, nothing scheduled (a pending replacement launch included).
pub(crate) fn settled(cloud: &Cloud) -> bool {
    cloud.instances.values().all(|i| {
        !matches!(
            i.state,
            InstanceState::PendingWait | InstanceState::TerminatingWait
        )
    }) && cloud.active_deployments().next().is_none()
        && cloud.next_due().is_none()
}

/// Where simulated time jumps next: the model's next event, the earliest of `others`, or the
/// horizon, whichever comes first, and always forward.
pub(crate) fn next_stop(cloud: &Cloud, others: &[Option<Ms>], horizon: Ms) -> Ms {
    others
        .iter()
        .copied()
        .chain([cloud.next_due(), Some(horizon)])
        .flatten()
        .min()
        .unwrap_or(horizon)
        .max(cloud.now + 1)
}

pub(crate) fn run_native(scenario: &Scenario) -> RunRecord {
    let started = Instant::now();
    let mut cloud = scenario.cloud(Mode::Native);
    let asg = scenario.fleet.auto_scaling_group.clone();
    let script = scenario.script();
    let horizon = scenario.horizon_ms();
    let mut next = 0;
    let mut checker = checks::for_scenario(scenario, Mode::Native);
    loop {
        while let Some((_, a)) = script.get(next).filter(|(t, _)| *t <= cloud.now) {
            apply(&mut cloud, &asg, a);
            next += 1;
        }
        let _ = cloud.drain(); // nobody of ours listens in this mode
        checker.check(&cloud);
        if cloud.now >= horizon || (next >= script.len() && settled(&cloud)) {
            break;
        }
        let at = next_stop(&cloud, &[script.get(next).map(|(t, _)| *t)], horizon);
        pace(scenario, cloud.now, at);
        cloud.advance_to(at);
    }
    RunRecord {
        mode: Mode::Native,
        violations: checker.violations.clone(),
        checks: checker.checks,
        collided: checker.collided.clone(),
        cloud,
        activity: Activity::default(),
        held: BTreeSet::new(),
        wall: started.elapsed(),
    }
}

pub(crate) fn pace(scenario: &Scenario, now: Ms, at: Ms) {
    if scenario.clock_scale > 0.0 && at > now {
        let real = (at - now) as f64 / scenario.clock_scale;
        std::thread::sleep(Duration::from_millis(real.min(10_000.0) as u64));
    }
}

/// The clients of one orchestrator run.
struct Clients {
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
}

/// EventBridge patterns of the SAM template's two rules (`infra/template.yaml`), with the
/// scenario's group and applications filled in.
pub fn rule_patterns(scenario: &Scenario) -> [serde_json::Value; 2] {
    let apps: Vec<&str> = scenario
        .groups
        .iter()
        .map(|g| g.application.as_str())
        .collect();
    crate::rules::rule_patterns(&[scenario.fleet.auto_scaling_group.as_str()], &apps)
}

async fn setup_queues(
    clients: &Clients,
    run: &str,
    scenario: &Scenario,
) -> Result<(String, String), RunError> {
    let dlq = clients
        .sqs
        .create_queue()
        .queue_name(format!("{run}-dlq"))
        .send()
        .await
        .map_err(sdk("CreateQueue"))?
        .queue_url
        .ok_or_else(|| aws_err("CreateQueue")("no queue url".into()))?;
    let dlq_arn = queue_arn(&clients.sqs, &dlq).await?;
    let queue = clients
        .sqs
        .create_queue()
        .queue_name(run)
        .attributes(QueueAttributeName::VisibilityTimeout, LOCAL_VISIBILITY_SECS.to_string())
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT.to_string()}).to_string(),
        )
        .send()
        .await
        .map_err(sdk("CreateQueue"))?
        .queue_url
        .ok_or_else(|| aws_err("CreateQueue")("no queue url".into()))?;
    let arn = queue_arn(&clients.sqs, &queue).await?;
    clients
        .events
        .create_event_bus()
        .name(run)
        .send()
        .await
        .map_err(sdk("CreateEventBus"))?;
    for (i, pattern) in rule_patterns(scenario).iter().enumerate() {
        let rule = format!("{run}-rule{i}");
        clients
            .events
            .put_rule()
            .name(&rule)
            .event_bus_name(run)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .map_err(sdk("PutRule"))?;
        clients
            .events
            .put_targets()
            .rule(&rule)
            .event_bus_name(run)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(&arn)
                    .build()
                    .map_err(sdk("PutTargets"))?,
            )
            .send()
            .await
            .map_err(sdk("PutTargets"))?;
    }
    Ok((queue, dlq))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, RunError> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sdk("GetQueueAttributes"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| aws_err("GetQueueAttributes")("no QueueArn".into()))
}

/// The state of one orchestrator run's loop.
struct Loop<'a> {
    scenario: &'a Scenario,
    sim: Arc<Simulator>,
    clients: Clients,
    runner: LocalRunner,
    timer: LocalTimer,
    queue: String,
    queue_arn: String,
    dlq: String,
    bus: String,
    rng: Rng,
    activity: Activity,
    /// A failed message becomes visible again at this wall-clock instant.
    redelivery_at: Option<Instant>,
}

async fn run_orchestrated(stack: &Stack, scenario: &Scenario) -> Result<RunRecord, RunError> {
    let started = Instant::now();
    let run = stack.next_run();
    let sim = Simulator::new(
        scenario.cloud(Mode::Orchestrator),
        WireFaults {
            throttle: scenario.faults.throttle,
        },
        scenario.seed,
    );
    let server = wire::serve(sim.clone())
        .await
        .map_err(|e| RunError::Stack(format!("simulator: {e}")))?;
    let moto = stack.config(&stack.moto.endpoint()).await;
    let front = stack.config(&server.endpoint()).await;
    let dynamo_calls = CallCounter::default();
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.config(&stack.dynamodb.endpoint()).await)
            .interceptor(dynamo_calls.clone())
            .build(),
    );
    let clients = Clients {
        sqs: aws_sdk_sqs::Client::new(&moto),
        events: aws_sdk_eventbridge::Client::new(&moto),
    };
    let (queue, dlq) = setup_queues(&clients, &run, scenario).await?;
    let queue_arn = queue_arn(&clients.sqs, &queue).await?;
    let store = DynamoStore::new(ddb, format!("{run}-state"));
    store
        .create_table()
        .await
        .map_err(|e| RunError::Stack(format!("CreateTable: {e}")))?;
    let clock = SimClock(sim.clone());
    let timer = LocalTimer::new(clock.clone());
    let metrics = Metrics::default();
    let runner = Runner::new(
        Engine::default(),
        store,
        AutoScaling::with_clock(aws_sdk_autoscaling::Client::new(&front), clock.clone()),
        CodeDeploy::new(aws_sdk_codedeploy::Client::new(&front)),
        Ec2Tags::new(aws_sdk_ec2::Client::new(&front)),
        timer.clone(),
        clock,
        metrics.clone(),
    );
    let mut lp = Loop {
        scenario,
        sim: sim.clone(),
        clients,
        runner,
        timer,
        queue,
        queue_arn,
        dlq,
        bus: run,
        rng: Rng::new(scenario.seed ^ 0xfa17),
        activity: Activity::default(),
        redelivery_at: None,
    };
    let mut checker = checks::for_scenario(scenario, Mode::Orchestrator);
    lp.drive(&mut checker).await?;
    lp.activity.dead_lettered = lp.dead_letters().await?;
    lp.activity.dynamodb_calls = dynamo_calls.get();
    lp.activity.throttled = sim.counts().1;
    let held = lp.held().await?;
    let emitted = metrics.take();
    lp.activity.alerts = emitted.iter().filter(|m| m.get("Alert").is_some()).count() as u64;
    lp.activity.metric_lines = emitted.len() as u64;
    drop(server);
    let cloud = sim.cloud().clone();
    checker.finish(&cloud, &held);
    Ok(RunRecord {
        mode: Mode::Orchestrator,
        violations: checker.violations.clone(),
        checks: checker.checks,
        collided: checker.collided.clone(),
        cloud,
        activity: lp.activity,
        held,
        wall: started.elapsed(),
    })
}

impl Loop<'_> {
    async fn drive(&mut self, checker: &mut Checker) -> Result<(), RunError> {
        let asg = self.scenario.fleet.auto_scaling_group.clone();
        let script = self.scenario.script();
        let horizon = self.scenario.horizon_ms();
        let mut next = 0;
        let mut next_sweep = SWEEP_EVERY_MS;
        loop {
            let now = self.sim.cloud().now;
            while let Some((_, a)) = script.get(next).filter(|(t, _)| *t <= now) {
                if let crate::scenario::Action::RawMessage(body) = a {
                    self.send(body.clone()).await?;
                } else {
                    apply(&mut self.sim.cloud(), &asg, a);
                }
                next += 1;
            }
            let published = self.sim.cloud().drain();
            self.publish(published).await?;
            for body in self.timer.take_due(now) {
                self.send(body).await?;
            }
            if self.deliver().await? {
                checker.check(&self.sim.cloud());
                continue;
            }
            if let Some(at) = self.redelivery_at {
                // A failed message comes back after its visibility timeout: wait for it
                // rather than let simulated time run past it.
                self.redelivery_at = None;
                tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
                continue;
            }
            if now >= next_sweep {
                next_sweep = now - now % SWEEP_EVERY_MS + SWEEP_EVERY_MS;
                self.activity.timer_invocations += 1;
                if let Err(e) = handler::sweep(&self.runner, Millis(now), 500).await {
                    tracing::warn!(error = %e, "timer sweep failed; the next one retries");
                }
                continue;
            }
            checker.check(&self.sim.cloud());
            let at = {
                let c = self.sim.cloud();
                if now >= horizon
                    || (next >= script.len() && settled(&c) && self.timer.next().is_none())
                {
                    return Ok(());
                }
                next_stop(
                    &c,
                    &[
                        script.get(next).map(|(t, _)| *t),
                        self.timer.next(),
                        Some(next_sweep),
                    ],
                    horizon,
                )
            };
            pace(self.scenario, now, at);
            self.sim.cloud().advance_to(at);
        }
    }

    /// Publishes the model's events on the run's bus; CodeDeploy events may be dropped.
    async fn publish(&mut self, events: Vec<Published>) -> Result<(), RunError> {
        let mut entries = Vec::new();
        for e in events {
            if e.kind == EventKind::CodeDeploy
                && self.rng.chance(self.scenario.faults.drop_codedeploy)
            {
                self.activity.events_dropped += 1;
                continue;
            }
            entries.push(entry(&e, &self.bus));
        }
        for chunk in entries.chunks(10) {
            let out = self
                .clients
                .events
                .put_events()
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk("PutEvents"))?;
            if out.failed_entry_count > 0 {
                return Err(aws_err("PutEvents")(format!(
                    "{} entries failed: {:?}",
                    out.failed_entry_count,
                    out.entries()
                )));
            }
        }
        Ok(())
    }

    async fn send(&mut self, body: String) -> Result<(), RunError> {
        self.activity.sqs_sends += 1;
        self.clients
            .sqs
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send()
            .await
            .map_err(sdk("SendMessage"))?;
        Ok(())
    }

    /// One event source mapping poll: receives a batch, invokes the queue function, deletes
    /// what succeeded. Returns whether there was anything.
    async fn deliver(&mut self) -> Result<bool, RunError> {
        let received = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.queue)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(sdk("ReceiveMessage"))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(false);
        }
        // The event Lambda's SQS event source mapping passes to the function.
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let attributes: BTreeMap<String, String> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))
            .map_err(|e| aws_err("ReceiveMessage")(format!("SQS event: {e}")))?;
        self.activity.queue_invocations += 1;
        self.activity.messages += messages.len() as u64;
        let (response, dispositions) = handler::handle_batch(&self.runner, event).await;
        for d in &dispositions {
            let name = match d {
                Disposition::Processed => "processed",
                Disposition::Duplicate => "duplicate",
                Disposition::Ignored(_) => "ignored",
                Disposition::Poison(_) => "poison",
                Disposition::Retry(_) => "retry",
                Disposition::Failed(_) => "failed",
            };
            *self.activity.dispositions.entry(name.into()).or_default() += 1;
        }
        let failed: BTreeSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let id = m.message_id().unwrap_or_default();
            if failed.contains(id) {
                self.activity.redeliveries += 1;
                self.redelivery_at =
                    Some(Instant::now() + Duration::from_secs(LOCAL_VISIBILITY_SECS as u64));
                continue;
            }
            deletes.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                    .build()
                    .map_err(sdk("DeleteMessageBatch"))?,
            );
            // At-least-once delivery: the same message again, later.
            if self.rng.chance(self.scenario.faults.duplicate)
                && let Some(body) = m.body()
            {
                self.activity.duplicates_injected += 1;
                self.send(body.to_owned()).await?;
            }
        }
        if !deletes.is_empty() {
            self.clients
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(sdk("DeleteMessageBatch"))?;
        }
        Ok(true)
    }

    async fn dead_letters(&self) -> Result<u64, RunError> {
        let attrs = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(&self.dlq)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(sdk("GetQueueAttributes"))?;
        Ok(attrs
            .attributes
            .and_then(|a| {
                a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0))
    }

    /// Instances whose pipeline the orchestrator holds, from its records.
    async fn held(&self) -> Result<BTreeSet<String>, RunError> {
        let ids: Vec<Key> = self
            .sim
            .cloud()
            .instances
            .keys()
            .map(|i| Key::Instance(i.as_str().into()))
            .collect();
        let mut held = BTreeSet::new();
        for chunk in ids.chunks(50) {
            let loaded = self
                .runner
                .store
                .load(chunk)
                .await
                .map_err(|e| aws_err("load")(e.to_string()))?;
            for r in loaded.world.instances.values().flatten() {
                if matches!(r.phase, Phase::Held { .. }) {
                    held.insert(r.id.0.clone());
                }
            }
        }
        Ok(held)
    }
}

fn entry(e: &Published, bus: &str) -> PutEventsRequestEntry {
    let field = |k: &str| {
        e.json
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let resources: Vec<String> = e
        .json
        .get("resources")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(field("source"))
        .detail_type(field("detail-type"))
        .detail(
            e.json
                .get("detail")
                .map(|d| d.to_string())
                .unwrap_or_default(),
        )
        .set_resources(Some(resources))
        .time(aws_smithy_types::DateTime::from_millis(
            i64::try_from(e.at).unwrap_or(0),
        ))
        .build()
}
