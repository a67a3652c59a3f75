//! Each JSON document against its schema under `cli/schemas/`.
//!
//! The schemas are standard JSON Schema (2020-12), so consumers can validate with any tool.
//! Here a small checker reads them: it knows the keywords the schemas use (`type`, `const`,
//! `enum`, `required`, `properties`, `additionalProperties: false`, `items`, `minimum`,
//! `format: date-time`) and fails on any other, so a schema cannot silently use a keyword
//! that is not checked. The `jsonschema` crate would do the same for three small documents at
//! the cost of a large dependency tree (regex engines, an HTTP client for remote references).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod doctor_fleet;
mod support;

use serde_json::{Value, json};
use support::{DynamoLocal, FLEET, HELD_FLEET, ctx, fixture, fleet, run};
use turnstile_cli::Exit;

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "const",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minimum",
    "format",
];

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every way `v` breaks `schema`, with its path.
fn check(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let s = schema.as_object().expect("a schema is an object");
    for k in s.keys() {
        assert!(
            KNOWN.contains(&k.as_str()),
            "{path}: the checker does not know `{k}`"
        );
    }
    if let Some(t) = s.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("{path}: bad type"),
        };
        let have = type_of(v);
        let fits = allowed.contains(&have) || (have == "integer" && allowed.contains(&"number"));
        if !fits {
            errors.push(format!("{path}: is {have}, expected {allowed:?}"));
            return;
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errors.push(format!("{path}: is {v}, expected {c}"));
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        errors.push(format!("{path}: {v} is not one of {options:?}"));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errors.push(format!("{path}: {n} < {min}"));
    }
    if s.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(t) = v.as_str()
    {
        match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(d) if t.ends_with('Z') && d.offset().local_minus_utc() == 0 => {}
            _ => errors.push(format!("{path}: `{t}` is not RFC 3339 UTC")),
        }
    }
    if let Value::Object(o) = v {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !o.contains_key(r) {
                errors.push(format!("{path}: `{r}` is missing"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => check(sub, x, &format!("{path}.{k}"), errors),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{path}: `{k}` is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(xs), Some(items)) = (v, s.get("items")) {
        for (i, x) in xs.iter().enumerate() {
            check(items, x, &format!("{path}[{i}]"), errors);
        }
    }
}

fn schema(name: &str) -> Value {
    let path = format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn assert_valid(schema: &Value, doc: &Value) {
    let mut errors = Vec::new();
    check(schema, doc, "$", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}\nin {doc:#}");
}

#[test]
fn schema_checker_catches_missing_fields_wrong_types_and_strays() {
    let s = schema("plan-check.v1.json");
    let doc = json!({
        "schema": "turnstile.plan-check/v2",
        "file": 7,
        "valid": true,
        "issues": [{"field": "x"}],
        "warnings": [],
        "timeouts": null,
        "extra": 1,
    });
    let mut errors = Vec::new();
    check(&s, &doc, "$", &mut errors);
    let all = errors.join("\n");
    for want in [
        "$.schema",
        "$.file: is integer",
        "$.issues[0]: `reason` is missing",
        "`plan` is missing",
        "`extra` is not in the schema",
    ] {
        assert!(all.contains(want), "{want} not caught:\n{all}");
    }
}

/// A correct fleet, and broken ones that fill every optional field (no plan; errors with
/// fixes; a warning).
#[tokio::test]
async fn schema_doctor_v1_documents() {
    let s = schema("doctor.v1.json");
    let (ok, _) = doctor_fleet::healthy();
    let (mut broken, ids) = doctor_fleet::healthy();
    broken.associate_asg(doctor_fleet::ASG, &("web".into(), "web-dg".into()));
    broken.delete_tags(&ids, &[doctor_fleet::WEB_GATE]);
    if let Some(g) = broken.groups.get_mut(&("api".into(), "api-dg".into())) {
        g.target_revision = None;
    }
    let (mut no_plan, _) = doctor_fleet::healthy();
    if let Some(a) = no_plan.asgs.get_mut(doctor_fleet::ASG) {
        a.hooks.clear();
    }
    for (cloud, exit) in [
        (ok, Exit::Ok),
        (broken, Exit::Problems),
        (no_plan, Exit::Problems),
    ] {
        let d = doctor_fleet::Doctor::start(cloud).await;
        let ran = d
            .run(&["-o", "json", "doctor", "--asg", doctor_fleet::ASG])
            .await;
        assert!(ran.exit(exit), "exit {}: {}", ran.code, ran.err);
        assert_valid(&s, &ran.json());
    }
}

#[tokio::test]
async fn schema_plan_check_v1_documents() {
    let s = schema("plan-check.v1.json");
    for (file, exit) in [
        ("valid-plan.json", Exit::Ok),
        ("invalid-plan.json", Exit::Problems),
        ("too-long-plan.json", Exit::Problems),
        ("hook-metadata.json", Exit::Ok),
    ] {
        let ran = run(
            &[
                "-o",
                "json",
                "plan",
                "check",
                "--heartbeat-timeout",
                "60",
                &fixture(file),
            ],
            ctx(0, None),
        )
        .await;
        assert_eq!(ran.exit, exit, "{file}");
        assert_valid(&s, &ran.json());
    }
}

#[tokio::test]
async fn schema_status_v1_and_show_v1_documents() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-schemas").await;
    let now = f.now() + 90_000;
    let ran = run(
        &[
            "-o",
            "json",
            "status",
            "--table",
            "cli-schemas",
            "--asg",
            FLEET,
            "--asg",
            HELD_FLEET,
            "--asg",
            "empty",
        ],
        ctx(now, Some(db.client())),
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    assert_valid(&schema("status.v1.json"), &ran.json());

    let show = schema("show.v1.json");
    for id in [f.deploying[0].as_str(), f.held.as_str()] {
        let ran = run(
            &["-o", "json", "show", id, "--table", "cli-schemas"],
            ctx(now, Some(db.client())),
        )
        .await;
        assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
        assert_valid(&show, &ran.json());
    }
}

#[tokio::test]
async fn schema_action_v1_documents() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-schemas-action").await;
    let action = schema("action.v1.json");
    for args in [
        vec!["abandon", f.held.as_str(), "--yes"],
        vec!["retry", f.held.as_str()],
    ] {
        let mut all = vec!["-o", "json"];
        all.extend(args);
        all.extend([
            "--reason",
            "checking the schema",
            "--dry-run",
            "--table",
            "cli-schemas-action",
            "--queue-url",
            "http://127.0.0.1:1/unused",
        ]);
        let ran = run(&all, ctx(f.now(), Some(db.client()))).await;
        assert_eq!(ran.exit, Exit::Ok, "{all:?}: {}", ran.err);
        assert_valid(&action, &ran.json());
    }
}

#[tokio::test]
async fn schema_dlq_v1_and_dlq_redrive_v1_documents() {
    let moto = turnstile_harness::moto_server().unwrap();
    let conf = turnstile_harness::sdk_config(&moto.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let mut urls = Vec::new();
    for name in ["q", "dlq"] {
        urls.push(
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap(),
        );
    }
    for body in [
        "not json",
        r#"{"turnstile":"wakeup","key":{"Instance":"i-1"}}"#,
    ] {
        sqs.send_message()
            .queue_url(&urls[1])
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    for (args, file) in [
        (vec!["list"], "dlq.v1.json"),
        (vec!["redrive", "--dry-run"], "dlq-redrive.v1.json"),
        (vec!["redrive"], "dlq-redrive.v1.json"),
    ] {
        let mut all = vec!["-o", "json", "dlq"];
        all.extend(args);
        all.extend(["--dlq-url", &urls[1], "--queue-url", &urls[0]]);
        let mut c = ctx(0, None);
        c.sqs = Some(sqs.clone());
        let ran = run(&all, c).await;
        assert_eq!(ran.exit, Exit::Ok, "{all:?}: {}", ran.err);
        assert_valid(&schema(file), &ran.json());
    }
}

#[tokio::test]
async fn schema_actions_v1_documents() {
    let db = DynamoLocal::start();
    let f = fleet(&db, "cli-schemas-actions").await;
    let (cloud, _) = doctor_fleet::healthy();
    let sim = turnstile_localcloud::wire::Simulator::new(
        cloud,
        turnstile_localcloud::wire::WireFaults::default(),
        1,
    );
    let server = turnstile_localcloud::wire::serve(sim).await.unwrap();
    let conf = turnstile_harness::sdk_config(&server.endpoint()).await;
    let mut c = ctx(f.now(), Some(db.client()));
    c.autoscaling = Some(aws_sdk_autoscaling::Client::new(&conf));
    let ran = run(
        &[
            "-o",
            "json",
            "pause",
            "--asg",
            doctor_fleet::ASG,
            "--reason",
            "checking the schema",
            "--dry-run",
            "--table",
            "cli-schemas-actions",
            "--queue-url",
            "http://127.0.0.1:1/unused",
        ],
        c,
    )
    .await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    let doc = ran.json();
    assert_valid(&schema("actions.v1.json"), &doc);
    let targets: Vec<&str> = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["web/web-dg", "api/api-dg"], "in plan order");
}
