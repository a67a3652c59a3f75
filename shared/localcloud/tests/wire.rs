//! The simulator's wire protocols, exercised with the real SDK clients and the project's own
//! adapters. Each test names the docs/aws-behaviour.md entry it models.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use turnstile_localcloud::wire::{self, Server, Simulator, WireFaults};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Hook, HookResult, InstanceState, Profile, Transition,
};

fn cloud() -> Cloud {
    let mut c = Cloud::new(1);
    c.add_asg(Asg {
        name: "fleet".into(),
        hooks: vec![Hook {
            name: "launch".into(),
            transition: Transition::Launching,
            heartbeat_secs: 300,
            default_result: HookResult::Abandon,
            metadata: Some("{\"version\":1}".into()),
        }],
        replace_after_ms: None,
    });
    c.add_group(DeploymentGroup {
        app: "web".into(),
        name: "web-dg".into(),
        tag_set: vec![vec![("gate".into(), "open".into())]],
        target_revision: Some("v1".into()),
        config: DeployConfig::AllAtOnce,
        profile: Profile {
            min_ms: 60_000,
            max_ms: 60_000,
            fail_prob: 0.0,
        },
    });
    c
}

struct Fixture {
    sim: Arc<Simulator>,
    _server: Server,
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    cd: aws_sdk_codedeploy::Client,
}

async fn fixture(c: Cloud) -> Fixture {
    let sim = Simulator::new(c, WireFaults::default(), 1);
    let server = wire::serve(sim.clone()).await.unwrap();
    let conf = turnstile_harness::sdk_config(&server.endpoint()).await;
    Fixture {
        sim,
        asg: aws_sdk_autoscaling::Client::new(&conf),
        ec2: aws_sdk_ec2::Client::new(&conf),
        cd: aws_sdk_codedeploy::Client::new(&conf),
        _server: server,
    }
}

fn launch(f: &Fixture) -> (String, String) {
    let mut c = f.sim.cloud();
    let id = c.scale_out("fleet", 1).remove(0);
    let token = c.instances[&id].actions[0].token.clone();
    (id, token)
}

/// aws-behaviour §2 CompleteLifecycleAction: by token, CONTINUE puts the instance in service; the
/// same token again is `ValidationError` "No active Lifecycle Action found" (§2 stale token).
#[tokio::test]
async fn complete_by_token_then_stale_token_is_validation_error() {
    let f = fixture(cloud()).await;
    let (id, token) = launch(&f);
    f.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&token)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    assert_eq!(f.sim.cloud().instances[&id].state, InstanceState::InService);
    let err = f
        .asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&token)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    assert!(
        err.message()
            .unwrap()
            .contains("No active Lifecycle Action found"),
        "{err:?}"
    );
}

/// aws-behaviour §2 RecordLifecycleActionHeartbeat restarts the heartbeat timer; DescribeLifecycleHooks
/// reports HeartbeatTimeout and GlobalTimeout = min(100 × heartbeat, 48 h).
#[tokio::test]
async fn heartbeat_extends_and_describe_reports_timeouts() {
    let f = fixture(cloud()).await;
    let (id, token) = launch(&f);
    f.sim.cloud().advance_to(200_000);
    f.asg
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&token)
        .send()
        .await
        .unwrap();
    f.sim.cloud().advance_to(450_000);
    assert_eq!(
        f.sim.cloud().instances[&id].state,
        InstanceState::PendingWait,
        "the heartbeat at 200 s moved the deadline to 500 s"
    );
    f.sim.cloud().advance_to(501_000);
    assert_eq!(
        f.sim.cloud().instances[&id].state,
        InstanceState::Terminated
    );
    let hooks = f
        .asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_names("launch")
        .send()
        .await
        .unwrap();
    let h = &hooks.lifecycle_hooks()[0];
    assert_eq!(h.heartbeat_timeout(), Some(300));
    assert_eq!(h.global_timeout(), Some(30_000));
    assert_eq!(h.default_result(), Some("ABANDON"));
    assert_eq!(h.notification_metadata(), Some("{\"version\":1}"));
}

/// EC2 CreateTags / DeleteTags (a tag without a value deletes the key); the group selects the
/// instance by its tag set (aws-behaviour §3.1 Targets by tag).
#[tokio::test]
async fn tags_are_created_and_deleted() {
    let f = fixture(cloud()).await;
    let (id, _) = launch(&f);
    f.ec2
        .create_tags()
        .resources(&id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("gate")
                .value("open")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.sim.cloud().instances[&id]
            .tags
            .get("gate")
            .map(String::as_str),
        Some("open")
    );
    f.ec2
        .delete_tags()
        .resources(&id)
        .tags(aws_sdk_ec2::types::Tag::builder().key("gate").build())
        .send()
        .await
        .unwrap();
    assert!(f.sim.cloud().instances[&id].tags.is_empty());
    let err = f
        .ec2
        .create_tags()
        .resources("i-0123456789abcdef0")
        .resources(&id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("gate")
                .value("open")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"));
    assert!(err.message().unwrap().contains("i-0123456789abcdef0"));
    assert!(
        f.sim.cloud().instances[&id].tags.is_empty(),
        "all or nothing"
    );
}

fn revision(rev: &str) -> aws_sdk_codedeploy::types::RevisionLocation {
    use aws_sdk_codedeploy::types::{
        BundleType, RevisionLocation, RevisionLocationType, S3Location,
    };
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::S3)
        .s3_location(
            S3Location::builder()
                .bucket(wire::codedeploy::REVISION_BUCKET)
                .key(format!("{rev}.zip"))
                .bundle_type(BundleType::Zip)
                .build(),
        )
        .build()
}

/// CreateDeployment of revision v2 to web/web-dg.
async fn deploy(
    f: &Fixture,
    outdated_only: bool,
) -> Result<
    String,
    aws_sdk_codedeploy::error::SdkError<
        aws_sdk_codedeploy::operation::create_deployment::CreateDeploymentError,
    >,
> {
    f.cd.create_deployment()
        .application_name("web")
        .deployment_group_name("web-dg")
        .revision(revision("v2"))
        .set_update_outdated_instances_only(outdated_only.then_some(true))
        .send()
        .await
        .map(|o| o.deployment_id.unwrap())
}

async fn gate(f: &Fixture, id: &str) {
    f.ec2
        .create_tags()
        .resources(id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("gate")
                .value("open")
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// aws-behaviour §3.1 Group already busy: one active deployment per group; a second CreateDeployment is
/// `DeploymentLimitExceededException` "The Deployment Group '<group>' already has an active
/// Deployment '<d-ID>'", which the adapter parses.
#[tokio::test]
async fn a_busy_group_refuses_with_the_real_message() {
    let f = fixture(cloud()).await;
    let (id, _) = launch(&f);
    gate(&f, &id).await;
    let first = deploy(&f, false).await.unwrap();
    let err = deploy(&f, false).await.unwrap_err();
    assert_eq!(err.code(), Some("DeploymentLimitExceededException"));
    let message = err.message().unwrap();
    assert_eq!(
        message,
        format!("The Deployment Group 'web-dg' already has an active Deployment '{first}'")
    );
    assert_eq!(
        turnstile_aws::codedeploy::busy_deployment(message).map(|d| d.0),
        Some(first)
    );
}

/// aws-behaviour §3.1 Group already busy: `ListDeployments` with `includeOnlyStatuses` names
/// the group's active deployment and nothing once it ended, so the adapter can tell a busy group
/// from the account's quota whatever the error's wording.
#[tokio::test]
async fn busy_wording_unknown_list_deployments_names_the_active_one() {
    use aws_sdk_codedeploy::types::DeploymentStatus as S;
    let f = fixture(cloud()).await;
    let (id, _) = launch(&f);
    gate(&f, &id).await;
    let first = deploy(&f, false).await.unwrap();
    let active = || async {
        f.cd.list_deployments()
            .application_name("web")
            .deployment_group_name("web-dg")
            .set_include_only_statuses(Some(vec![
                S::Created,
                S::Queued,
                S::InProgress,
                S::Baking,
                S::Ready,
            ]))
            .send()
            .await
            .unwrap()
            .deployments()
            .to_vec()
    };
    assert_eq!(active().await, vec![first.clone()]);
    f.sim.cloud().advance_to(120_000);
    assert!(active().await.is_empty(), "it ended");
    let ended =
        f.cd.list_deployments()
            .application_name("web")
            .deployment_group_name("web-dg")
            .include_only_statuses(S::Succeeded)
            .send()
            .await
            .unwrap();
    assert_eq!(ended.deployments(), [first]);
}

/// aws-behaviour §3.1 Deployments created since a time: `ListDeployments` with a
/// `createTimeRange` start lists the group's deployments created since then, whatever their
/// status (the leave check looks back that way).
#[tokio::test]
async fn list_deployments_with_a_create_time_range_lists_those_created_since() {
    use aws_sdk_codedeploy::primitives::DateTime;
    use aws_sdk_codedeploy::types::TimeRange;
    let f = fixture(cloud()).await;
    let (id, _) = launch(&f);
    gate(&f, &id).await;
    let first = deploy(&f, false).await.unwrap();
    f.sim.cloud().advance_to(120_000);
    let between = f.sim.cloud().now;
    f.sim.cloud().advance_to(130_000);
    let second = deploy(&f, false).await.unwrap();
    let since = |ms: u64| {
        let range = TimeRange::builder()
            .start(DateTime::from_millis(i64::try_from(ms).unwrap()))
            .build();
        let cd = f.cd.clone();
        async move {
            cd.list_deployments()
                .application_name("web")
                .deployment_group_name("web-dg")
                .create_time_range(range)
                .send()
                .await
                .unwrap()
                .deployments()
                .to_vec()
        }
    };
    assert_eq!(
        since(between).await,
        vec![second.clone()],
        "the ended one is older"
    );
    let mut both = since(0).await;
    both.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(both, expected);
}

/// aws-behaviour §3.1 updateOutdatedInstancesOnly and Target revision: an instance already on
/// the revision is skipped; a successful deployment makes its revision the group's target.
#[tokio::test]
async fn outdated_only_skips_up_to_date_instances_and_success_sets_the_target_revision() {
    let f = fixture(cloud()).await;
    let (a, _) = launch(&f);
    gate(&f, &a).await;
    let d1 = deploy(&f, false).await.unwrap();
    f.sim.cloud().advance_to(120_000);
    let info =
        f.cd.get_deployment()
            .deployment_id(&d1)
            .send()
            .await
            .unwrap();
    assert_eq!(
        info.deployment_info().unwrap().status().map(|s| s.as_str()),
        Some("Succeeded")
    );
    let group =
        f.cd.get_deployment_group()
            .application_name("web")
            .deployment_group_name("web-dg")
            .send()
            .await
            .unwrap();
    let g = group.deployment_group_info().unwrap();
    let target = g.target_revision().unwrap();
    assert_eq!(
        turnstile_aws::codedeploy::revision_of(target),
        turnstile_aws::codedeploy::revision_of(&revision("v2"))
    );
    assert_eq!(
        g.last_attempted_deployment().unwrap().deployment_id(),
        Some(d1.as_str())
    );
    let (b, _) = launch(&f);
    gate(&f, &b).await;
    let d2 = deploy(&f, true).await.unwrap();
    let targets =
        f.cd.batch_get_deployment_targets()
            .deployment_id(&d2)
            .target_ids(&a)
            .target_ids(&b)
            .send()
            .await
            .unwrap();
    let status: BTreeMap<String, String> = targets
        .deployment_targets()
        .iter()
        .map(|t| {
            let it = t.instance_target().unwrap();
            (
                it.target_id().unwrap().to_owned(),
                it.status().unwrap().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(status[&a], "Skipped");
    assert_eq!(status[&b], "InProgress");
}

/// aws-behaviour §3.2: BatchGetDeploymentTargets takes at most 25 ids; §3.4 a non-target is
/// `DeploymentTargetDoesNotExistException`.
#[tokio::test]
async fn target_batches_are_limited_to_25() {
    let f = fixture(cloud()).await;
    let (a, _) = launch(&f);
    gate(&f, &a).await;
    let d = deploy(&f, false).await.unwrap();
    let ids: Vec<String> = (0..26).map(|i| format!("i-{i:017x}")).collect();
    let err =
        f.cd.batch_get_deployment_targets()
            .deployment_id(&d)
            .set_target_ids(Some(ids))
            .send()
            .await
            .unwrap_err();
    assert_eq!(
        err.code(),
        Some("DeploymentTargetListSizeExceededException")
    );
    let err =
        f.cd.batch_get_deployment_targets()
            .deployment_id(&d)
            .target_ids("i-0000000000000ffff")
            .send()
            .await
            .unwrap_err();
    assert_eq!(err.code(), Some("DeploymentTargetDoesNotExistException"));
    let listed =
        f.cd.list_deployment_targets()
            .deployment_id(&d)
            .send()
            .await
            .unwrap();
    assert_eq!(listed.target_ids(), [a]);
}

/// aws-behaviour §3.5 StopDeployment: in-flight targets end failed; stopping a finished deployment
/// is `DeploymentAlreadyCompletedException`.
#[tokio::test]
async fn stop_fails_in_flight_targets_then_reports_already_completed() {
    let f = fixture(cloud()).await;
    let (a, _) = launch(&f);
    gate(&f, &a).await;
    let d = deploy(&f, false).await.unwrap();
    f.cd.stop_deployment()
        .deployment_id(&d)
        .send()
        .await
        .unwrap();
    let info =
        f.cd.get_deployment()
            .deployment_id(&d)
            .send()
            .await
            .unwrap();
    assert_eq!(
        info.deployment_info().unwrap().status().map(|s| s.as_str()),
        Some("Stopped")
    );
    assert!(f.sim.cloud().in_flight_on(&a).is_empty());
    let err =
        f.cd.stop_deployment()
            .deployment_id(&d)
            .send()
            .await
            .unwrap_err();
    assert_eq!(err.code(), Some("DeploymentAlreadyCompletedException"));
}

/// aws-behaviour §3.7: throttling errors are `ThrottlingException` (CodeDeploy), `Throttling`
/// (Auto Scaling) and `RequestLimitExceeded` (EC2); the SDK retries them, then gives up.
#[tokio::test]
async fn throttled_calls_use_each_services_error_code() {
    let sim = Simulator::new(cloud(), WireFaults { throttle: 1.0 }, 1);
    let server = wire::serve(sim.clone()).await.unwrap();
    let conf = turnstile_harness::sdk_config(&server.endpoint()).await;
    let conf = aws_config::SdkConfig::builder()
        .region(conf.region().cloned())
        .credentials_provider(conf.credentials_provider().unwrap())
        .endpoint_url(server.endpoint())
        .behavior_version(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let cd = aws_sdk_codedeploy::Client::new(&conf);
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let e = cd
        .get_deployment()
        .deployment_id("d-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ThrottlingException"));
    let e = asg
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token("t")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("Throttling"));
    let e = ec2
        .create_tags()
        .resources("i-1")
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("k")
                .value("v")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("RequestLimitExceeded"));
    assert_eq!(sim.counts().1, 3);
}

/// aws-behaviour §2 Multiple hooks on one transition, over the wire: each hook has its own
/// action; completing one leaves the instance in Pending:Wait until the other is completed by
/// its owner; DescribeLifecycleHooks lists both; every CompleteLifecycleAction and
/// RecordLifecycleActionHeartbeat is recorded with its hook.
#[tokio::test]
async fn foreign_hook_instance_waits_for_every_launch_hook_and_calls_are_recorded() {
    let mut c = cloud();
    c.asgs.get_mut("fleet").unwrap().hooks.push(Hook {
        name: "bootstrap-agent".into(),
        transition: Transition::Launching,
        heartbeat_secs: 300,
        default_result: HookResult::Abandon,
        metadata: None,
    });
    c.hook_owners.insert(
        ("fleet".into(), "bootstrap-agent".into()),
        turnstile_model::HookOwner {
            after_ms: 120_000,
            result: HookResult::Continue,
        },
    );
    let f = fixture(c).await;
    let (id, token) = launch(&f);
    let hooks = f
        .asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name("fleet")
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = hooks
        .lifecycle_hooks()
        .iter()
        .filter_map(|h| h.lifecycle_hook_name())
        .collect();
    assert_eq!(names, ["launch", "bootstrap-agent"]);
    f.asg
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&token)
        .send()
        .await
        .unwrap();
    f.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&token)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.sim.cloud().instances[&id].state,
        InstanceState::PendingWait,
        "bootstrap-agent still holds it"
    );
    f.sim.cloud().advance_to(120_000);
    assert_eq!(f.sim.cloud().instances[&id].state, InstanceState::InService);
    let calls: Vec<(String, bool)> = f
        .sim
        .cloud()
        .lifecycle_calls
        .iter()
        .map(|c| (c.hook.clone(), c.matched))
        .collect();
    assert_eq!(
        calls,
        [("launch".to_string(), true), ("launch".to_string(), true)],
        "the owner's completion is no API call"
    );
}

/// aws-behaviour §2 DescribeAutoScalingGroups: the adapter's `waiting` lists the groups'
/// instances in `Pending:Wait` (not those in service), paging through more groups than one page
/// holds; `launch_hooks` lists the launch hooks only; a heartbeat by instance id succeeds while
/// that hook's action is pending and is "gone" once it is completed (§2
/// RecordLifecycleActionHeartbeat), which is how the sweep tells whose wait it is.
#[tokio::test]
async fn adopt_wire_lists_waiting_instances_and_heartbeats_by_instance_id() {
    use turnstile_aws::autoscaling::AutoScaling;
    use turnstile_aws::ports::Lifecycle;
    use turnstile_core::{ActionRef, InstanceId, LifecycleResult, Place};

    let mut c = cloud();
    c.asgs.get_mut("fleet").unwrap().hooks.push(Hook {
        name: "drain".into(),
        transition: Transition::Terminating,
        heartbeat_secs: 300,
        default_result: HookResult::Continue,
        metadata: None,
    });
    // More groups than one DescribeAutoScalingGroups page (50) holds.
    for n in 0..60 {
        c.add_asg(Asg {
            name: format!("other-{n:02}"),
            hooks: c.asgs["fleet"].hooks.clone(),
            replace_after_ms: None,
        });
    }
    let f = fixture(c).await;
    let (waiting_id, _) = launch(&f);
    let (served_id, served_token) = launch(&f);
    let last = f.sim.cloud().scale_out("other-59", 1).remove(0);
    f.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&served_token)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let adapter = AutoScaling::new(f.asg.clone());
    let mut names: Vec<String> = (0..60).map(|n| format!("other-{n:02}")).collect();
    names.push("fleet".into());
    let mut found = adapter.waiting(&names).await.unwrap();
    found.sort_by(|a, b| a.asg.cmp(&b.asg));
    let ids: Vec<(&str, &str)> = found
        .iter()
        .map(|w| (w.asg.as_str(), w.instance.as_str()))
        .collect();
    assert_eq!(
        ids,
        [("fleet", waiting_id.as_str()), ("other-59", last.as_str())],
        "{served_id} is in service"
    );
    assert!(found.iter().all(|w| w.place == Place::AutoScalingGroup));
    let hooks = adapter.launch_hooks("fleet").await.unwrap();
    let names: Vec<&str> = hooks.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["launch"], "the launch hooks only");
    let (_, info) = &hooks[0];
    assert_eq!(
        (info.timeouts.heartbeat_secs, info.metadata.as_deref()),
        (300, Some("{\"version\":1}")),
        "each with its description, so the adoption needs no second call"
    );

    let action = ActionRef {
        asg: "fleet".into(),
        hook: "launch".into(),
        token: None,
        instance: InstanceId::from(waiting_id.as_str()),
    };
    adapter.heartbeat(&action).await.unwrap();
    adapter
        .complete(&action, LifecycleResult::Continue)
        .await
        .unwrap();
    assert_eq!(
        f.sim.cloud().instances[&waiting_id].state,
        InstanceState::InService,
        "completed by instance id"
    );
    let gone = adapter.heartbeat(&action).await.unwrap_err();
    assert!(gone.is_gone(), "{gone}");
}

/// aws-behaviour §2 Auto Scaling group tags: DescribeAutoScalingGroups lists the group's tags
/// with `ResourceType` `auto-scaling-group` and `PropagateAtLaunch`; an instance launched after
/// a tag with `PropagateAtLaunch` was set carries it from its launch, one without does not.
#[tokio::test]
async fn asg_tags_are_described_and_propagated_at_launch() {
    let mut c = cloud();
    c.tag_asg("fleet", "team", "web", false);
    c.tag_asg("fleet", "gate", "open", true);
    let f = fixture(c).await;
    let (id, _) = launch(&f);
    let out = f
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("fleet")
        .send()
        .await
        .unwrap();
    let tags = out.auto_scaling_groups()[0].tags();
    let seen: Vec<(&str, &str, bool, &str, &str)> = tags
        .iter()
        .map(|t| {
            (
                t.key().unwrap(),
                t.value().unwrap(),
                t.propagate_at_launch().unwrap(),
                t.resource_id().unwrap(),
                t.resource_type().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("gate", "open", true, "fleet", "auto-scaling-group"),
            ("team", "web", false, "fleet", "auto-scaling-group"),
        ]
    );
    let inst = &f.sim.cloud().instances[&id];
    assert_eq!(inst.tags.get("gate").map(String::as_str), Some("open"));
    assert!(!inst.tags.contains_key("team"));
}

/// aws-behaviour §5.6 DescribeTags: `resource-id` and `key` filters (values ORed, filters
/// ANDed), `MaxResults` pages with `NextToken`, and an unknown filter is `InvalidParameterValue`.
#[tokio::test]
async fn describe_tags_filters_by_resource_id_and_key_and_pages() {
    use aws_sdk_ec2::types::{Filter, Tag};
    let f = fixture(cloud()).await;
    let ids: Vec<String> = (0..3).map(|_| launch(&f).0).collect();
    for id in &ids {
        f.ec2
            .create_tags()
            .resources(id)
            .tags(Tag::builder().key("gate").value("open").build())
            .tags(Tag::builder().key("other").value("x").build())
            .send()
            .await
            .unwrap();
    }
    let filter = |name: &str, values: &[&str]| {
        values
            .iter()
            .fold(Filter::builder().name(name), |b, v| b.values(*v))
            .build()
    };
    let out = f
        .ec2
        .describe_tags()
        .filters(filter("resource-id", &[&ids[0], &ids[2]]))
        .filters(filter("key", &["gate"]))
        .send()
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = out
        .tags()
        .iter()
        .map(|t| {
            (
                t.resource_id().unwrap(),
                t.resource_type().unwrap().as_str(),
                t.key().unwrap(),
                t.value().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (ids[0].as_str(), "instance", "gate", "open"),
            (ids[2].as_str(), "instance", "gate", "open"),
        ]
    );
    assert!(out.next_token().is_none());
    // Six tags, five per page.
    let first = f.ec2.describe_tags().max_results(5).send().await.unwrap();
    assert_eq!(first.tags().len(), 5);
    let token = first.next_token().expect("a second page").to_owned();
    let second = f
        .ec2
        .describe_tags()
        .max_results(5)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.tags().len(), 1);
    assert!(second.next_token().is_none());
    let err = f
        .ec2
        .describe_tags()
        .filters(filter("colour", &["red"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("InvalidParameterValue")
    );
}

/// aws-behaviour §3.8 GetDeploymentGroup: `autoScalingGroups` names each associated group with
/// the launch hook CodeDeploy installed there, `ec2TagSet` keeps every tag group, and
/// `deploymentConfigName` is the group's own configuration.
#[tokio::test]
async fn get_deployment_group_lists_associated_asgs_tag_groups_and_config() {
    let mut c = cloud();
    if let Some(g) = c.groups.get_mut(&("web".into(), "web-dg".into())) {
        g.tag_set = vec![
            vec![("Name".into(), "web".into()), ("Name".into(), "api".into())],
            vec![("gate".into(), "open".into())],
        ];
        g.config = DeployConfig::HalfAtATime;
    }
    c.associate_asg("fleet", &("web".into(), "web-dg".into()));
    let hook = c.native_hooks.keys().next().unwrap().1.clone();
    let f = fixture(c).await;
    let out =
        f.cd.get_deployment_group()
            .application_name("web")
            .deployment_group_name("web-dg")
            .send()
            .await
            .unwrap();
    let info = out.deployment_group_info().unwrap();
    let asgs: Vec<(&str, &str)> = info
        .auto_scaling_groups()
        .iter()
        .map(|a| (a.name().unwrap(), a.hook().unwrap()))
        .collect();
    assert_eq!(asgs, vec![("fleet", hook.as_str())]);
    assert!(hook.starts_with("CodeDeploy-managed-automatic-launch-deployment-hook-web-dg-"));
    let groups: Vec<Vec<(&str, &str)>> = info
        .ec2_tag_set()
        .unwrap()
        .ec2_tag_set_list()
        .iter()
        .map(|g| {
            g.iter()
                .map(|t| (t.key().unwrap(), t.value().unwrap()))
                .collect()
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            vec![("Name", "web"), ("Name", "api")],
            vec![("gate", "open")]
        ]
    );
    assert_eq!(
        info.deployment_config_name(),
        Some("CodeDeployDefault.HalfAtATime")
    );
    let err =
        f.cd.get_deployment_group()
            .application_name("web")
            .deployment_group_name("nope")
            .send()
            .await
            .unwrap_err();
    assert!(
        err.into_service_error()
            .is_deployment_group_does_not_exist_exception()
    );
}

/// aws-behaviour §3.9 GetDeploymentConfig: the predefined EC2/On-Premises configurations exist
/// (OneAtATime reports `MOST_CONCURRENCY` 1); any other name is
/// `DeploymentConfigDoesNotExistException`.
#[tokio::test]
async fn get_deployment_config_knows_the_predefined_ones_and_refuses_others() {
    let f = fixture(cloud()).await;
    for name in [
        "CodeDeployDefault.OneAtATime",
        "CodeDeployDefault.HalfAtATime",
        "CodeDeployDefault.AllAtOnce",
    ] {
        let out =
            f.cd.get_deployment_config()
                .deployment_config_name(name)
                .send()
                .await
                .unwrap();
        let info = out.deployment_config_info().unwrap();
        assert_eq!(info.deployment_config_name(), Some(name));
        assert_eq!(info.compute_platform().map(|p| p.as_str()), Some("Server"));
        if name.ends_with("OneAtATime") {
            let h = info.minimum_healthy_hosts().unwrap();
            assert_eq!(h.r#type().map(|t| t.as_str()), Some("MOST_CONCURRENCY"));
            assert_eq!(h.value(), 1);
        }
    }
    let err =
        f.cd.get_deployment_config()
            .deployment_config_name("Custom.Nope")
            .send()
            .await
            .unwrap_err();
    assert!(
        err.into_service_error()
            .is_deployment_config_does_not_exist_exception()
    );
}

/// aws-behaviour §2 Warm pools, DescribeAutoScalingGroups and DescribeWarmPool: a group with a
/// warm pool carries a `WarmPoolConfiguration`; its pool's instances are left out of the
/// group's `Instances` and listed by DescribeWarmPool in their `Warmed:*` states (paged), so
/// the adoption sweep finds an instance entering the pool (`Place::WarmPool`) and none stopped
/// in it.
#[tokio::test]
async fn warm_pool_wire_describes_the_pool_and_the_sweep_finds_instances_entering_it() {
    use turnstile_aws::autoscaling::AutoScaling;
    use turnstile_aws::ports::Lifecycle;
    use turnstile_core::Place;
    use turnstile_model::WarmPoolSpec;

    let mut c = cloud();
    c.put_warm_pool("fleet", WarmPoolSpec::default());
    let f = fixture(c).await;
    let pooled = f.sim.cloud().fill_warm_pool("fleet", 3);
    let token = {
        let cloud = f.sim.cloud();
        cloud.instances[&pooled[0]].actions[0].token.clone()
    };
    // The first one's entry completes: it is stopped in the pool.
    f.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("fleet")
        .lifecycle_hook_name("launch")
        .lifecycle_action_token(&token)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let groups = f
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("fleet")
        .send()
        .await
        .unwrap();
    let g = &groups.auto_scaling_groups()[0];
    assert!(g.warm_pool_configuration().is_some());
    assert!(
        g.instances().is_empty(),
        "pool instances are not the group's"
    );
    let page = f
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("fleet")
        .max_records(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.instances().len(), 2);
    let next = page.next_token().unwrap().to_owned();
    let rest = f
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("fleet")
        .next_token(next)
        .send()
        .await
        .unwrap();
    let mut states: Vec<(String, String)> = page
        .instances()
        .iter()
        .chain(rest.instances())
        .map(|i| {
            (
                i.instance_id().unwrap().to_owned(),
                i.lifecycle_state().unwrap().as_str().to_owned(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            (pooled[0].clone(), "Warmed:Stopped".to_owned()),
            (pooled[1].clone(), "Warmed:Pending:Wait".to_owned()),
            (pooled[2].clone(), "Warmed:Pending:Wait".to_owned()),
        ]
    );
    let err = f
        .asg
        .describe_warm_pool()
        .auto_scaling_group_name("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    let mut found = AutoScaling::new(f.asg.clone())
        .waiting(&["fleet".to_owned()])
        .await
        .unwrap();
    found.sort_by(|a, b| a.instance.cmp(&b.instance));
    let ids: Vec<&str> = found.iter().map(|w| w.instance.as_str()).collect();
    assert_eq!(ids, [pooled[1].as_str(), pooled[2].as_str()]);
    assert!(found.iter().all(|w| w.place == Place::WarmPool));
}
