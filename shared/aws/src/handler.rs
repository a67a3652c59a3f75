//! What the Lambda functions do, without the Lambda runtime (so it is testable): the queue
//! function handles a batch of SQS records with partial batch failures; the timer function
//! sweeps what is due.
//!
//! Rule for bad input (stated once, in the README too):
//! - a message that is valid but needs no action (`autoscaling:TEST_NOTIFICATION`, an event type
//!   the orchestrator does not act on, blue/green `READY`) is **acknowledged** and logged;
//! - a message that cannot be parsed (not JSON, unknown shape, a missing or invalid field) is
//!   logged at error level with its message id and the field, and **reported as a batch item
//!   failure**, made visible again at once: its receives are used up in seconds and after the
//!   queue's `maxReceiveCount` (5) receives it lands in the dead-letter queue, whose alarm
//!   makes it visible. It is never dropped silently;
//! - a failure a retry can fix (throttling, a conflict storm, a dead dependency) is reported as a
//!   batch item failure and made visible again within seconds, later with every receive
//!   (`crate::redelivery`: 5 s doubling to 60 s, jittered), so all its receives fall inside the
//!   shortest recommended heartbeat timeout;
//! - a failure a retry cannot fix (a missing permission, a deleted deployment group) is
//!   reported as a batch item failure and comes back after the queue's visibility timeout
//!   (360 s), the normal pace, which leaves an operator time to fix the cause;
//! - one record never blocks or loses another: each is handled on its own, and a visibility
//!   change that fails only leaves that record to the visibility timeout.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use turnstile_core::{Input, Key, Millis};
use turnstile_events::{Message, ParseError};

use crate::adopt::{Adoption, adopt};
use crate::ports::Visibility;
use crate::readiness::{ReadinessPass, probe};
use crate::redelivery::{Redelivery, Sooner, receive_count};
use crate::runner::{Ports, RunError, Runner};
use crate::store::Store;

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Processed,
    /// The event was processed before (a redelivery or an EventBridge duplicate).
    Duplicate,
    /// Valid, nothing to do.
    Ignored(String),
    /// Cannot be parsed; goes to the dead-letter queue after `maxReceiveCount` receives.
    Poison(String),
    /// Failed in a way a retry can fix.
    Retry(String),
    /// Failed in a way a retry cannot fix (after bounded retries it reaches the DLQ).
    Failed(String),
}

impl Disposition {
    /// Whether SQS should deliver the record again.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Disposition::Poison(_) | Disposition::Retry(_) | Disposition::Failed(_)
        )
    }
}

/// The instance, deployment and group an input is about, for log fields.
fn fields(input: &Input) -> (Option<String>, Option<String>, Option<String>) {
    match input {
        Input::Launch { event, .. } | Input::Terminate { event } => {
            (Some(event.action.instance.0.clone()), None, None)
        }
        Input::DeploymentEvent {
            group, deployment, ..
        }
        | Input::DeploymentPolled {
            group, deployment, ..
        } => (None, Some(deployment.0.clone()), Some(group.to_string())),
        Input::TargetEvent {
            group,
            deployment,
            instance,
            ..
        } => (
            Some(instance.0.clone()),
            Some(deployment.0.clone()),
            Some(group.to_string()),
        ),
        Input::Tick(Key::Instance(i)) => (Some(i.0.clone()), None, None),
        Input::Tick(Key::Group(g)) => (None, None, Some(g.to_string())),
        _ => (None, None, None),
    }
}

fn parse_failure(message_id: &str, e: &ParseError) -> Disposition {
    tracing::error!(message_id, field = e.field(), error = %e, "unparseable message; it goes to the dead-letter queue after maxReceiveCount receives");
    Disposition::Poison(e.to_string())
}

fn run_failure(e: &RunError) -> Disposition {
    if e.is_retryable() {
        tracing::warn!(error = %e, "will be retried");
        Disposition::Retry(e.to_string())
    } else {
        tracing::error!(error = %e, "failed and cannot succeed on retry");
        Disposition::Failed(e.to_string())
    }
}

/// Handles one SQS message body.
pub async fn handle_body<P: Ports>(
    runner: &Runner<P>,
    message_id: &str,
    body: Option<&str>,
    sender: Option<&str>,
) -> Disposition {
    let Some(body) = body else {
        tracing::error!(message_id, field = "body", "message has no body");
        return Disposition::Poison("message has no body".into());
    };
    let message = match turnstile_events::parse(body) {
        // An operator message's actor is its SQS sender, never a field of the body.
        Ok(m) => m.with_sender(sender),
        Err(e) => return parse_failure(message_id, &e),
    };
    if let Message::Ignored(why) = &message {
        tracing::info!(message_id, reason = ?why, "acknowledged without action");
        return Disposition::Ignored(format!("{why:?}"));
    }
    let (input, event) = match runner.input_of(message).await {
        Ok(Some(x)) => x,
        Ok(None) => return Disposition::Ignored("nothing to do".into()),
        Err(e) => return run_failure(&e),
    };
    let (instance_id, deployment_id, group) = fields(&input);
    let span = tracing::info_span!(
        "message",
        message_id,
        event_id = event.as_ref().map(|e| e.0.clone()),
        instance_id,
        deployment_id,
        group
    );
    let _enter = span.enter();
    match runner.handle(input, event).await {
        Ok(o) if o.duplicate => {
            tracing::info!("duplicate event: already processed");
            Disposition::Duplicate
        }
        Ok(o) => {
            tracing::info!(decisions = o.decisions, commands = o.commands, conflicts = o.conflicts, ignored = ?o.ignored, "processed");
            Disposition::Processed
        }
        Err(e) => run_failure(&e),
    }
}

/// Handles a batch of records, reports the ones SQS must deliver again, and sets when those
/// come back (`redelivery`): once every record is handled, so no record waits on another's
/// visibility call.
pub async fn handle_batch<P: Ports, V: Visibility>(
    runner: &Runner<P>,
    redelivery: &Redelivery<V>,
    event: SqsEvent,
) -> (SqsBatchResponse, Vec<Disposition>) {
    let mut response = SqsBatchResponse::default();
    let mut dispositions = Vec::with_capacity(event.records.len());
    let mut sooner = Vec::new();
    for record in event.records {
        let receives = receive_count(&record.attributes);
        let sender = record.attributes.get("SenderId").cloned();
        let SqsMessage {
            message_id,
            receipt_handle,
            body,
            ..
        } = record;
        let id = message_id.unwrap_or_default();
        let d = handle_body(runner, &id, body.as_deref(), sender.as_deref()).await;
        if d.is_failure() {
            if id.is_empty() {
                // Without an id the failure cannot be reported for this record alone; report
                // nothing rather than fail the whole batch, and say so.
                tracing::error!(
                    "a failed record has no message id; it cannot be redelivered alone"
                );
            } else {
                match (redelivery.delay_secs(&d, &id, receives), receipt_handle) {
                    (Some(secs), Some(receipt_handle)) => sooner.push(Sooner {
                        message_id: id.clone(),
                        receipt_handle,
                        secs,
                    }),
                    (Some(_), None) => tracing::warn!(
                        message_id = id,
                        "a failed record has no receipt handle; it comes back after the queue's visibility timeout"
                    ),
                    (None, _) => {}
                }
                response.add_failure(id);
            }
        }
        dispositions.push(d);
    }
    redelivery.apply(&sooner).await;
    (response, dispositions)
}

/// What a timer sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub due: usize,
    pub ticked: usize,
    pub failed: usize,
    /// The adoption pass over the managed groups' waiting instances.
    pub adoption: Adoption,
    /// The readiness pass over instances waiting for their readiness tag.
    pub readiness: ReadinessPass,
}

/// The timer path: every record whose wake time has come, then the instances whose readiness
/// tag came without its event ([`crate::readiness`]), then the adoption of lost launches in
/// `managed` groups ([`crate::adopt`]), then the gauges the alarms watch ([`crate::gauges`]). A failed adoption pass is logged; the next sweep
/// runs it again. The adoption does not depend on the due query: an instance without a record
/// has only its hook's timeout left, so a failed query of the due index (returned as the error,
/// after the pass) must not cost it a sweep.
pub async fn sweep<P: Ports>(
    runner: &Runner<P>,
    now: Millis,
    limit: usize,
    managed: &[String],
) -> Result<Sweep, RunError> {
    let (due, due_error) = match runner.ports.store.due(now, limit).await {
        Ok(due) => (due, None),
        Err(e) => (Vec::new(), Some(RunError::from(e))),
    };
    let mut report = Sweep {
        due: due.len(),
        ..Sweep::default()
    };
    for key in due {
        let result = runner
            .handle(Input::Tick(key.clone()), None)
            .await
            .map(|_| report.ticked += 1);
        if let Err(e) = result {
            report.failed += 1;
            tracing::warn!(due = ?key, error = %e, "sweep item failed; the next sweep retries it");
        }
    }
    match probe(runner, now, limit).await {
        Ok(r) => report.readiness = r,
        Err(e) => {
            tracing::warn!(error = %e, "readiness pass failed; the next sweep runs it again")
        }
    }
    match adopt(runner, managed).await {
        Ok(a) => report.adoption = a,
        Err(e) => {
            tracing::warn!(error = %e, "adoption pass failed; the next sweep runs it again")
        }
    }
    crate::gauges::publish(runner, managed, now).await;
    match due_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
