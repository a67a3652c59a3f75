//! Each test names the docs/aws-behaviour.md entry it models.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

fn cloud(hb: u64, default_result: HookResult) -> Cloud {
    let mut c = Cloud::new(7);
    c.add_asg(Asg {
        name: "asg".into(),
        hooks: vec![Hook {
            name: "launch".into(),
            transition: Transition::Launching,
            heartbeat_secs: hb,
            default_result,
            metadata: Some("{}".into()),
        }],
        replace_after_ms: Some(10_000),
    });
    c.add_group(DeploymentGroup {
        app: "app".into(),
        name: "dg".into(),
        tag_set: vec![
            vec![("role".into(), "web".into())],
            vec![("gate".into(), "open".into())],
        ],
        target_revision: Some("rev-1".into()),
        config: DeployConfig::OneAtATime,
        profile: Profile {
            min_ms: 60_000,
            max_ms: 60_000,
            fail_prob: 0.0,
        },
    });
    c
}

fn key() -> GroupKey {
    ("app".into(), "dg".into())
}

/// Launches `n` instances that carry the group's role and gate tags.
fn selected(c: &mut Cloud, n: usize) -> Vec<String> {
    let ids = c.scale_out("asg", n);
    c.create_tags(&ids, &[("role", "web")]);
    c.create_tags(&ids, &[("gate", "open")]);
    ids
}

/// A user's deployment of the group's target revision.
fn deploy(c: &mut Cloud) -> Result<String, ApiError> {
    c.create_deployment(&key(), None, None, false, "", Creator::User)
}

fn token_of(c: &Cloud, id: &str) -> String {
    c.instances[id].actions[0].token.clone()
}

/// [aws-behaviour §1.1 Detail fields; One event per (instance, hook)] one event per (instance, hook), `detail` fields, 36-char token;
/// [aws-behaviour §2 States] the instance waits in Pending:Wait.
#[test]
fn launch_waits_and_publishes_one_lifecycle_event_per_hook() {
    let mut c = cloud(300, HookResult::Abandon);
    let ids = c.scale_out("asg", 2);
    assert!(
        ids.iter()
            .all(|i| c.instances[i].state == InstanceState::PendingWait)
    );
    let out = c.drain();
    assert_eq!(out.len(), 2);
    let d = &out[0].json["detail"];
    assert_eq!(
        out[0].json["detail-type"],
        "EC2 Instance-launch Lifecycle Action"
    );
    assert_eq!(
        d["LifecycleTransition"],
        "autoscaling:EC2_INSTANCE_LAUNCHING"
    );
    assert_eq!(d["LifecycleActionToken"].as_str().unwrap().len(), 36);
    assert_eq!(d["NotificationMetadata"], "{}");
}

/// [aws-behaviour §2 RecordLifecycleActionHeartbeat] restarts the timer for a full heartbeat
/// timeout and cannot extend past the global timeout (min(100 × heartbeat, 48 h)).
#[test]
fn heartbeat_restarts_the_timer_but_never_past_the_global_timeout() {
    let mut c = cloud(30, HookResult::Abandon);
    let id = c.scale_out("asg", 1).remove(0);
    let tok = token_of(&c, &id);
    c.advance_to(20_000);
    c.record_heartbeat("asg", "launch", Some(&tok), None)
        .unwrap();
    assert_eq!(c.instances[&id].actions[0].heartbeat_deadline, 50_000);
    assert_eq!(c.instances[&id].actions[0].global_deadline, 3_000_000);
    for t in (40_000..=2_990_000).step_by(20_000) {
        c.advance_to(t);
        c.record_heartbeat("asg", "launch", Some(&tok), None)
            .unwrap();
    }
    assert_eq!(
        c.instances[&id].actions[0].heartbeat_deadline, 3_000_000,
        "capped at the global deadline"
    );
    c.advance_to(3_000_000);
    assert!(matches!(
        c.facts
            .iter()
            .rev()
            .find(|f| matches!(f, Fact::TimedOut { .. })),
        Some(Fact::TimedOut { global: true, .. })
    ));
}

/// [aws-behaviour §2 DefaultResult; LifecycleActionResult] on timeout Auto Scaling applies DefaultResult; a launch ABANDON terminates
/// and replaces the instance.
#[test]
fn heartbeat_timeout_applies_default_abandon_and_replaces() {
    let mut c = cloud(30, HookResult::Abandon);
    let id = c.scale_out("asg", 1).remove(0);
    c.advance_to(30_000);
    assert_eq!(c.instances[&id].state, InstanceState::Terminated);
    c.advance_to(40_000);
    assert_eq!(c.instances.len(), 2, "a replacement was launched");
}

/// [aws-behaviour §2 DefaultResult] default result CONTINUE on timeout puts the instance in service.
#[test]
fn heartbeat_timeout_with_default_continue_goes_in_service() {
    let mut c = cloud(30, HookResult::Continue);
    let id = c.scale_out("asg", 1).remove(0);
    c.advance_to(30_000);
    assert_eq!(c.instances[&id].state, InstanceState::InService);
}

/// [aws-behaviour §2 Stale token / already completed] ValidationError with the exact wording.
#[test]
fn stale_token_is_no_active_lifecycle_action() {
    let mut c = cloud(300, HookResult::Abandon);
    let id = c.scale_out("asg", 1).remove(0);
    let tok = token_of(&c, &id);
    c.complete_lifecycle_action("asg", "launch", Some(&tok), None, HookResult::Continue)
        .unwrap();
    assert_eq!(c.instances[&id].state, InstanceState::InService);
    let err = c
        .complete_lifecycle_action("asg", "launch", Some(&tok), None, HookResult::Continue)
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::NoActiveAction(format!("No active Lifecycle Action found with token {tok}"))
    );
    let err = c
        .record_heartbeat("asg", "launch", None, Some(&id))
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::NoActiveAction(format!(
            "No active Lifecycle Action found with instance ID {id}"
        ))
    );
}

/// [aws-behaviour §3.1 Group already busy] one active deployment per group; the message names it.
#[test]
fn second_deployment_on_a_busy_group_is_deployment_limit_exceeded() {
    let mut c = cloud(300, HookResult::Abandon);
    selected(&mut c, 1);
    let first = deploy(&mut c).unwrap();
    let err = deploy(&mut c).unwrap_err();
    let ApiError::DeploymentLimitExceeded { message, active } = err else {
        panic!()
    };
    assert_eq!(active, first);
    assert_eq!(
        message,
        format!("The Deployment Group 'dg' already has an active Deployment '{first}'")
    );
}

/// [aws-behaviour §3.4] an instance terminated before its turn in a
/// one-at-a-time deployment is never deployed: its target stays failed, nothing is installed on
/// it, and the deployment still ends (the clock's scans skip terminated instances).
#[test]
fn a_target_terminated_before_its_turn_is_never_deployed() {
    let mut c = cloud(300, HookResult::Abandon);
    let ids = selected(&mut c, 2);
    let d = deploy(&mut c).unwrap();
    let (first, second) = (&ids[0], &ids[1]);
    assert_eq!(
        c.deployments[&d].targets[first].status,
        TargetStatus::InProgress
    );
    assert_eq!(
        c.deployments[&d].targets[second].status,
        TargetStatus::Pending
    );
    c.terminate(second);
    c.advance_to(c.now + 120_000);
    assert_eq!(
        c.deployments[&d].targets[first].status,
        TargetStatus::Succeeded
    );
    assert_eq!(
        c.deployments[&d].targets[second].status,
        TargetStatus::Failed
    );
    assert!(c.instances[second].installed.is_empty());
    assert!(c.instances[second].agent.running.is_none());
    assert!(
        !c.deployments[&d].status.is_active(),
        "the deployment ended"
    );
}

/// [aws-behaviour §3.1 Targets by tag] tag groups are ANDed: an instance needs the role AND the gate.
#[test]
fn tag_set_groups_are_anded() {
    let mut c = cloud(300, HookResult::Abandon);
    let ids = c.scale_out("asg", 2);
    c.create_tags(&ids, &[("role", "web")]);
    c.create_tags(&ids[..1], &[("gate", "open")]);
    let d = deploy(&mut c).unwrap();
    let targets: Vec<_> = c.deployments[&d].targets.keys().cloned().collect();
    assert_eq!(targets, vec![ids[0].clone()]);
}

/// [aws-behaviour §3.1 updateOutdatedInstancesOnly] up-to-date members are skipped.
#[test]
fn update_outdated_only_skips_up_to_date_members() {
    let mut c = cloud(300, HookResult::Abandon);
    let ids = selected(&mut c, 2);
    c.instances
        .get_mut(&ids[0])
        .unwrap()
        .installed
        .insert(key(), "rev-1".into());
    let d = c
        .create_deployment(&key(), Some("rev-1"), None, true, "", Creator::User)
        .unwrap();
    assert_eq!(
        c.deployments[&d].targets[&ids[0]].status,
        TargetStatus::Skipped
    );
    assert_eq!(
        c.deployments[&d].targets[&ids[1]].status,
        TargetStatus::InProgress
    );
}

/// [aws-behaviour §3.6 The agent runs one deployment at a time; §3.2 Lifecycle event start limit:
/// 5 min"] the agent runs one deployment at a time and fails one that waited too long.
#[test]
fn agent_runs_one_deployment_at_a_time_and_fails_one_that_cannot_start_in_time() {
    let mut c = cloud(3600, HookResult::Abandon);
    for n in 0..2 {
        c.add_group(DeploymentGroup {
            app: format!("a{n}"),
            name: format!("g{n}"),
            tag_set: vec![vec![("role".into(), "web".into())]],
            target_revision: Some("r".into()),
            config: DeployConfig::AllAtOnce,
            profile: Profile {
                min_ms: 400_000,
                max_ms: 400_000,
                fail_prob: 0.0,
            },
        });
    }
    let id = c.scale_out("asg", 1).remove(0);
    c.create_tags(std::slice::from_ref(&id), &[("role", "web")]);
    let d0 = c
        .create_deployment(
            &("a0".into(), "g0".into()),
            None,
            None,
            false,
            "",
            Creator::Autoscaling,
        )
        .unwrap();
    let d1 = c
        .create_deployment(
            &("a1".into(), "g1".into()),
            None,
            None,
            false,
            "",
            Creator::Autoscaling,
        )
        .unwrap();
    assert_eq!(
        c.deployments[&d0].targets[&id].status,
        TargetStatus::InProgress
    );
    assert_eq!(
        c.deployments[&d1].targets[&id].status,
        TargetStatus::Pending,
        "queued behind d0"
    );
    c.advance_to(400_000);
    assert_eq!(c.deployments[&d0].status, DeploymentStatus::Succeeded);
    assert_eq!(
        c.deployments[&d1].targets[&id].status,
        TargetStatus::Failed,
        "its first event could not start within 5 min"
    );
    assert_eq!(c.deployments[&d1].status, DeploymentStatus::Failed);
}

/// [aws-behaviour §3.5] in-flight targets fail, pending ones are skipped, a second
/// stop is DeploymentAlreadyCompletedException.
#[test]
fn stop_deployment() {
    let mut c = cloud(3600, HookResult::Abandon);
    selected(&mut c, 2);
    let d = deploy(&mut c).unwrap();
    c.stop_deployment(&d).unwrap();
    let dep = &c.deployments[&d];
    assert_eq!(dep.status, DeploymentStatus::Stopped);
    let statuses: Vec<_> = dep.targets.values().map(|t| t.status).collect();
    assert_eq!(statuses, vec![TargetStatus::Failed, TargetStatus::Skipped]);
    assert_eq!(
        c.stop_deployment(&d),
        Err(ApiError::DeploymentAlreadyCompleted(d))
    );
}

/// [aws-behaviour §1.3] deployment and instance state-change events carry the documented fields.
#[test]
fn codedeploy_events_have_the_documented_shape() {
    let mut c = cloud(3600, HookResult::Abandon);
    let ids = selected(&mut c, 1);
    c.drain();
    let d = deploy(&mut c).unwrap();
    c.advance_to(60_000);
    let states: Vec<(String, String)> = c
        .drain()
        .iter()
        .map(|p| {
            (
                p.json["detail-type"].as_str().unwrap().to_owned(),
                p.json["detail"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (
                "CodeDeploy Deployment State-change Notification".into(),
                "START".into()
            ),
            (
                "CodeDeploy Instance State-change Notification".into(),
                "START".into()
            ),
            (
                "CodeDeploy Instance State-change Notification".into(),
                "SUCCESS".into()
            ),
            (
                "CodeDeploy Deployment State-change Notification".into(),
                "SUCCESS".into()
            ),
        ]
    );
    assert_eq!(c.groups[&key()].target_revision.as_deref(), Some("rev-1"));
    assert_eq!(c.instances[&ids[0]].installed[&key()], "rev-1");
    let _ = d;
}

/// [aws-behaviour §2 States] a terminate hook holds the instance in Terminating:Wait; the pending
/// launch action is gone.
#[test]
fn terminate_with_hook_waits_and_ends_launch_action() {
    let mut c = cloud(300, HookResult::Abandon);
    c.asgs.get_mut("asg").unwrap().hooks.push(Hook {
        name: "term".into(),
        transition: Transition::Terminating,
        heartbeat_secs: 300,
        default_result: HookResult::Continue,
        metadata: None,
    });
    let id = c.scale_out("asg", 1).remove(0);
    let launch_tok = token_of(&c, &id);
    c.terminate(&id);
    assert_eq!(c.instances[&id].state, InstanceState::TerminatingWait);
    assert!(
        c.complete_lifecycle_action(
            "asg",
            "launch",
            Some(&launch_tok),
            None,
            HookResult::Continue
        )
        .is_err()
    );
    let t = token_of(&c, &id);
    c.complete_lifecycle_action("asg", "term", Some(&t), None, HookResult::Continue)
        .unwrap();
    assert_eq!(c.instances[&id].state, InstanceState::Terminated);
}

#[test]
fn iso_time_matches_eventbridge_format() {
    assert_eq!(iso(1_610_496_757_214), "2021-01-13T00:12:37.214Z");
    assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
}

/// [aws-behaviour §3.6; §3.6 The agent runs one deployment at a time] CodeDeploy's own hooks: every associated group deploys to
/// a new instance at once; the agent runs them one at a time, the later ones cannot start
/// within 5 minutes and fail, the hook is abandoned, the instance replaced, and so on.
#[test]
fn native_hooks_of_three_groups_abandon_and_relaunch() {
    let mut c = Cloud::new(11);
    c.add_asg(Asg {
        name: "asg".into(),
        hooks: vec![],
        replace_after_ms: Some(10_000),
    });
    for n in 0..3 {
        c.add_group(DeploymentGroup {
            app: format!("a{n}"),
            name: format!("g{n}"),
            tag_set: vec![vec![("role".into(), "web".into())]],
            target_revision: Some(format!("r{n}")),
            config: DeployConfig::OneAtATime,
            profile: Profile {
                min_ms: 240_000,
                max_ms: 240_000,
                fail_prob: 0.0,
            },
        });
        c.associate_asg("asg", &(format!("a{n}"), format!("g{n}")));
    }
    assert!(c.asgs["asg"].hooks.iter().all(|h| {
        h.name
            .starts_with("CodeDeploy-managed-automatic-launch-deployment-hook-g")
    }));
    let first = c.scale_out("asg", 1).remove(0);
    let natives = c
        .deployments
        .values()
        .filter(|d| d.creator == Creator::Autoscaling)
        .count();
    assert_eq!(natives, 3, "all three groups deploy at the same moment");
    c.advance_to(600_000);
    assert_eq!(
        c.instances[&first].state,
        InstanceState::Terminated,
        "abandoned after the third deployment could not start in time"
    );
    assert!(c.facts.iter().any(|f| matches!(f, Fact::Completed { result: HookResult::Abandon, instance, .. } if *instance == first)));
    assert!(
        c.instances.len() >= 2,
        "a replacement was launched: the loop begins"
    );
}

/// [aws-behaviour §3.6 Flow] with one associated group the native hook works: CONTINUE on success.
#[test]
fn a_single_native_hook_continues_on_success() {
    let mut c = Cloud::new(12);
    c.add_asg(Asg {
        name: "asg".into(),
        hooks: vec![],
        replace_after_ms: None,
    });
    c.add_group(DeploymentGroup {
        app: "a".into(),
        name: "g".into(),
        tag_set: vec![vec![("role".into(), "web".into())]],
        target_revision: Some("r".into()),
        config: DeployConfig::OneAtATime,
        profile: Profile {
            min_ms: 60_000,
            max_ms: 60_000,
            fail_prob: 0.0,
        },
    });
    c.associate_asg("asg", &("a".into(), "g".into()));
    let id = c.scale_out("asg", 1).remove(0);
    c.advance_to(60_000);
    assert_eq!(c.instances[&id].state, InstanceState::InService);
    assert_eq!(
        c.instances[&id].installed[&("a".to_owned(), "g".to_owned())],
        "r"
    );
}

/// A second launch hook on the group, owned by another tool, and a second terminate hook.
fn with_foreign_hooks(c: &mut Cloud, owner: Option<HookOwner>) {
    let hooks = &mut c.asgs.get_mut("asg").unwrap().hooks;
    hooks.push(Hook {
        name: "other-launch".into(),
        transition: Transition::Launching,
        heartbeat_secs: 300,
        default_result: HookResult::Continue,
        metadata: None,
    });
    hooks.push(Hook {
        name: "other-terminate".into(),
        transition: Transition::Terminating,
        heartbeat_secs: 300,
        default_result: HookResult::Continue,
        metadata: None,
    });
    hooks.push(Hook {
        name: "term".into(),
        transition: Transition::Terminating,
        heartbeat_secs: 300,
        default_result: HookResult::Continue,
        metadata: None,
    });
    if let Some(o) = owner {
        c.hook_owners
            .insert(("asg".into(), "other-launch".into()), o);
        c.hook_owners
            .insert(("asg".into(), "other-terminate".into()), o);
    }
}

fn token_for(c: &Cloud, id: &str, hook: &str) -> String {
    c.instances[id]
        .actions
        .iter()
        .find(|a| a.hook == hook)
        .unwrap()
        .token
        .clone()
}

/// [aws-behaviour §2 Multiple hooks on one transition] each hook gets its own token and event;
/// the instance leaves Pending:Wait only once every launch hook is completed.
#[test]
fn foreign_hook_each_launch_hook_has_its_own_token_and_event_and_all_must_complete() {
    let mut c = cloud(300, HookResult::Abandon);
    with_foreign_hooks(&mut c, None);
    let id = c.scale_out("asg", 1).remove(0);
    let out = c.drain();
    let hooks: Vec<&str> = out
        .iter()
        .map(|p| p.json["detail"]["LifecycleHookName"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, ["launch", "other-launch"]);
    let tokens: BTreeSet<&str> = out
        .iter()
        .map(|p| p.json["detail"]["LifecycleActionToken"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 2, "one token per hook");
    let own = token_for(&c, &id, "launch");
    c.complete_lifecycle_action("asg", "launch", Some(&own), None, HookResult::Continue)
        .unwrap();
    assert_eq!(
        c.instances[&id].state,
        InstanceState::PendingWait,
        "other-launch still holds it"
    );
    let other = token_for(&c, &id, "other-launch");
    c.complete_lifecycle_action(
        "asg",
        "other-launch",
        Some(&other),
        None,
        HookResult::Continue,
    )
    .unwrap();
    assert_eq!(c.instances[&id].state, InstanceState::InService);
}

/// [aws-behaviour §2 Multiple hooks on one transition] a hook that times out counts as done with
/// its default result; another tool's hook completed by its owner after its delay.
#[test]
fn foreign_hook_owner_completes_after_its_delay_and_a_timeout_counts_as_done() {
    let mut c = cloud(300, HookResult::Abandon);
    with_foreign_hooks(
        &mut c,
        Some(HookOwner {
            after_ms: 400_000,
            result: HookResult::Continue,
        }),
    );
    let id = c.scale_out("asg", 1).remove(0);
    let own = token_for(&c, &id, "launch");
    c.complete_lifecycle_action("asg", "launch", Some(&own), None, HookResult::Continue)
        .unwrap();
    // The owner heartbeats: past its 300 s heartbeat timeout the action is still there.
    c.advance_to(399_000);
    assert_eq!(c.instances[&id].state, InstanceState::PendingWait);
    c.advance_to(400_000);
    assert_eq!(c.instances[&id].state, InstanceState::InService);
    assert!(
        c.facts
            .iter()
            .any(|f| matches!(f, Fact::Completed { hook, .. } if hook == "other-launch"))
    );
    assert!(
        c.lifecycle_calls.iter().all(|call| call.hook == "launch"),
        "the owner's completion is not a call through the API: {:?}",
        c.lifecycle_calls
    );

    // Without an owner, the other hook times out to its default CONTINUE.
    let mut c = cloud(300, HookResult::Abandon);
    with_foreign_hooks(&mut c, None);
    let id = c.scale_out("asg", 1).remove(0);
    let own = token_for(&c, &id, "launch");
    c.complete_lifecycle_action("asg", "launch", Some(&own), None, HookResult::Continue)
        .unwrap();
    c.advance_to(299_000);
    assert_eq!(c.instances[&id].state, InstanceState::PendingWait);
    c.advance_to(300_000);
    assert_eq!(c.instances[&id].state, InstanceState::InService);
}

/// [aws-behaviour §2 LifecycleActionResult] any launch hook's ABANDON terminates the instance,
/// whatever the others answered or would answer.
#[test]
fn foreign_hook_abandon_on_launch_terminates_whatever_the_other_hooks_say() {
    let mut c = cloud(300, HookResult::Abandon);
    with_foreign_hooks(
        &mut c,
        Some(HookOwner {
            after_ms: 10_000,
            result: HookResult::Abandon,
        }),
    );
    let id = c.scale_out("asg", 1).remove(0);
    let own = token_for(&c, &id, "launch");
    c.complete_lifecycle_action("asg", "launch", Some(&own), None, HookResult::Continue)
        .unwrap();
    c.advance_to(10_000);
    assert_eq!(c.instances[&id].state, InstanceState::Terminated);
}

/// [aws-behaviour §2 LifecycleActionResult] on terminate, ABANDON skips the remaining hooks; with
/// CONTINUE the instance waits for every terminate hook.
#[test]
fn foreign_hook_terminate_waits_for_every_hook_and_abandon_skips_the_rest() {
    let mut c = cloud(300, HookResult::Abandon);
    with_foreign_hooks(&mut c, None);
    let id = c.scale_out("asg", 1).remove(0);
    c.drain();
    c.terminate(&id);
    let events = c.drain();
    assert_eq!(events.len(), 2, "one event per terminate hook");
    let own = token_for(&c, &id, "term");
    c.complete_lifecycle_action("asg", "term", Some(&own), None, HookResult::Continue)
        .unwrap();
    assert_eq!(c.instances[&id].state, InstanceState::TerminatingWait);
    let other = token_for(&c, &id, "other-terminate");
    c.complete_lifecycle_action(
        "asg",
        "other-terminate",
        Some(&other),
        None,
        HookResult::Continue,
    )
    .unwrap();
    assert_eq!(c.instances[&id].state, InstanceState::Terminated);

    let id = c.scale_out("asg", 1).remove(0);
    c.terminate(&id);
    let other = token_for(&c, &id, "other-terminate");
    c.complete_lifecycle_action(
        "asg",
        "other-terminate",
        Some(&other),
        None,
        HookResult::Abandon,
    )
    .unwrap();
    assert_eq!(
        c.instances[&id].state,
        InstanceState::Terminated,
        "term skipped"
    );
}

/// Every CompleteLifecycleAction and RecordLifecycleActionHeartbeat is recorded with its hook,
/// the ones that matched no action too.
#[test]
fn foreign_hook_calls_are_recorded_with_their_hook() {
    let mut c = cloud(300, HookResult::Abandon);
    with_foreign_hooks(&mut c, None);
    let id = c.scale_out("asg", 1).remove(0);
    let other = token_for(&c, &id, "other-launch");
    c.record_heartbeat("asg", "other-launch", Some(&other), None)
        .unwrap();
    assert!(
        c.complete_lifecycle_action("asg", "launch", Some("stale"), None, HookResult::Continue)
            .is_err()
    );
    let calls: Vec<(LifecycleOperation, &str, bool)> = c
        .lifecycle_calls
        .iter()
        .map(|x| (x.operation, x.hook.as_str(), x.matched))
        .collect();
    assert_eq!(
        calls,
        [
            (LifecycleOperation::Heartbeat, "other-launch", true),
            (
                LifecycleOperation::Complete(HookResult::Continue),
                "launch",
                false
            ),
        ]
    );
}

/// [aws-behaviour §3.1 updateOutdatedInstancesOnly, deploymentConfigName] a user's deployment
/// that fails on an in-service instance but succeeds overall (HalfAtATime: half of the
/// targets) moves the target revision and leaves that instance on the old one; the next
/// outdated-only deployment reaches it, with the configuration the request named or the
/// group's own, and the model records which, per serving target.
#[test]
fn outdated_in_service_instance_is_reached_by_the_next_outdated_only_deployment() {
    let mut c = cloud(300, HookResult::Abandon);
    if let Some(g) = c.groups.get_mut(&key()) {
        g.config = DeployConfig::HalfAtATime;
    }
    let ids = selected(&mut c, 2);
    for id in &ids {
        c.instances
            .get_mut(id)
            .unwrap()
            .installed
            .insert(key(), "rev-1".into());
        let token = token_of(&c, id);
        c.complete_lifecycle_action("asg", "launch", Some(&token), None, HookResult::Continue)
            .unwrap();
        assert_eq!(c.instances[id].state, InstanceState::InService);
    }
    c.fail_next.insert(key(), 1);
    let user = c
        .create_deployment(&key(), Some("rev-2"), None, false, "", Creator::User)
        .unwrap();
    c.advance_to(300_000);
    assert_eq!(c.deployments[&user].status, DeploymentStatus::Succeeded);
    assert_eq!(c.groups[&key()].target_revision.as_deref(), Some("rev-2"));
    let outdated: Vec<&String> = ids
        .iter()
        .filter(|i| c.instances[*i].installed[&key()] == "rev-1")
        .collect();
    assert_eq!(outdated.len(), 1, "the target it failed on stays on rev-1");
    let outdated = outdated[0].clone();

    let named = c
        .create_deployment(
            &key(),
            Some("rev-2"),
            Some("CodeDeployDefault.AllAtOnce"),
            true,
            "",
            Creator::User,
        )
        .unwrap();
    assert_eq!(c.deployments[&named].config, DeployConfig::AllAtOnce);
    assert!(c.deployments[&named].config_override);
    assert_eq!(
        c.override_on_serving(),
        vec![(named.clone(), outdated.clone())]
    );
    c.advance_to(600_000);

    // Once it is fixed, nothing is outdated; naming the group's own config is no override.
    let own = c
        .create_deployment(
            &key(),
            Some("rev-2"),
            Some("CodeDeployDefault.HalfAtATime"),
            true,
            "",
            Creator::User,
        )
        .unwrap();
    assert!(!c.deployments[&own].config_override);
    assert_eq!(c.deployments[&own].config, DeployConfig::HalfAtATime);
    assert!(c.facts.iter().any(|f| matches!(
        f,
        Fact::DeploymentCreated { deployment, config_override: false, serving_targets, .. }
            if *deployment == own && serving_targets.is_empty()
    )));
}

/// A group whose instances bootstrap for `ms` (never, with probability `never`), starting the
/// agent as `agent` says, and tag themselves `ready` when done.
fn bootstrapping(agent: AgentStart, ms: Ms, never: f64, ready: Option<(&str, &str)>) -> Cloud {
    let mut c = cloud(3600, HookResult::Abandon);
    c.set_bootstrap(
        "asg",
        Bootstrap {
            min_ms: ms,
            max_ms: ms,
            never_prob: never,
            agent,
            ready_tag: ready.map(|(k, v)| (k.to_owned(), v.to_owned())),
        },
    );
    c
}

/// [aws-behaviour §3.6 Bootstrap and the agent] the documented order: the bootstrap runs to
/// completion, then the agent starts, then the deployment runs. A deployment handed to the
/// agent before waits in its queue and starts the moment the agent does.
#[test]
fn agent_after_bootstrap_waits_then_runs_the_deployment() {
    let mut c = bootstrapping(AgentStart::AfterBootstrap, 120_000, 0.0, None);
    let id = selected(&mut c, 1).remove(0);
    assert!(!c.instances[&id].agent_running());
    assert_eq!(c.instances[&id].bootstrap_done_at(), None);
    let d = deploy(&mut c).unwrap();
    assert_eq!(
        c.deployments[&d].targets[&id].status,
        TargetStatus::Pending,
        "the agent is not running yet"
    );
    c.advance_to(119_999);
    assert_eq!(c.deployments[&d].targets[&id].status, TargetStatus::Pending);
    c.advance_to(120_000);
    assert_eq!(c.instances[&id].bootstrap_done_at(), Some(120_000));
    assert!(c.instances[&id].agent_running());
    assert_eq!(
        c.deployments[&d].targets[&id].status,
        TargetStatus::InProgress
    );
    assert_eq!(c.deployments[&d].targets[&id].started_at, Some(120_000));
    c.advance_to(180_000);
    assert_eq!(c.deployments[&d].status, DeploymentStatus::Succeeded);
    assert_eq!(c.instances[&id].installed[&key()], "rev-1");
}

/// Without a bootstrap spec the agent runs from launch, as before.
#[test]
fn bootstrap_none_means_the_agent_runs_from_launch() {
    let mut c = cloud(3600, HookResult::Abandon);
    let id = selected(&mut c, 1).remove(0);
    assert!(c.instances[&id].agent_running());
    assert_eq!(c.instances[&id].bootstrap_done_at(), Some(0));
    let d = deploy(&mut c).unwrap();
    assert_eq!(
        c.deployments[&d].targets[&id].status,
        TargetStatus::InProgress
    );
}

/// [aws-behaviour §3.6 Bootstrap and the agent; §3.2 Lifecycle event start limit] an agent
/// that never starts fails what it was sent once 5 minutes have passed, and the clock gets
/// there on its own.
#[test]
fn a_bootstrap_that_never_finishes_fails_deployments_after_the_start_limit() {
    let mut c = bootstrapping(AgentStart::AfterBootstrap, 60_000, 1.0, None);
    let id = selected(&mut c, 1).remove(0);
    let d = deploy(&mut c).unwrap();
    c.advance_to(FIRST_EVENT_START_LIMIT_MS);
    assert_eq!(c.deployments[&d].targets[&id].status, TargetStatus::Pending);
    c.advance_to(FIRST_EVENT_START_LIMIT_MS + 1);
    assert_eq!(c.deployments[&d].targets[&id].status, TargetStatus::Failed);
    assert_eq!(c.deployments[&d].status, DeploymentStatus::Failed);
    assert_eq!(
        c.deployments[&d].ended_at,
        Some(FIRST_EVENT_START_LIMIT_MS + 1)
    );
    c.advance_to(3_600_000);
    assert_eq!(c.instances[&id].bootstrap_done_at(), None);
    assert!(!c.instances[&id].agent_running());
    assert!(c.instances[&id].installed.is_empty());
}

/// [aws-behaviour §3.6 Bootstrap and the agent] an agent baked into the AMI runs at boot,
/// while user data still runs: a deployment that starts before the bootstrap is done fails;
/// one after it succeeds.
#[test]
fn agent_at_boot_fails_a_deployment_before_bootstrap_is_done() {
    let mut c = bootstrapping(AgentStart::AtBoot, 120_000, 0.0, None);
    let id = selected(&mut c, 1).remove(0);
    assert!(
        c.instances[&id].agent_running(),
        "started by the init system"
    );
    let early = deploy(&mut c).unwrap();
    assert_eq!(
        c.deployments[&early].targets[&id].status,
        TargetStatus::InProgress,
        "the agent takes it at once"
    );
    c.advance_to(60_000);
    assert_eq!(
        c.deployments[&early].targets[&id].status,
        TargetStatus::Failed
    );
    assert!(c.instances[&id].installed.is_empty());
    c.advance_to(120_000);
    assert_eq!(c.instances[&id].bootstrap_done_at(), Some(120_000));
    let late = deploy(&mut c).unwrap();
    c.advance_to(180_000);
    assert_eq!(c.deployments[&late].status, DeploymentStatus::Succeeded);
}

/// [aws-behaviour §5.7 Tag change events] at the end of its bootstrap the instance tags itself
/// (one CreateTags, counted like any other) and EventBridge gets `Tag Change on Resource` with
/// the changed key and every tag the instance has.
#[test]
fn instance_tags_itself_ready_and_publishes_a_tag_change_event() {
    let mut c = bootstrapping(
        AgentStart::AfterBootstrap,
        90_000,
        0.0,
        Some(("ready", "yes")),
    );
    let id = c.scale_out("asg", 1).remove(0);
    c.create_tags(std::slice::from_ref(&id), &[("role", "web")]);
    c.drain();
    assert_eq!(c.calls["CreateTags"], 1);
    c.advance_to(89_999);
    assert!(!c.instances[&id].tags.contains_key("ready"));
    c.advance_to(90_000);
    assert_eq!(c.instances[&id].tags["ready"], "yes");
    assert_eq!(c.calls["CreateTags"], 2, "the instance's own CreateTags");
    let out = c.drain();
    let tags: Vec<&Published> = out.iter().filter(|p| p.kind == EventKind::Tag).collect();
    assert_eq!(tags.len(), 1);
    let e = &tags[0].json;
    assert_eq!(e["version"], "0");
    assert_eq!(e["detail-type"], "Tag Change on Resource");
    assert_eq!(e["source"], "aws.tag");
    assert_eq!(e["account"], "123456789012");
    assert_eq!(e["region"], "us-east-1");
    assert_eq!(e["time"], iso(90_000));
    assert_eq!(e["id"].as_str().unwrap().len(), 36);
    assert_eq!(
        e["resources"],
        serde_json::json!([format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}")])
    );
    assert_eq!(
        e["detail"],
        serde_json::json!({
            "changed-tag-keys": ["ready"],
            "service": "ec2",
            "resource-type": "instance",
            "version": 2,
            "tags": {"ready": "yes", "role": "web"},
        })
    );
}

/// [aws-behaviour §5.7 Tag change events] every tag write through the API that changes an
/// instance's tags publishes the event, a deleted key among the changed ones and gone from
/// `tags`; a write that changes nothing publishes nothing.
#[test]
fn tag_writes_publish_tag_change_events_with_every_current_tag() {
    let mut c = cloud(300, HookResult::Abandon);
    let ids = c.scale_out("asg", 2);
    c.drain();
    c.create_tags(&ids, &[("role", "web"), ("gate", "open")]);
    let out = c.drain();
    assert_eq!(out.len(), 2, "one event per instance");
    assert!(out.iter().all(|p| p.kind == EventKind::Tag));
    assert_eq!(
        out[1].json["detail"]["changed-tag-keys"],
        serde_json::json!(["role", "gate"])
    );
    assert_eq!(
        out[1].json["resources"][0],
        format!("arn:aws:ec2:us-east-1:123456789012:instance/{}", ids[1])
    );
    c.create_tags(&ids[..1], &[("gate", "open")]);
    assert!(c.drain().is_empty(), "nothing changed");
    c.delete_tags(&ids[..1], &["gate", "absent"]);
    let out = c.drain();
    assert_eq!(out.len(), 1);
    let d = &out[0].json["detail"];
    assert_eq!(d["changed-tag-keys"], serde_json::json!(["gate"]));
    assert_eq!(d["tags"], serde_json::json!({"role": "web"}));
    assert_eq!(d["version"], 2);
    c.delete_tags(&ids[..1], &["gate"]);
    assert!(c.drain().is_empty(), "no tag left to delete");
}

/// A group with a warm pool, `reuse` on scale-in or not, restarting in 30 s.
fn warm(reuse: bool) -> Cloud {
    let mut c = cloud(300, HookResult::Abandon);
    c.put_warm_pool(
        "asg",
        WarmPoolSpec {
            reuse_on_scale_in: reuse,
            restart_ms: 30_000,
        },
    );
    c
}

fn route(p: &Published) -> (&str, &str) {
    (
        p.json["detail"]["Origin"].as_str().unwrap(),
        p.json["detail"]["Destination"].as_str().unwrap(),
    )
}

fn cont(c: &mut Cloud, id: &str, hook: &str) {
    let token = token_for(c, id, hook);
    c.complete_lifecycle_action("asg", hook, Some(&token), None, HookResult::Continue)
        .unwrap();
}

/// [aws-behaviour §2 Warm pools; §1.1 Origin and Destination] an instance launched into the
/// pool waits in `Warmed:Pending:Wait` for every launch hook (event `EC2` → `WarmPool`), is
/// stopped once they all CONTINUE, and is terminated by an ABANDON.
#[test]
fn warm_pool_entry_waits_then_stops_on_continue() {
    let mut c = warm(false);
    let id = c.fill_warm_pool("asg", 1).remove(0);
    assert_eq!(c.instances[&id].state, InstanceState::WarmedPendingWait);
    assert_eq!(
        InstanceState::WarmedPendingWait.as_api(),
        "Warmed:Pending:Wait"
    );
    let out = c.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].json["detail"]["LifecycleTransition"],
        "autoscaling:EC2_INSTANCE_LAUNCHING"
    );
    assert_eq!(route(&out[0]), ("EC2", "WarmPool"));
    cont(&mut c, &id, "launch");
    assert_eq!(c.instances[&id].state, InstanceState::WarmedStopped);
    assert_eq!(InstanceState::WarmedStopped.as_api(), "Warmed:Stopped");
    assert!(c.instances[&id].is_stopped());
    assert!(!c.instances[&id].agent_running());

    let other = c.fill_warm_pool("asg", 1).remove(0);
    let token = token_of(&c, &other);
    c.complete_lifecycle_action("asg", "launch", Some(&token), None, HookResult::Abandon)
        .unwrap();
    assert_eq!(c.instances[&other].state, InstanceState::Terminated);
}

/// [aws-behaviour §2 Warm pools] leaving the pool is a second launch transition: `Pending:Wait`
/// with a new token per hook (event `WarmPool` → `AutoScalingGroup`); the entry's token is
/// spent; the same APIs complete and heartbeat the new action, by token or instance id.
#[test]
fn warm_pool_exit_issues_new_tokens_with_origin_warm_pool() {
    let mut c = warm(false);
    let id = c.fill_warm_pool("asg", 1).remove(0);
    let entry = token_of(&c, &id);
    cont(&mut c, &id, "launch");
    c.drain();
    assert_eq!(c.scale_out("asg", 1), vec![id.clone()]);
    assert_eq!(c.instances[&id].state, InstanceState::PendingWait);
    let out = c.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(route(&out[0]), ("WarmPool", "AutoScalingGroup"));
    let exit = token_of(&c, &id);
    assert_ne!(exit, entry);
    assert_eq!(out[0].json["detail"]["LifecycleActionToken"], exit.as_str());
    assert!(
        c.complete_lifecycle_action("asg", "launch", Some(&entry), None, HookResult::Continue)
            .is_err(),
        "the entry's token is spent"
    );
    c.record_heartbeat("asg", "launch", None, Some(&id))
        .unwrap();
    c.complete_lifecycle_action("asg", "launch", Some(&exit), None, HookResult::Continue)
        .unwrap();
    assert_eq!(c.instances[&id].state, InstanceState::InService);
}

/// [aws-behaviour §2 Warm pools] scale-out takes stopped pool instances first, oldest first;
/// one still held on its way in is not taken; the rest are launched straight into the group
/// (event `EC2` → `AutoScalingGroup`).
#[test]
fn scale_out_takes_stopped_pool_instances_first() {
    let mut c = warm(false);
    let pool = c.fill_warm_pool("asg", 3);
    cont(&mut c, &pool[1], "launch");
    cont(&mut c, &pool[0], "launch");
    c.drain();
    assert_eq!(c.scale_out("asg", 1), vec![pool[0].clone()], "oldest first");
    let taken = c.scale_out("asg", 2);
    assert_eq!(taken[0], pool[1]);
    assert!(!pool.contains(&taken[1]), "the rest is a new instance");
    assert_eq!(
        c.instances[&pool[2]].state,
        InstanceState::WarmedPendingWait,
        "still on its way in: not taken"
    );
    let routes: Vec<(String, (String, String))> = c
        .drain()
        .iter()
        .map(|p| {
            let (o, d) = route(p);
            (
                p.json["detail"]["EC2InstanceId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                (o.to_owned(), d.to_owned()),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            (
                pool[0].clone(),
                ("WarmPool".into(), "AutoScalingGroup".into())
            ),
            (
                pool[1].clone(),
                ("WarmPool".into(), "AutoScalingGroup".into())
            ),
            (taken[1].clone(), ("EC2".into(), "AutoScalingGroup".into())),
        ]
    );
}

/// [aws-behaviour §2 DescribeAutoScalingGroups and DescribeWarmPool] the group's description
/// leaves pool instances out; DescribeWarmPool lists them with their `Warmed:*` states.
#[test]
fn describe_groups_leaves_pool_instances_out() {
    let mut c = warm(false);
    let pool = c.fill_warm_pool("asg", 2);
    cont(&mut c, &pool[1], "launch");
    let member = c.scale_out("asg", 1).remove(0);
    assert_eq!(member, pool[1], "the stopped one left the pool");
    let groups = c.describe_groups(&["asg".to_owned()]);
    assert_eq!(
        groups,
        vec![(
            "asg".to_owned(),
            vec![(pool[1].clone(), InstanceState::PendingWait)]
        )]
    );
    let pool_now = c.fill_warm_pool("asg", 1).remove(0);
    cont(&mut c, &pool_now, "launch");
    assert_eq!(
        c.describe_warm_pool("asg"),
        Some(vec![
            (pool[0].clone(), InstanceState::WarmedPendingWait),
            (pool_now.clone(), InstanceState::WarmedStopped),
        ])
    );
    let groups = c.describe_groups(&["asg".to_owned()]);
    assert_eq!(groups[0].1.len(), 1, "still only the member");
    assert_eq!(c.describe_warm_pool("nope"), None);
    assert_eq!(c.calls["DescribeWarmPool"], 2);
}

/// [aws-behaviour §2 Warm pools] an instance held on its way into the pool is running and can
/// be deployed to; what it got there stays on it through the stop and the start.
#[test]
fn installed_revisions_survive_the_pool() {
    let mut c = warm(false);
    let id = c.fill_warm_pool("asg", 1).remove(0);
    c.create_tags(
        std::slice::from_ref(&id),
        &[("role", "web"), ("gate", "open")],
    );
    let d = deploy(&mut c).unwrap();
    assert_eq!(
        c.deployments[&d].targets[&id].status,
        TargetStatus::InProgress
    );
    c.advance_to(60_000);
    assert_eq!(c.deployments[&d].status, DeploymentStatus::Succeeded);
    cont(&mut c, &id, "launch");
    assert_eq!(c.instances[&id].state, InstanceState::WarmedStopped);
    c.advance_to(600_000);
    c.scale_out("asg", 1);
    assert_eq!(c.instances[&id].state, InstanceState::PendingWait);
    assert_eq!(c.instances[&id].installed[&key()], "rev-1");
    assert_eq!(c.instances[&id].tags["gate"], "open", "tags stay too");
}

/// [aws-behaviour §2 Warm pools] a stopped pool instance is no deployment target; stopping
/// fails the deployment its agent was running.
#[test]
fn stopping_in_the_pool_fails_the_running_deployment() {
    let mut c = warm(false);
    let id = c.fill_warm_pool("asg", 1).remove(0);
    c.create_tags(
        std::slice::from_ref(&id),
        &[("role", "web"), ("gate", "open")],
    );
    let d = deploy(&mut c).unwrap();
    c.advance_to(30_000);
    cont(&mut c, &id, "launch");
    assert_eq!(c.deployments[&d].targets[&id].status, TargetStatus::Failed);
    assert_eq!(c.deployments[&d].status, DeploymentStatus::Failed);
    assert!(c.instances[&id].installed.is_empty());
    assert!(
        c.create_deployment(&key(), None, None, false, "", Creator::User)
            .is_ok_and(|d| c.deployments[&d].targets.is_empty()),
        "a stopped instance is not a target"
    );
}

/// [aws-behaviour §2 Warm pools; §3.6 Bootstrap and the agent] a bootstrap cut short by the
/// stop (the hook let the instance through too early) pauses in the pool and resumes after
/// the restart when the instance leaves it; the agent then starts once it is done.
#[test]
fn a_bootstrap_paused_in_the_pool_resumes_after_the_restart() {
    let mut c = warm(false);
    c.set_bootstrap(
        "asg",
        Bootstrap {
            min_ms: 120_000,
            max_ms: 120_000,
            never_prob: 0.0,
            agent: AgentStart::AfterBootstrap,
            ready_tag: None,
        },
    );
    let id = c.fill_warm_pool("asg", 1).remove(0);
    c.advance_to(50_000);
    cont(&mut c, &id, "launch");
    c.advance_to(1_000_000);
    assert_eq!(c.instances[&id].bootstrap_done_at(), None, "paused");
    c.scale_out("asg", 1);
    assert!(c.instances[&id].is_stopped(), "booting");
    c.advance_to(1_029_999);
    assert!(c.instances[&id].is_stopped());
    c.advance_to(1_030_000);
    assert!(!c.instances[&id].is_stopped());
    assert!(!c.instances[&id].agent_running(), "70 s of bootstrap left");
    c.advance_to(1_099_999);
    assert_eq!(c.instances[&id].bootstrap_done_at(), None);
    c.advance_to(1_100_000);
    assert_eq!(c.instances[&id].bootstrap_done_at(), Some(1_100_000));
    assert!(c.instances[&id].agent_running());
}

/// [aws-behaviour §2 Warm pools] leaving the pool, an instance whose bootstrap was done
/// boots again and its agent starts after the restart; a deployment sent meanwhile waits.
#[test]
fn warm_pool_exit_starts_the_agent_after_the_restart() {
    let mut c = warm(false);
    let id = c.fill_warm_pool("asg", 1).remove(0);
    c.create_tags(
        std::slice::from_ref(&id),
        &[("role", "web"), ("gate", "open")],
    );
    cont(&mut c, &id, "launch");
    c.scale_out("asg", 1);
    assert!(!c.instances[&id].agent_running());
    let d = deploy(&mut c).unwrap();
    assert_eq!(c.deployments[&d].targets[&id].status, TargetStatus::Pending);
    c.advance_to(30_000);
    assert!(c.instances[&id].agent_running());
    assert_eq!(
        c.deployments[&d].targets[&id].status,
        TargetStatus::InProgress
    );
}

fn with_terminate_hook(c: &mut Cloud) {
    c.asgs.get_mut("asg").unwrap().hooks.push(Hook {
        name: "term".into(),
        transition: Transition::Terminating,
        heartbeat_secs: 300,
        default_result: HookResult::Continue,
        metadata: None,
    });
}

/// [aws-behaviour §2 Warm pools] with instance reuse, scale-in sends an in-service instance
/// back to the pool: the terminate hook holds it in `Warmed:Pending:Wait` (event
/// `AutoScalingGroup` → `WarmPool`), then it stops and can serve again.
#[test]
fn scale_in_with_reuse_returns_the_instance_to_the_pool() {
    let mut c = warm(true);
    with_terminate_hook(&mut c);
    let id = c.scale_out("asg", 1).remove(0);
    cont(&mut c, &id, "launch");
    assert_eq!(c.instances[&id].state, InstanceState::InService);
    c.drain();
    c.terminate(&id);
    assert_eq!(c.instances[&id].state, InstanceState::WarmedPendingWait);
    let out = c.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].json["detail"]["LifecycleTransition"],
        "autoscaling:EC2_INSTANCE_TERMINATING"
    );
    assert_eq!(route(&out[0]), ("AutoScalingGroup", "WarmPool"));
    assert!(c.describe_groups(&["asg".to_owned()])[0].1.is_empty());
    cont(&mut c, &id, "term");
    assert_eq!(c.instances[&id].state, InstanceState::WarmedStopped);
    assert_eq!(c.scale_out("asg", 1), vec![id.clone()]);

    // Without reuse, scale-in terminates.
    let mut c = warm(false);
    with_terminate_hook(&mut c);
    let id = c.scale_out("asg", 1).remove(0);
    cont(&mut c, &id, "launch");
    c.terminate(&id);
    assert_eq!(c.instances[&id].state, InstanceState::TerminatingWait);
    cont(&mut c, &id, "term");
    assert_eq!(c.instances[&id].state, InstanceState::Terminated);
}

/// [aws-behaviour §2 Warm pools] an instance terminated out of the pool is held by the
/// terminate hook in `Warmed:Terminating:Wait` (event `WarmPool` → `EC2`).
#[test]
fn terminating_a_pool_instance_waits_in_warmed_terminating_wait() {
    let mut c = warm(true);
    with_terminate_hook(&mut c);
    let id = c.fill_warm_pool("asg", 1).remove(0);
    cont(&mut c, &id, "launch");
    c.drain();
    c.terminate(&id);
    assert_eq!(c.instances[&id].state, InstanceState::WarmedTerminatingWait);
    assert_eq!(
        InstanceState::WarmedTerminatingWait.as_api(),
        "Warmed:Terminating:Wait"
    );
    assert_eq!(route(&c.drain()[0]), ("WarmPool", "EC2"));
    cont(&mut c, &id, "term");
    assert_eq!(c.instances[&id].state, InstanceState::Terminated);
}

/// [aws-behaviour §1.1 Origin and Destination] outside warm pools, launch events go `EC2` →
/// `AutoScalingGroup` and terminate events `AutoScalingGroup` → `EC2`.
#[test]
fn origin_and_destination_without_a_warm_pool() {
    let mut c = cloud(300, HookResult::Abandon);
    with_terminate_hook(&mut c);
    let id = c.scale_out("asg", 1).remove(0);
    assert_eq!(route(&c.drain()[0]), ("EC2", "AutoScalingGroup"));
    c.terminate(&id);
    assert_eq!(route(&c.drain()[0]), ("AutoScalingGroup", "EC2"));
}
