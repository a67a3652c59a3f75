//! `turnstile status` and `turnstile show` against DynamoDB Local, on records the real runner
//! wrote (support::fleet): two instances deploying step 1 of 2 in one deployment, and one held
//! at launch because its plan cannot fit its hook's global timeout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{DynamoLocal, FLEET, HELD_FLEET, ctx, fleet, run};
use turnstile_cli::Exit;

/// 90 s after the deployment was created.
const LATER_MS: u64 = 90_000;

#[tokio::test]
async fn status_lists_every_pipeline_in_flight_with_step_phase_deployment_and_groups() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-status-table").await;
    let now = f.now() + LATER_MS;
    let ran = run(
        &[
            "status",
            "--table",
            "cli-status-table",
            "--asg",
            FLEET,
            "--asg",
            HELD_FLEET,
        ],
        ctx(now, Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    print!("{}", ran.out);
    let lines: Vec<&str> = ran.out.lines().collect();
    assert!(lines[0].starts_with("ASG "), "a header first: {}", ran.out);
    for id in &f.deploying {
        let line = lines
            .iter()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no line for {id}:\n{}", ran.out));
        for want in ["fleet", "1/2", "app0/dg0", "deploying", "d-"] {
            assert!(line.contains(want), "{want} missing in {line}");
        }
    }
    let held = lines.iter().find(|l| l.contains(f.held.as_str())).unwrap();
    for want in ["held-fleet", "held", "global timeout"] {
        assert!(held.contains(want), "{want} missing in {held}");
    }
    // Columns are aligned: the PHASE column starts at the same offset on every instance line.
    let col = lines[0].find("PHASE").unwrap();
    for l in lines.iter().skip(1).take(3) {
        let word = &l[col..].split_whitespace().next().unwrap();
        assert!(["deploying", "held"].contains(word), "misaligned: {l}");
    }
    // The groups the pipelines use, after a blank line.
    let groups = ran.out.split("\n\n").nth(1).expect("a group table");
    let app0 = groups.lines().find(|l| l.starts_with("app0/dg0")).unwrap();
    assert!(
        app0.contains("ours d-") && app0.contains("2 members") && app0.contains("closed"),
        "{app0}"
    );
    let app1 = groups.lines().find(|l| l.starts_with("app1/dg1")).unwrap();
    assert!(app1.contains("no record (idle)"), "{app1}");
    assert!(groups.contains("app2/dg2"), "{groups}");
    assert!(!ran.out.contains('\x1b'), "no colour when not asked");
}

#[tokio::test]
async fn status_json_is_one_versioned_document_with_deadlines_and_groups() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-status-json").await;
    let now = f.now() + LATER_MS;
    let mut c = ctx(now, Some(db.client()));
    // No --asg: the functions' own variable names the groups.
    c.managed_groups = Some(format!(" {FLEET} , {HELD_FLEET},"));
    let ran = run(
        &["--output", "json", "status", "--table", "cli-status-json"],
        c,
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    let doc = ran.json();
    assert_eq!(doc["schema"], "turnstile.status/v1");
    assert_eq!(doc["asgs"], serde_json::json!([FLEET, HELD_FLEET]));
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3);
    let one = instances
        .iter()
        .find(|i| i["instance"] == f.deploying[0].as_str())
        .unwrap();
    assert_eq!(one["phase"], "deploying");
    assert_eq!(one["step"], 1);
    assert_eq!(one["steps"], 2);
    assert_eq!(one["application"], "app0");
    assert_eq!(one["deploymentGroup"], "dg0");
    assert!(one["deployment"].as_str().unwrap().starts_with("d-"));
    assert!(one["heldReason"].is_null());
    // Launched at model time 1,000 s, 92 s ago; a 600 s heartbeat gives a 60,000 s deadline.
    assert_eq!(one["startedAt"], "1970-01-01T00:16:40Z");
    assert_eq!(one["inPipelineSecs"], 92);
    assert_eq!(one["globalDeadline"], "1970-01-01T16:56:40Z");
    assert_eq!(one["deadlineLeftSecs"], 60_000 - 92);
    let held = instances
        .iter()
        .find(|i| i["instance"] == f.held.as_str())
        .unwrap();
    assert_eq!(held["phase"], "held");
    assert!(
        held["heldReason"].as_str().unwrap().contains("43200 s"),
        "{held}"
    );
    let groups = doc["groups"].as_array().unwrap();
    let app0 = groups.iter().find(|g| g["application"] == "app0").unwrap();
    assert_eq!(app0["active"]["kind"], "ours");
    assert_eq!(app0["active"]["members"], 2);
    assert_eq!(app0["active"]["deployment"], one["deployment"]);
    assert_eq!(app0["waiting"], 0);
    assert_eq!(app0["breaker"]["state"], "closed");
}

#[tokio::test]
async fn status_without_an_asg_says_what_to_pass_and_exits_2() {
    let ran = run(&["status", "--table", "t"], ctx(0, None)).await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.out.is_empty());
    assert!(
        ran.err.contains("--asg") && ran.err.contains("TURNSTILE_MANAGED_GROUPS"),
        "{}",
        ran.err
    );
}

#[tokio::test]
async fn status_with_nothing_in_flight_and_on_a_missing_table() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-status-empty").await;
    let ran = run(
        &[
            "status",
            "--table",
            "cli-status-empty",
            "--asg",
            "another-fleet",
        ],
        ctx(f.now(), Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    assert_eq!(ran.out, "no pipelines in flight in another-fleet\n");
    let ran = run(
        &["status", "--table", "no-such-table", "--asg", FLEET],
        ctx(f.now(), Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Precondition, "{}", ran.err);
    assert!(
        ran.err.contains("no-such-table does not exist"),
        "{}",
        ran.err
    );
}

/// The binary on the SDK's own configuration chain: `AWS_ENDPOINT_URL` reaches DynamoDB Local
/// unchanged, `TURNSTILE_TABLE` and `TURNSTILE_MANAGED_GROUPS` stand in for the flags.
#[tokio::test]
async fn status_through_the_binary_honours_the_aws_environment() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-status-bin").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["status", "-o", "json"])
        .env_clear()
        .env("AWS_ENDPOINT_URL", db.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("TURNSTILE_TABLE", "cli-status-bin")
        .env("TURNSTILE_MANAGED_GROUPS", FLEET)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = f.deploying.iter().map(String::as_str).collect();
    want.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn show_prints_a_deploying_pipeline_step_by_step() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-show").await;
    let now = f.now() + LATER_MS;
    let id = f.deploying[0].as_str();
    let ran = run(
        &["show", id, "--table", "cli-show"],
        ctx(now, Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    print!("{}", ran.out);
    let field = |name: &str| {
        ran.out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{}", ran.out))
            .to_owned()
    };
    assert!(field("instance").ends_with(id));
    assert!(field("asg").ends_with(FLEET));
    assert!(field("phase").contains("deploying (step 1/2), deployment d-"));
    assert!(field("global deadline").contains("1970-01-01T16:56:40Z"));
    assert!(field("last heartbeat").contains("heartbeat timeout 600 s"));
    let steps: Vec<&str> = ran.out.split("\n\n").nth(1).unwrap().lines().collect();
    assert!(steps[0].starts_with("STEP"), "{steps:?}");
    assert!(
        steps[1].starts_with("1 ")
            && steps[1].contains("app0/dg0")
            && steps[1].contains("gate-0=open")
            && steps[1].contains("deploying")
            && steps[1].contains("1/3"),
        "{}",
        steps[1]
    );
    assert!(
        steps[2].starts_with("2 ")
            && steps[2].contains("app1/dg1")
            && steps[2].contains("pending")
            && steps[2].contains("0/3"),
        "{}",
        steps[2]
    );

    let ran = run(
        &["show", id, "--table", "cli-show", "-o", "json"],
        ctx(now, Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    let doc = ran.json();
    assert_eq!(doc["schema"], "turnstile.show/v1");
    assert_eq!(doc["instance"], id);
    assert_eq!(doc["phase"], "deploying");
    assert_eq!(doc["step"], 1);
    assert_eq!(doc["tokenKnown"], true);
    assert_eq!(doc["heartbeat"]["timeoutSecs"], 600);
    assert_eq!(doc["heartbeat"]["hookGlobalTimeoutSecs"], 60_000);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["state"], "deploying");
    assert_eq!(steps[0]["attempts"], 1);
    assert_eq!(steps[0]["allowedAttempts"], 3);
    assert_eq!(steps[0]["deployment"], doc["deployment"]);
    assert!(steps[0]["installed"].is_null());
    assert_eq!(steps[1]["state"], "pending");
    assert_eq!(steps[1]["attempts"], 0);
    assert!(steps[1]["startedAt"].is_null());
}

#[tokio::test]
async fn show_of_a_held_pipeline_gives_the_hold_reason_and_unknown_exits_4() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-show-held").await;
    let now = f.now() + LATER_MS;
    let ran = run(
        &["show", &f.held, "--table", "cli-show-held"],
        ctx(now, Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    let reason = ran
        .out
        .lines()
        .find(|l| l.starts_with("hold reason"))
        .unwrap();
    assert!(
        reason.contains("add up to 43200 s") && reason.contains("30000 s"),
        "{reason}"
    );
    assert!(
        ran.out
            .lines()
            .any(|l| l.starts_with("phase") && l.contains("held")),
        "{}",
        ran.out
    );
    assert!(
        ran.out.lines().any(|l| l.starts_with("InstanceHeld ")),
        "the alert table lists the hold's alert:\n{}",
        ran.out
    );

    let ran = run(
        &[
            "show",
            f.held.as_str(),
            "--table",
            "cli-show-held",
            "-o",
            "json",
        ],
        ctx(now, Some(db.client())),
    )
    .await;
    let doc = ran.json();
    assert_eq!(doc["phase"], "held");
    assert!(doc["heldReason"].as_str().unwrap().contains("43200"));
    assert!(doc["heldSince"].is_string());
    // The alert the hold raised is in the record: no log search needed.
    let alerts = doc["alerts"].as_array().unwrap();
    assert!(
        alerts.iter().any(
            |a| a["kind"] == "InstanceHeld" && a["message"].as_str().unwrap().contains("43200")
        ),
        "{doc:#}"
    );

    let ran = run(
        &["show", "i-0000000000000dead", "--table", "cli-show-held"],
        ctx(now, Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::NotFound);
    assert!(ran.out.is_empty(), "nothing on stdout: {}", ran.out);
    assert!(
        ran.err
            .contains("no pipeline record for i-0000000000000dead"),
        "{}",
        ran.err
    );
}

/// The binary with no AWS region anywhere in the SDK's chain: a precondition, exit 5.
#[tokio::test]
async fn status_without_an_aws_region_exits_5() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["status", "--table", "t", "--asg", FLEET])
        .env_clear()
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no AWS region"));
}

#[tokio::test]
async fn status_watch_prints_one_document_per_refresh() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-status-watch").await;
    let ran = run(
        &[
            "status",
            "--table",
            "cli-status-watch",
            "--asg",
            FLEET,
            "--watch",
            "--interval",
            "0",
            "--count",
            "3",
            "--output",
            "json",
        ],
        ctx(f.now(), Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    let docs: Vec<serde_json::Value> = ran
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "one JSON document per line per refresh");
    for d in &docs {
        assert_eq!(d["schema"], "turnstile.status/v1");
        assert_eq!(d["instances"].as_array().unwrap().len(), 2);
    }
    let tables = run(
        &[
            "status",
            "--table",
            "cli-status-watch",
            "--asg",
            FLEET,
            "--watch",
            "--interval",
            "0",
            "--count",
            "2",
        ],
        ctx(f.now(), Some(db.client())),
    )
    .await;
    assert_eq!(tables.exit, Exit::Ok, "{}", tables.err);
    assert_eq!(
        tables.out.matches("(every 0 s)").count(),
        2,
        "each refresh headed by its time:\n{}",
        tables.out
    );
}
