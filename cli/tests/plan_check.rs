//! `turnstile plan check`: offline, in-process and through the binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{ctx, fixture, run};
use turnstile_cli::Exit;

#[tokio::test]
async fn plan_check_an_invalid_plan_exits_3_and_names_every_bad_field() {
    let ran = run(
        &["plan", "check", &fixture("invalid-plan.json")],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Problems, "{}{}", ran.out, ran.err);
    print!("{}", ran.out);
    for field in [
        "version",
        "steps[0].gateTag",
        "steps[0].timeoutSecs",
        "steps[1].retries",
        "steps[1].deploymentGroup",
        "steps[1].gateTag",
        "maxBatch",
        "breaker.threshold",
    ] {
        assert!(
            ran.out.lines().any(|l| l.starts_with(&format!("{field} "))),
            "{field} is not named:\n{}",
            ran.out
        );
    }
    assert!(ran.out.trim_end().ends_with("9 problems"), "{}", ran.out);
    assert!(
        ran.err.is_empty(),
        "problems are data, on stdout: {}",
        ran.err
    );
}

#[tokio::test]
async fn plan_check_a_valid_plan_exits_0_and_shows_the_timeout_arithmetic() {
    let ran = run(
        &["plan", "check", &fixture("valid-plan.json")],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}{}", ran.out, ran.err);
    print!("{}", ran.out);
    assert!(ran.out.contains("web/web-dg") && ran.out.contains("api/api-dg"));
    assert!(
        ran.out.contains(
            "timeouts: 1800 + 900 = 2700 s (45m00s); hook global timeout = min(100 × 600 s, 172800 s) = 60000 s (16h40m): fits"
        ),
        "{}",
        ran.out
    );
    assert!(ran.out.trim_end().ends_with("valid"));
}

#[tokio::test]
async fn plan_check_json_is_one_versioned_document() {
    let ran = run(
        &[
            "plan",
            "check",
            "--output",
            "json",
            &fixture("invalid-plan.json"),
        ],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Problems);
    let doc = ran.json();
    assert_eq!(doc["schema"], "turnstile.plan-check/v1");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["issues"].as_array().unwrap().len(), 9);
    assert!(
        doc["timeouts"].is_null(),
        "no arithmetic for a plan that does not parse"
    );

    let ran = run(
        &["-o", "json", "plan", "check", &fixture("valid-plan.json")],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok);
    let doc = ran.json();
    assert_eq!(doc["schema"], "turnstile.plan-check/v1");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["issues"], serde_json::json!([]));
    assert_eq!(doc["timeouts"]["totalSecs"], 2700);
    assert_eq!(doc["timeouts"]["hookGlobalTimeoutSecs"], 60_000);
    assert_eq!(doc["timeouts"]["fits"], true);
    assert_eq!(doc["plan"]["steps"][0]["retries"], 1, "defaults applied");
}

#[tokio::test]
async fn plan_check_reports_step_timeouts_that_cannot_fit_the_hooks_global_timeout() {
    // 2 × 43,200 s against min(100 × 600 s, 48 h) = 60,000 s.
    let ran = run(
        &["plan", "check", &fixture("too-long-plan.json")],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Problems, "{}", ran.out);
    assert!(ran.out.contains("43200 + 43200 = 86400 s"), "{}", ran.out);
    assert!(
        ran.out.contains("= 60000 s (16h40m): does not fit"),
        "{}",
        ran.out
    );
    let issue = ran
        .out
        .lines()
        .find(|l| l.starts_with("steps[*].timeoutSecs"))
        .unwrap_or_else(|| panic!("no issue:\n{}", ran.out));
    assert!(
        issue.contains("86400 s") && issue.contains("60000 s"),
        "{issue}"
    );

    // A 900 s heartbeat gives 90,000 s: it fits.
    let ran = run(
        &[
            "-o",
            "json",
            "plan",
            "check",
            "--heartbeat-timeout",
            "900",
            &fixture("too-long-plan.json"),
        ],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.out);
    assert_eq!(ran.json()["timeouts"]["hookGlobalTimeoutSecs"], 90_000);

    // The 48 h cap: 7,200 s × 100 would be 720,000 s.
    let ran = run(
        &[
            "-o",
            "json",
            "plan",
            "check",
            "--heartbeat-timeout",
            "7200",
            &fixture("too-long-plan.json"),
        ],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.json()["timeouts"]["hookGlobalTimeoutSecs"], 172_800);
}

#[tokio::test]
async fn plan_check_reads_hook_metadata_as_stored_and_stdin() {
    // The plan as a JSON string: the NotificationMetadata value itself.
    let ran = run(
        &["plan", "check", &fixture("hook-metadata.json")],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.out);
    // One hook as describe-lifecycle-hooks prints it, on stdin.
    let plan = std::fs::read_to_string(fixture("invalid-plan.json")).unwrap();
    let hook = serde_json::json!({
        "LifecycleHookName": "turnstile-launch",
        "AutoScalingGroupName": "fleet",
        "NotificationMetadata": plan,
        "HeartbeatTimeout": 600,
    });
    let mut c = ctx(0, None);
    c.stdin = Box::new(std::io::Cursor::new(hook.to_string().into_bytes()));
    let ran = run(&["-o", "json", "plan", "check", "-"], c).await;
    assert_eq!(ran.exit, Exit::Problems);
    let doc = ran.json();
    assert_eq!(doc["file"], "(stdin)");
    assert_eq!(doc["issues"].as_array().unwrap().len(), 9);
    // Not JSON at all: one issue at the root.
    let mut c = ctx(0, None);
    c.stdin = Box::new(std::io::Cursor::new(b"additional-info".to_vec()));
    let ran = run(&["plan", "check", "-"], c).await;
    assert_eq!(ran.exit, Exit::Problems);
    assert!(ran.out.lines().any(|l| l.starts_with("$ ")), "{}", ran.out);
}

#[tokio::test]
async fn plan_check_of_a_missing_file_fails_with_1_and_bad_flags_are_usage() {
    let ran = run(&["plan", "check", "/nonexistent/plan.json"], ctx(0, None)).await;
    assert_eq!(ran.exit, Exit::Failure);
    assert!(ran.err.contains("/nonexistent/plan.json"), "{}", ran.err);
    let ran = run(
        &[
            "plan",
            "check",
            "--heartbeat-timeout",
            "5",
            &fixture("valid-plan.json"),
        ],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(
        ran.err.contains("30..=7200") || ran.err.contains("30..7201"),
        "{}",
        ran.err
    );
}

/// The binary itself: exit codes reach the shell, `-` reads stdin, data on stdout only.
#[tokio::test]
async fn plan_check_through_the_binary_exits_3_and_0() {
    use tokio::io::AsyncWriteExt;
    let bin = env!("CARGO_BIN_EXE_turnstile");
    let out = tokio::process::Command::new(bin)
        .args(["plan", "check", &fixture("invalid-plan.json")])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("steps[1].retries"));

    let mut child = tokio::process::Command::new(bin)
        .args(["plan", "check", "-o", "json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let plan = std::fs::read(fixture("valid-plan.json")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&plan).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
}

/// A plan outside the stack's scope is refused as the functions refuse it, each field named:
/// a gate outside `--gate-prefix`, a step of an application outside `--applications`.
#[tokio::test]
async fn hostile_plan_check_refuses_what_the_stacks_scope_leaves_out() {
    let file = fixture("valid-plan.json");
    let ran = run(&["plan", "check", &file], ctx(0, None)).await;
    assert_eq!(ran.exit, Exit::Ok, "no scope given: {}{}", ran.out, ran.err);
    let ran = run(
        &[
            "plan",
            "check",
            &file,
            "--gate-prefix",
            "team-b:gate:",
            "--applications",
            "web,unrelated",
        ],
        ctx(0, None),
    )
    .await;
    assert_eq!(ran.exit, Exit::Problems, "{}{}", ran.out, ran.err);
    assert!(ran.out.contains("steps[0].gateTag"), "{}", ran.out);
    assert!(
        ran.out.contains("gate tag prefix `team-b:gate:`"),
        "{}",
        ran.out
    );
    assert!(
        ran.out
            .contains("is not one of the stack's managed applications (unrelated, web)"),
        "{}",
        ran.out
    );
    assert!(
        !ran.out.contains("steps[0].application"),
        "web is managed: {}",
        ran.out
    );
}
