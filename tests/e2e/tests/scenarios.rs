//! End-to-end: scenarios through the real handlers on the local cloud (the wire-protocol
//! simulator of Auto Scaling, EC2 and CodeDeploy; EventBridge and SQS on moto; DynamoDB Local),
//! asserting on the simulator's record. Each test starts its own stand-ins on free ports and
//! stops them by PID.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use turnstile_localcloud::report::{Summary, render_run};
use turnstile_localcloud::scenario::{LAUNCH_HOOK, TERMINATE_HOOK};
use turnstile_localcloud::{Mode, RunRecord, Scenario, Stack, run};
use turnstile_model::{Creator, DeploymentStatus, Fact, HookResult, InstanceState};

/// A scenario with `groups` deployment groups `g0`..; `group` is appended to each group table
/// and `rest` to the file.
fn scenario(groups: usize, group: &str, rest: &str) -> String {
    let mut s = String::from(
        "name = \"e2e\"\nseed = 11\nhorizon_secs = 3600\n[fleet]\nauto_scaling_group = \"fleet\"\nheartbeat_timeout_secs = 300\n",
    );
    for i in 0..groups {
        s.push_str(&format!(
            "[[groups]]\napplication = \"app{i}\"\ndeployment_group = \"g{i}\"\nduration_secs = [30, 60]\n{group}\n"
        ));
    }
    s.push_str(rest);
    s
}

async fn run_orchestrated(toml: &str) -> (Scenario, RunRecord) {
    let scenario = Scenario::parse("e2e", toml).unwrap();
    let stack = Stack::start().unwrap();
    let record = run(Some(&stack), &scenario, Mode::Orchestrator)
        .await
        .unwrap();
    let summary = Summary::of(&record, &scenario);
    println!("{}", render_run(&record, &scenario, &summary));
    (scenario, record)
}

fn assert_clean(r: &RunRecord) {
    assert!(r.violations.is_empty(), "invariants: {:#?}", r.violations);
    assert_eq!(r.activity.dead_lettered, 0, "nothing may reach the DLQ");
}

/// Every instance launched went InService with every group, installed in plan order.
fn assert_all_in_service(s: &Scenario, r: &RunRecord) {
    let steps = s.steps();
    for i in r.cloud.instances.values() {
        assert_eq!(
            i.state,
            InstanceState::InService,
            "{} is {:?}",
            i.id,
            i.state
        );
        let mut order: Vec<(u64, usize)> = r
            .cloud
            .facts
            .iter()
            .filter_map(|f| match f {
                Fact::Installed {
                    instance,
                    group,
                    at,
                    ..
                } if *instance == i.id => Some((*at, steps.iter().position(|g| g == group)?)),
                _ => None,
            })
            .collect();
        order.sort();
        // First installations (a user's later deployment may install a group again).
        let mut steps_in_order: Vec<usize> = Vec::new();
        for (_, k) in order {
            if !steps_in_order.contains(&k) {
                steps_in_order.push(k);
            }
        }
        assert_eq!(
            steps_in_order,
            (0..steps.len()).collect::<Vec<_>>(),
            "{}",
            i.id
        );
    }
}

/// Deployments turnstile created, per group.
fn ours(r: &RunRecord) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in r.cloud.deployments.values() {
        if d.description.starts_with("turnstile intent=") {
            *m.entry(d.group.1.clone()).or_default() += 1;
        }
    }
    m
}

fn completions(r: &RunRecord, result: HookResult) -> usize {
    r.cloud
        .facts
        .iter()
        .filter(|f| matches!(f, Fact::Completed { hook, result: x, .. } if hook == LAUNCH_HOOK && *x == result))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_six_groups() {
    let (s, r) = run_orchestrated(&scenario(6, "", "[[events]]\nat_secs = 0\nlaunch = 4\n")).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    assert_eq!(completions(&r, HookResult::Continue), 4);
    assert_eq!(ours(&r).len(), 6, "every group deployed: {:?}", ours(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_then_succeeding_on_retry() {
    let toml = scenario(3, "", "[[events]]\nat_secs = 0\nlaunch = 1\n").replace(
        "application = \"app1\"",
        "application = \"app1\"\nfail_first = 1",
    );
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    assert_eq!(ours(&r)["g1"], 2, "the failed attempt and the retry");
    assert_eq!(ours(&r)["g0"], 1);
    let failed = r
        .cloud
        .deployments
        .values()
        .filter(|d| d.group.1 == "g1" && d.status == DeploymentStatus::Failed)
        .count();
    assert_eq!(failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_for_good_abandons_and_the_breaker_holds() {
    let toml = scenario(
        2,
        "retries = 0",
        "[orchestrator]\nbreaker_threshold = 2\n[[events]]\nat_secs = 0\nlaunch = 1\n",
    )
    .replace(
        "application = \"app1\"",
        "application = \"app1\"\nfail_rate = 1.0",
    )
    .replace("horizon_secs = 3600", "horizon_secs = 1500");
    let (_, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert!(
        completions(&r, HookResult::Abandon) >= 2,
        "abandoned until the breaker opened"
    );
    assert_eq!(completions(&r, HookResult::Continue), 0);
    assert!(!r.held.is_empty(), "the breaker holds the next replacement");
    assert!(r.activity.alerts >= 1, "holding raises an alert");
    for id in &r.held {
        assert_eq!(r.cloud.instances[id].state, InstanceState::PendingWait);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_during_a_deployment_stops_it_and_frees_the_group() {
    let toml = scenario(
        2,
        "",
        "[[events]]\nat_secs = 0\nlaunch = 1\n[[events]]\nat_secs = 20\nterminate = 1\n",
    )
    .replace("duration_secs = [30, 60]", "duration_secs = [200, 200]");
    let (_, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    let i = r.cloud.instances.values().next().unwrap();
    assert_eq!(i.state, InstanceState::Terminated);
    assert!(r.cloud.deployments.values().all(|d| !d.status.is_active()));
    let d = r
        .cloud
        .deployments
        .values()
        .find(|d| d.group.1 == "g0")
        .unwrap();
    assert_ne!(d.status, DeploymentStatus::Succeeded);
    assert!(
        r.cloud.deployments.values().all(|d| d.group.1 != "g1"),
        "no later step started"
    );
    let terminate_completed = r
        .cloud
        .facts
        .iter()
        .any(|f| matches!(f, Fact::Completed { hook, .. } if hook == TERMINATE_HOOK));
    assert!(terminate_completed, "the terminate action was completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deployment_occupying_a_group_during_scale_out() {
    let toml = scenario(
        2,
        "",
        "[[events]]\nat_secs = 0\nlaunch = 1\n[[events]]\nat_secs = 400\nuser_deployment = { application = \"app0\", deployment_group = \"g0\", revision = \"v2\" }\n[[events]]\nat_secs = 401\nlaunch = 3\n",
    );
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    let user = r
        .cloud
        .deployments
        .values()
        .find(|d| d.creator == Creator::User && !d.description.starts_with("turnstile intent="))
        .unwrap();
    let ours_g0 = r
        .cloud
        .deployments
        .values()
        .filter(|d| d.group.1 == "g0" && d.description.starts_with("turnstile intent="))
        .map(|d| d.created_at)
        .max()
        .unwrap();
    assert!(
        user.created_at < 401_000 && user.targets.len() == 1,
        "it had the first instance"
    );
    assert!(
        ours_g0 >= user.ended_at.unwrap(),
        "waited for the user's deployment"
    );
    for i in r.cloud.instances.values() {
        assert_eq!(
            i.installed[&("app0".to_owned(), "g0".to_owned())],
            "v2",
            "the current revision"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_codedeploy_events_are_recovered_by_reconciliation() {
    let (s, r) = run_orchestrated(&scenario(
        3,
        "",
        "[[events]]\nat_secs = 0\nlaunch = 2\n[faults]\ndrop_codedeploy = 1.0\n",
    ))
    .await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    assert!(r.activity.events_dropped > 0);
    assert!(
        r.cloud.calls.get("GetDeployment").copied().unwrap_or(0) > 0,
        "polled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_lifecycle_events_complete_each_action_once() {
    let (s, r) = run_orchestrated(&scenario(
        2,
        "",
        "[[events]]\nat_secs = 0\nlaunch = 3\n[faults]\nduplicate = 0.5\n",
    ))
    .await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    assert!(r.activity.duplicates_injected > 0);
    assert!(
        r.activity
            .dispositions
            .get("duplicate")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(completions(&r, HookResult::Continue), 3, "once per action");
    assert_eq!(
        r.cloud.calls.get("CompleteLifecycleAction").copied(),
        Some(3),
        "no second completion attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_longer_than_the_heartbeat_timeout_is_kept_alive() {
    let toml = scenario(3, "", "[[events]]\nat_secs = 0\nlaunch = 1\n")
        .replace(
            "heartbeat_timeout_secs = 300",
            "heartbeat_timeout_secs = 60",
        )
        .replace("duration_secs = [30, 60]", "duration_secs = [100, 100]");
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    let i = r.cloud.instances.values().next().unwrap();
    assert!(
        i.in_service_at.unwrap() - i.launched_at > 300_000,
        "longer than 5 timeouts"
    );
    assert!(r.cloud.calls["RecordLifecycleActionHeartbeat"] >= 5);
    assert!(
        !r.cloud
            .facts
            .iter()
            .any(|f| matches!(f, Fact::TimedOut { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_instances_launched_together_share_one_deployment_per_group() {
    let toml = scenario(6, "", "[[events]]\nat_secs = 0\nlaunch = 20\n")
        .replace("duration_secs = [30, 60]", "duration_secs = [45, 45]");
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    let per_group = ours(&r);
    assert_eq!(per_group.len(), 6);
    assert!(per_group.values().all(|n| *n == 1), "{per_group:?}");
    for d in r.cloud.deployments.values() {
        assert_eq!(d.targets.len(), 20, "{} targets all 20", d.id);
    }
}

/// The "before" picture: CodeDeploy's own per-group hooks fire at once on the same instances.
#[tokio::test]
async fn native_hooks_collide_and_relaunch() {
    let s = Scenario::parse(
        "e2e",
        &scenario(6, "", "[[events]]\nat_secs = 0\nlaunch = 5\n"),
    )
    .unwrap();
    let r = run(None, &s, Mode::Native).await.unwrap();
    let summary = Summary::of(&r, &s);
    assert!(summary.collided > 0, "deployments overlap on one instance");
    assert!(summary.deployments_other >= 30, "{summary:?}");
}

/// The bad-input rule end to end: an unparseable message is retried and lands in the dead-letter
/// queue after `maxReceiveCount` receives; the Auto Scaling test notification is acknowledged;
/// neither blocks or loses the real events around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_and_the_test_notification_acknowledged() {
    let test_notification = r#"{\"AccountId\":\"123456789012\",\"RequestId\":\"4e3b4b6e-1d5a-4c3f-9f3e-0a1b2c3d4e5f\",\"AutoScalingGroupARN\":\"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:autoScalingGroupName/fleet\",\"AutoScalingGroupName\":\"fleet\",\"Service\":\"AWS Auto Scaling\",\"Event\":\"autoscaling:TEST_NOTIFICATION\",\"Time\":\"2026-11-21T10:00:00.000Z\"}"#;
    let (s, r) = run_orchestrated(&scenario(
        2,
        "",
        &format!(
            "[[events]]\nat_secs = 0\nraw_message = \"{{not json\"\n[[events]]\nat_secs = 0\nraw_message = \"{test_notification}\"\n[[events]]\nat_secs = 0\nlaunch = 2\n"
        ),
    ))
    .await;
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_all_in_service(&s, &r);
    assert_eq!(r.activity.dead_lettered, 1, "the unparseable message");
    assert_eq!(
        r.activity.dispositions.get("poison").copied(),
        Some(u64::from(turnstile_localcloud::run::MAX_RECEIVE_COUNT))
    );
    assert_eq!(r.activity.dispositions.get("ignored").copied(), Some(1));
}

/// Own hooks only, end to end: the fleet carries turnstile's launch hook plus another tool's
/// launch hook (completed by its owner 240 s after each launch, long after turnstile's
/// CONTINUE) and another tool's terminate hook; a direct-to-SQS notification of the other
/// launch hook reaches the queue too. Every instance goes in service only once both launch
/// hooks are done, and turnstile never calls CompleteLifecycleAction or
/// RecordLifecycleActionHeartbeat on a hook it does not own (the simulator's call record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hooks_are_left_to_their_owners() {
    let direct = r#"{\"Origin\":\"EC2\",\"LifecycleHookName\":\"bootstrap-agent\",\"Destination\":\"AutoScalingGroup\",\"AccountId\":\"123456789012\",\"RequestId\":\"5a062a09-2965-8413-43f9-83bd8649c9eb\",\"LifecycleTransition\":\"autoscaling:EC2_INSTANCE_LAUNCHING\",\"AutoScalingGroupName\":\"fleet\",\"Service\":\"AWS Auto Scaling\",\"Time\":\"2026-11-21T10:00:00.000Z\",\"EC2InstanceId\":\"i-00000000000000001\",\"LifecycleActionToken\":\"917070d0-a303-474b-a36c-a5e38a19de5e\"}"#;
    let (_, r) = run_orchestrated(&scenario(
        2,
        "",
        &format!(
            r#"[[fleet.foreign_hooks]]
name = "bootstrap-agent"
transition = "launch"
complete_after_secs = 240
metadata = '{{"role":"web"}}'
[[fleet.foreign_hooks]]
name = "ship-logs"
transition = "terminate"
complete_after_secs = 30
default_result = "CONTINUE"
[[events]]
at_secs = 0
launch = 4
[[events]]
at_secs = 5
raw_message = "{direct}"
[[events]]
at_secs = 20
terminate = 1
"#
        ),
    ))
    .await;
    assert_clean(&r);
    let owned = [LAUNCH_HOOK, TERMINATE_HOOK];
    assert!(!r.cloud.lifecycle_calls.is_empty());
    let foreign: Vec<_> = r
        .cloud
        .lifecycle_calls
        .iter()
        .filter(|c| !owned.contains(&c.hook.as_str()))
        .collect();
    assert!(
        foreign.is_empty(),
        "turnstile touched other hooks: {foreign:#?}"
    );

    let completed_at = |id: &str, hook: &str| {
        r.cloud.facts.iter().find_map(|f| match f {
            Fact::Completed {
                instance,
                hook: h,
                at,
                result: HookResult::Continue,
                ..
            } if instance == id && h == hook => Some(*at),
            _ => None,
        })
    };
    let mut in_service = 0;
    for i in r.cloud.instances.values() {
        if i.state == InstanceState::Terminated {
            // Terminated while waiting: turnstile completed its own terminate hook, the log
            // shipper its own, 30 s after the termination began.
            assert!(completed_at(&i.id, TERMINATE_HOOK).is_some(), "{}", i.id);
            assert!(completed_at(&i.id, "ship-logs").is_some(), "{}", i.id);
            continue;
        }
        in_service += 1;
        assert_eq!(i.state, InstanceState::InService, "{}", i.id);
        let ours = completed_at(&i.id, LAUNCH_HOOK).expect("turnstile's CONTINUE");
        let theirs = completed_at(&i.id, "bootstrap-agent").expect("the owner's CONTINUE");
        let at = i.in_service_at.unwrap();
        assert!(
            ours < theirs,
            "{}: turnstile finished first, so the instance waited",
            i.id
        );
        assert_eq!(
            at,
            theirs.max(ours),
            "{}: in service once both launch hooks were done",
            i.id
        );
    }
    assert_eq!(in_service, 3);
}

/// Issue 16 point 2, docs/design.md "Launch deployments and outdated in-service instances": a
/// user's deployment fails on one in-service instance and succeeds overall (the group's own
/// config is HalfAtATime), so that instance serves the old revision while the group's target
/// is the new one. The scale-out after it must not deploy to it with the plan's `AllAtOnce`
/// override: the launch deployment takes the group's own config, and fixes it on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outdated_in_service_instance_is_never_deployed_with_the_launch_override() {
    let toml = scenario(
        1,
        "config = \"CodeDeployDefault.HalfAtATime\"",
        "[[events]]\nat_secs = 0\nlaunch = 2\n[[events]]\nat_secs = 600\nuser_deployment = { application = \"app0\", deployment_group = \"g0\", revision = \"v2\", fail_first = 1 }\n[[events]]\nat_secs = 1200\nlaunch = 2\n",
    );
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    let g0 = ("app0".to_owned(), "g0".to_owned());
    let user = r
        .cloud
        .deployments
        .values()
        .find(|d| !d.description.starts_with("turnstile intent="))
        .unwrap();
    assert_eq!(user.status, DeploymentStatus::Succeeded);
    assert!(
        user.targets
            .values()
            .any(|t| t.status == turnstile_model::TargetStatus::Failed),
        "the user's deployment failed on one in-service instance"
    );
    let ours_named = |d: &str| {
        r.cloud.deployments[d]
            .description
            .starts_with("turnstile intent=")
    };
    let on_serving: Vec<(String, String)> = r
        .cloud
        .override_on_serving()
        .into_iter()
        .filter(|(d, _)| ours_named(d))
        .collect();
    assert!(
        on_serving.is_empty(),
        "launch deployments with the override reached serving instances: {on_serving:?}"
    );
    // The scale-out's deployment did reach the outdated instance, with the group's own config.
    let fixed = r.cloud.facts.iter().any(|f| {
        matches!(f, Fact::DeploymentCreated { deployment, config_override: false, serving_targets, .. }
            if ours_named(deployment) && serving_targets.len() == 1)
    });
    assert!(
        fixed,
        "the launch deployment after it took the group's own config"
    );
    for i in r.cloud.instances.values() {
        assert_eq!(i.installed[&g0], "v2", "{} runs the current revision", i.id);
    }
}

/// The shipped scenario file, as `make demo SCENARIO=…` runs it.
fn shipped(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../scenarios/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Issue 17 (adoption), docs/design.md "Adoption of lost launches": not one lifecycle event
/// reaches the queue (`scenarios/adopt.toml`, `drop_lifecycle = 1.0`, 120 s heartbeat timeout,
/// two waves). The timer sweep adopts every instance before its first heartbeat is owed, and
/// every instance goes in service with every group, none abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_every_launch_when_no_lifecycle_event_arrives() {
    let (s, r) = run_orchestrated(&shipped("adopt.toml")).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    assert_eq!(
        r.cloud.instances.len(),
        8,
        "no replacements: nothing abandoned"
    );
    assert_eq!(completions(&r, HookResult::Abandon), 0);
    let summary = Summary::of(&r, &s);
    assert_eq!(summary.adopted, 8, "every pipeline came from the sweep");
    let max = summary.adoption_wait_max_ms.unwrap();
    assert!(
        max < s.fleet.heartbeat_timeout_secs * 1000,
        "adopted after {max} ms: the heartbeat was owed by then"
    );
    // The events were dropped, so every call named the instance, never a token.
    assert!(r.cloud.lifecycle_calls.iter().all(|c| c.token.is_none()));
}

/// Adoption beside other tools' hooks (`scenarios/foreign-hooks.toml` with every lifecycle
/// event lost and no terminations): turnstile adopts its own hook's actions only. Once its
/// pipeline is done the instance still waits for the bootstrap agent, and the sweep, which
/// sees it in Pending:Wait every minute, neither adopts it again nor calls anything on the
/// other hooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_never_an_instance_another_tools_hook_holds() {
    let toml = shipped("foreign-hooks.toml")
        .replace("terminate_hook = true", "terminate_hook = false")
        .replace("at_secs = 100\nterminate = 2", "at_secs = 100\nlaunch = 1")
        .replace("[faults]", "[faults]\ndrop_lifecycle = 1.0");
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    let foreign: Vec<_> = r
        .cloud
        .lifecycle_calls
        .iter()
        .filter(|c| c.hook != LAUNCH_HOOK)
        .collect();
    assert!(
        foreign.is_empty(),
        "turnstile touched other hooks: {foreign:#?}"
    );
    // One adoption per instance: a single matched probe each, and one CONTINUE each.
    let summary = Summary::of(&r, &s);
    assert_eq!(summary.adopted, 7);
    assert_eq!(completions(&r, HookResult::Continue), 7);
    for i in r.cloud.instances.values() {
        let gone_probes = r
            .cloud
            .lifecycle_calls
            .iter()
            .filter(|c| c.instance.as_deref() == Some(i.id.as_str()) && !c.matched)
            .count();
        assert_eq!(
            gone_probes, 0,
            "{}: probed again after its pipeline was done",
            i.id
        );
    }
}

/// Fast redelivery end to end (`scenarios/redeliver.toml`, docs/design.md "Fast redelivery"):
/// hooks with a 120 s heartbeat timeout, and one message in five failing transiently before
/// its first write, drawn anew on every receive but the last the queue allows (a fault that
/// outlasts all five is an outage, not a transient failure). Each failed message is made visible again
/// within seconds instead of after the queue's 360 s visibility timeout, so no launch waits
/// past its hook's timeout: nothing is abandoned or times out, every instance goes in service
/// with every group, and the dead-letter queue holds the two unparseable messages only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_transient_failures_in_seconds_so_no_instance_is_lost() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/redeliver.toml"
    );
    let (s, r) = run_orchestrated(&std::fs::read_to_string(path).unwrap()).await;
    assert!(r.violations.is_empty(), "invariants: {:#?}", r.violations);
    assert_all_in_service(&s, &r);
    assert_eq!(r.cloud.instances.len(), 8, "no replacement was needed");
    assert_eq!(completions(&r, HookResult::Abandon), 0, "nothing abandoned");
    let timed_out: Vec<&Fact> = r
        .cloud
        .facts
        .iter()
        .filter(|f| matches!(f, Fact::TimedOut { .. }))
        .collect();
    assert!(timed_out.is_empty(), "{timed_out:#?}");
    assert_eq!(
        r.activity.dead_letter_bodies.len(),
        2,
        "{:#?}",
        r.activity.dead_letter_bodies
    );
    for body in &r.activity.dead_letter_bodies {
        assert!(
            turnstile_events::parse(body).is_err(),
            "only poison messages are dead-lettered: {body}"
        );
    }
    assert!(r.activity.transient_failures > 0, "{:?}", r.activity);
    assert!(
        r.activity.launch_retries > 0,
        "the scenario must fail launch events, or it shows nothing: {:?}",
        r.activity
    );
    let retried = r.activity.dispositions.get("retry").copied().unwrap_or(0);
    assert!(retried > 0, "{:?}", r.activity.dispositions);
    assert!(r.activity.redeliveries > 0);
    assert!(
        r.activity.redelivered_sooner >= retried,
        "every transient failure came back sooner: {:?}",
        r.activity
    );
}

/// Targets of turnstile's deployments that failed: each a failed attempt on an instance.
fn failed_attempts(r: &RunRecord) -> usize {
    r.cloud
        .deployments
        .values()
        .filter(|d| d.description.starts_with("turnstile intent="))
        .flat_map(|d| d.targets.values())
        .filter(|t| t.status == turnstile_model::TargetStatus::Failed)
        .count()
}

/// A slow-booting fleet: each instance's bootstrap takes 200-480 s and its CodeDeploy agent
/// starts only after it, the order AWS documents. Half the tag events are lost.
fn slow_boot(readiness: bool) -> String {
    let plan = if readiness {
        "[orchestrator]\nreadiness = { tag = \"turnstile:ready\", timeout_secs = 900 }\n"
    } else {
        ""
    };
    scenario(
        2,
        "",
        &format!(
            "[fleet.bootstrap]\nsecs = [200, 480]\nagent = \"after-bootstrap\"\nready_tag = \"turnstile:ready\"\n{plan}[[events]]\nat_secs = 0\nlaunch = 6\n[faults]\ndrop_tag = 0.5\n"
        ),
    )
}

/// Issue 19: with `readiness`, no deployment reaches an instance before its agent runs, so
/// none fails for it; the same fleet without it starts at once, and every instance whose
/// bootstrap outlasts CodeDeploy's 5-minute start limit fails its first attempt
/// [aws-behaviour §3.2 Lifecycle event start limit]. Tag events are best effort: the ones
/// lost are found by the timer sweep's batched read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_slow_boots_fail_no_deployment_with_the_signal_and_do_without_it() {
    let (s, with) = run_orchestrated(&slow_boot(true)).await;
    assert_clean(&with);
    assert_all_in_service(&s, &with);
    assert_eq!(
        failed_attempts(&with),
        0,
        "no deployment before the agent runs"
    );
    for i in with.cloud.instances.values() {
        let booted = i.bootstrap_done_at().unwrap();
        let first = with
            .cloud
            .deployments
            .values()
            .filter(|d| d.targets.contains_key(&i.id))
            .map(|d| d.created_at)
            .min()
            .unwrap();
        assert!(
            first >= booted,
            "{}: deployed at {first} before its bootstrap ended at {booted}",
            i.id
        );
    }
    assert!(
        with.cloud.calls.get("DescribeTags").copied().unwrap_or(0) > 0,
        "the sweep read the tags whose events were lost"
    );

    let (s, without) = run_orchestrated(&slow_boot(false)).await;
    assert_clean(&without);
    assert_all_in_service(&s, &without);
    let slow = without
        .cloud
        .instances
        .values()
        .filter(|i| i.bootstrap_done_at().unwrap() > i.launched_at + 300_000)
        .count();
    println!(
        "without readiness: {} failed attempts, {slow} instances booted for longer than the start limit",
        failed_attempts(&without)
    );
    assert!(
        slow > 0,
        "the seed boots some instances for longer than the start limit"
    );
    assert!(
        failed_attempts(&without) >= slow,
        "{} failed attempts for {slow} instances slower than the start limit",
        failed_attempts(&without)
    );
}

/// Two instances fill the warm pool at 0 s; at 900 s the group scales out by two, which
/// takes them out of the pool. `policy` is the plan's `warmPool`; `more` is appended.
fn warm_pool(policy: &str, more: &str) -> String {
    scenario(
        2,
        "",
        &format!(
            "[fleet.warm_pool]\nrestart_secs = 30\n[orchestrator]\nwarm_pool = \"{policy}\"\n[[events]]\nat_secs = 0\nfill_warm_pool = 2\n[[events]]\nat_secs = 900\nlaunch = 2\n{more}"
        ),
    )
}

/// When each instance entered `Warmed:Stopped` and when it left the pool.
fn pool_times(r: &RunRecord, id: &str) -> (u64, u64) {
    let at = |want: fn(&Fact) -> Option<(&String, u64)>| {
        r.cloud
            .facts
            .iter()
            .filter_map(want)
            .find(|(i, _)| *i == id)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{id}: no such fact"))
    };
    (
        at(|f| match f {
            Fact::Stopped { instance, at } => Some((instance, *at)),
            _ => None,
        }),
        at(|f| match f {
            Fact::LeftWarmPool { instance, at } => Some((instance, *at)),
            _ => None,
        }),
    )
}

/// Deployment creation times of turnstile's deployments that targeted `id`.
fn deployed_at(r: &RunRecord, id: &str) -> Vec<u64> {
    r.cloud
        .deployments
        .values()
        .filter(|d| d.description.starts_with("turnstile intent=") && d.targets.contains_key(id))
        .map(|d| d.created_at)
        .collect()
}

/// Issue 19, `warmPool: deployOnExit` (the default) end to end: an instance entering the pool
/// is let go at once and stopped; it is deployed when it leaves, with new tokens, and goes in
/// service with every group after the final revision check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_deploy_on_exit_deploys_when_the_instance_leaves_the_pool() {
    let (s, r) = run_orchestrated(&warm_pool("deployOnExit", "")).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    assert_eq!(
        r.cloud.instances.len(),
        2,
        "the scale-out took the pool's instances"
    );
    for id in r.cloud.instances.keys() {
        let (stopped, left) = pool_times(&r, id);
        let deployed = deployed_at(&r, id);
        assert_eq!(
            deployed.len(),
            2,
            "{id}: one deployment per group: {deployed:?}"
        );
        assert!(
            deployed.iter().all(|t| *t >= left),
            "{id}: nothing deployed before it left (stopped {stopped}, left {left}): {deployed:?}"
        );
    }
    // Two actions per instance, each completed with CONTINUE: the entry and the exit.
    assert_eq!(completions(&r, HookResult::Continue), 4);
}

/// `warmPool: deployOnEntry`: the plan runs while the instance enters the pool, before it is
/// stopped; leaving the pool deploys nothing, and it goes in service with what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_deploy_on_entry_deploys_before_the_pool_and_lets_it_leave_at_once() {
    let (s, r) = run_orchestrated(&warm_pool("deployOnEntry", "")).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    for id in r.cloud.instances.keys() {
        let (stopped, _) = pool_times(&r, id);
        let deployed = deployed_at(&r, id);
        assert_eq!(deployed.len(), 2, "{id}: {deployed:?}");
        assert!(
            deployed.iter().all(|t| *t < stopped),
            "{id}: deployed before it was stopped at {stopped}: {deployed:?}"
        );
    }
    assert_eq!(completions(&r, HookResult::Continue), 4);
}

/// `warmPool: deployOnBoth`: deployed on entry, and again on exit, where a user's deployment
/// of a new revision made while the instance slept in the pool reaches it: it leaves with
/// its applications current, and what did not change is skipped as up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_deploy_on_both_brings_a_stopped_instance_current_when_it_leaves() {
    // One instance launched straight into the group (the pool is still empty) serves the
    // user's deployment of v2, made while the pool's instances are stopped.
    let toml = warm_pool(
        "deployOnBoth",
        "[[events]]\nat_secs = 600\nuser_deployment = { application = \"app0\", deployment_group = \"g0\", revision = \"v2\" }\n",
    )
    .replace(
        "[[events]]\nat_secs = 0\nfill_warm_pool = 2",
        "[[events]]\nat_secs = 0\nlaunch = 1\n[[events]]\nat_secs = 1\nfill_warm_pool = 2",
    );
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    let g0 = ("app0".to_owned(), "g0".to_owned());
    let pooled = |id: &str| {
        r.cloud
            .facts
            .iter()
            .any(|f| matches!(f, Fact::LeftWarmPool { instance, .. } if instance == id))
    };
    assert_eq!(r.cloud.instances.keys().filter(|i| pooled(i)).count(), 2);
    for (id, i) in r.cloud.instances.iter().filter(|(id, _)| pooled(id)) {
        let (stopped, left) = pool_times(&r, id);
        let deployed = deployed_at(&r, id);
        assert!(
            deployed.iter().any(|t| *t < stopped),
            "{id}: deployed on entry: {deployed:?}"
        );
        assert!(
            deployed.iter().any(|t| *t >= left),
            "{id}: deployed on exit: {deployed:?}"
        );
        assert_eq!(
            i.installed[&g0], "v2",
            "{id} left the pool with the current revision"
        );
    }
}

/// `deployOnExit` with `readiness`: Auto Scaling stops an instance entering the pool as soon
/// as its launch hooks complete, so turnstile lets it go only once it tagged itself ready:
/// its bootstrap is never cut short by the stop, and leaving the pool needs no second wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_entry_waits_for_readiness_so_the_stop_never_cuts_the_bootstrap_short() {
    let toml = warm_pool("deployOnExit", "").replace(
        "[orchestrator]\n",
        "[fleet.bootstrap]\nsecs = [60, 180]\nready_tag = \"turnstile:ready\"\n[orchestrator]\nreadiness = { tag = \"turnstile:ready\" }\n",
    );
    let (s, r) = run_orchestrated(&toml).await;
    assert_clean(&r);
    assert_all_in_service(&s, &r);
    for (id, i) in &r.cloud.instances {
        let (stopped, left) = pool_times(&r, id);
        let booted = i.bootstrap_done_at().unwrap();
        assert!(
            booted <= stopped,
            "{id}: stopped at {stopped} before its bootstrap ended at {booted}"
        );
        let deployed = deployed_at(&r, id);
        assert!(deployed.iter().all(|t| *t >= left), "{id}: {deployed:?}");
    }
}
