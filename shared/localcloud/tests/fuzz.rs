//! Fuzz targets (bolero; `make fuzz` runs them longer) for what the local cloud parses: the
//! scenario loader (TOML files users write) and the simulator's Query (form) and JSON 1.1
//! request parsing, which every SDK call of the tests goes through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use turnstile_fuzzing::{Edit, mutate, seeds};
use turnstile_localcloud::wire::{Simulator, WireFaults, codedeploy, query};
use turnstile_localcloud::{Mode, Scenario};

/// Never panics; a scenario it accepts has a plan the core accepts and a timeline in order.
#[test]
fn fuzz_scenario_loader_never_panics() {
    let mut corpus = seeds("scenarios", &[".toml"]);
    corpus.extend(seeds("tests/fixtures/fuzz/scenario", &[""]));
    assert!(corpus.len() >= 3, "the shipped scenarios seed the corpus");
    bolero::check!()
        .with_type::<(u16, Vec<Edit>)>()
        .for_each(|(pick, edits)| {
            let text = String::from_utf8_lossy(&mutate(&corpus, *pick, edits)).into_owned();
            if let Ok(s) = Scenario::parse("fuzz", &text) {
                assert!(turnstile_core::Plan::parse(&s.plan_json()).is_ok());
                let script = s.script();
                assert!(script.windows(2).all(|w| w[0].0 <= w[1].0));
            }
        });
}

/// A simulator over the default scenario's fleet with a few instances waiting.
fn simulator() -> std::sync::Arc<Simulator> {
    let path = turnstile_fuzzing::root().join("scenarios/default.toml");
    let s = Scenario::load(&path).unwrap();
    let mut cloud = s.cloud(Mode::Orchestrator);
    cloud.scale_out(&s.fleet.auto_scaling_group, 3);
    Simulator::new(cloud, WireFaults::default(), 1)
}

const QUERY: &[&str] = &[
    "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=i-00000000000000001&Filter.2.Name=key&Filter.2.Value.1=turnstile%3Aready&MaxResults=5",
    "Action=CreateTags&Version=2016-11-15&ResourceId.1=i-00000000000000001&Tag.1.Key=turnstile%3Agate%3Abase&Tag.1.Value=open",
    "Action=DeleteTags&Version=2016-11-15&ResourceId.1=i-00000000000000002&Tag.1.Key=turnstile%3Agate%3Abase",
    "Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=shared-fleet&MaxRecords=50",
    "Action=DescribeWarmPool&Version=2011-01-01&AutoScalingGroupName=shared-fleet&MaxRecords=10",
    "Action=DescribeLifecycleHooks&Version=2011-01-01&AutoScalingGroupName=shared-fleet&LifecycleHookNames.member.1=turnstile-launch",
    "Action=RecordLifecycleActionHeartbeat&Version=2011-01-01&AutoScalingGroupName=shared-fleet&LifecycleHookName=turnstile-launch&InstanceId=i-00000000000000001",
    "Action=CompleteLifecycleAction&Version=2011-01-01&AutoScalingGroupName=shared-fleet&LifecycleHookName=turnstile-launch&InstanceId=i-00000000000000003&LifecycleActionResult=CONTINUE",
];

const JSON: &[(&str, &str)] = &[
    (
        "GetDeploymentGroup",
        r#"{"applicationName":"base","deploymentGroupName":"base-fleet"}"#,
    ),
    (
        "GetDeploymentConfig",
        r#"{"deploymentConfigName":"CodeDeployDefault.AllAtOnce"}"#,
    ),
    (
        "CreateDeployment",
        r#"{"applicationName":"base","deploymentGroupName":"base-fleet","description":"turnstile intent=x","updateOutdatedInstancesOnly":true,"revision":{"revisionType":"S3","s3Location":{"bucket":"b","key":"k","bundleType":"zip"}}}"#,
    ),
    (
        "ListDeployments",
        r#"{"applicationName":"base","deploymentGroupName":"base-fleet","createTimeRange":{"start":0}}"#,
    ),
    ("GetDeployment", r#"{"deploymentId":"d-1"}"#),
    (
        "ListDeploymentTargets",
        r#"{"deploymentId":"d-1","nextToken":"0"}"#,
    ),
    (
        "BatchGetDeploymentTargets",
        r#"{"deploymentId":"d-1","targetIds":["i-00000000000000001"]}"#,
    ),
    ("StopDeployment", r#"{"deploymentId":"d-1"}"#),
];

/// Never panics, and every answer is a well-formed reply: a status AWS uses and a body (an
/// error document for a request it cannot read).
#[test]
fn fuzz_simulator_query_and_json_requests_never_panic() {
    let sim = simulator();
    let mut forms: Vec<Vec<u8>> = QUERY.iter().map(|q| q.as_bytes().to_vec()).collect();
    forms.extend(seeds("tests/fixtures/fuzz/wire", &[""]));
    let bodies: Vec<Vec<u8>> = JSON.iter().map(|(_, b)| b.as_bytes().to_vec()).collect();
    bolero::check!()
        .with_type::<(bool, u16, Vec<Edit>)>()
        .for_each(|(json, pick, edits)| {
            let reply = if *json {
                let body = mutate(&bodies, *pick, edits);
                let (op, _) = JSON[usize::from(*pick) % JSON.len()];
                codedeploy::handle(&sim, &format!("CodeDeploy_20141006.{op}"), &body, "fuzz")
            } else {
                query::handle(&sim, &mutate(&forms, *pick, edits), "fuzz")
            };
            let status = reply.status.as_u16();
            assert!((200..600).contains(&status), "{status}");
            assert!(!reply.body.is_empty(), "status {status} with no body");
        });
}
