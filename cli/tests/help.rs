//! Every `--help` states what it should: the exit codes and every flag.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{ctx, run};
use turnstile_cli::Exit;

const GLOBAL_FLAGS: &[&str] = &["--output", "--profile", "--region", "--table"];

async fn help(args: &[&str]) -> String {
    let ran = run(args, ctx(0, None)).await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    assert!(ran.err.is_empty());
    ran.out
}

#[tokio::test]
async fn help_top_level_states_every_exit_code_command_flag_and_variable() {
    let text = help(&["--help"]).await;
    print!("{text}");
    for code in [
        "0  ok",
        "1  failure",
        "2  usage",
        "3  a check found problems",
        "4  not found",
        "5  precondition not met",
    ] {
        assert!(text.contains(code), "exit code `{code}` missing");
    }
    for word in [
        "plan",
        "status",
        "show",
        "retry",
        "abandon",
        "skip-failed-step",
        "breaker",
        "pause",
        "resume",
        "doctor",
        "dlq",
    ]
    .iter()
    .chain(GLOBAL_FLAGS)
    .chain(&[
        "TURNSTILE_TABLE",
        "TURNSTILE_QUEUE_URL",
        "TURNSTILE_MANAGED_GROUPS",
        "AWS_ENDPOINT_URL",
        "NO_COLOR",
    ]) {
        assert!(text.contains(word), "`{word}` missing");
    }
}

#[tokio::test]
async fn help_plan_check_states_its_flags_and_exit_codes() {
    let text = help(&["plan", "check", "--help"]).await;
    for word in [
        "FILE",
        "--heartbeat-timeout",
        "stdin",
        "NotificationMetadata",
        "EXIT CODES",
        "3  problems",
    ]
    .iter()
    .chain(GLOBAL_FLAGS)
    {
        assert!(text.contains(word), "`{word}` missing in:\n{text}");
    }
    let text = help(&["plan", "--help"]).await;
    assert!(text.contains("check"));
}

#[tokio::test]
async fn help_status_states_its_flags_phases_and_exit_codes() {
    let text = help(&["status", "--help"]).await;
    for word in [
        "--asg",
        "TURNSTILE_MANAGED_GROUPS",
        "deploying",
        "held",
        "EXIT CODES",
        "5  no AWS region",
    ]
    .iter()
    .chain(GLOBAL_FLAGS)
    {
        assert!(text.contains(word), "`{word}` missing in:\n{text}");
    }
}

#[tokio::test]
async fn help_show_states_its_flags_and_exit_codes() {
    let text = help(&["show", "--help"]).await;
    for word in ["INSTANCE", "EXIT CODES", "4  no record"]
        .iter()
        .chain(GLOBAL_FLAGS)
    {
        assert!(text.contains(word), "`{word}` missing in:\n{text}");
    }
}

#[tokio::test]
async fn help_a_bad_command_line_exits_2_on_stderr() {
    let ran = run(&["staus"], ctx(0, None)).await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.out.is_empty());
    assert!(
        ran.err.contains("status"),
        "clap suggests the command: {}",
        ran.err
    );
}

#[tokio::test]
async fn help_of_every_action_states_its_flags_and_exit_codes() {
    for (args, codes) in [
        (
            vec!["retry", "--help"],
            vec!["0  applied", "4  no record", "5  not held"],
        ),
        (
            vec!["abandon", "--help"],
            vec!["0  applied", "2  usage", "--yes", "ABANDON"],
        ),
        (
            vec!["breaker", "reset", "--help"],
            vec!["0  applied", "5  nothing to reset"],
        ),
        (
            vec!["pause", "--help"],
            vec!["0  applied", "5  already paused", "global timeout"],
        ),
        (
            vec!["resume", "--help"],
            vec!["0  applied", "5  not paused"],
        ),
    ] {
        let text = help(&args).await;
        for word in codes.iter().chain(&[
            "--reason",
            "--dry-run",
            "--yes",
            "--wait-secs",
            "--queue-url",
            "EXIT CODES",
        ]) {
            assert!(text.contains(word), "{args:?}: `{word}` missing:\n{text}");
        }
        assert!(
            !text.contains("--poll-ms"),
            "the test-only flag stays hidden"
        );
    }
}

#[tokio::test]
async fn help_dlq_states_its_flags_and_exit_codes() {
    for args in [["dlq", "list", "--help"], ["dlq", "redrive", "--help"]] {
        let text = help(&args).await;
        for word in [
            "--dlq-url",
            "--max",
            "EXIT CODES",
            "0  ok",
            "1  an SQS call failed",
        ] {
            assert!(text.contains(word), "{args:?}: `{word}` missing:\n{text}");
        }
    }
    let text = help(&["dlq", "redrive", "--help"]).await;
    for word in ["--id", "--dry-run", "4  redrive --id"] {
        assert!(text.contains(word), "`{word}` missing:\n{text}");
    }
}
