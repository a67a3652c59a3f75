//! # turnstile-events
//!
//! Parses one SQS message body from turnstile's queue into a [`Message`]. The queue carries:
//!
//! - EventBridge events (the full envelope): `EC2 Instance-launch Lifecycle Action`,
//!   `EC2 Instance-terminate Lifecycle Action`, `CodeDeploy Deployment State-change
//!   Notification`, `CodeDeploy Instance State-change Notification`;
//! - lifecycle notifications a hook sends straight to SQS (a flat JSON object), including
//!   `autoscaling:TEST_NOTIFICATION`, and the same wrapped in an SNS envelope;
//! - turnstile's own timer messages ([`wakeup_body`]);
//! - operator messages from the `turnstile` command line ([`operator`]).
//!
//! Anything else is a typed [`ParseError`] that names the offending field. Parsing never panics.
//! Messages that are valid but need no action (the test notification, a detail-type the
//! orchestrator does not handle, blue/green `READY`) parse to [`Message::Ignored`].

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use aws_lambda_events::event::codedeploy::CodeDeployEventDetail;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use turnstile_core::{
    ActionRef, DeploymentId, DeploymentState, EventId, GroupKey, HookTimeouts, Input, InstanceId,
    Key, LifecycleEvent, Millis, Place, Plan, Request, TargetState, Token,
};

pub mod operator;
pub use operator::{Operator, OperatorBody, Target};

pub const LAUNCH_DETAIL_TYPE: &str = "EC2 Instance-launch Lifecycle Action";
pub const TERMINATE_DETAIL_TYPE: &str = "EC2 Instance-terminate Lifecycle Action";
pub const DEPLOYMENT_DETAIL_TYPE: &str = "CodeDeploy Deployment State-change Notification";
pub const INSTANCE_DETAIL_TYPE: &str = "CodeDeploy Instance State-change Notification";
/// EventBridge's tag change event (source `aws.tag`), delivered on a best-effort basis
/// [aws-behaviour §5.7 Tag change events].
pub const TAG_CHANGE_DETAIL_TYPE: &str = "Tag Change on Resource";
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
pub const TEST_NOTIFICATION: &str = "autoscaling:TEST_NOTIFICATION";
/// The activity notifications a group's SNS notification configuration sends
/// [aws-behaviour §1.2 Activity notifications].
pub const ACTIVITY_EVENTS: [&str; 4] = [
    "autoscaling:EC2_INSTANCE_LAUNCH",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
    "autoscaling:EC2_INSTANCE_TERMINATE",
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
];

/// One parsed queue message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Launch(Lifecycle),
    Terminate(Lifecycle),
    Deployment {
        event_id: Option<EventId>,
        group: GroupKey,
        deployment: DeploymentId,
        state: DeploymentState,
    },
    Target {
        event_id: Option<EventId>,
        group: GroupKey,
        deployment: DeploymentId,
        instance: InstanceId,
        state: TargetState,
    },
    /// An EC2 instance's tags changed (`Tag Change on Resource`): its full tag set after the
    /// change, at the event's time.
    Tagged {
        event_id: Option<EventId>,
        instance: InstanceId,
        tags: Vec<(String, String)>,
        time: Millis,
    },
    /// turnstile's own timer message.
    Wakeup(Key),
    /// An operator's request from the command line.
    Operator(Operator),
    /// Valid, but nothing to do: acknowledge it.
    Ignored(Ignored),
}

impl Message {
    /// Sets the actor of an operator message: the message's SQS `SenderId`, which its sender
    /// cannot choose. Other messages are returned as they are.
    pub fn with_sender(self, sender: Option<&str>) -> Self {
        match self {
            Message::Operator(mut op) => {
                op.actor = sender.map(str::to_owned);
                Message::Operator(op)
            }
            m => m,
        }
    }

    /// The lifecycle hook (Auto Scaling group, hook name) a launch needs described before it
    /// becomes an input: its timeouts, and its metadata when the event carries none.
    pub fn hook_to_describe(&self) -> Option<(&str, &str)> {
        match self {
            Message::Launch(l) => Some((&l.event.action.asg, &l.event.action.hook)),
            _ => None,
        }
    }

    /// The core's input for this message and the event id to dedupe on; `None` for messages
    /// that need no action (the test notification, other event types). A launch takes the
    /// described hook's timeouts (`None`: the hook could not be described, and nothing can be
    /// decided) and its plan is the event's metadata, or the hook's if the event carries none.
    pub fn into_input(
        self,
        timeouts: Option<HookTimeouts>,
        hook_metadata: Option<String>,
    ) -> Option<(Input, Option<EventId>)> {
        Some(match self {
            Message::Launch(l) => {
                let metadata = l.metadata.or(hook_metadata).unwrap_or_default();
                let event_id = l.event.event_id.clone();
                let input = Input::Launch {
                    event: l.event,
                    plan: Plan::parse(&metadata),
                    timeouts: timeouts?,
                };
                (input, event_id)
            }
            Message::Terminate(l) => {
                let event_id = l.event.event_id.clone();
                (Input::Terminate { event: l.event }, event_id)
            }
            Message::Deployment {
                event_id,
                group,
                deployment,
                state,
            } => {
                let input = Input::DeploymentEvent {
                    event_id: event_id.clone(),
                    group,
                    deployment,
                    state,
                };
                (input, event_id)
            }
            Message::Target {
                event_id,
                group,
                deployment,
                instance,
                state,
            } => {
                let input = Input::TargetEvent {
                    event_id: event_id.clone(),
                    group,
                    deployment,
                    instance,
                    state,
                };
                (input, event_id)
            }
            Message::Tagged {
                event_id,
                instance,
                tags,
                time,
            } => (
                Input::InstanceTagged {
                    instance,
                    tags,
                    at: time,
                },
                event_id,
            ),
            Message::Wakeup(key) => (Input::Tick(key), None),
            Message::Operator(op) => {
                let event_id = EventId(op.request.clone());
                let request = Request {
                    id: op.request,
                    // Lambda's event always carries it; a hand-built event might not.
                    actor: op.actor.unwrap_or_else(|| "(no SenderId)".into()),
                    reason: op.reason,
                };
                let input = match op.target {
                    Target::Instance { instance, action } => Input::Operator {
                        instance,
                        action,
                        request,
                    },
                    Target::ResetBreaker { group } => Input::ResetBreaker { group, request },
                    Target::Pause { group, paused } => Input::Pause {
                        group,
                        paused,
                        request,
                    },
                };
                (input, Some(event_id))
            }
            Message::Ignored(_) => return None,
        })
    }
}

/// A lifecycle action, with the hook's metadata (the plan) still unparsed: the plan's errors
/// are the core's to report, not the parser's.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub event: LifecycleEvent,
    pub metadata: Option<String>,
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    EventBridge,
    /// The hook's own notification target (SQS, or SNS → SQS).
    HookNotification,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// `autoscaling:TEST_NOTIFICATION`, sent when a hook's notification target is set.
    TestNotification { asg: Option<String> },
    /// An EventBridge event of a type the orchestrator does not act on.
    OtherEvent { source: String, detail_type: String },
    /// Blue/green `READY`: not an in-place deployment state.
    BlueGreenReady { deployment: String },
    /// An Auto Scaling activity notification (`autoscaling:EC2_INSTANCE_LAUNCH`, `_LAUNCH_ERROR`,
    /// `_TERMINATE`, `_TERMINATE_ERROR`): sent by a group's SNS notification configuration, often
    /// on the same topic as the hook's notifications. It reports what already happened; the
    /// lifecycle action, if any, comes in its own message [aws-behaviour §1.2 Activity notifications].
    Activity { event: String, asg: Option<String> },
    /// A tag change on a resource that is not an EC2 instance.
    OtherResource {
        service: String,
        resource_type: String,
    },
}

/// Why a message could not be parsed. None of these can succeed on a retry.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON: {source}")]
    NotJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("not a message turnstile knows: {reason}")]
    Unrecognised { reason: String },
    /// SNS asks the subscriber to confirm (or acknowledges the end of) a subscription. turnstile
    /// never confirms subscriptions itself: doing so would let anyone who can publish to the
    /// queue subscribe it to their topic.
    #[error(
        "SNS {kind} for topic {topic}: the queue is subscribed to this topic but the subscription \
         is not confirmed; confirm it once with `aws sns confirm-subscription --topic-arn {topic} \
         --token <Token from this message>` (or subscribe the queue from the topic's own account, \
         which needs no confirmation)"
    )]
    SnsSubscription { kind: String, topic: String },
}

impl ParseError {
    /// The offending field, if one is to blame.
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
    /// Parsing is deterministic: the same body fails the same way every time.
    pub fn is_retryable(&self) -> bool {
        false
    }
    pub(crate) fn field_err(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ParseError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The body of a timer message for `key`.
pub fn wakeup_body(key: &Key) -> String {
    serde_json::json!({ "turnstile": "wakeup", "key": key }).to_string()
}

/// Parses one SQS message body.
pub fn parse(body: &str) -> Result<Message, ParseError> {
    let value: Value =
        serde_json::from_str(body).map_err(|source| ParseError::NotJson { source })?;
    parse_value(value)
}

fn parse_value(value: Value) -> Result<Message, ParseError> {
    let Some(obj) = value.as_object() else {
        return Err(ParseError::Unrecognised {
            reason: "the body is JSON but not an object".into(),
        });
    };
    if obj.contains_key("detail-type") {
        return parse_eventbridge(value);
    }
    if let Some(kind) = obj.get("turnstile") {
        if kind == operator::OPERATOR_KIND {
            return operator::parse(value).map(Message::Operator);
        }
        if kind != "wakeup" {
            return Err(ParseError::field_err(
                "turnstile",
                format!("unknown turnstile message {kind}"),
            ));
        }
        let key: WakeupMessage = typed(value, "")?;
        return Ok(Message::Wakeup(key.key));
    }
    // Some producers write `"Event": ""` beside a real lifecycle notification (a struct without
    // omitempty): an empty `Event` says nothing, so it is treated as absent.
    if let Some(event) = obj.get("Event").filter(|e| e.as_str() != Some("")) {
        let asg = obj
            .get("AutoScalingGroupName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return match event.as_str() {
            Some(TEST_NOTIFICATION) => Ok(Message::Ignored(Ignored::TestNotification { asg })),
            Some(e) if ACTIVITY_EVENTS.contains(&e) => Ok(Message::Ignored(Ignored::Activity {
                event: e.to_owned(),
                asg,
            })),
            _ => Err(ParseError::field_err(
                "Event",
                format!("unknown Auto Scaling event {event}"),
            )),
        };
    }
    if obj.contains_key("LifecycleTransition") {
        let meta: HookNotification = typed(value.clone(), "")?;
        let detail: LifecycleDetail = typed(value, "")?;
        let time = meta
            .time
            .ok_or_else(|| ParseError::field_err("Time", "missing"))?;
        // A notification's `RequestId` names the Auto Scaling request, not the lifecycle action:
        // the dedupe key carries the action's token too, so two actions can never share one.
        let event_id = meta
            .request_id
            .map(|r| EventId(format!("{r}/{}", detail.lifecycle_action_token)));
        return lifecycle(detail, "", time, event_id, Via::HookNotification);
    }
    if let Some(kind @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation")) =
        obj.get("Type").and_then(Value::as_str)
    {
        return Err(ParseError::SnsSubscription {
            kind: kind.to_owned(),
            topic: obj
                .get("TopicArn")
                .and_then(Value::as_str)
                .unwrap_or("(no TopicArn)")
                .to_owned(),
        });
    }
    if obj.get("Type").and_then(Value::as_str) == Some("Notification") {
        // SNS → SQS without raw message delivery: the notification is a string in `Message`.
        let inner = obj.get("Message").and_then(Value::as_str).ok_or_else(|| {
            ParseError::field_err("Message", "an SNS notification needs a string `Message`")
        })?;
        let inner: Value = serde_json::from_str(inner)
            .map_err(|e| ParseError::field_err("Message", format!("not JSON: {e}")))?;
        return parse_value(inner);
    }
    Err(ParseError::Unrecognised {
        reason: "neither an EventBridge event (`detail-type`), a lifecycle hook notification (`LifecycleTransition`), an SNS notification, nor a turnstile timer message".into(),
    })
}

#[derive(Deserialize)]
struct WakeupMessage {
    key: Key,
}

/// Deserializes with the JSON path of any error, prefixed by `prefix`.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix, path.as_str()) {
            ("", ".") => "$".to_owned(),
            ("", p) => p.to_owned(),
            (pre, ".") => pre.to_owned(),
            (pre, p) => format!("{pre}.{p}"),
        };
        ParseError::field_err(field, e.into_inner().to_string())
    })
}

/// The lifecycle-action detail: identical in EventBridge events and hook notifications.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleDetail {
    lifecycle_action_token: String,
    auto_scaling_group_name: String,
    lifecycle_hook_name: String,
    #[serde(rename = "EC2InstanceId")]
    ec2_instance_id: String,
    lifecycle_transition: String,
    #[serde(default)]
    notification_metadata: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    destination: Option<String>,
}

/// The envelope fields of a hook notification (its detail fields are read separately, so a
/// bad field is reported with its own name).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HookNotification {
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    request_id: Option<String>,
}

fn parse_eventbridge(value: Value) -> Result<Message, ParseError> {
    // The type decides which fields are required: an event turnstile does not act on is
    // acknowledged whatever its other fields hold (AWS's own samples carry placeholder times).
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    if let (Some(source), Some(detail_type)) = (text("source"), text("detail-type"))
        && !is_handled(source, detail_type)
    {
        return Ok(Message::Ignored(Ignored::OtherEvent {
            source: source.to_owned(),
            detail_type: detail_type.to_owned(),
        }));
    }
    let ev: EventBridgeEvent<Value> = typed(value, "")?;
    let event_id = ev.id.clone().map(EventId);
    match (ev.source.as_str(), ev.detail_type.as_str()) {
        ("aws.autoscaling", LAUNCH_DETAIL_TYPE | TERMINATE_DETAIL_TYPE) => {
            lifecycle_event(ev, event_id)
        }
        ("aws.codedeploy", DEPLOYMENT_DETAIL_TYPE | INSTANCE_DETAIL_TYPE) => {
            codedeploy_event(ev, event_id)
        }
        ("aws.tag", TAG_CHANGE_DETAIL_TYPE) => tag_event(ev, event_id),
        (source, detail_type) => Ok(Message::Ignored(Ignored::OtherEvent {
            source: source.to_owned(),
            detail_type: detail_type.to_owned(),
        })),
    }
}

/// A lifecycle action event (`aws.autoscaling`, launch or terminate).
fn lifecycle_event(
    ev: EventBridgeEvent<Value>,
    event_id: Option<EventId>,
) -> Result<Message, ParseError> {
    // AWS sends no test notification through EventBridge, but tools that replay one
    // onto the bus put it here; it is still a test notification, not a bad action.
    if ev.detail.get("LifecycleTransition").and_then(Value::as_str) == Some(TEST_NOTIFICATION) {
        return Ok(Message::Ignored(Ignored::TestNotification {
            asg: ev
                .detail
                .get("AutoScalingGroupName")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }));
    }
    let time = ev
        .time
        .ok_or_else(|| ParseError::field_err("time", "missing"))?;
    let detail: LifecycleDetail = typed(ev.detail, "detail")?;
    let want = if ev.detail_type == LAUNCH_DETAIL_TYPE {
        LAUNCHING
    } else {
        TERMINATING
    };
    if detail.lifecycle_transition != want {
        return Err(ParseError::field_err(
            "detail.LifecycleTransition",
            format!(
                "`{}` does not match detail-type `{}`",
                detail.lifecycle_transition, ev.detail_type
            ),
        ));
    }
    lifecycle(detail, "detail.", time, event_id, Via::EventBridge)
}

/// A CodeDeploy deployment or instance state-change event.
fn codedeploy_event(
    ev: EventBridgeEvent<Value>,
    event_id: Option<EventId>,
) -> Result<Message, ParseError> {
    let detail: CodeDeployEventDetail = typed(ev.detail, "detail")?;
    let need = |v: Option<String>, f: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| ParseError::field_err(format!("detail.{f}"), "missing or empty"))
    };
    let group = GroupKey::new(
        need(detail.application, "application")?,
        need(detail.deployment_group, "deploymentGroup")?,
    );
    let deployment = DeploymentId(need(detail.deployment_id, "deploymentId")?);
    if detail.state == "READY" {
        return Ok(Message::Ignored(Ignored::BlueGreenReady {
            deployment: deployment.0,
        }));
    }
    if ev.detail_type == DEPLOYMENT_DETAIL_TYPE {
        let state = match detail.state.as_str() {
            "START" => DeploymentState::Started,
            "SUCCESS" => DeploymentState::Succeeded,
            "FAILURE" => DeploymentState::Failed,
            "STOP" => DeploymentState::Stopped,
            other => return Err(bad_state(other)),
        };
        Ok(Message::Deployment {
            event_id,
            group,
            deployment,
            state,
        })
    } else {
        let instance = InstanceId(need(detail.instance_id, "instanceId")?);
        check_instance_id(&instance.0, "detail.instanceId")?;
        let state = match detail.state.as_str() {
            "START" => TargetState::InProgress,
            "SUCCESS" => TargetState::Succeeded,
            // A stopped deployment did not finish on the instance.
            "FAILURE" | "STOP" => TargetState::Failed,
            other => return Err(bad_state(other)),
        };
        Ok(Message::Target {
            event_id,
            group,
            deployment,
            instance,
            state,
        })
    }
}

/// The detail of a tag change event [aws-behaviour §5.7 Tag change events].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TagChangeDetail {
    service: String,
    resource_type: String,
    /// Every tag of the resource after the change.
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

/// A tag change on an EC2 instance (the only resource the stack's rule routes here; any other
/// is acknowledged). The instance is the one `resources` names by its ARN.
fn tag_event(
    ev: EventBridgeEvent<Value>,
    event_id: Option<EventId>,
) -> Result<Message, ParseError> {
    let detail: TagChangeDetail = typed(ev.detail, "detail")?;
    if detail.service != "ec2" || detail.resource_type != "instance" {
        return Ok(Message::Ignored(Ignored::OtherResource {
            service: detail.service,
            resource_type: detail.resource_type,
        }));
    }
    let time = ev
        .time
        .ok_or_else(|| ParseError::field_err("time", "missing"))?;
    let arn = ev
        .resources
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| ParseError::field_err("resources", "missing or empty: no instance ARN"))?;
    let id = arn
        .rsplit_once(":instance/")
        .map(|(_, id)| id.to_owned())
        .ok_or_else(|| {
            ParseError::field_err(
                "resources[0]",
                format!("`{arn}` is not an EC2 instance ARN"),
            )
        })?;
    check_instance_id(&id, "resources[0]")?;
    Ok(Message::Tagged {
        event_id,
        instance: InstanceId(id),
        tags: detail.tags.into_iter().collect(),
        time: millis(time),
    })
}

/// The EventBridge events turnstile acts on; every other (source, detail-type) is acknowledged.
fn is_handled(source: &str, detail_type: &str) -> bool {
    matches!(
        (source, detail_type),
        (
            "aws.autoscaling",
            LAUNCH_DETAIL_TYPE | TERMINATE_DETAIL_TYPE
        ) | (
            "aws.codedeploy",
            DEPLOYMENT_DETAIL_TYPE | INSTANCE_DETAIL_TYPE
        ) | ("aws.tag", TAG_CHANGE_DETAIL_TYPE)
    )
}

fn bad_state(state: &str) -> ParseError {
    ParseError::field_err(
        "detail.state",
        format!("unknown state `{state}` (expected START, SUCCESS, FAILURE, STOP or READY)"),
    )
}

/// An event time as the core's milliseconds (a time before 1970 is 0).
fn millis(time: DateTime<Utc>) -> Millis {
    Millis(u64::try_from(time.timestamp_millis()).unwrap_or(0))
}

fn check_instance_id(id: &str, field: &str) -> Result<(), ParseError> {
    let ok = id.len() <= 19
        && id
            .strip_prefix("i-")
            .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(ParseError::field_err(
            field,
            format!("`{id}` is not an EC2 instance id"),
        ))
    }
}

fn lifecycle(
    d: LifecycleDetail,
    prefix: &str,
    time: DateTime<Utc>,
    event_id: Option<EventId>,
    via: Via,
) -> Result<Message, ParseError> {
    let f = |name: &str| format!("{prefix}{name}");
    check_instance_id(&d.ec2_instance_id, &f("EC2InstanceId"))?;
    if d.lifecycle_action_token.len() != 36 {
        return Err(ParseError::field_err(
            f("LifecycleActionToken"),
            format!(
                "`{}` is not a 36-character lifecycle action token",
                d.lifecycle_action_token
            ),
        ));
    }
    for (name, v) in [
        ("AutoScalingGroupName", &d.auto_scaling_group_name),
        ("LifecycleHookName", &d.lifecycle_hook_name),
    ] {
        if v.is_empty() {
            return Err(ParseError::field_err(f(name), "empty"));
        }
    }
    let place = |v: Option<String>, name: &str| -> Result<Option<Place>, ParseError> {
        match v.as_deref() {
            None => Ok(None),
            Some("EC2") => Ok(Some(Place::Ec2)),
            Some("AutoScalingGroup") => Ok(Some(Place::AutoScalingGroup)),
            Some("WarmPool") => Ok(Some(Place::WarmPool)),
            Some(other) => Err(ParseError::field_err(
                f(name),
                format!("`{other}` is not EC2, AutoScalingGroup or WarmPool"),
            )),
        }
    };
    let origin = place(d.origin, "Origin")?;
    let destination = place(d.destination, "Destination")?;
    let event = LifecycleEvent {
        event_id,
        action: ActionRef {
            asg: d.auto_scaling_group_name,
            hook: d.lifecycle_hook_name,
            token: Some(Token(d.lifecycle_action_token)),
            instance: InstanceId(d.ec2_instance_id),
        },
        origin,
        destination,
        time: millis(time),
    };
    let msg = Lifecycle {
        event,
        metadata: d.notification_metadata,
        via,
    };
    match d.lifecycle_transition.as_str() {
        LAUNCHING => Ok(Message::Launch(msg)),
        TERMINATING => Ok(Message::Terminate(msg)),
        other => Err(ParseError::field_err(
            f("LifecycleTransition"),
            format!("unknown transition `{other}`"),
        )),
    }
}
