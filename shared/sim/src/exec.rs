//! AWS semantics over the model, in the core's terms: one function per AWS operation the
//! orchestrator's ports perform, written once. The simulator's command executor calls them
//! directly; the local cloud's model-backed ports (`turnstile_localcloud::direct`) add fault
//! injection and the read-ahead cache and delegate here. Each follows what the real adapters in
//! `turnstile_aws` do: an explicit revision, `updateOutdatedInstancesOnly`, the intent marker
//! in the description, adoption of an active deployment that carries the intent.

use turnstile_core::{
    ActionRef, CreateOutcome, DeploymentId, DeploymentState, Gate, GroupKey, GroupRevision,
    InstanceId, IntentId, LastAttempt, LeaveFound, LifecycleResult, Millis, Revision, TargetState,
    launch_config,
};
use turnstile_model::{ApiError, Cloud, Creator, DeploymentStatus, HookResult, TargetStatus};

/// How far before the intent's time `find` looks, as the CodeDeploy adapter does.
pub const FIND_SLACK_MS: u64 = IntentId::FIND_SLACK_MS;

fn key(g: &GroupKey) -> (String, String) {
    (g.application.clone(), g.deployment_group.clone())
}

fn ids(instances: &[InstanceId]) -> Vec<String> {
    instances.iter().map(|i| i.0.clone()).collect()
}

/// What CodeDeploy would answer about a deployment and some of its targets (GetDeployment and
/// BatchGetDeploymentTargets), in the core's terms. An instance that is not a target is
/// `Unknown`.
pub fn deployment_status(
    d: &turnstile_model::Deployment,
    instances: &[InstanceId],
) -> (DeploymentState, Vec<(InstanceId, TargetState)>) {
    let state = match d.status {
        DeploymentStatus::InProgress => DeploymentState::InProgress,
        DeploymentStatus::Succeeded => DeploymentState::Succeeded,
        DeploymentStatus::Failed => DeploymentState::Failed,
        DeploymentStatus::Stopped => DeploymentState::Stopped,
    };
    let targets = instances
        .iter()
        .map(|i| {
            let s = match d.targets.get(&i.0).map(|t| t.status) {
                Some(TargetStatus::Pending) => TargetState::Pending,
                Some(TargetStatus::InProgress) => TargetState::InProgress,
                Some(TargetStatus::Succeeded) => TargetState::Succeeded,
                Some(TargetStatus::Failed) => TargetState::Failed,
                Some(TargetStatus::Skipped) => TargetState::Skipped,
                None => TargetState::Unknown,
            };
            (i.clone(), s)
        })
        .collect();
    (state, targets)
}

/// CreateTags: every gate on every instance.
pub fn open_gates(cloud: &mut Cloud, gates: &[Gate], instances: &[InstanceId]) {
    let tags: Vec<(&str, &str)> = gates
        .iter()
        .map(|g| (g.key.as_str(), g.value.as_str()))
        .collect();
    cloud.create_tags(&ids(instances), &tags);
}

/// DeleteTags: every gate off every instance.
pub fn close_gates(cloud: &mut Cloud, gates: &[Gate], instances: &[InstanceId]) {
    let keys: Vec<&str> = gates.iter().map(|g| g.key.as_str()).collect();
    cloud.delete_tags(&ids(instances), &keys);
}

/// DescribeTags filtered by instance and key: `(instance, key, value)` of each match
/// [aws-behaviour §5.6 DescribeTags].
pub fn read_tags(
    cloud: &mut Cloud,
    instances: &[InstanceId],
    keys: &[String],
) -> Vec<(InstanceId, String, String)> {
    cloud
        .describe_instance_tags()
        .into_iter()
        .filter(|(i, k, _)| keys.contains(k) && instances.iter().any(|x| x.0 == *i))
        .map(|(i, k, v)| (InstanceId(i), k, v))
        .collect()
}

/// GetDeploymentGroup: the group's target revision, if it has one.
pub fn target_revision(cloud: &mut Cloud, group: &GroupKey) -> Result<Option<String>, ApiError> {
    cloud
        .get_deployment_group(&key(group))
        .map(|g| g.target_revision)
}

/// CreateDeployment of the group's target revision (read now, unless `read_ahead` brings it)
/// with `updateOutdatedInstancesOnly` and the intent marker. A group that already has an active
/// deployment answers `Busy`, or `Created` when that deployment carries this intent (a crashed
/// creator's, adopted). `Err` is a read after the create that failed.
pub fn create_deployment(
    cloud: &mut Cloud,
    group: &GroupKey,
    intent: &IntentId,
    config: Option<&str>,
    read_ahead: Option<Option<String>>,
) -> Result<CreateOutcome, ApiError> {
    let revision = match read_ahead {
        Some(revision) => revision,
        None => match target_revision(cloud, group) {
            Ok(revision) => revision,
            Err(e) => {
                return Ok(CreateOutcome::Failed {
                    reason: format!("{e:?}"),
                    retryable: false,
                });
            }
        },
    };
    let Some(rev) = revision else {
        return Ok(CreateOutcome::NoRevision);
    };
    let config = launch_config_for(cloud, group, config);
    let description = intent.description();
    match cloud.create_deployment(
        &key(group),
        Some(&rev),
        config,
        true,
        &description,
        Creator::User,
    ) {
        Ok(d) => Ok(CreateOutcome::Created {
            deployment: DeploymentId(d),
            revision: Some(Revision(rev)),
        }),
        Err(ApiError::DeploymentLimitExceeded { active, .. }) => {
            let d = cloud.get_deployment(&active)?;
            if intent.marks(&d.description) {
                Ok(CreateOutcome::Created {
                    deployment: DeploymentId(active),
                    revision: Some(Revision(d.revision)),
                })
            } else {
                Ok(CreateOutcome::Busy {
                    deployment: DeploymentId(active),
                })
            }
        }
        Err(e) => Ok(CreateOutcome::Failed {
            reason: format!("{e:?}"),
            retryable: false,
        }),
    }
}

/// The configuration a launch deployment is created with, as the CodeDeploy adapter chooses
/// it: the plan's override unless an in-service member may be outdated
/// (`turnstile_core::launch_config`, docs/design.md "Launch deployments and outdated in-service
/// instances"). The group's last attempted deployment is read with GetDeployment only when
/// the override differs from the group's own, as the adapter does.
pub fn launch_config_for<'a>(
    cloud: &mut Cloud,
    group: &GroupKey,
    requested: Option<&'a str>,
) -> Option<&'a str> {
    let Some(own) = cloud.groups.get(&key(group)).map(|g| g.config.as_api()) else {
        return requested;
    };
    if requested.is_none() || requested == Some(own) {
        return requested;
    }
    let last_id = cloud
        .deployments
        .values()
        .filter(|d| d.group == key(group))
        .max_by_key(|d| (d.created_at, d.id.clone()))
        .map(|d| d.id.clone());
    let last = match last_id.map(|id| cloud.get_deployment(&id)) {
        None => LastAttempt::None,
        Some(Err(_)) => LastAttempt::Unknown,
        Some(Ok(d)) if d.status.is_active() => LastAttempt::Unknown,
        Some(Ok(d)) => LastAttempt::Ended {
            succeeded: d.status == DeploymentStatus::Succeeded,
            failed_targets: d
                .targets
                .values()
                .filter(|t| t.status == TargetStatus::Failed)
                .count() as u64,
            ours: IntentId::from_description(&d.description).is_some(),
            config: Some(d.config.as_api().to_owned()),
        },
    };
    launch_config(requested, Some(own), &last).config
}

/// ListDeployments since `since` (less [`FIND_SLACK_MS`]) and GetDeployment of each: the
/// group's deployment that carries the intent, if any.
pub fn find_deployment(
    cloud: &mut Cloud,
    group: &GroupKey,
    intent: &IntentId,
    since: Millis,
) -> Result<CreateOutcome, ApiError> {
    let from = since.0.saturating_sub(FIND_SLACK_MS);
    for id in cloud.list_deployments(&key(group), false, from) {
        let d = cloud.get_deployment(&id)?;
        if intent.marks(&d.description) {
            return Ok(CreateOutcome::Created {
                deployment: DeploymentId(id),
                revision: Some(Revision(d.revision)),
            });
        }
    }
    Ok(CreateOutcome::NotFound)
}

/// GetDeployment (and its targets): the deployment's state and the instances' target states.
pub fn poll_deployment(
    cloud: &mut Cloud,
    deployment: &DeploymentId,
    instances: &[InstanceId],
) -> Result<(DeploymentState, Vec<(InstanceId, TargetState)>), ApiError> {
    let d = cloud.get_deployment(deployment.as_str())?;
    Ok(deployment_status(&d, instances))
}

/// StopDeployment; one that already completed is as good as stopped.
pub fn stop_deployment(cloud: &mut Cloud, deployment: &DeploymentId) -> Result<(), ApiError> {
    match cloud.stop_deployment(deployment.as_str()) {
        Ok(()) | Err(ApiError::DeploymentAlreadyCompleted(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Closes the gate on the deployment's instances, then reads the deployment's state: the read
/// after the close is what proves the seal.
pub fn seal_gate(
    cloud: &mut Cloud,
    deployment: &DeploymentId,
    gate: &Gate,
    instances: &[InstanceId],
) -> Result<DeploymentState, ApiError> {
    close_gates(cloud, std::slice::from_ref(gate), instances);
    poll_deployment(cloud, deployment, &[]).map(|(state, _)| state)
}

/// GetDeploymentGroup, then its active deployment: that deployment if it still has the
/// instance as an unfinished target. `done_in` is a deployment the instance is known to have
/// finished in.
pub fn holding(
    cloud: &mut Cloud,
    group: &GroupKey,
    instance: &InstanceId,
    done_in: Option<&DeploymentId>,
    since: Option<Millis>,
) -> Result<LeaveFound, ApiError> {
    let Some(since) = since else {
        // GetDeploymentGroup's last attempted deployment, then its target.
        let _ = cloud.get_deployment_group(&key(group));
        let Some(active) = cloud.active_deployment(&key(group)).map(|d| d.id.clone()) else {
            return Ok(LeaveFound::Clear);
        };
        if done_in.map(DeploymentId::as_str) == Some(active.as_str()) {
            return Ok(LeaveFound::Clear);
        }
        let d = cloud.get_deployment(&active)?;
        return Ok(if d.is_target_in_flight(&instance.0) {
            LeaveFound::Held(DeploymentId(active))
        } else {
            LeaveFound::Clear
        });
    };
    // ListDeployments since the attempt started, then the instance's target in each other one.
    let from = since.0.saturating_sub(LeaveFound::LOOK_BACK_SLACK_MS);
    let mut touched = None;
    for id in cloud.list_deployments(&key(group), false, from) {
        if done_in.map(DeploymentId::as_str) == Some(id.as_str()) {
            continue;
        }
        let d = cloud.get_deployment(&id)?;
        if d.is_target_in_flight(&instance.0) {
            return Ok(LeaveFound::Held(DeploymentId(id)));
        }
        // Skipped: it found the instance up to date and installed nothing.
        if d.targets
            .get(&instance.0)
            .is_some_and(|t| t.status != TargetStatus::Skipped)
        {
            touched.get_or_insert(DeploymentId(id));
        }
    }
    Ok(touched.map_or(LeaveFound::Clear, LeaveFound::Touched))
}

/// Closes the step's gate on the instance, then asks what other deployment of the group
/// reached it ([`holding`]).
pub fn check_leave(
    cloud: &mut Cloud,
    gate: &Gate,
    instance: &InstanceId,
    group: &GroupKey,
    done_in: Option<&DeploymentId>,
    since: Option<Millis>,
) -> Result<LeaveFound, ApiError> {
    close_gates(
        cloud,
        std::slice::from_ref(gate),
        std::slice::from_ref(instance),
    );
    holding(cloud, group, instance, done_in, since)
}

/// GetDeploymentGroup: the group's target revision and its active deployment.
pub fn group_revision(cloud: &mut Cloud, group: &GroupKey) -> GroupRevision {
    let revision = target_revision(cloud, group).ok().flatten().map(Revision);
    let active = cloud
        .active_deployment(&key(group))
        .map(|d| DeploymentId(d.id.clone()));
    GroupRevision {
        group: group.clone(),
        revision,
        active,
        touched: None,
    }
}

/// The final check's reads: each group's target revision and active deployment; looking back
/// from `since`, also what reached the instance since ([`holding`]; one still running on it
/// counts as the group's active deployment).
pub fn check_revisions(
    cloud: &mut Cloud,
    instance: &InstanceId,
    groups: &[GroupKey],
    since: Option<Millis>,
) -> Vec<GroupRevision> {
    groups
        .iter()
        .map(|g| {
            let mut revision = group_revision(cloud, g);
            if since.is_some() {
                match holding(cloud, g, instance, None, since) {
                    Ok(LeaveFound::Held(d)) => {
                        revision.active.get_or_insert(d);
                    }
                    Ok(LeaveFound::Touched(d)) => revision.touched = Some(d),
                    // (The model lists only deployments it has, so the reads cannot fail.)
                    Ok(LeaveFound::Clear) | Err(_) => {}
                }
            }
            revision
        })
        .collect()
}

/// RecordLifecycleActionHeartbeat.
pub fn record_heartbeat(cloud: &mut Cloud, action: &ActionRef) -> Result<(), ApiError> {
    let (token, instance) = action.address();
    cloud.record_heartbeat(&action.asg, &action.hook, token, instance)
}

/// CompleteLifecycleAction.
pub fn complete_action(
    cloud: &mut Cloud,
    action: &ActionRef,
    result: LifecycleResult,
) -> Result<(), ApiError> {
    let result = match result {
        LifecycleResult::Continue => HookResult::Continue,
        LifecycleResult::Abandon => HookResult::Abandon,
    };
    let (token, instance) = action.address();
    cloud.complete_lifecycle_action(&action.asg, &action.hook, token, instance, result)
}
