//! The run's queue, dead-letter queue, bus and rules on moto, as the SAM template sets them up,
//! and the shapes that travel through them: the EventBridge entry of a published event and the
//! SQS event Lambda's event source mapping passes to the function.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use serde_json::json;
use turnstile_model::Published;

use crate::error::{RunError, aws_err, sdk};
use crate::scenario::Scenario;

/// The SAM template's `maxReceiveCount`.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// The SAM template's visibility timeout, in simulated seconds: a failed message whose
/// visibility the function did not change comes back this long after it was received, as in
/// AWS (the local event source mapping keeps it hidden until then).
pub const VISIBILITY_TIMEOUT_SECS: u64 = 360;
/// The visibility timeout of the queue on moto, in wall-clock seconds: SQS's maximum, so that
/// moto never makes a received message visible by itself; the local event source mapping
/// does, in simulated time (`ChangeMessageVisibility` to 0).
pub const MOTO_VISIBILITY_SECS: i32 = 43_200;

/// The clients of one orchestrator run.
pub(crate) struct Clients {
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) events: aws_sdk_eventbridge::Client,
}

/// EventBridge patterns of the SAM template's three rules (`infra/template.yaml`), with the
/// scenario's group and applications filled in.
pub fn rule_patterns(scenario: &Scenario) -> [serde_json::Value; 4] {
    let apps: Vec<&str> = scenario
        .groups
        .iter()
        .map(|g| g.application.as_str())
        .collect();
    crate::rules::rule_patterns(&[scenario.fleet.auto_scaling_group.as_str()], &apps)
}

pub(crate) async fn setup_queues(
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
        .attributes(QueueAttributeName::VisibilityTimeout, MOTO_VISIBILITY_SECS.to_string())
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

pub(crate) async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, RunError> {
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

/// The event Lambda's SQS event source mapping passes to the function.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Result<SqsEvent, RunError> {
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
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records }))
        .map_err(|e| aws_err("ReceiveMessage")(format!("SQS event: {e}")))
}

/// The PutEvents entry of one published event, on `bus`.
pub(crate) fn entry(e: &Published, bus: &str) -> PutEventsRequestEntry {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The local queue's simulated visibility timeout and redrive are the template's.
    #[test]
    fn redelivery_defaults_are_the_templates_visibility_timeout_and_max_receive_count() {
        let path = format!("{}/../../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
        let template = std::fs::read_to_string(path).unwrap_or_default();
        let queue = template
            .split("\n  Queue:\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .unwrap_or_default();
        let lines: Vec<&str> = queue.lines().map(str::trim).collect();
        for want in [
            format!("VisibilityTimeout: {VISIBILITY_TIMEOUT_SECS}"),
            format!("maxReceiveCount: {MAX_RECEIVE_COUNT}"),
        ] {
            assert!(lines.contains(&want.as_str()), "{want} in {queue}");
        }
    }
}
