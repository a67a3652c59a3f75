//! The SAM template's EventBridge rules (`infra/template.yaml`), and the subset of
//! EventBridge's pattern matching they use, so that the in-process simulation routes the same
//! events to the queue as the local cloud's moto EventBridge does.

use serde_json::{Value, json};
use turnstile_core::{HookNames, OwnedHooks};

/// CodeDeploy events the orchestrator does not subscribe to: `START` (deployment and
/// instance). An instance's START changes nothing the core keeps; a deployment's START only
/// told it early that someone else's deployment holds a group, which `CreateDeployment`
/// (busy), the leave check and the final check find out anyway. See docs/design.md
/// ("Messages per instance").
pub const UNSUBSCRIBED_STATES: [&str; 1] = ["START"];

/// The stack's default readiness tag key (`ReadinessTagKey`): the tag-change rule forwards
/// changes of this key on EC2 instances.
pub const READINESS_TAG_KEY: &str = "turnstile:ready";

/// The template's rules with the stack's default hooks (`LaunchHookName` = `turnstile-launch`).
pub fn rule_patterns(asgs: &[&str], applications: &[&str]) -> [Value; 4] {
    rule_patterns_for(asgs, applications, &OwnedHooks::default())
}

/// The launch rule, the terminate rule, the CodeDeploy rule and the readiness rule, for these
/// Auto Scaling groups, hooks and applications. Launch actions are filtered on the hooks turnstile owns (names,
/// and EventBridge `prefix` matching for prefixes); terminate actions of every hook of the
/// group are forwarded, since any of them means the instance is going away (docs/design.md
/// "Own hooks only").
pub fn rule_patterns_for(asgs: &[&str], applications: &[&str], hooks: &OwnedHooks) -> [Value; 4] {
    [
        json!({
            "source": ["aws.autoscaling"],
            "detail-type": ["EC2 Instance-launch Lifecycle Action"],
            "detail": {
                "AutoScalingGroupName": asgs,
                "LifecycleHookName": hook_filter(&hooks.launch),
            },
        }),
        json!({
            "source": ["aws.autoscaling"],
            "detail-type": ["EC2 Instance-terminate Lifecycle Action"],
            "detail": {"AutoScalingGroupName": asgs},
        }),
        json!({
            "source": ["aws.codedeploy"],
            "detail-type": ["CodeDeploy Deployment State-change Notification", "CodeDeploy Instance State-change Notification"],
            "detail": {
                "application": applications,
                "state": [{"anything-but": UNSUBSCRIBED_STATES}],
            },
        }),
        // An instance tagging itself ready; the sweep's read is the fallback, since tag
        // events are best effort (docs/design.md "Readiness").
        json!({
            "source": ["aws.tag"],
            "detail-type": ["Tag Change on Resource"],
            "detail": {
                "service": ["ec2"],
                "resource-type": ["instance"],
                "changed-tag-keys": [READINESS_TAG_KEY],
            },
        }),
    ]
}

/// The values of a `LifecycleHookName` filter: the names, then `{"prefix": …}` per prefix.
fn hook_filter(hooks: &HookNames) -> Vec<Value> {
    hooks
        .names()
        .iter()
        .map(|n| json!(n))
        .chain(hooks.prefixes().iter().map(|p| json!({"prefix": p})))
        .collect()
}

/// Whether `event` matches an EventBridge pattern, for the features the rules use: nested
/// fields, a list of allowed values, `anything-but` and `prefix`. A field the event lacks
/// matches nothing, as in EventBridge; a field whose value is an array matches when any of its
/// elements does.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        return false;
    };
    fields.iter().all(|(name, p)| {
        let Some(v) = event.get(name) else {
            return false;
        };
        match p {
            Value::Object(_) => matches(p, v),
            Value::Array(allowed) => match v {
                Value::Array(elements) => elements.iter().any(|e| allowed_value(allowed, e)),
                v => allowed_value(allowed, v),
            },
            _ => false,
        }
    })
}

/// Whether one event value is among a pattern's allowed values.
fn allowed_value(allowed: &[Value], v: &Value) -> bool {
    allowed.iter().any(|a| match a {
        Value::Object(op) => {
            if let Some(prefix) = op.get("prefix").and_then(Value::as_str) {
                return v.as_str().is_some_and(|s| s.starts_with(prefix));
            }
            op.get("anything-but")
                .and_then(Value::as_array)
                .is_some_and(|not| !v.is_null() && !not.contains(v))
        }
        a => a == v,
    })
}

/// Whether any of the rules routes `event` to the queue.
pub fn routed(rules: &[Value], event: &Value) -> bool {
    rules.iter().any(|r| matches(r, event))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn rules() -> [Value; 4] {
        rule_patterns(&["my-asg"], &["myApplication"])
    }

    #[test]
    fn codedeploy_results_are_routed_and_starts_are_not() {
        for f in [
            "codedeploy-instance-state-change.json",
            "codedeploy-deployment-state-change.json",
        ] {
            let mut event = fixture(f);
            for (state, routed_) in [
                ("SUCCESS", true),
                ("FAILURE", true),
                ("STOP", true),
                ("START", false),
            ] {
                event["detail"]["state"] = json!(state);
                assert_eq!(routed(&rules(), &event), routed_, "{f} {state}");
            }
            event["detail"]["application"] = json!("someone-else");
            event["detail"]["state"] = json!("SUCCESS");
            assert!(!routed(&rules(), &event), "{f}: other applications");
        }
    }

    #[test]
    fn lifecycle_actions_of_the_managed_group_are_routed() {
        let mut event = fixture("eventbridge-launch-lifecycle-action.json");
        event["detail"]["AutoScalingGroupName"] = json!("my-asg");
        event["detail"]["LifecycleHookName"] = json!("turnstile-launch");
        assert!(routed(&rules(), &event));
        event["detail"]["AutoScalingGroupName"] = json!("other");
        assert!(!routed(&rules(), &event));
        let mut event = fixture("eventbridge-terminate-lifecycle-action.json");
        event["detail"]["AutoScalingGroupName"] = json!("my-asg");
        assert!(routed(&rules(), &event));
    }

    #[test]
    fn foreign_hook_launch_actions_are_not_routed_and_terminate_actions_are() {
        let mut event = fixture("eventbridge-launch-lifecycle-action.json");
        event["detail"]["AutoScalingGroupName"] = json!("my-asg");
        event["detail"]["LifecycleHookName"] = json!("bootstrap-agent");
        assert!(!routed(&rules(), &event), "another tool's launch hook");
        let mut event = fixture("eventbridge-terminate-lifecycle-action.json");
        event["detail"]["AutoScalingGroupName"] = json!("my-asg");
        event["detail"]["LifecycleHookName"] = json!("drain-logs");
        assert!(
            routed(&rules(), &event),
            "any terminate action ends the pipeline"
        );
    }

    #[test]
    fn foreign_hook_prefix_routes_every_matching_launch_hook_and_no_other() {
        let hooks = OwnedHooks {
            launch: HookNames::parse("turnstile-launch,team-*").unwrap(),
            terminate: HookNames::parse("team-*").unwrap(),
        };
        let rules = rule_patterns_for(&["my-asg"], &["myApplication"], &hooks);
        let mut event = fixture("eventbridge-launch-lifecycle-action.json");
        event["detail"]["AutoScalingGroupName"] = json!("my-asg");
        for (hook, want) in [
            ("turnstile-launch", true),
            ("team-web", true),
            ("team", false),
            ("bootstrap-agent", false),
        ] {
            event["detail"]["LifecycleHookName"] = json!(hook);
            assert_eq!(routed(&rules, &event), want, "{hook}");
        }
    }

    /// The template's launch rule filters on the hook names, as `rule_patterns_for` does.
    #[test]
    fn foreign_hook_the_template_filters_launch_actions_on_the_hook_name() {
        let path = format!("{}/../../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
        let template = std::fs::read_to_string(path).unwrap();
        let rule = template
            .split("  LaunchRule:")
            .nth(1)
            .and_then(|r| r.split("\n  TerminateRule").next())
            .expect("the template has a LaunchRule");
        assert!(
            rule.contains("LifecycleHookName: !If")
                && rule.contains("[!Ref LaunchHookName, { prefix: !Ref OwnedHookPrefix }]")
                && rule.contains("[!Ref LaunchHookName]"),
            "LaunchRule must filter on the owned hooks:\n{rule}"
        );
    }

    /// An instance tagging itself ready reaches the queue; a change of another key (a gate
    /// turnstile opens) or on another kind of resource does not.
    #[test]
    fn readiness_tag_changes_of_instances_are_routed_and_nothing_else() {
        let rules = rules();
        let mut event = fixture("eventbridge-tag-change-on-instance.json");
        assert!(!routed(&rules, &event), "the sample changes other keys");
        event["detail"]["changed-tag-keys"] = json!(["Name", READINESS_TAG_KEY]);
        assert!(routed(&rules, &event));
        event["detail"]["resource-type"] = json!("volume");
        assert!(!routed(&rules, &event));
        event["detail"]["resource-type"] = json!("instance");
        event["detail"]["changed-tag-keys"] = json!(["turnstile:gate:web"]);
        assert!(!routed(&rules, &event));
    }

    /// The template's readiness rule filters on the same key and resource.
    #[test]
    fn readiness_the_template_routes_the_same_tag_changes() {
        let path = format!("{}/../../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
        let template = std::fs::read_to_string(path).unwrap();
        let rule = template
            .split("  ReadinessRule:")
            .nth(1)
            .and_then(|r| r.split("\n\n").next())
            .expect("the template has a ReadinessRule");
        for want in [
            "source: [aws.tag]",
            "detail-type: [Tag Change on Resource]",
            "service: [ec2]",
            "resource-type: [instance]",
            "changed-tag-keys: [!Ref ReadinessTagKey]",
        ] {
            assert!(rule.contains(want), "ReadinessRule lacks {want}:\n{rule}");
        }
        assert!(
            template.contains(&format!("Default: \"{READINESS_TAG_KEY}\"")),
            "ReadinessTagKey defaults to {READINESS_TAG_KEY}"
        );
    }

    /// The template is the source users deploy; these patterns must say the same.
    #[test]
    fn the_template_filters_the_same_states() {
        let path = format!("{}/../../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
        let template = std::fs::read_to_string(path).unwrap();
        let rule = template
            .split("  CodeDeployRule:")
            .nth(1)
            .and_then(|r| r.split("\n  Orchestrator").next())
            .expect("the template has a CodeDeployRule");
        let states: Vec<&str> = UNSUBSCRIBED_STATES.to_vec();
        assert!(
            rule.contains(&format!("- anything-but: [{}]", states.join(", "))),
            "CodeDeployRule must filter out {states:?}:\n{rule}"
        );
    }
}
