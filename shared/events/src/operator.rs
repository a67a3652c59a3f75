//! Operator messages: what `turnstile retry | abandon | breaker reset | pause | resume` sends
//! to the queue.
//!
//! ```json
//! {"turnstile": "operator", "version": 1, "request": "op-…", "action": "retry",
//!  "instance": "i-0abc", "reason": "the package mirror is back"}
//! {"turnstile": "operator", "version": 1, "request": "op-…", "action": "reset-breaker",
//!  "application": "web", "deploymentGroup": "web-fleet", "reason": "…"}
//! ```
//!
//! `pause` and `resume` name a deployment group as `reset-breaker` does.
//!
//! The body never names the actor: that is the message's SQS `SenderId`, which the sender
//! cannot choose ([`Message::with_sender`](crate::Message::with_sender)). A body with any other
//! field (an `actor` say) is refused, naming the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use turnstile_core::{GroupKey, InstanceId, OperatorAction};

use crate::{ParseError, typed};

/// The body's `turnstile` value for operator messages.
pub const OPERATOR_KIND: &str = "operator";
/// The one version of the operator message there is.
pub const OPERATOR_VERSION: u32 = 1;
const MAX_REQUEST_CHARS: usize = 128;
const MAX_REASON_CHARS: usize = 1024;

/// An operator's request as the queue carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The request id: the dedupe key, and the note the command line waits for.
    pub request: String,
    pub target: Target,
    pub reason: String,
    /// The SQS `SenderId` of the message; `None` until the handler sets it.
    pub actor: Option<String>,
}

/// What the request acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Instance {
        instance: InstanceId,
        action: OperatorAction,
    },
    ResetBreaker {
        group: GroupKey,
    },
    /// Pause (`paused: true`) or resume a deployment group's admissions.
    Pause {
        group: GroupKey,
        paused: bool,
    },
}

/// The body as sent, before its fields are checked against each other.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorBody {
    pub turnstile: String,
    pub version: u32,
    pub request: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_group: Option<String>,
    pub reason: String,
}

impl OperatorBody {
    /// The message body, as the command line sends it.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub(crate) fn parse(value: Value) -> Result<Operator, ParseError> {
    let body: OperatorBody = typed(value, "")?;
    if body.version != OPERATOR_VERSION {
        return Err(ParseError::field_err(
            "version",
            format!(
                "operator message version {} is not known (this turnstile reads version {OPERATOR_VERSION}): update the function or the command line",
                body.version
            ),
        ));
    }
    let request = body.request.trim();
    if request.is_empty() || request.chars().count() > MAX_REQUEST_CHARS {
        return Err(ParseError::field_err(
            "request",
            format!("must be 1 to {MAX_REQUEST_CHARS} characters"),
        ));
    }
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ParseError::field_err(
            "reason",
            format!("must be 1 to {MAX_REASON_CHARS} characters: say why, it is kept"),
        ));
    }
    let instance = || match body.instance.as_deref().map(str::trim) {
        Some(i) if !i.is_empty() => Ok(InstanceId::from(i)),
        _ => Err(ParseError::field_err(
            "instance",
            format!("`{}` needs the instance id", body.action),
        )),
    };
    let target = match body.action.as_str() {
        "retry" => Target::Instance {
            instance: instance()?,
            action: OperatorAction::Retry,
        },
        "abandon" => Target::Instance {
            instance: instance()?,
            action: OperatorAction::Abandon,
        },
        "skip-failed-step" => Target::Instance {
            instance: instance()?,
            action: OperatorAction::SkipFailedStep,
        },
        action @ ("reset-breaker" | "pause" | "resume") => {
            let name = |v: &Option<String>, field: &str| match v.as_deref().map(str::trim) {
                Some(n) if !n.is_empty() => Ok(n.to_owned()),
                _ => Err(ParseError::field_err(
                    field,
                    format!("`{action}` needs the application and deployment group"),
                )),
            };
            let group = GroupKey::new(
                name(&body.application, "application")?,
                name(&body.deployment_group, "deploymentGroup")?,
            );
            match action {
                "reset-breaker" => Target::ResetBreaker { group },
                _ => Target::Pause {
                    group,
                    paused: action == "pause",
                },
            }
        }
        other => {
            return Err(ParseError::field_err(
                "action",
                format!(
                    "unknown operator action `{other}` (retry, abandon, skip-failed-step, reset-breaker, pause, resume)"
                ),
            ));
        }
    };
    Ok(Operator {
        request: request.to_owned(),
        target,
        reason: reason.to_owned(),
        actor: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::{Message, parse as parse_body};
    use turnstile_core::{EventId, Input};

    fn body(extra: &str) -> String {
        format!(
            r#"{{"turnstile":"operator","version":1,"request":"op-1","reason":"mirror is back"{extra}}}"#
        )
    }

    fn field_of(body: &str) -> String {
        match parse_body(body) {
            Err(e) => e.field().unwrap_or("(none)").to_owned(),
            Ok(m) => panic!("parsed: {m:?}"),
        }
    }

    #[test]
    fn operator_retry_becomes_an_input_whose_actor_is_the_sqs_sender() {
        let m = parse_body(&body(r#","action":"retry","instance":"i-1""#))
            .unwrap()
            .with_sender(Some("AROAEXAMPLE:alice"));
        let (input, event) = m.into_input(None, None).unwrap();
        assert_eq!(
            event,
            Some(EventId("op-1".into())),
            "deduped on the request id"
        );
        let Input::Operator {
            instance,
            action,
            request,
        } = input
        else {
            panic!("{input:?}")
        };
        assert_eq!(
            (instance.as_str(), action, request.actor.as_str()),
            ("i-1", OperatorAction::Retry, "AROAEXAMPLE:alice")
        );
        assert_eq!(request.reason, "mirror is back");
    }

    #[test]
    fn operator_reset_breaker_names_its_group() {
        let m = parse_body(&body(
            r#","action":"reset-breaker","application":"web","deploymentGroup":"web-dg""#,
        ))
        .unwrap();
        let Message::Operator(op) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            op.target,
            Target::ResetBreaker {
                group: GroupKey::new("web", "web-dg")
            }
        );
    }

    #[test]
    fn operator_pause_and_resume_name_their_group() {
        for (action, paused) in [("pause", true), ("resume", false)] {
            let m = parse_body(&body(&format!(
                r#","action":"{action}","application":"web","deploymentGroup":"web-dg""#
            )))
            .unwrap();
            let Message::Operator(op) = m else {
                panic!("{m:?}")
            };
            assert_eq!(
                op.target,
                Target::Pause {
                    group: GroupKey::new("web", "web-dg"),
                    paused
                }
            );
        }
        assert_eq!(field_of(&body(r#","action":"pause""#)), "application");
    }

    #[test]
    fn operator_messages_name_the_bad_field() {
        let table = [
            (body(r#","action":"retry""#), "instance"),
            (body(r#","action":"retry","instance":"  ""#), "instance"),
            (body(r#","action":"reboot","instance":"i-1""#), "action"),
            (body(r#","action":"reset-breaker","application":"web""#), "deploymentGroup"),
            (
                body(r#","action":"retry","instance":"i-1","actor":"root""#),
                "actor",
            ),
            (
                r#"{"turnstile":"operator","version":2,"request":"op","action":"retry","instance":"i-1","reason":"r"}"#.into(),
                "version",
            ),
            (
                r#"{"turnstile":"operator","version":1,"request":"","action":"retry","instance":"i-1","reason":"r"}"#.into(),
                "request",
            ),
            (
                r#"{"turnstile":"operator","version":1,"request":"op","action":"retry","instance":"i-1","reason":" "}"#.into(),
                "reason",
            ),
            (
                r#"{"turnstile":"operator","version":1,"action":"retry","instance":"i-1","reason":"r"}"#.into(),
                "$",
            ),
        ];
        for (body, field) in table {
            assert_eq!(field_of(&body), field, "{body}");
        }
    }

    #[test]
    fn operator_body_round_trips_through_the_parser() {
        let sent = OperatorBody {
            turnstile: OPERATOR_KIND.into(),
            version: OPERATOR_VERSION,
            request: "op-7".into(),
            action: "abandon".into(),
            instance: Some("i-7".into()),
            application: None,
            deployment_group: None,
            reason: "bad AMI".into(),
        };
        let Message::Operator(op) = parse_body(&sent.to_body()).unwrap() else {
            panic!()
        };
        assert_eq!(op.request, "op-7");
        assert_eq!(
            op.target,
            Target::Instance {
                instance: "i-7".into(),
                action: OperatorAction::Abandon
            }
        );
    }
}
