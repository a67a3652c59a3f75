//! The SDK adapters against aws-smithy-mocks: the exact request fields sent, and every error
//! path (throttling then success, gone, busy with the id parsed, paging).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use turnstile_aws::autoscaling::AutoScaling;
use turnstile_aws::codedeploy::CodeDeploy;
use turnstile_aws::ports::{Deployments, Lifecycle, PortError, Tags};
use turnstile_aws::tags::Ec2Tags;
use turnstile_core::{
    ActionRef, CreateOutcome, DeploymentId, Gate, GroupKey, InstanceId, LeaveFound,
    LifecycleResult, Millis, Revision, TargetState,
};

const TOKEN: &str = "71514b9d-6a40-4b26-8523-05e7eEXAMPLE";

fn action() -> ActionRef {
    ActionRef {
        asg: "my-asg".into(),
        hook: "my-hook".into(),
        token: Some(TOKEN.into()),
        instance: "i-1234567890abcdef0".into(),
    }
}

fn fast_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
}

// ---- Auto Scaling -------------------------------------------------------------------------

mod autoscaling {
    use super::*;
    use aws_sdk_autoscaling::Client;
    use aws_sdk_autoscaling::operation::complete_lifecycle_action::{
        CompleteLifecycleActionError, CompleteLifecycleActionOutput,
    };
    use aws_sdk_autoscaling::operation::describe_lifecycle_hooks::DescribeLifecycleHooksOutput;
    use aws_sdk_autoscaling::operation::record_lifecycle_action_heartbeat::{
        RecordLifecycleActionHeartbeatError, RecordLifecycleActionHeartbeatOutput,
    };
    use aws_sdk_autoscaling::types::LifecycleHook;

    #[tokio::test]
    async fn complete_sends_the_token_not_the_instance_id() {
        let rule = mock!(Client::complete_lifecycle_action)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some("my-asg")
                    && r.lifecycle_hook_name() == Some("my-hook")
                    && r.lifecycle_action_token() == Some(TOKEN)
                    && r.instance_id().is_none()
                    && r.lifecycle_action_result() == Some("ABANDON")
            })
            .then_output(|| CompleteLifecycleActionOutput::builder().build());
        let asg = AutoScaling::new(mock_client!(aws_sdk_autoscaling, [&rule]));
        asg.complete(&action(), LifecycleResult::Abandon)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn adopt_calls_name_the_instance_when_the_action_has_no_token() {
        let adopted = ActionRef {
            token: None,
            ..action()
        };
        let by_instance = |token: Option<&str>, instance: Option<&str>| {
            token.is_none() && instance == Some("i-1234567890abcdef0")
        };
        let beat = mock!(Client::record_lifecycle_action_heartbeat)
            .match_requests(move |r| {
                r.lifecycle_hook_name() == Some("my-hook")
                    && by_instance(r.lifecycle_action_token(), r.instance_id())
            })
            .then_output(|| RecordLifecycleActionHeartbeatOutput::builder().build());
        let done = mock!(Client::complete_lifecycle_action)
            .match_requests(move |r| {
                r.lifecycle_action_result() == Some("CONTINUE")
                    && by_instance(r.lifecycle_action_token(), r.instance_id())
            })
            .then_output(|| CompleteLifecycleActionOutput::builder().build());
        let asg = AutoScaling::new(mock_client!(aws_sdk_autoscaling, [&beat, &done]));
        asg.heartbeat(&adopted).await.unwrap();
        asg.complete(&adopted, LifecycleResult::Continue)
            .await
            .unwrap();
        assert_eq!((beat.num_calls(), done.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn adopt_waiting_lists_pending_wait_and_warm_pool_entries() {
        use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
        use aws_sdk_autoscaling::operation::describe_warm_pool::DescribeWarmPoolOutput;
        use aws_sdk_autoscaling::types::{
            AutoScalingGroup, Instance, LifecycleState, WarmPoolConfiguration,
        };
        use turnstile_aws::ports::Waiting;
        use turnstile_core::Place;
        let member = |id: &str, state: LifecycleState| {
            Instance::builder()
                .instance_id(id)
                .lifecycle_state(state)
                .build()
        };
        let group = |name: &str, instances: Vec<Instance>, warm: bool| {
            let mut g = AutoScalingGroup::builder()
                .auto_scaling_group_name(name)
                .set_instances(Some(instances));
            if warm {
                g = g.warm_pool_configuration(WarmPoolConfiguration::builder().build());
            }
            g.build()
        };
        let pages = mock!(Client::describe_auto_scaling_groups)
            .match_requests(|r| r.auto_scaling_group_names().len() == 2)
            .sequence()
            .output(move || {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(group(
                        "web",
                        vec![
                            member("i-1", LifecycleState::PendingWait),
                            member("i-2", LifecycleState::InService),
                        ],
                        true,
                    ))
                    .next_token("page-2")
                    .build()
            })
            .output(move || {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(group(
                        "batch",
                        vec![member("i-3", LifecycleState::PendingWait)],
                        false,
                    ))
                    .build()
            })
            .build();
        let warm = mock!(Client::describe_warm_pool)
            .match_requests(|r| r.auto_scaling_group_name() == Some("web"))
            .then_output(move || {
                DescribeWarmPoolOutput::builder()
                    .instances(member("i-4", LifecycleState::WarmedPendingWait))
                    .instances(member("i-5", LifecycleState::WarmedStopped))
                    .build()
            });
        let asg = AutoScaling::new(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&pages, &warm]
        ));
        let found = asg
            .waiting(&["web".to_owned(), "batch".to_owned()])
            .await
            .unwrap();
        let w = |asg: &str, id: &str, place| Waiting {
            asg: asg.into(),
            instance: id.into(),
            place,
        };
        assert_eq!(
            found,
            [
                w("web", "i-1", Place::AutoScalingGroup),
                w("batch", "i-3", Place::AutoScalingGroup),
                w("web", "i-4", Place::WarmPool),
            ]
        );
        assert_eq!(pages.num_calls(), 2, "followed NextToken");
        assert_eq!(warm.num_calls(), 1, "only the group with a warm pool");
    }

    #[tokio::test]
    async fn throttling_then_success() {
        let rule = mock!(Client::complete_lifecycle_action)
            .sequence()
            .error(|| {
                CompleteLifecycleActionError::generic(
                    ErrorMetadata::builder()
                        .code("Throttling")
                        .message("Rate exceeded")
                        .build(),
                )
            })
            .output(|| CompleteLifecycleActionOutput::builder().build())
            .build();
        let client = mock_client!(aws_sdk_autoscaling, RuleMode::Sequential, [&rule], |c| c
            .retry_config(fast_retries()));
        AutoScaling::new(client)
            .complete(&action(), LifecycleResult::Continue)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 2, "throttled once, retried, succeeded");
    }

    #[tokio::test]
    async fn no_active_lifecycle_action_is_gone_and_not_retried() {
        let msg = format!("No active Lifecycle Action found with token {TOKEN}");
        let rule = mock!(Client::complete_lifecycle_action).then_error(move || {
            CompleteLifecycleActionError::generic(
                ErrorMetadata::builder()
                    .code("ValidationError")
                    .message(msg.clone())
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&rule], |c| c
            .retry_config(fast_retries()));
        let err = AutoScaling::new(client)
            .complete(&action(), LifecycleResult::Continue)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PortError::Gone { message, .. } if message.contains("No active Lifecycle Action found")),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn other_validation_errors_are_permanent_not_gone() {
        let rule = mock!(Client::record_lifecycle_action_heartbeat).then_error(|| {
            RecordLifecycleActionHeartbeatError::generic(
                ErrorMetadata::builder()
                    .code("ValidationError")
                    .message("1 validation error detected")
                    .build(),
            )
        });
        let err = AutoScaling::new(mock_client!(aws_sdk_autoscaling, [&rule]))
            .heartbeat(&action())
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Permanent { .. }), "{err}");
    }

    #[tokio::test]
    async fn heartbeat_gone() {
        let rule = mock!(Client::record_lifecycle_action_heartbeat)
            .match_requests(|r| {
                r.lifecycle_action_token() == Some(TOKEN) && r.instance_id().is_none()
            })
            .then_error(|| {
                RecordLifecycleActionHeartbeatError::generic(
                    ErrorMetadata::builder()
                        .code("ValidationError")
                        .message(format!(
                            "No active Lifecycle Action found with token {TOKEN}"
                        ))
                        .build(),
                )
            });
        let ok = mock!(Client::record_lifecycle_action_heartbeat)
            .then_output(|| RecordLifecycleActionHeartbeatOutput::builder().build());
        let asg = AutoScaling::new(mock_client!(aws_sdk_autoscaling, [&ok, &rule]));
        asg.heartbeat(&action()).await.unwrap();
        assert!(asg.heartbeat(&action()).await.unwrap_err().is_gone());
    }

    #[tokio::test]
    async fn describe_hook_reads_timeouts_and_metadata_once() {
        let rule = mock!(Client::describe_lifecycle_hooks)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some("my-asg")
                    && r.lifecycle_hook_names() == ["my-hook"]
            })
            .then_output(|| {
                DescribeLifecycleHooksOutput::builder()
                    .lifecycle_hooks(
                        LifecycleHook::builder()
                            .lifecycle_hook_name("my-hook")
                            .heartbeat_timeout(300)
                            .global_timeout(30000)
                            .notification_metadata("{\"version\":1}")
                            .build(),
                    )
                    .build()
            });
        let asg = AutoScaling::new(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&rule]
        ));
        let info = asg.hook("my-asg", "my-hook").await.unwrap();
        assert_eq!(
            (info.timeouts.heartbeat_secs, info.timeouts.global_secs),
            (300, 30000)
        );
        assert_eq!(info.metadata.as_deref(), Some("{\"version\":1}"));
        asg.hook("my-asg", "my-hook").await.unwrap();
        assert_eq!(rule.num_calls(), 1, "cached");
    }
}

// ---- CodeDeploy ---------------------------------------------------------------------------

mod codedeploy {
    use super::*;
    use aws_sdk_codedeploy::Client;
    use aws_sdk_codedeploy::operation::batch_get_deployment_targets::{
        BatchGetDeploymentTargetsError, BatchGetDeploymentTargetsOutput,
    };
    use aws_sdk_codedeploy::operation::create_deployment::{
        CreateDeploymentError, CreateDeploymentOutput,
    };
    use aws_sdk_codedeploy::operation::get_deployment::GetDeploymentOutput;
    use aws_sdk_codedeploy::operation::get_deployment_group::{
        GetDeploymentGroupError, GetDeploymentGroupOutput,
    };
    use aws_sdk_codedeploy::operation::list_deployment_targets::ListDeploymentTargetsOutput;
    use aws_sdk_codedeploy::operation::list_deployments::{
        ListDeploymentsInput, ListDeploymentsOutput,
    };
    use aws_sdk_codedeploy::operation::stop_deployment::StopDeploymentError;
    use aws_sdk_codedeploy::types::error::{
        DeploymentAlreadyCompletedException, DeploymentGroupDoesNotExistException,
        DeploymentLimitExceededException, DeploymentTargetDoesNotExistException,
    };
    use aws_sdk_codedeploy::types::{
        BundleType, DeploymentGroupInfo, DeploymentInfo, DeploymentOverview, DeploymentStatus,
        DeploymentTarget, InstanceTarget, LastDeploymentInfo, RevisionLocation,
        RevisionLocationType, S3Location, TargetStatus,
    };

    fn revision() -> RevisionLocation {
        RevisionLocation::builder()
            .revision_type(RevisionLocationType::S3)
            .s3_location(
                S3Location::builder()
                    .bucket("artifacts")
                    .key("web.zip")
                    .bundle_type(BundleType::Zip)
                    .e_tag("abc")
                    .version("v7")
                    .build(),
            )
            .build()
    }

    fn group(active: Option<(&str, DeploymentStatus)>) -> GetDeploymentGroupOutput {
        let mut info = DeploymentGroupInfo::builder()
            .application_name("web")
            .deployment_group_name("web-fleet")
            .target_revision(revision());
        if let Some((id, status)) = active {
            info = info.last_attempted_deployment(
                LastDeploymentInfo::builder()
                    .deployment_id(id)
                    .status(status)
                    .build(),
            );
        }
        GetDeploymentGroupOutput::builder()
            .deployment_group_info(info.build())
            .build()
    }

    fn key() -> GroupKey {
        GroupKey::new("web", "web-fleet")
    }

    fn expected_revision() -> Revision {
        Revision("s3://artifacts/web.zip?version=v7&etag=abc&bundle=zip".into())
    }

    fn limit_exceeded(active: &str) -> CreateDeploymentError {
        let message =
            format!("The Deployment Group 'web-fleet' already has an active Deployment '{active}'");
        CreateDeploymentError::DeploymentLimitExceededException(
            DeploymentLimitExceededException::builder()
                .message(message.clone())
                .meta(
                    ErrorMetadata::builder()
                        .code("DeploymentLimitExceededException")
                        .message(message)
                        .build(),
                )
                .build(),
        )
    }

    fn deployment(id: &str, description: &str) -> GetDeploymentOutput {
        GetDeploymentOutput::builder()
            .deployment_info(
                DeploymentInfo::builder()
                    .deployment_id(id)
                    .description(description)
                    .status(DeploymentStatus::InProgress)
                    .revision(revision())
                    .build(),
            )
            .build()
    }

    #[tokio::test]
    async fn create_sends_the_explicit_revision_outdated_only_config_and_intent() {
        let get = mock!(Client::get_deployment_group)
            .match_requests(|r| {
                r.application_name() == Some("web")
                    && r.deployment_group_name() == Some("web-fleet")
            })
            .then_output(|| group(None));
        let create = mock!(Client::create_deployment)
            .match_requests(|r| {
                r.revision() == Some(&revision())
                    && r.update_outdated_instances_only() == Some(true)
                    && r.deployment_config_name() == Some("CodeDeployDefault.AllAtOnce")
                    && r.description()
                        .is_some_and(|d| d.starts_with("turnstile intent=77-1 "))
                    && r.target_instances().is_none()
            })
            .then_output(|| {
                CreateDeploymentOutput::builder()
                    .deployment_id("d-NEW")
                    .build()
            });
        let cd = CodeDeploy::new(mock_client!(aws_sdk_codedeploy, [&get, &create]));
        let out = cd
            .create(&key(), &"77-1".into(), Some("CodeDeployDefault.AllAtOnce"))
            .await
            .unwrap();
        assert_eq!(
            out,
            CreateOutcome::Created {
                deployment: "d-NEW".into(),
                revision: Some(expected_revision())
            }
        );
        assert_eq!(create.num_calls(), 1);
    }

    /// A group with its own config (`OneAtATime`) whose last attempted deployment is `d-LAST`.
    fn group_after_last() -> GetDeploymentGroupOutput {
        let mut out = group(Some(("d-LAST", DeploymentStatus::Succeeded)));
        if let Some(info) = out.deployment_group_info.as_mut() {
            info.deployment_config_name = Some("CodeDeployDefault.OneAtATime".into());
        }
        out
    }

    /// `d-LAST`, ended with `status`, run with `config`, failed on `failed` of 3 targets.
    fn last(
        description: &str,
        status: DeploymentStatus,
        config: &str,
        failed: i64,
    ) -> GetDeploymentOutput {
        let mut out = deployment("d-LAST", description);
        if let Some(d) = out.deployment_info.as_mut() {
            d.status = Some(status);
            d.deployment_config_name = Some(config.into());
            d.deployment_overview = Some(
                DeploymentOverview::builder()
                    .succeeded(3 - failed)
                    .failed(failed)
                    .build(),
            );
        }
        out
    }

    /// Creates with the plan's `AllAtOnce` after `last`, read ahead or not, and checks the
    /// `deploymentConfigName` sent is `expected` (a request that does not match gets no answer).
    async fn launch_after(
        last: GetDeploymentOutput,
        prefetch: bool,
        expected: Option<&'static str>,
    ) {
        let get = mock!(Client::get_deployment_group).then_output(group_after_last);
        let who = mock!(Client::get_deployment)
            .match_requests(|r| r.deployment_id() == Some("d-LAST"))
            .then_output(move || last.clone());
        let create = mock!(Client::create_deployment)
            .match_requests(move |r| r.deployment_config_name() == expected)
            .then_output(|| {
                CreateDeploymentOutput::builder()
                    .deployment_id("d-NEW")
                    .build()
            });
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &who, &create]
        );
        let cd = CodeDeploy::new(client);
        if prefetch {
            cd.prefetch(&key()).await;
            assert_eq!(who.num_calls(), 1, "an ended last attempt is read ahead");
        }
        let out = cd
            .create(&key(), &"77-1".into(), Some("CodeDeployDefault.AllAtOnce"))
            .await
            .unwrap();
        assert!(matches!(out, CreateOutcome::Created { .. }), "{out:?}");
        assert_eq!(create.num_calls(), 1);
        assert_eq!((get.num_calls(), who.num_calls()), (1, 1), "each read once");
    }

    #[tokio::test]
    async fn outdated_in_service_after_a_user_deployment_failed_on_a_target_gets_the_group_config()
    {
        for prefetch in [false, true] {
            launch_after(
                last(
                    "release 1.4",
                    DeploymentStatus::Succeeded,
                    "CodeDeployDefault.AllAtOnce",
                    1,
                ),
                prefetch,
                None,
            )
            .await;
            launch_after(
                last(
                    "release 1.4",
                    DeploymentStatus::Stopped,
                    "CodeDeployDefault.OneAtATime",
                    0,
                ),
                prefetch,
                None,
            )
            .await;
        }
    }

    #[tokio::test]
    async fn outdated_in_service_ruled_out_keeps_the_launch_override() {
        for prefetch in [false, true] {
            // A user's deployment that succeeded on every target.
            launch_after(
                last(
                    "release 1.4",
                    DeploymentStatus::Succeeded,
                    "CodeDeployDefault.OneAtATime",
                    0,
                ),
                prefetch,
                Some("CodeDeployDefault.AllAtOnce"),
            )
            .await;
            // Our own override deployment that failed on its (new) instances.
            launch_after(
                last(
                    "turnstile intent=76-1 (launch deployment by turnstile)",
                    DeploymentStatus::Failed,
                    "CodeDeployDefault.AllAtOnce",
                    2,
                ),
                prefetch,
                Some("CodeDeployDefault.AllAtOnce"),
            )
            .await;
        }
    }

    #[tokio::test]
    async fn a_prefetched_group_saves_create_its_read_once() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_output(|| {
            CreateDeploymentOutput::builder()
                .deployment_id("d-NEW")
                .build()
        });
        let client = mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, [&get, &create]);
        let cd = CodeDeploy::new(client);
        cd.prefetch(&key()).await;
        assert_eq!(get.num_calls(), 1);
        for intent in ["77-1", "77-2"] {
            let out = cd.create(&key(), &intent.into(), None).await.unwrap();
            assert!(matches!(out, CreateOutcome::Created { .. }));
        }
        assert_eq!(
            get.num_calls(),
            2,
            "the first create used the prefetched group, the second read it again"
        );
        assert_eq!(create.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_failed_prefetch_leaves_create_to_read_the_group() {
        let denied = mock!(Client::get_deployment_group).then_error(|| {
            GetDeploymentGroupError::DeploymentGroupDoesNotExistException(
                DeploymentGroupDoesNotExistException::builder()
                    .message("No Deployment Group found")
                    .build(),
            )
        });
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_output(|| {
            CreateDeploymentOutput::builder()
                .deployment_id("d-NEW")
                .build()
        });
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::Sequential,
            [&denied, &get, &create]
        );
        let cd = CodeDeploy::new(client);
        cd.prefetch(&key()).await;
        let out = cd.create(&key(), &"77-1".into(), None).await.unwrap();
        assert!(matches!(out, CreateOutcome::Created { .. }));
        assert_eq!((denied.num_calls(), get.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn busy_group_names_the_active_deployment_and_is_not_retried() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_error(|| limit_exceeded("d-USER42"));
        let who = mock!(Client::get_deployment)
            .match_requests(|r| r.deployment_id() == Some("d-USER42"))
            .then_output(|| deployment("d-USER42", "release 1.4"));
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &create, &who],
            |c| c.retry_config(fast_retries())
        );
        let out = CodeDeploy::new(client)
            .create(&key(), &"77-1".into(), None)
            .await
            .unwrap();
        assert_eq!(
            out,
            CreateOutcome::Busy {
                deployment: "d-USER42".into()
            }
        );
        assert_eq!(
            create.num_calls(),
            1,
            "DeploymentLimitExceededException is not retried"
        );
    }

    #[tokio::test]
    async fn busy_with_our_own_intent_is_adopted() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_error(|| limit_exceeded("d-OURS"));
        let who = mock!(Client::get_deployment).then_output(|| {
            deployment(
                "d-OURS",
                "turnstile intent=77-1 (launch deployment by turnstile)",
            )
        });
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &create, &who]
        );
        let out = CodeDeploy::new(client)
            .create(&key(), &"77-1".into(), None)
            .await
            .unwrap();
        assert_eq!(
            out,
            CreateOutcome::Created {
                deployment: "d-OURS".into(),
                revision: Some(expected_revision())
            }
        );
    }

    #[tokio::test]
    async fn account_quota_is_a_retryable_failure_not_busy() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_error(|| {
            CreateDeploymentError::DeploymentLimitExceededException(
                DeploymentLimitExceededException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("DeploymentLimitExceededException")
                            .message("The maximum number of concurrent deployments was exceeded")
                            .build(),
                    )
                    .build(),
            )
        });
        let idle = mock!(Client::list_deployments).then_output(nothing_active);
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &create, &idle]
        );
        let out = CodeDeploy::new(client)
            .create(&key(), &"77-1".into(), None)
            .await
            .unwrap();
        assert!(
            matches!(
                out,
                CreateOutcome::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{out:?}"
        );
    }

    fn limit_exceeded_saying(message: &str) -> CreateDeploymentError {
        CreateDeploymentError::DeploymentLimitExceededException(
            DeploymentLimitExceededException::builder()
                .message(message)
                .meta(
                    ErrorMetadata::builder()
                        .code("DeploymentLimitExceededException")
                        .message(message)
                        .build(),
                )
                .build(),
        )
    }

    fn nothing_active() -> ListDeploymentsOutput {
        ListDeploymentsOutput::builder().build()
    }

    /// The request asks for the group's deployments in every active status and no other
    /// [aws-behaviour §3.3 GetDeployment and status].
    fn asks_for_the_active_ones(r: &ListDeploymentsInput) -> bool {
        r.application_name() == Some("web")
            && r.deployment_group_name() == Some("web-fleet")
            && r.include_only_statuses()
                == [
                    DeploymentStatus::Created,
                    DeploymentStatus::Queued,
                    DeploymentStatus::InProgress,
                    DeploymentStatus::Baking,
                    DeploymentStatus::Ready,
                ]
    }

    #[tokio::test]
    async fn busy_wording_unknown_asks_codedeploy_which_deployment_is_active() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_error(|| {
            limit_exceeded_saying("Deployment group web-fleet is busy with another deployment")
        });
        let list = mock!(Client::list_deployments)
            .match_requests(asks_for_the_active_ones)
            .then_output(|| {
                ListDeploymentsOutput::builder()
                    .deployments("d-USER42")
                    .build()
            });
        let who = mock!(Client::get_deployment)
            .match_requests(|r| r.deployment_id() == Some("d-USER42"))
            .then_output(|| deployment("d-USER42", "release 1.4"));
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &create, &list, &who],
            |c| c.retry_config(fast_retries())
        );
        let out = CodeDeploy::new(client)
            .create(&key(), &"77-1".into(), None)
            .await
            .unwrap();
        assert_eq!(
            out,
            CreateOutcome::Busy {
                deployment: "d-USER42".into()
            }
        );
        assert_eq!((create.num_calls(), list.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn busy_wording_unknown_with_our_own_intent_active_is_adopted() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment)
            .then_error(|| limit_exceeded_saying("Another deployment is in progress"));
        let list = mock!(Client::list_deployments)
            .match_requests(asks_for_the_active_ones)
            .then_output(|| {
                ListDeploymentsOutput::builder()
                    .deployments("d-OURS")
                    .build()
            });
        let who = mock!(Client::get_deployment).then_output(|| {
            deployment(
                "d-OURS",
                "turnstile intent=77-1 (launch deployment by turnstile)",
            )
        });
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &create, &list, &who]
        );
        let out = CodeDeploy::new(client)
            .create(&key(), &"77-1".into(), None)
            .await
            .unwrap();
        assert_eq!(
            out,
            CreateOutcome::Created {
                deployment: "d-OURS".into(),
                revision: Some(expected_revision())
            }
        );
    }

    #[tokio::test]
    async fn busy_wording_unknown_and_nothing_active_is_the_account_quota() {
        let get = mock!(Client::get_deployment_group).then_output(|| group(None));
        let create = mock!(Client::create_deployment).then_error(|| {
            limit_exceeded_saying("The maximum number of concurrent deployments was exceeded")
        });
        let list = mock!(Client::list_deployments)
            .match_requests(asks_for_the_active_ones)
            .then_output(nothing_active);
        let client = mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &create, &list]
        );
        let out = CodeDeploy::new(client)
            .create(&key(), &"77-1".into(), None)
            .await
            .unwrap();
        assert!(
            matches!(
                out,
                CreateOutcome::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(list.num_calls(), 1);
    }

    #[tokio::test]
    async fn busy_wording_known_names_the_deployment_without_asking_again() {
        for message in [
            "The Deployment Group 'web-fleet' already has an active Deployment 'd-USER42'",
            "Deployment group web-fleet is already deploying 'd-USER42'",
        ] {
            let get = mock!(Client::get_deployment_group).then_output(|| group(None));
            let create =
                mock!(Client::create_deployment).then_error(move || limit_exceeded_saying(message));
            let list = mock!(Client::list_deployments).then_output(nothing_active);
            let who = mock!(Client::get_deployment)
                .match_requests(|r| r.deployment_id() == Some("d-USER42"))
                .then_output(|| deployment("d-USER42", "release 1.4"));
            let client = mock_client!(
                aws_sdk_codedeploy,
                RuleMode::MatchAny,
                [&get, &create, &list, &who]
            );
            let out = CodeDeploy::new(client)
                .create(&key(), &"77-1".into(), None)
                .await
                .unwrap();
            assert_eq!(
                out,
                CreateOutcome::Busy {
                    deployment: "d-USER42".into()
                },
                "{message}"
            );
            assert_eq!(list.num_calls(), 0, "{message}");
        }
    }

    #[tokio::test]
    async fn a_group_without_a_revision_has_nothing_to_deploy() {
        let get = mock!(Client::get_deployment_group).then_output(|| {
            GetDeploymentGroupOutput::builder()
                .deployment_group_info(
                    DeploymentGroupInfo::builder()
                        .deployment_group_name("web-fleet")
                        .build(),
                )
                .build()
        });
        let create = mock!(Client::create_deployment)
            .then_output(|| CreateDeploymentOutput::builder().build());
        let client = mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, [&get, &create]);
        assert_eq!(
            CodeDeploy::new(client)
                .create(&key(), &"1-0".into(), None)
                .await
                .unwrap(),
            CreateOutcome::NoRevision
        );
        assert_eq!(create.num_calls(), 0);
    }

    #[tokio::test]
    async fn target_ids_follow_every_page() {
        let rule = mock!(Client::list_deployment_targets)
            .sequence()
            .output(|| {
                ListDeploymentTargetsOutput::builder()
                    .target_ids("i-01")
                    .target_ids("i-02")
                    .next_token("page-2")
                    .build()
            })
            .output(|| {
                ListDeploymentTargetsOutput::builder()
                    .target_ids("i-03")
                    .build()
            })
            .build();
        let cd = CodeDeploy::new(mock_client!(aws_sdk_codedeploy, [&rule]));
        assert_eq!(
            cd.target_ids(&"d-1".into()).await.unwrap(),
            vec!["i-01", "i-02", "i-03"]
        );
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn targets_are_fetched_25_at_a_time() {
        let rule = mock!(Client::batch_get_deployment_targets)
            .match_requests(|r| r.target_ids().len() <= 25 && r.deployment_id() == Some("d-1"))
            .then_compute_output(|r| {
                let mut out = BatchGetDeploymentTargetsOutput::builder();
                for id in r.target_ids() {
                    out = out.deployment_targets(
                        DeploymentTarget::builder()
                            .instance_target(
                                InstanceTarget::builder()
                                    .target_id(id)
                                    .status(TargetStatus::Succeeded)
                                    .build(),
                            )
                            .build(),
                    );
                }
                out.build()
            });
        let cd = CodeDeploy::new(mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&rule]
        ));
        let ids: Vec<InstanceId> = (0..30).map(|n| InstanceId(format!("i-{n:02}"))).collect();
        let got = cd.targets(&"d-1".into(), &ids).await.unwrap();
        assert_eq!(got.len(), 30);
        assert!(got.iter().all(|(_, s)| *s == TargetState::Succeeded));
        assert_eq!(rule.num_calls(), 2, "25 + 5");
    }

    #[tokio::test]
    async fn leave_check_reports_an_active_deployment_still_holding_the_instance() {
        let get = mock!(Client::get_deployment_group)
            .then_output(|| group(Some(("d-USER", DeploymentStatus::InProgress))));
        let target = mock!(Client::batch_get_deployment_targets)
            .match_requests(|r| r.deployment_id() == Some("d-USER") && r.target_ids() == ["i-1"])
            .then_output(|| {
                BatchGetDeploymentTargetsOutput::builder()
                    .deployment_targets(
                        DeploymentTarget::builder()
                            .instance_target(
                                InstanceTarget::builder()
                                    .target_id("i-1")
                                    .status(TargetStatus::InProgress)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let cd = CodeDeploy::new(mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&get, &target]
        ));
        assert_eq!(
            cd.holding(&key(), &"i-1".into(), None, None).await.unwrap(),
            LeaveFound::Held("d-USER".into())
        );
        assert_eq!(
            cd.holding(&key(), &"i-1".into(), Some(&"d-USER".into()), None)
                .await
                .unwrap(),
            LeaveFound::Clear,
            "known done in it: no target lookup"
        );
        assert_eq!(target.num_calls(), 1);
    }

    fn instance_target(status: TargetStatus) -> BatchGetDeploymentTargetsOutput {
        BatchGetDeploymentTargetsOutput::builder()
            .deployment_targets(
                DeploymentTarget::builder()
                    .instance_target(
                        InstanceTarget::builder()
                            .target_id("i-1")
                            .status(status)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn not_a_target() -> BatchGetDeploymentTargetsError {
        let message = "The provided target ID does not belong to the deployment";
        BatchGetDeploymentTargetsError::DeploymentTargetDoesNotExistException(
            DeploymentTargetDoesNotExistException::builder()
                .message(message)
                .meta(
                    ErrorMetadata::builder()
                        .code("DeploymentTargetDoesNotExistException")
                        .message(message)
                        .build(),
                )
                .build(),
        )
    }

    #[tokio::test]
    async fn leave_check_looks_back_for_a_deployment_that_was_done_with_the_instance() {
        // Stress mode, seeds 2837 and 6630: a user's deployment reached the instance through
        // its open gate and finished there; the group's active deployment said nothing of it.
        let list = mock!(Client::list_deployments)
            .match_requests(|r| {
                r.create_time_range().and_then(|t| t.start())
                    == Some(&DateTime::from_millis(
                        1_000_000 - LeaveFound::LOOK_BACK_SLACK_MS as i64,
                    ))
                    && r.include_only_statuses().is_empty()
            })
            .then_output(|| {
                ListDeploymentsOutput::builder()
                    .deployments("d-LATER")
                    .deployments("d-USER")
                    .deployments("d-OURS")
                    .build()
            });
        let later = mock!(Client::batch_get_deployment_targets)
            .match_requests(|r| r.deployment_id() == Some("d-LATER"))
            .then_error(not_a_target);
        let user = mock!(Client::batch_get_deployment_targets)
            .match_requests(|r| r.deployment_id() == Some("d-USER"))
            .then_output(|| instance_target(TargetStatus::Succeeded));
        let ours = mock!(Client::batch_get_deployment_targets)
            .match_requests(|r| r.deployment_id() == Some("d-OURS"))
            .then_output(|| instance_target(TargetStatus::Succeeded));
        let cd = CodeDeploy::new(mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&list, &later, &user, &ours]
        ));
        assert_eq!(
            cd.holding(
                &key(),
                &"i-1".into(),
                Some(&"d-OURS".into()),
                Some(Millis(1_000_000))
            )
            .await
            .unwrap(),
            LeaveFound::Touched("d-USER".into())
        );
        assert_eq!(
            ours.num_calls(),
            0,
            "the instance's own deployment is left out"
        );
        assert_eq!(later.num_calls(), 1);
    }

    #[tokio::test]
    async fn leave_check_looking_back_reports_one_still_running_on_the_instance() {
        let list = mock!(Client::list_deployments).then_output(|| {
            ListDeploymentsOutput::builder()
                .deployments("d-USER")
                .deployments("d-OURS")
                .build()
        });
        let user = mock!(Client::batch_get_deployment_targets)
            .match_requests(|r| r.deployment_id() == Some("d-USER"))
            .then_output(|| instance_target(TargetStatus::InProgress));
        let status = mock!(Client::get_deployment)
            .match_requests(|r| r.deployment_id() == Some("d-USER"))
            .then_output(|| deployment("d-USER", "release 1.4"));
        let cd = CodeDeploy::new(mock_client!(
            aws_sdk_codedeploy,
            RuleMode::MatchAny,
            [&list, &user, &status]
        ));
        assert_eq!(
            cd.holding(
                &key(),
                &"i-1".into(),
                Some(&"d-OURS".into()),
                Some(Millis(1_000_000))
            )
            .await
            .unwrap(),
            LeaveFound::Held("d-USER".into())
        );
    }

    #[tokio::test]
    async fn revision_check_reports_revision_and_active_deployment() {
        let get = mock!(Client::get_deployment_group)
            .then_output(|| group(Some(("d-9", DeploymentStatus::Queued))));
        let cd = CodeDeploy::new(mock_client!(aws_sdk_codedeploy, [&get]));
        let r = cd.revision(&key()).await.unwrap();
        assert_eq!(r.revision, Some(expected_revision()));
        assert_eq!(r.active, Some(DeploymentId::from("d-9")));
    }

    #[tokio::test]
    async fn stopping_a_finished_deployment_is_fine() {
        let rule = mock!(Client::stop_deployment).then_error(|| {
            StopDeploymentError::DeploymentAlreadyCompletedException(
                DeploymentAlreadyCompletedException::builder()
                    .message("done")
                    .build(),
            )
        });
        CodeDeploy::new(mock_client!(aws_sdk_codedeploy, [&rule]))
            .stop(&"d-1".into())
            .await
            .unwrap();
    }
}

// ---- EC2 tags -----------------------------------------------------------------------------

mod tags {
    use super::*;
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::create_tags::{CreateTagsError, CreateTagsOutput};
    use aws_sdk_ec2::operation::delete_tags::DeleteTagsOutput;

    fn gate() -> Gate {
        Gate {
            key: "turnstile:gate:web".into(),
            value: "open".into(),
        }
    }

    fn api_gate() -> Gate {
        Gate {
            key: "turnstile:gate:api".into(),
            value: "yes".into(),
        }
    }

    #[tokio::test]
    async fn open_and_close_send_the_gate_key_and_value() {
        let open = mock!(Client::create_tags)
            .match_requests(|r| {
                r.resources() == ["i-1", "i-2"]
                    && r.tags().len() == 1
                    && r.tags()[0].key() == Some("turnstile:gate:web")
                    && r.tags()[0].value() == Some("open")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let close = mock!(Client::delete_tags)
            .match_requests(|r| {
                r.resources() == ["i-1"]
                    && r.tags()[0].key() == Some("turnstile:gate:web")
                    && r.tags()[0].value().is_none()
            })
            .then_output(|| DeleteTagsOutput::builder().build());
        let tags = Ec2Tags::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&open, &close]
        ));
        tags.open(&[gate()], &["i-1".into(), "i-2".into()])
            .await
            .unwrap();
        tags.close(&[gate()], &["i-1".into()]).await.unwrap();
        assert_eq!((open.num_calls(), close.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn several_gates_are_one_call() {
        let open = mock!(Client::create_tags)
            .match_requests(|r| {
                let tags: Vec<(Option<&str>, Option<&str>)> =
                    r.tags().iter().map(|t| (t.key(), t.value())).collect();
                tags == [
                    (Some("turnstile:gate:web"), Some("open")),
                    (Some("turnstile:gate:api"), Some("yes")),
                ]
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let close = mock!(Client::delete_tags)
            .match_requests(|r| {
                let tags: Vec<(Option<&str>, Option<&str>)> =
                    r.tags().iter().map(|t| (t.key(), t.value())).collect();
                tags == [
                    (Some("turnstile:gate:web"), None),
                    (Some("turnstile:gate:api"), None),
                ]
            })
            .then_output(|| DeleteTagsOutput::builder().build());
        let tags = Ec2Tags::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&open, &close]
        ));
        let both = [gate(), api_gate()];
        tags.open(&both, &["i-1".into()]).await.unwrap();
        tags.close(&both, &["i-1".into()]).await.unwrap();
        tags.close(&[], &["i-1".into()]).await.unwrap();
        assert_eq!(
            (open.num_calls(), close.num_calls()),
            (1, 1),
            "one call each, none for no gates"
        );
    }

    #[tokio::test]
    async fn a_terminated_instance_does_not_block_the_others() {
        let rule = mock!(Client::create_tags)
            .sequence()
            .error(|| {
                CreateTagsError::generic(
                    ErrorMetadata::builder()
                        .code("InvalidInstanceID.NotFound")
                        .message("The instance ID 'i-0dead' does not exist")
                        .build(),
                )
            })
            .output(|| CreateTagsOutput::builder().build())
            .build();
        let retry = mock!(Client::create_tags)
            .match_requests(|r| r.resources() == ["i-0a11ve"])
            .then_output(|| CreateTagsOutput::builder().build());
        let tags = Ec2Tags::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&rule, &retry]
        ));
        tags.open(&[gate()], &["i-0dead".into(), "i-0a11ve".into()])
            .await
            .unwrap();
        assert_eq!(rule.num_calls() + retry.num_calls(), 2);
    }

    /// aws-behaviour §5.6 DescribeTags: the readiness pass reads every waiting instance's tag
    /// with one call per 200 instances (`resource-id` and `key` filters, ANDed), following
    /// `NextToken`.
    #[tokio::test]
    async fn readiness_tags_are_read_by_instance_and_key_200_instances_per_call_paged() {
        use aws_sdk_ec2::operation::describe_tags::DescribeTagsOutput;
        use aws_sdk_ec2::types::TagDescription;
        let tag = |id: &str| {
            TagDescription::builder()
                .resource_id(id)
                .key("turnstile:ready")
                .value("true")
                .build()
        };
        let filters_ok = |r: &aws_sdk_ec2::operation::describe_tags::DescribeTagsInput| {
            let f = r.filters();
            f.len() == 2
                && f[0].name() == Some("resource-id")
                && f[1].name() == Some("key")
                && f[1].values() == ["turnstile:ready"]
        };
        let first = mock!(Client::describe_tags)
            .match_requests(move |r| {
                filters_ok(r) && r.filters()[0].values().len() == 200 && r.next_token().is_none()
            })
            .then_output(move || {
                DescribeTagsOutput::builder()
                    .tags(tag("i-0"))
                    .next_token("more")
                    .build()
            });
        let second = mock!(Client::describe_tags)
            .match_requests(move |r| filters_ok(r) && r.next_token() == Some("more"))
            .then_output(move || DescribeTagsOutput::builder().tags(tag("i-7")).build());
        let rest = mock!(Client::describe_tags)
            .match_requests(move |r| filters_ok(r) && r.filters()[0].values().len() == 50)
            .then_output(move || DescribeTagsOutput::builder().tags(tag("i-249")).build());
        let tags = Ec2Tags::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&first, &second, &rest]
        ));
        let instances: Vec<InstanceId> = (0..250).map(|i| format!("i-{i}").into()).collect();
        let found = tags
            .read(&instances, &["turnstile:ready".to_owned()])
            .await
            .unwrap();
        let ids: Vec<&str> = found.iter().map(|(i, _, _)| i.as_str()).collect();
        assert_eq!(ids, ["i-0", "i-7", "i-249"]);
        assert!(
            found
                .iter()
                .all(|(_, k, v)| k == "turnstile:ready" && v == "true")
        );
        assert_eq!(
            (first.num_calls(), second.num_calls(), rest.num_calls()),
            (1, 1, 1)
        );
        assert!(
            tags.read(&[], &["k".to_owned()]).await.unwrap().is_empty(),
            "no call for none"
        );
    }
}

// ---- SQS ----------------------------------------------------------------------------------

mod sqs {
    use super::*;
    use aws_sdk_sqs::Client;
    use aws_sdk_sqs::operation::change_message_visibility::{
        ChangeMessageVisibilityError, ChangeMessageVisibilityOutput,
    };
    use turnstile_aws::ports::Visibility;
    use turnstile_aws::sqs::SqsVisibility;

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/turnstile-queue";

    #[tokio::test]
    async fn redeliver_changes_the_visibility_of_the_receipt_handle_on_the_functions_queue() {
        let rule = mock!(Client::change_message_visibility)
            .match_requests(|r| {
                r.queue_url() == Some(QUEUE)
                    && r.receipt_handle() == Some("AQEB-receipt")
                    && r.visibility_timeout() == Some(7)
            })
            .then_output(|| ChangeMessageVisibilityOutput::builder().build());
        SqsVisibility::new(mock_client!(aws_sdk_sqs, [&rule]), QUEUE)
            .visible_in("AQEB-receipt", 7)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn redeliver_reports_a_stale_receipt_handle_as_a_port_error() {
        let rule = mock!(Client::change_message_visibility).then_error(|| {
            ChangeMessageVisibilityError::generic(
                ErrorMetadata::builder()
                    .code("ReceiptHandleIsInvalid")
                    .message("The input receipt handle is not a valid receipt handle.")
                    .build(),
            )
        });
        let err = SqsVisibility::new(mock_client!(aws_sdk_sqs, [&rule]), QUEUE)
            .visible_in("stale", 5)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ChangeMessageVisibility"), "{err}");
        assert!(!err.is_retryable(), "{err}");
    }
}
