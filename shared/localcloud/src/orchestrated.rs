//! **Orchestrator**: the fleet with the orchestrator's hooks. The model publishes the real
//! event JSON to an EventBridge bus on moto, whose rules (the SAM template's patterns) route
//! it to an SQS queue on moto. An event source mapping like Lambda's receives batches of up to
//! ten, invokes the real queue handler (`turnstile_aws::handler::handle_batch`), deletes what
//! succeeded and leaves failures for redelivery (after `maxReceiveCount` receives, the
//! dead-letter queue). The timer function's sweep runs every simulated minute. The handlers
//! call the simulator over its wire protocols and keep their state in DynamoDB Local.
//!
//! Time stands still while the functions work (see `sim_loop`). SQS's
//! `DelaySeconds` counts wall time, so timer messages are held by the local timer port and
//! sent to the queue when simulated time reaches them (the production port uses
//! `DelaySeconds`; both go through the same queue and handler).

mod ports;
mod queues;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use turnstile_aws::handler::{self, Disposition};
use turnstile_aws::store::Store;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_core::{Key, Millis, Phase};
use turnstile_model::{Cloud, EventKind, Ms, Published, Rng};

use ports::{LocalRunner, runner};
pub use ports::{LocalTimer, Metrics, SimClock};
use queues::{Clients, entry, queue_arn, setup_queues, sqs_event};
pub use queues::{LOCAL_VISIBILITY_SECS, MAX_RECEIVE_COUNT, rule_patterns};

use crate::checks;
use crate::error::{RunError, aws_err, sdk};
use crate::record::{Activity, RunRecord};
use crate::scenario::{Action, Mode, Scenario, apply};
use crate::sim_loop::{Actors, Turn, drive};
use crate::stack::{CallCounter, Stack};
use crate::wire::{self, Simulator, WireFaults};

/// How often the timer function runs (the SAM template's `rate(1 minute)`).
pub const SWEEP_EVERY_MS: Ms = 60_000;

/// The orchestrator's functions, their queue and bus: what acts on the model in this mode.
struct Functions<'a> {
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
    /// When the timer function runs next, in simulated time.
    next_sweep: Ms,
}

pub async fn run(stack: &Stack, scenario: &Scenario) -> Result<RunRecord, RunError> {
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
    let mut functions = Functions {
        scenario,
        sim: sim.clone(),
        clients,
        runner: runner(store, &front, clock, timer.clone(), metrics.clone()),
        timer,
        queue,
        queue_arn,
        dlq,
        bus: run,
        rng: Rng::new(scenario.seed ^ 0xfa17),
        activity: Activity::default(),
        redelivery_at: None,
        next_sweep: SWEEP_EVERY_MS,
    };
    let mut checker = checks::for_scenario(scenario, Mode::Orchestrator);
    drive(scenario, &mut functions, &mut checker).await?;
    functions.activity.dead_lettered = functions.dead_letters().await?;
    functions.activity.dynamodb_calls = dynamo_calls.get();
    functions.activity.throttled = sim.counts().1;
    let held = functions.held().await?;
    let emitted = metrics.take();
    functions.activity.alerts = emitted.iter().filter(|m| m.get("Alert").is_some()).count() as u64;
    functions.activity.metric_lines = emitted.len() as u64;
    drop(server);
    let cloud = sim.cloud().clone();
    checker.finish(&cloud, &held);
    Ok(RunRecord {
        mode: Mode::Orchestrator,
        violations: checker.violations.clone(),
        checks: checker.checks,
        collided: checker.collided.clone(),
        cloud,
        activity: functions.activity,
        held,
        wall: started.elapsed(),
    })
}

impl Actors for Functions<'_> {
    type Error = RunError;

    fn with_cloud<R>(&mut self, f: impl FnOnce(&mut Cloud) -> R) -> R {
        f(&mut self.sim.cloud())
    }

    /// A raw message goes to the queue; everything else to the model.
    async fn apply(&mut self, asg: &str, action: &Action) -> Result<(), RunError> {
        if let Action::RawMessage(body) = action {
            self.send(body.clone()).await
        } else {
            apply(&mut self.sim.cloud(), asg, action);
            Ok(())
        }
    }

    /// Publishes what the model published, sends the timer messages due, then one of: a poll
    /// of the queue that found something, a wait for a failed message to come back, or the
    /// timer function's sweep.
    async fn act(&mut self, now: Ms) -> Result<Turn, RunError> {
        let published = self.sim.cloud().drain();
        self.publish(published).await?;
        for body in self.timer.take_due(now) {
            self.send(body).await?;
        }
        if self.deliver().await? {
            return Ok(Turn::Again { check: true });
        }
        if let Some(at) = self.redelivery_at {
            // A failed message comes back after its visibility timeout: wait for it
            // rather than let simulated time run past it.
            self.redelivery_at = None;
            tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
            return Ok(Turn::Again { check: false });
        }
        if now >= self.next_sweep {
            self.next_sweep = now - now % SWEEP_EVERY_MS + SWEEP_EVERY_MS;
            self.activity.timer_invocations += 1;
            let managed: Vec<String> = self.sim.cloud().asgs.keys().cloned().collect();
            if let Err(e) = handler::sweep(&self.runner, Millis(now), 500, &managed).await {
                tracing::warn!(error = %e, "timer sweep failed; the next one retries");
            }
            return Ok(Turn::Again { check: false });
        }
        Ok(Turn::Done)
    }

    fn wakes_at(&self) -> Option<Ms> {
        [self.timer.next(), Some(self.next_sweep)]
            .into_iter()
            .flatten()
            .min()
    }

    fn idle(&self) -> bool {
        self.timer.next().is_none()
    }
}

impl Functions<'_> {
    /// Publishes the model's events on the run's bus; CodeDeploy events may be dropped.
    async fn publish(&mut self, events: Vec<Published>) -> Result<(), RunError> {
        let mut entries = Vec::new();
        for e in events {
            let drop = match e.kind {
                EventKind::CodeDeploy => self.scenario.faults.drop_codedeploy,
                EventKind::Lifecycle => self.scenario.faults.drop_lifecycle,
            };
            if self.rng.chance(drop) {
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
        let event = sqs_event(&messages, &self.queue_arn)?;
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
        self.settle(&messages, &failed).await?;
        Ok(true)
    }

    /// What the event source mapping does after the function returns: a failed message stays
    /// for redelivery, the others are deleted (and may, at least once, come again).
    async fn settle(
        &mut self,
        messages: &[Message],
        failed: &BTreeSet<&str>,
    ) -> Result<(), RunError> {
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
        Ok(())
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
                .ports
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
