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
//! `DelaySeconds`; both go through the same queue and handler). Visibility timeouts count wall
//! time too, so the mapping keeps a failed message hidden in moto and makes it visible again
//! (`ChangeMessageVisibility` to 0) when simulated time reaches the moment the handler asked
//! for, or else the queue's visibility timeout (360 s, the template's), as SQS and Lambda's
//! mapping do (aws-behaviour §5.5 Lambda's event source mapping and visibility). moto still
//! counts the receives and moves a message to the dead-letter queue on the receive after its
//! fifth.

mod ports;
mod queues;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use turnstile_aws::handler::{self, Disposition};
use turnstile_aws::redelivery::Redelivery;
use turnstile_aws::store::Store;
use turnstile_aws::store::dynamo::DynamoStore;
use turnstile_core::{Key, Millis, Phase};
use turnstile_model::{Cloud, EventKind, Ms, Published, Rng};

use ports::{LocalRunner, runner};
pub use ports::{LocalTimer, LocalVisibility, Metrics, SimClock, TransientStore};
use queues::{Clients, entry, queue_arn, setup_queues};
pub use queues::{
    MAX_RECEIVE_COUNT, MOTO_VISIBILITY_SECS, VISIBILITY_TIMEOUT_SECS, rule_patterns, sqs_event,
};

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
    /// Draws `faults.transient`, apart from `rng` so that other scenarios replay as before.
    transient_rng: Rng,
    activity: Activity,
    /// What the queue function sets failed messages' visibility with.
    redelivery: Redelivery<LocalVisibility>,
    /// Failed messages hidden in moto, by the simulated time they become visible again (and a
    /// sequence number): their receipt handles.
    hidden: BTreeMap<(Ms, u64), String>,
    seq: u64,
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
        runner: runner(store, &front, clock.clone(), timer.clone(), metrics.clone()),
        timer,
        queue,
        queue_arn,
        dlq,
        bus: run,
        rng: Rng::new(scenario.seed ^ 0xfa17),
        transient_rng: Rng::new(scenario.seed ^ 0x7a4e),
        activity: Activity::default(),
        redelivery: Redelivery {
            seed: scenario.seed,
            ..Redelivery::new(LocalVisibility::new(clock))
        },
        hidden: BTreeMap::new(),
        seq: 0,
        next_sweep: SWEEP_EVERY_MS,
    };
    let mut checker = checks::for_scenario(scenario, Mode::Orchestrator);
    drive(scenario, &mut functions, &mut checker).await?;
    functions.activity.dead_letter_bodies = functions.dead_letters().await?;
    functions.activity.dead_lettered = functions.activity.dead_letter_bodies.len() as u64;
    functions.activity.transient_failures = functions.runner.ports.store.injected();
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

    /// Publishes what the model published, sends the timer messages due, makes the failed
    /// messages due visible again, then one of: a poll of the queue that found something, or
    /// the timer function's sweep.
    async fn act(&mut self, now: Ms) -> Result<Turn, RunError> {
        let published = self.sim.cloud().drain();
        self.publish(published).await?;
        for body in self.timer.take_due(now) {
            self.send(body).await?;
        }
        self.release(now).await?;
        if self.deliver(now).await? {
            return Ok(Turn::Again { check: true });
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

    /// The next timer message, sweep or failed message coming back.
    fn wakes_at(&self) -> Option<Ms> {
        let hidden = self.hidden.keys().next().map(|(at, _)| *at);
        [self.timer.next(), Some(self.next_sweep), hidden]
            .into_iter()
            .flatten()
            .min()
    }

    fn idle(&self) -> bool {
        self.timer.next().is_none() && self.hidden.is_empty()
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
                // Most tag changes are turnstile's own gates, which no rule routes: they are
                // not put on the bus (EventBridge would drop them too), and draw nothing.
                EventKind::Tag if !crate::rules::routed(&rule_patterns(self.scenario), &e.json) => {
                    continue;
                }
                EventKind::Tag => self.scenario.faults.drop_tag,
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

    /// Makes the failed messages whose time has come visible again.
    async fn release(&mut self, now: Ms) -> Result<(), RunError> {
        let later = self.hidden.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.hidden, later);
        if due.is_empty() {
            return Ok(());
        }
        for receipt_handle in due.into_values() {
            self.clients
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue)
                .receipt_handle(receipt_handle)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(sdk("ChangeMessageVisibility"))?;
        }
        // moto shows a message once its clock has passed the moment it became visible, which
        // is now: let a millisecond go by.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }

    /// `faults.transient`: which messages of the batch fail their first store read this time.
    /// Only messages that read the store can (not those that cannot be parsed or need no
    /// action), and never on the last receive the queue allows (`MAX_RECEIVE_COUNT`): a fault
    /// that outlasts every retry is an outage, which the dead-letter queue is for, not a
    /// transient failure. They go first in the batch, and the store fails that many first
    /// reads.
    fn draw_transient(&mut self, messages: Vec<Message>) -> Vec<Message> {
        let p = self.scenario.faults.transient;
        if p <= 0.0 {
            return messages;
        }
        let rng = &mut self.transient_rng;
        let (mut failing, rest): (Vec<Message>, Vec<Message>) =
            messages.into_iter().partition(|m| {
                let reads = m.body().is_some_and(|b| {
                    matches!(turnstile_events::parse(b), Ok(msg) if !matches!(msg, turnstile_events::Message::Ignored(_)))
                });
                let receives = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(1);
                reads && receives < MAX_RECEIVE_COUNT && rng.chance(p)
            });
        self.runner
            .ports
            .store
            .arm(u32::try_from(failing.len()).unwrap_or(u32::MAX));
        failing.extend(rest);
        failing
    }

    /// One event source mapping poll: receives a batch, invokes the queue function, deletes
    /// what succeeded. Returns whether there was anything.
    async fn deliver(&mut self, now: Ms) -> Result<bool, RunError> {
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
        let messages = self.draw_transient(messages);
        let event = sqs_event(&messages, &self.queue_arn)?;
        self.activity.queue_invocations += 1;
        self.activity.messages += messages.len() as u64;
        let (response, dispositions) =
            handler::handle_batch(&self.runner, &self.redelivery, event).await;
        self.runner.ports.store.disarm();
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
        self.settle(&messages, &failed, now).await?;
        Ok(true)
    }

    /// What the event source mapping does after the function returns: a failed message stays
    /// hidden until the time the function asked for, or the queue's visibility timeout; the
    /// others are deleted (and may, at least once, come again).
    async fn settle(
        &mut self,
        messages: &[Message],
        failed: &BTreeSet<&str>,
        now: Ms,
    ) -> Result<(), RunError> {
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let id = m.message_id().unwrap_or_default();
            let receipt_handle = m.receipt_handle().unwrap_or_default();
            let asked = self.redelivery.port.take(receipt_handle);
            if failed.contains(id) {
                self.activity.redeliveries += 1;
                let at = asked.unwrap_or(now + VISIBILITY_TIMEOUT_SECS * 1000);
                if asked.is_some() {
                    self.activity.redelivered_sooner += 1;
                }
                if let Some(Ok(turnstile_events::Message::Launch(_))) =
                    m.body().map(turnstile_events::parse)
                {
                    self.activity.launch_retries += 1;
                }
                self.seq += 1;
                self.hidden
                    .insert((at, self.seq), receipt_handle.to_owned());
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

    /// The bodies of the messages in the dead-letter queue (received and left hidden there).
    async fn dead_letters(&self) -> Result<Vec<String>, RunError> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.dlq)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .visibility_timeout(MOTO_VISIBILITY_SECS)
                .send()
                .await
                .map_err(sdk("ReceiveMessage"))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(bodies);
            }
            bodies.extend(
                messages
                    .iter()
                    .map(|m| m.body().unwrap_or_default().to_owned()),
            );
        }
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
