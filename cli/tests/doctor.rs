//! `turnstile doctor` against the local cloud's wire simulator: the real binary, the SDK's own
//! configuration chain pointed at the simulator with `AWS_ENDPOINT_URL`, one deliberately
//! broken fleet per misconfiguration (each found, with its fix naming the right command), and
//! a correct fleet that passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod doctor_fleet;

use doctor_fleet::{API_GATE, ASG, Doctor, Ran, WEB_GATE, healthy, hook, plan, run_binary};
use turnstile_cli::Exit;
use turnstile_model::Cloud;

async fn doctor(c: Cloud) -> Ran {
    let d = Doctor::start(c).await;
    let ran = d.run(&["doctor", "--asg", ASG, "-o", "json"]).await;
    assert!(ran.err.is_empty(), "stderr: {}", ran.err);
    ran
}

/// Exactly one finding of `check` with `severity`, whose message contains `says` and whose
/// fix contains every one of `fix`.
fn found(ran: &Ran, check: &str, severity: &str, says: &str, fix: &[&str]) -> serde_json::Value {
    let all = ran.findings(check, severity);
    let f = all
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains(says))
        .unwrap_or_else(|| panic!("no {severity} {check} saying `{says}` in {:#}", ran.json()));
    assert!(!f["why"].as_str().unwrap().is_empty(), "{f:#}");
    let text = f["fix"].as_str().unwrap();
    for want in fix {
        assert!(text.contains(want), "fix of {check} lacks `{want}`: {text}");
    }
    f.clone()
}

fn set_hooks(c: &mut Cloud, hooks: Vec<turnstile_model::Hook>) {
    c.asgs.get_mut(ASG).unwrap().hooks = hooks;
}

#[tokio::test]
async fn doctor_a_correct_fleet_exits_0_with_no_error() {
    let (c, _) = healthy();
    let d = Doctor::start(c).await;
    let ran = d.run(&["doctor", "--asg", ASG]).await;
    print!("{}", ran.out);
    assert!(
        ran.exit(Exit::Ok),
        "exit {}: {}{}",
        ran.code,
        ran.out,
        ran.err
    );
    assert!(!ran.out.contains("error "), "{}", ran.out);
    assert!(
        ran.out
            .trim_end()
            .ends_with("shared-fleet: 0 errors, 0 warnings, 19 ok"),
        "{}",
        ran.out
    );
    let ran = d.run(&["doctor", "--asg", ASG, "-o", "json"]).await;
    assert!(ran.exit(Exit::Ok));
    let doc = ran.json();
    assert_eq!(doc["summary"]["errors"], 0);
    assert_eq!(doc["summary"]["warnings"], 0);
    assert_eq!(doc["hook"], "turnstile-launch");
    for check in [
        "launch-hook",
        "codedeploy-hook",
        "propagated-gate",
        "deployment-group",
        "group-asg",
        "gate-tag-group",
        "tag-groups",
        "target-revision",
        "deployment-config",
        "instance-gates",
    ] {
        assert!(!ran.findings(check, "ok").is_empty(), "no ok for {check}");
    }
}

#[tokio::test]
async fn doctor_no_turnstile_hook_is_an_error() {
    let (mut c, _) = healthy();
    set_hooks(&mut c, vec![hook("bootstrap", 300, None)]);
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "launch-hook",
        "error",
        "no turnstile launch hook",
        &[
            "aws autoscaling put-lifecycle-hook",
            "--auto-scaling-group-name shared-fleet",
            "--lifecycle-hook-name turnstile-launch",
            "--notification-metadata",
        ],
    );
    assert!(ran.json()["plan"].is_null());
    // Another name for the hook is turnstile's when the functions say so.
    let (mut c, _) = healthy();
    set_hooks(&mut c, vec![hook("web-launch", 600, Some(plan()))]);
    let d = Doctor::start(c).await;
    let ran = d
        .run(&[
            "doctor",
            "--asg",
            ASG,
            "--launch-hooks",
            "web-*",
            "-o",
            "json",
        ])
        .await;
    assert!(ran.exit(Exit::Ok), "{}", ran.out);
}

#[tokio::test]
async fn doctor_two_turnstile_hooks_are_an_error() {
    let (mut c, _) = healthy();
    set_hooks(
        &mut c,
        vec![
            hook("turnstile-web", 600, Some(plan())),
            hook("turnstile-api", 600, Some(plan())),
        ],
    );
    let d = Doctor::start(c).await;
    let ran = d
        .run(&[
            "doctor",
            "--asg",
            ASG,
            "--launch-hooks",
            "turnstile-*",
            "-o",
            "json",
        ])
        .await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "launch-hook",
        "error",
        "2 turnstile launch hooks",
        &[
            "aws autoscaling delete-lifecycle-hook --auto-scaling-group-name shared-fleet --lifecycle-hook-name turnstile-api",
        ],
    );
}

#[tokio::test]
async fn doctor_invalid_plan_metadata_is_an_error() {
    let (mut c, _) = healthy();
    let bad = r#"{"version":1,"steps":[{"application":"web","deploymentGroup":"web-dg","gateTag":"g","timeoutSecs":5}]}"#;
    set_hooks(
        &mut c,
        vec![hook("turnstile-launch", 600, Some(bad.into()))],
    );
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "launch-hook",
        "error",
        "steps[0].timeoutSecs",
        &[
            "turnstile plan check",
            "aws autoscaling put-lifecycle-hook",
            "--notification-metadata file://plan.json",
        ],
    );
    // No metadata at all.
    let (mut c, _) = healthy();
    set_hooks(&mut c, vec![hook("turnstile-launch", 600, None)]);
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "launch-hook",
        "error",
        "no notification metadata",
        &["--notification-metadata"],
    );
}

#[tokio::test]
async fn doctor_a_plan_that_does_not_fit_the_hook_is_an_error() {
    let (mut c, _) = healthy();
    // Two steps of 1800 s against a 30 s heartbeat: global timeout 3000 s.
    set_hooks(&mut c, vec![hook("turnstile-launch", 30, Some(plan()))]);
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "launch-hook",
        "error",
        "add up to 3600 s but the hook's global timeout is 3000 s",
        &[
            "aws autoscaling put-lifecycle-hook",
            "--heartbeat-timeout 36",
        ],
    );
    // A 30 s heartbeat is also below the robust minimum.
    found(
        &ran,
        "launch-hook",
        "warning",
        "below 120 s",
        &["--heartbeat-timeout 600"],
    );
}

#[tokio::test]
async fn doctor_a_leftover_codedeploy_hook_is_an_error() {
    let (mut c, _) = healthy();
    let name = "CodeDeploy-managed-automatic-launch-deployment-hook-old-dg-1234";
    c.asgs
        .get_mut(ASG)
        .unwrap()
        .hooks
        .push(hook(name, 600, None));
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    let f = found(
        &ran,
        "codedeploy-hook",
        "error",
        "CodeDeploy-managed launch hook",
        &[&format!(
            "aws autoscaling delete-lifecycle-hook --auto-scaling-group-name shared-fleet --lifecycle-hook-name {name}"
        )],
    );
    assert_eq!(f["subject"], format!("hook {name}"));
}

#[tokio::test]
async fn doctor_a_propagated_gate_tag_is_an_error() {
    let (mut c, _) = healthy();
    c.tag_asg(ASG, WEB_GATE, "open", true);
    c.tag_asg(ASG, API_GATE, "open", false);
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "propagated-gate",
        "error",
        "turnstile:gate:web=open is propagated at launch",
        &[
            "aws autoscaling create-or-update-tags --tags ResourceId=shared-fleet,ResourceType=auto-scaling-group,Key=turnstile:gate:web,Value=open,PropagateAtLaunch=false",
        ],
    );
    assert_eq!(
        ran.findings("propagated-gate", "error").len(),
        1,
        "the unpropagated one is fine"
    );
}

#[tokio::test]
async fn doctor_a_missing_deployment_group_is_an_error() {
    let (mut c, _) = healthy();
    c.groups.remove(&("api".to_owned(), "api-dg".to_owned()));
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    let f = found(
        &ran,
        "deployment-group",
        "error",
        "api/api-dg does not exist",
        &[
            "steps[1]",
            "aws deploy create-deployment-group --application-name api --deployment-group-name api-dg",
            "--ec2-tag-set",
            "turnstile:gate:api",
        ],
    );
    assert_eq!(f["subject"], "step 2 api/api-dg");
}

#[tokio::test]
async fn doctor_a_group_that_lists_the_asg_is_an_error() {
    let (mut c, _) = healthy();
    c.associate_asg(ASG, &("web".into(), "web-dg".into()));
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    let fix = "aws deploy update-deployment-group --application-name web --current-deployment-group-name web-dg --auto-scaling-groups '[]'";
    found(
        &ran,
        "group-asg",
        "error",
        "lists the Auto Scaling group shared-fleet",
        &[fix],
    );
    // CodeDeploy's hook it installed is named, with the same fix.
    found(
        &ran,
        "codedeploy-hook",
        "error",
        "CodeDeploy-managed launch hook",
        &[fix],
    );
}

#[tokio::test]
async fn doctor_a_gate_inside_another_tag_group_is_an_error() {
    let (mut c, _) = healthy();
    c.groups
        .get_mut(&("web".into(), "web-dg".into()))
        .unwrap()
        .tag_set = vec![vec![
        ("Name".into(), ASG.into()),
        (WEB_GATE.into(), "open".into()),
    ]];
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "gate-tag-group",
        "error",
        "gate turnstile:gate:web=open shares tag group 1 with Name=shared-fleet",
        &[
            "aws deploy update-deployment-group --application-name web --current-deployment-group-name web-dg --ec2-tag-set",
            r#"{"ec2TagSetList":[[{"Key":"Name","Value":"shared-fleet","Type":"KEY_AND_VALUE"}],[{"Key":"turnstile:gate:web","Value":"open","Type":"KEY_AND_VALUE"}]]}"#,
        ],
    );
}

#[tokio::test]
async fn doctor_more_than_three_tag_groups_and_a_missing_gate_are_errors() {
    let (mut c, _) = healthy();
    c.groups
        .get_mut(&("web".into(), "web-dg".into()))
        .unwrap()
        .tag_set = (0..4)
        .map(|i| vec![(format!("k{i}"), "v".into())])
        .collect();
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "tag-groups",
        "error",
        "4 tag groups",
        &["at most 3", "aws deploy update-deployment-group"],
    );
    found(
        &ran,
        "gate-tag-group",
        "error",
        "gate turnstile:gate:web=open missing",
        &["CodeDeploy allows 3", "merge two", "--ec2-tag-set"],
    );
    // A missing gate with room for it: the fix adds it as a group of its own.
    let (mut c, _) = healthy();
    c.groups
        .get_mut(&("api".into(), "api-dg".into()))
        .unwrap()
        .tag_set = vec![vec![("Name".into(), ASG.into())]];
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    found(
        &ran,
        "gate-tag-group",
        "error",
        "gate turnstile:gate:api=open missing",
        &[
            r#"[[{"Key":"Name","Value":"shared-fleet","Type":"KEY_AND_VALUE"}],[{"Key":"turnstile:gate:api","Value":"open","Type":"KEY_AND_VALUE"}]]"#,
        ],
    );
}

#[tokio::test]
async fn doctor_no_target_revision_is_a_warning_with_exit_0() {
    let (mut c, _) = healthy();
    c.groups
        .get_mut(&("api".into(), "api-dg".into()))
        .unwrap()
        .target_revision = None;
    let ran = doctor(c).await;
    assert!(
        ran.exit(Exit::Ok),
        "a warning does not change the exit code"
    );
    found(
        &ran,
        "target-revision",
        "warning",
        "no target revision",
        &["aws deploy create-deployment --application-name api --deployment-group-name api-dg"],
    );
    assert_eq!(ran.json()["summary"]["warnings"], 1);
}

#[tokio::test]
async fn doctor_an_unknown_deployment_config_is_an_error() {
    let (mut c, _) = healthy();
    let p = plan().replace(
        r#""gateTag":"turnstile:gate:api"}"#,
        r#""gateTag":"turnstile:gate:api","deploymentConfig":"Custom.Nope"}"#,
    );
    set_hooks(&mut c, vec![hook("turnstile-launch", 600, Some(p))]);
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    let f = found(
        &ran,
        "deployment-config",
        "error",
        "steps[1].deploymentConfig Custom.Nope does not exist",
        &[
            "steps[1].deploymentConfig",
            "aws deploy create-deployment-config --deployment-config-name Custom.Nope",
        ],
    );
    assert_eq!(f["subject"], "step 2 api/api-dg");
    // The group's own (OneAtATime) and web's override (the default AllAtOnce) exist.
    assert_eq!(ran.findings("deployment-config", "ok").len(), 3);
}

#[tokio::test]
async fn doctor_an_in_service_instance_without_a_gate_is_an_error() {
    let (mut c, ids) = healthy();
    c.delete_tags(&ids[1..], &[API_GATE]);
    // An instance still in its launch (Pending:Wait) is turnstile's to gate: not reported.
    let waiting = c.scale_out(ASG, 1);
    let ran = doctor(c).await;
    assert!(ran.exit(Exit::Problems));
    let f = found(
        &ran,
        "instance-gates",
        "error",
        &format!("1 in-service instance without the gate: {}", ids[1]),
        &[&format!(
            "aws ec2 create-tags --resources {} --tags Key=turnstile:gate:api,Value=open",
            ids[1]
        )],
    );
    assert_eq!(f["subject"], "gate turnstile:gate:api=open");
    assert!(!ran.out.contains(&waiting[0]), "{}", ran.out);
    assert_eq!(ran.findings("instance-gates", "error").len(), 1);
}

#[tokio::test]
async fn doctor_an_unknown_asg_exits_4_and_no_region_exits_5() {
    let (c, _) = healthy();
    let d = Doctor::start(c).await;
    let ran = d.run(&["doctor", "--asg", "nope"]).await;
    assert!(ran.exit(Exit::NotFound), "{} {}", ran.code, ran.err);
    assert!(ran.err.contains("nope does not exist"), "{}", ran.err);
    assert!(ran.out.is_empty());
    let ran = run_binary(&["doctor", "--asg", ASG], None).await;
    assert!(ran.exit(Exit::Precondition), "{} {}", ran.code, ran.err);
    assert!(ran.err.contains("no AWS region"), "{}", ran.err);
}

#[tokio::test]
async fn doctor_help_lists_its_flags_checks_and_exit_codes() {
    let ran = run_binary(&["doctor", "--help"], None).await;
    assert!(ran.exit(Exit::Ok));
    for word in [
        "--asg",
        "--launch-hooks",
        "TURNSTILE_LAUNCH_HOOKS",
        "--output",
        "--profile",
        "--region",
        "CodeDeploy-managed-automatic-launch-deployment-hook-*",
        "PropagateAtLaunch",
        "EXIT CODES",
        "0  no error found",
        "1  an AWS call failed",
        "3  errors found",
        "4  the Auto Scaling group does not exist",
        "5  no AWS region",
    ] {
        assert!(ran.out.contains(word), "`{word}` missing in:\n{}", ran.out);
    }
    let top = run_binary(&["--help"], None).await;
    assert!(top.out.contains("doctor"), "{}", top.out);
}

#[tokio::test]
async fn doctor_table_shows_why_and_fix_under_each_problem() {
    let (mut c, _) = healthy();
    c.associate_asg(ASG, &("web".into(), "web-dg".into()));
    let d = Doctor::start(c).await;
    let ran = d.run(&["doctor", "--asg", ASG]).await;
    print!("{}", ran.out);
    assert!(ran.exit(Exit::Problems));
    let lines: Vec<&str> = ran.out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("error") && l.contains("group-asg"))
        .unwrap();
    assert!(
        lines[at + 1].trim_start().starts_with("why: "),
        "{}",
        ran.out
    );
    assert!(
        lines[at + 2]
            .trim_start()
            .starts_with("fix: aws deploy update-deployment-group")
    );
    assert!(
        ran.out.trim_end().ends_with("2 errors, 0 warnings, 17 ok"),
        "{}",
        ran.out
    );
    assert!(!ran.out.contains('\x1b'));
}
