//! Every fixture in `tests/fixtures/` is a real AWS sample; each must parse to what it means.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use turnstile_core::{DeploymentState, Key, Millis, Place, TargetState};
use turnstile_events::{Ignored, Message, ParseError, Via, parse, wakeup_body};

fn fixture(name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn field_error(body: &str) -> (String, String) {
    match parse(body) {
        Err(ParseError::Field { field, reason }) => (field, reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn eventbridge_launch_lifecycle_action() {
    let Message::Launch(l) = parse(&fixture("eventbridge-launch-lifecycle-action.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(l.via, Via::EventBridge);
    assert_eq!(l.event.action.asg, "my-asg");
    assert_eq!(l.event.action.hook, "my-lifecycle-hook");
    assert_eq!(l.event.action.instance.as_str(), "i-1234567890abcdef0");
    assert_eq!(
        l.event.action.token.as_ref().map(|t| t.as_str()),
        Some("87654321-4321-4321-4321-210987654321")
    );
    assert_eq!(
        l.event.event_id.unwrap().as_str(),
        "12345678-1234-1234-1234-123456789012"
    );
    assert_eq!(l.metadata.as_deref(), Some("additional-info"));
    assert_eq!((l.event.origin, l.event.destination), (None, None));
    assert_eq!(l.event.time, Millis(0));
}

#[test]
fn eventbridge_launch_into_warm_pool_has_origin_and_destination() {
    let Message::Launch(l) = parse(&fixture(
        "eventbridge-launch-lifecycle-action-warm-pool.json",
    ))
    .unwrap() else {
        panic!()
    };
    assert_eq!(l.event.origin, Some(Place::Ec2));
    assert_eq!(l.event.destination, Some(Place::WarmPool));
    assert_eq!(l.event.time, Millis(1_610_496_757_214));
}

#[test]
fn eventbridge_terminate_lifecycle_action() {
    let m = parse(&fixture("eventbridge-terminate-lifecycle-action.json")).unwrap();
    assert!(matches!(m, Message::Terminate(l) if l.metadata.is_none()));
}

#[test]
fn hook_notification_straight_to_sqs() {
    let Message::Launch(l) = parse(&fixture("sqs-direct-launch-notification.json")).unwrap() else {
        panic!()
    };
    assert_eq!(l.via, Via::HookNotification);
    assert_eq!(l.event.action.instance.as_str(), "i-0853dfa8ce1627af9");
    assert_eq!(
        (l.event.origin, l.event.destination),
        (Some(Place::Ec2), Some(Place::AutoScalingGroup))
    );
    // The notification's RequestId, with the action's token: unique per lifecycle action.
    assert_eq!(
        l.event.event_id.unwrap().as_str(),
        "5a062a09-2965-8413-43f9-83bd8649c9eb/917070d0-a303-474b-a36c-a5e38a19de5e"
    );
    assert!(matches!(
        parse(&fixture("sqs-direct-terminate-notification.json")).unwrap(),
        Message::Terminate(_)
    ));
}

#[test]
fn hook_notification_through_sns() {
    let inner = fixture("sqs-direct-launch-notification.json");
    let sns =
        serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": inner.trim()})
            .to_string();
    assert!(matches!(parse(&sns).unwrap(), Message::Launch(_)));
}

#[test]
fn test_notification_is_ignored_not_an_error() {
    let m = parse(&fixture("sqs-test-notification.json")).unwrap();
    assert_eq!(
        m,
        Message::Ignored(Ignored::TestNotification {
            asg: Some("my-auto-scaling-group".into())
        })
    );
}

#[test]
fn codedeploy_deployment_state_change() {
    let m = parse(&fixture("codedeploy-deployment-state-change.json")).unwrap();
    let Message::Deployment {
        event_id,
        group,
        deployment,
        state,
    } = m
    else {
        panic!("{m:?}")
    };
    assert_eq!(
        event_id.unwrap().as_str(),
        "c071bfbf-83c4-49ca-a6ff-3df053957145"
    );
    assert_eq!(group.to_string(), "myApplication/myDeploymentGroup");
    assert_eq!(deployment.as_str(), "d-123456789");
    assert_eq!(state, DeploymentState::Succeeded);
}

#[test]
fn codedeploy_instance_state_change() {
    let m = parse(&fixture("codedeploy-instance-state-change.json")).unwrap();
    let Message::Target {
        instance, state, ..
    } = m
    else {
        panic!("{m:?}")
    };
    assert_eq!(instance.as_str(), "i-0000000aaaaaaaaaa");
    assert_eq!(state, TargetState::Succeeded);
}

#[test]
fn unknown_detail_type_is_acknowledged_as_other_event() {
    let m = parse(&fixture("eventbridge-launch-successful.json")).unwrap();
    assert!(
        matches!(m, Message::Ignored(Ignored::OtherEvent { detail_type, .. }) if detail_type == "EC2 Instance Launch Successful")
    );
}

#[test]
fn wakeup_messages_round_trip() {
    for key in [
        Key::Instance("i-0abc".into()),
        Key::Group(turnstile_core::GroupKey::new("a", "g")),
    ] {
        assert_eq!(parse(&wakeup_body(&key)).unwrap(), Message::Wakeup(key));
    }
}

#[test]
fn empty_instance_id_names_the_field() {
    let (field, reason) = field_error(&fixture("sqs-direct-notification-empty-instance-id.json"));
    assert_eq!(field, "EC2InstanceId");
    assert!(reason.contains("not an EC2 instance id"));
}

#[test]
fn missing_detail_field_names_the_field() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("eventbridge-launch-lifecycle-action.json")).unwrap();
    v["detail"]
        .as_object_mut()
        .unwrap()
        .remove("LifecycleActionToken");
    let (field, reason) = field_error(&v.to_string());
    assert_eq!(field, "detail");
    assert!(
        reason.contains("missing field `LifecycleActionToken`"),
        "{reason}"
    );
}

#[test]
fn wrongly_typed_field_names_the_path() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("eventbridge-launch-lifecycle-action.json")).unwrap();
    v["detail"]["EC2InstanceId"] = serde_json::json!(42);
    assert_eq!(field_error(&v.to_string()).0, "detail.EC2InstanceId");
}

#[test]
fn stale_or_malformed_token_names_the_field() {
    let body = fixture("sqs-direct-launch-notification.json")
        .replace("917070d0-a303-474b-a36c-a5e38a19de5e", "not-a-token");
    assert_eq!(field_error(&body).0, "LifecycleActionToken");
}

#[test]
fn transition_must_match_detail_type() {
    let body = fixture("eventbridge-launch-lifecycle-action.json")
        .replace("EC2_INSTANCE_LAUNCHING", "EC2_INSTANCE_TERMINATING");
    assert_eq!(field_error(&body).0, "detail.LifecycleTransition");
}

#[test]
fn bad_origin_and_unknown_state_name_the_field() {
    let body = fixture("eventbridge-launch-lifecycle-action-warm-pool.json")
        .replace("\"WarmPool\"", "\"Lake\"");
    assert_eq!(field_error(&body).0, "detail.Destination");
    let body = fixture("codedeploy-deployment-state-change.json").replace("SUCCESS", "MAYBE");
    assert_eq!(field_error(&body).0, "detail.state");
    let body = fixture("codedeploy-instance-state-change.json")
        .replace("\"instanceId\": \"i-0000000aaaaaaaaaa\",", "");
    assert_eq!(field_error(&body).0, "detail.instanceId");
}

#[test]
fn ready_state_is_ignored() {
    let body = fixture("codedeploy-deployment-state-change.json").replace("SUCCESS", "READY");
    assert!(matches!(
        parse(&body).unwrap(),
        Message::Ignored(Ignored::BlueGreenReady { .. })
    ));
}

#[test]
fn malformed_json_and_foreign_shapes_are_typed_errors() {
    assert!(matches!(
        parse("{not json"),
        Err(ParseError::NotJson { .. })
    ));
    assert!(matches!(
        parse("[1,2]"),
        Err(ParseError::Unrecognised { .. })
    ));
    assert!(matches!(
        parse(r#"{"hello":"world"}"#),
        Err(ParseError::Unrecognised { .. })
    ));
    assert!(
        matches!(parse(r#"{"Event":"autoscaling:EC2_INSTANCE_REBOOT"}"#), Err(ParseError::Field { field, .. }) if field == "Event")
    );
    assert!(
        matches!(parse(r#"{"turnstile":"explode"}"#), Err(ParseError::Field { field, .. }) if field == "turnstile")
    );
    assert!(!parse("{").unwrap_err().is_retryable());
}

// ---- real variants: shapes that other setups put on the queue -----------------------------------

#[test]
fn real_variant_activity_notification_over_sns_is_ignored() {
    // A group's SNS notification configuration often shares the topic with the hook's
    // notifications: the activity notice reports a launch that already happened.
    let m = parse(&fixture("sns-activity-notification-launch.json")).unwrap();
    assert_eq!(
        m,
        Message::Ignored(Ignored::Activity {
            event: "autoscaling:EC2_INSTANCE_LAUNCH".into(),
            asg: Some("shared-fleet".into()),
        })
    );
    for event in turnstile_events::ACTIVITY_EVENTS {
        let body = serde_json::json!({"Event": event, "AutoScalingGroupName": "g"}).to_string();
        assert!(
            matches!(
                parse(&body).unwrap(),
                Message::Ignored(Ignored::Activity { .. })
            ),
            "{event}"
        );
    }
}

#[test]
fn real_variant_ignored_eventbridge_type_is_decided_before_its_fields() {
    // AWS's own samples carry placeholder or date-only times; an event turnstile does not act
    // on is acknowledged whatever its time says.
    for time in ["2019-01-01", "yyyy-mm-ddThh:mm:ssZ"] {
        let mut v: serde_json::Value =
            serde_json::from_str(&fixture("eventbridge-launch-successful.json")).unwrap();
        v["time"] = serde_json::json!(time);
        assert!(
            matches!(
                parse(&v.to_string()).unwrap(),
                Message::Ignored(Ignored::OtherEvent { .. })
            ),
            "{time}"
        );
    }
    // An event turnstile does act on still needs a valid time, and says so.
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("eventbridge-launch-lifecycle-action.json")).unwrap();
    v["time"] = serde_json::json!("2019-01-01");
    assert_eq!(field_error(&v.to_string()).0, "time");
}

#[test]
fn real_variant_empty_event_beside_a_lifecycle_transition_is_absent() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("sqs-direct-terminate-notification.json")).unwrap();
    v["Event"] = serde_json::json!("");
    assert!(matches!(
        parse(&v.to_string()).unwrap(),
        Message::Terminate(_)
    ));
}

#[test]
fn real_variant_sns_subscription_confirmation_says_what_to_do() {
    let err = parse(&fixture("sns-subscription-confirmation.json")).unwrap_err();
    let ParseError::SnsSubscription { kind, topic } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(kind, "SubscriptionConfirmation");
    assert_eq!(topic, "arn:aws:sns:us-east-1:444455556666:fleet-events");
    assert!(
        err.to_string().contains("aws sns confirm-subscription"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[test]
fn real_variant_hook_notification_dedupe_key_is_unique_per_action() {
    // Two lifecycle actions that share a RequestId (one Auto Scaling request can start
    // several) must not be taken for one redelivered message.
    let one = fixture("sqs-direct-terminate-notification.json");
    let two = one.replace(
        "888d9b5e-fca7-49ac-a588-ef86a5f4c25b",
        "999d9b5e-fca7-49ac-a588-ef86a5f4c25b",
    );
    let id = |body: &str| match parse(body).unwrap() {
        Message::Terminate(l) => l.event.event_id.unwrap(),
        other => panic!("{other:?}"),
    };
    assert_ne!(id(&one), id(&two));
    assert_eq!(id(&one), id(&one), "a redelivery keeps its key");
    assert!(
        id(&one)
            .as_str()
            .starts_with("0af658d8-4d1c-4bf0-9886-16872eb3a892")
    );
}

#[test]
fn real_variant_eventbridge_test_notification_is_ignored() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("eventbridge-terminate-lifecycle-action.json")).unwrap();
    v["detail"] = serde_json::json!({
        "Event": "autoscaling:TEST_NOTIFICATION",
        "LifecycleTransition": "autoscaling:TEST_NOTIFICATION"
    });
    assert!(matches!(
        parse(&v.to_string()).unwrap(),
        Message::Ignored(Ignored::TestNotification { .. })
    ));
}

#[test]
fn eventbridge_tag_change_on_an_instance_reports_its_full_tag_set() {
    let Message::Tagged {
        event_id,
        instance,
        tags,
        time,
    } = parse(&fixture("eventbridge-tag-change-on-instance.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(instance.as_str(), "i-0000000aaaaaaaaaa");
    assert_eq!(
        event_id.unwrap().as_str(),
        "bddcf1d6-0251-35a1-aab0-adc1fb47c11c"
    );
    assert_eq!(time, Millis(1_537_303_298_000));
    // The tags after the change: a deleted key is gone, an unchanged one is there.
    let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a-new-key", "an-unchanged-key", "an-updated-key"]);
}

#[test]
fn tag_change_on_another_resource_is_acknowledged_and_a_bad_instance_arn_is_named() {
    let body = fixture("eventbridge-tag-change-on-instance.json");
    let other = body.replace(
        r#""resource-type": "instance""#,
        r#""resource-type": "volume""#,
    );
    assert!(matches!(
        parse(&other).unwrap(),
        Message::Ignored(Ignored::OtherResource { .. })
    ));
    let bad = body.replace("instance/i-0000000aaaaaaaaaa", "instance/web-1");
    assert_eq!(field_error(&bad).0, "resources[0]");
    let none = body.replace(
        r#""arn:aws:ec2:us-east-1:123456789012:instance/i-0000000aaaaaaaaaa""#,
        "",
    );
    assert_eq!(field_error(&none).0, "resources");
    let no_time = body.replace(r#""time": "2018-09-18T20:41:38Z","#, "");
    assert_eq!(field_error(&no_time).0, "time");
    let bad_tags = body.replace(
        r#""a-new-key": "tag-value-on-new-key-just-added""#,
        r#""a-new-key": 7"#,
    );
    assert!(
        field_error(&bad_tags).0.starts_with("detail.tags"),
        "{bad_tags}"
    );
}
