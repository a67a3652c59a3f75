//! The CodeDeploy adapter.

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::error::ProvideErrorMetadata;
use aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput;
use aws_sdk_codedeploy::operation::list_deployments::builders::ListDeploymentsFluentBuilder;
use aws_sdk_codedeploy::types::{
    DeploymentGroupInfo, DeploymentStatus, RevisionLocation, RevisionLocationType,
    TargetStatus as SdkTargetStatus, TimeRange,
};
use aws_smithy_types::DateTime;
use turnstile_core::{
    CreateOutcome, DeploymentId, DeploymentState, GroupKey, GroupRevision, InstanceId, IntentId,
    LastAttempt, LeaveFound, Millis, Revision, TargetState, launch_config,
};

use crate::error::port_error;
use crate::ports::{Deployments, PortError};

/// The AWS operations the runner makes through this adapter, in both functions (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the template does not allow what the caller needs.
pub const AWS_CALLS: &[&str] = &[
    "codedeploy:GetDeploymentGroup",
    "codedeploy:ListDeployments",
    "codedeploy:GetDeployment",
    "codedeploy:CreateDeployment",
    "codedeploy:StopDeployment",
    "codedeploy:ListDeploymentTargets",
    "codedeploy:BatchGetDeploymentTargets",
];

/// `BatchGetDeploymentTargets` takes at most 25 target ids.
pub const TARGETS_PER_CALL: usize = 25;

/// How long a prefetched deployment group stays good for `create`. A revision a few seconds
/// old is as good as a fresh one: a group that moved on meanwhile is caught by the final
/// revision check, which runs the step again.
pub const PREFETCH_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// A deployment group read ahead, with its last attempted deployment if that had ended.
type Prefetched = std::collections::HashMap<
    GroupKey,
    (std::time::Instant, DeploymentGroupInfo, Option<LastAttempt>),
>;

pub struct CodeDeploy {
    client: Client,
    /// Deployment groups read ahead by `prefetch`, each used once by `create`.
    prefetched: std::sync::Mutex<Prefetched>,
}

impl CodeDeploy {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            prefetched: std::sync::Mutex::default(),
        }
    }

    fn take_prefetched(
        &self,
        group: &GroupKey,
    ) -> Option<(DeploymentGroupInfo, Option<LastAttempt>)> {
        let mut p = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, (at, _, _)| at.elapsed() < PREFETCH_TTL);
        p.remove(group).map(|(_, info, last)| (info, last))
    }

    /// The group's last attempted deployment as `launch_config` needs it: `GetDeployment` of
    /// `lastAttemptedDeployment`. A read that fails is `Unknown`, which only costs the
    /// override.
    async fn last_attempt(&self, info: &DeploymentGroupInfo) -> LastAttempt {
        let Some(id) = info
            .last_attempted_deployment()
            .and_then(|d| d.deployment_id())
        else {
            return LastAttempt::None;
        };
        match self.deployment(id).await {
            Ok(d) => last_attempt_of(&d),
            Err(e) => {
                tracing::debug!(error = %e, deployment = id, "last attempted deployment unread");
                LastAttempt::Unknown
            }
        }
    }

    /// Every target id of a deployment (`ListDeploymentTargets`, all pages).
    pub async fn target_ids(&self, deployment: &DeploymentId) -> Result<Vec<String>, PortError> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_deployment_targets()
                .deployment_id(deployment.as_str())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| port_error("ListDeploymentTargets", e))?;
            ids.extend(page.target_ids().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(ids),
            }
        }
    }

    /// Target states of the given instances, 25 per call. Instances that are not targets are
    /// left out.
    pub async fn targets(
        &self,
        deployment: &DeploymentId,
        instances: &[InstanceId],
    ) -> Result<Vec<(InstanceId, TargetState)>, PortError> {
        let mut out = Vec::new();
        for chunk in instances.chunks(TARGETS_PER_CALL) {
            let resp = self
                .client
                .batch_get_deployment_targets()
                .deployment_id(deployment.as_str())
                .set_target_ids(Some(chunk.iter().map(|i| i.0.clone()).collect()))
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    let code = e.code().map(str::to_owned);
                    match code.as_deref() {
                        // Not started yet: every target is still pending.
                        Some("DeploymentNotStartedException") => {
                            out.extend(chunk.iter().map(|i| (i.clone(), TargetState::Pending)));
                            continue;
                        }
                        // Some instance is not a target of this deployment (e.g. terminated):
                        // ask one by one so the others still get an answer.
                        Some(
                            "DeploymentTargetDoesNotExistException"
                            | "InstanceDoesNotExistException",
                        ) if chunk.len() > 1 => {
                            for i in chunk {
                                out.extend(
                                    Box::pin(self.targets(deployment, std::slice::from_ref(i)))
                                        .await?,
                                );
                            }
                            continue;
                        }
                        Some(
                            "DeploymentTargetDoesNotExistException"
                            | "InstanceDoesNotExistException",
                        ) => continue,
                        _ => return Err(port_error("BatchGetDeploymentTargets", e)),
                    }
                }
            };
            for t in resp.deployment_targets() {
                let Some(it) = t.instance_target() else {
                    continue;
                };
                let (Some(id), Some(status)) = (it.target_id(), it.status()) else {
                    continue;
                };
                out.push((InstanceId(id.to_owned()), target_state(status)));
            }
        }
        Ok(out)
    }

    async fn group_info(
        &self,
        group: &GroupKey,
    ) -> Result<aws_sdk_codedeploy::types::DeploymentGroupInfo, PortError> {
        self.client
            .get_deployment_group()
            .application_name(&group.application)
            .deployment_group_name(&group.deployment_group)
            .send()
            .await
            .map_err(|e| port_error("GetDeploymentGroup", e))?
            .deployment_group_info
            .ok_or_else(|| PortError::Permanent {
                op: "GetDeploymentGroup",
                source: format!("no deployment group info for {group}").into(),
            })
    }

    /// The configuration to send: the plan's override unless an in-service member may be
    /// outdated (`turnstile_core::launch_config`), which is logged.
    async fn launch_config<'a>(
        &self,
        group: &GroupKey,
        info: &DeploymentGroupInfo,
        requested: Option<&'a str>,
        ahead: Option<LastAttempt>,
    ) -> Option<&'a str> {
        let own = info.deployment_config_name();
        if requested.is_none() || requested == own {
            return requested;
        }
        let last = match ahead {
            Some(last) => last,
            None => self.last_attempt(info).await,
        };
        let choice = launch_config(requested, own, &last);
        if let Some(risk) = choice.fallback {
            tracing::info!(
                %group,
                requested = requested.unwrap_or_default(),
                group_config = own.unwrap_or("CodeDeployDefault.OneAtATime"),
                last_attempted = info
                    .last_attempted_deployment()
                    .and_then(|d| d.deployment_id())
                    .unwrap_or_default(),
                reason = risk.as_str(),
                "launch deployment uses the group's own deployment config: in-service instances may be outdated"
            );
        }
        choice.config
    }

    /// The group's active deployment, from `ListDeployments` with the active statuses
    /// (a group runs one at a time, so the first one found is it).
    async fn active_on(&self, group: &GroupKey) -> Result<Option<DeploymentId>, PortError> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(group, token.take(), |r| {
                    r.set_include_only_statuses(Some(ACTIVE_STATUSES.to_vec()))
                })
                .await?;
            if let Some(id) = page.deployments().first() {
                return Ok(Some(DeploymentId(id.clone())));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    /// One page of the group's `ListDeployments`, narrowed by `filter` (statuses or a time
    /// range), from `token`.
    async fn list_page(
        &self,
        group: &GroupKey,
        token: Option<String>,
        filter: impl FnOnce(ListDeploymentsFluentBuilder) -> ListDeploymentsFluentBuilder,
    ) -> Result<ListDeploymentsOutput, PortError> {
        let request = self
            .client
            .list_deployments()
            .application_name(&group.application)
            .deployment_group_name(&group.deployment_group)
            .set_next_token(token);
        filter(request)
            .send()
            .await
            .map_err(|e| port_error("ListDeployments", e))
    }

    async fn deployment(
        &self,
        id: &str,
    ) -> Result<aws_sdk_codedeploy::types::DeploymentInfo, PortError> {
        self.client
            .get_deployment()
            .deployment_id(id)
            .send()
            .await
            .map_err(|e| port_error("GetDeployment", e))?
            .deployment_info
            .ok_or_else(|| PortError::Permanent {
                op: "GetDeployment",
                source: format!("no deployment info for {id}").into(),
            })
    }
}

/// The deployment id in a `DeploymentLimitExceededException` message, in either wording AWS
/// has used: `… already has an active Deployment 'd-…'` or `… is already deploying 'd-…'`.
pub fn busy_deployment(message: &str) -> Option<DeploymentId> {
    for marker in [
        "already has an active Deployment '",
        "is already deploying '",
    ] {
        if let Some(rest) = message.split(marker).nth(1) {
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if id.starts_with("d-") && id.len() > 2 {
                return Some(DeploymentId(id));
            }
        }
    }
    None
}

/// What `launch_config` needs of a deployment.
pub fn last_attempt_of(d: &aws_sdk_codedeploy::types::DeploymentInfo) -> LastAttempt {
    // No overview: how many targets it failed on is unknown.
    let (Some(status), Some(overview)) = (d.status(), d.deployment_overview()) else {
        return LastAttempt::Unknown;
    };
    if is_active(Some(status)) {
        return LastAttempt::Unknown;
    }
    LastAttempt::Ended {
        succeeded: status == &DeploymentStatus::Succeeded,
        failed_targets: u64::try_from(overview.failed).unwrap_or(u64::MAX),
        ours: d
            .description()
            .and_then(IntentId::from_description)
            .is_some(),
        config: d.deployment_config_name().map(str::to_owned),
    }
}

/// A stable, comparable rendering of a revision location.
pub fn revision_of(r: &RevisionLocation) -> Revision {
    let text = match r.revision_type() {
        Some(RevisionLocationType::S3) => {
            let s3 = r.s3_location();
            format!(
                "s3://{}/{}?version={}&etag={}&bundle={}",
                s3.and_then(|s| s.bucket()).unwrap_or_default(),
                s3.and_then(|s| s.key()).unwrap_or_default(),
                s3.and_then(|s| s.version()).unwrap_or_default(),
                s3.and_then(|s| s.e_tag()).unwrap_or_default(),
                s3.and_then(|s| s.bundle_type())
                    .map(|b| b.as_str())
                    .unwrap_or_default(),
            )
        }
        Some(RevisionLocationType::GitHub) => {
            let g = r.git_hub_location();
            format!(
                "github:{}@{}",
                g.and_then(|g| g.repository()).unwrap_or_default(),
                g.and_then(|g| g.commit_id()).unwrap_or_default()
            )
        }
        Some(RevisionLocationType::String) => {
            let s = r.string();
            format!(
                "string:{}",
                s.and_then(|s| s.sha256())
                    .or_else(|| s.and_then(|s| s.content()))
                    .unwrap_or_default()
            )
        }
        Some(RevisionLocationType::AppSpecContent) => {
            let s = r.app_spec_content();
            format!(
                "appspec:{}",
                s.and_then(|s| s.sha256())
                    .or_else(|| s.and_then(|s| s.content()))
                    .unwrap_or_default()
            )
        }
        other => format!("{other:?}"),
    };
    Revision(text)
}

fn target_state(s: &SdkTargetStatus) -> TargetState {
    match s {
        SdkTargetStatus::Pending | SdkTargetStatus::Ready => TargetState::Pending,
        SdkTargetStatus::InProgress => TargetState::InProgress,
        SdkTargetStatus::Succeeded => TargetState::Succeeded,
        SdkTargetStatus::Failed => TargetState::Failed,
        SdkTargetStatus::Skipped => TargetState::Skipped,
        _ => TargetState::Unknown,
    }
}

fn deployment_state(s: Option<&DeploymentStatus>) -> DeploymentState {
    match s {
        Some(DeploymentStatus::Succeeded) => DeploymentState::Succeeded,
        Some(DeploymentStatus::Failed) => DeploymentState::Failed,
        Some(DeploymentStatus::Stopped) => DeploymentState::Stopped,
        _ => DeploymentState::InProgress,
    }
}

/// The statuses of a deployment that still holds its group [aws-behaviour §3.3 GetDeployment and status].
const ACTIVE_STATUSES: [DeploymentStatus; 5] = [
    DeploymentStatus::Created,
    DeploymentStatus::Queued,
    DeploymentStatus::InProgress,
    DeploymentStatus::Baking,
    DeploymentStatus::Ready,
];

fn is_active(s: Option<&DeploymentStatus>) -> bool {
    s.is_some_and(|s| ACTIVE_STATUSES.contains(s))
}

impl Deployments for CodeDeploy {
    async fn create(
        &self,
        group: &GroupKey,
        intent: &IntentId,
        config: Option<&str>,
    ) -> Result<CreateOutcome, PortError> {
        let (fetched, ahead) = match self.take_prefetched(group) {
            Some((info, last)) => (Ok(info), last),
            None => (self.group_info(group).await, None),
        };
        let info = match fetched {
            Ok(i) => i,
            Err(e) if !e.is_retryable() => {
                return Ok(CreateOutcome::Failed {
                    reason: e.to_string(),
                    retryable: false,
                });
            }
            Err(e) => return Err(e),
        };
        let Some(revision) = info.target_revision().cloned() else {
            return Ok(CreateOutcome::NoRevision);
        };
        let config = self.launch_config(group, &info, config, ahead).await;
        let description = intent.description();
        let resp = self
            .client
            .create_deployment()
            .application_name(&group.application)
            .deployment_group_name(&group.deployment_group)
            .revision(revision.clone())
            .update_outdated_instances_only(true)
            .set_deployment_config_name(config.map(str::to_owned))
            .description(description)
            .send()
            .await;
        match resp {
            Ok(out) => match out.deployment_id {
                Some(d) => Ok(CreateOutcome::Created {
                    deployment: DeploymentId(d),
                    revision: Some(revision_of(&revision)),
                }),
                None => Ok(CreateOutcome::Failed {
                    reason: "CreateDeployment returned no deployment id".into(),
                    retryable: true,
                }),
            },
            Err(e) => {
                let limit = e
                    .as_service_error()
                    .is_some_and(|se| se.is_deployment_limit_exceeded_exception());
                if limit {
                    let message = e.message().unwrap_or_default().to_owned();
                    let active = match busy_deployment(&message) {
                        Some(active) => Some(active),
                        // A wording we do not know: CodeDeploy's state says whether the group
                        // is busy [aws-behaviour §3.1 Group already busy].
                        None => {
                            let active = self.active_on(group).await?;
                            tracing::warn!(
                                %group,
                                wording = %message,
                                active = active.as_ref().map(DeploymentId::as_str),
                                "DeploymentLimitExceededException names no deployment in a wording we know; asked ListDeployments for the group's active one"
                            );
                            active
                        }
                    };
                    let Some(active) = active else {
                        // Nothing active on the group: the account's concurrent-deployment
                        // quota, not this group.
                        return Ok(CreateOutcome::Failed {
                            reason: message,
                            retryable: true,
                        });
                    };
                    let info = self.deployment(active.as_str()).await?;
                    if info.description().is_some_and(|d| intent.marks(d)) {
                        let revision = info.revision().map(revision_of);
                        return Ok(CreateOutcome::Created {
                            deployment: active,
                            revision,
                        });
                    }
                    return Ok(CreateOutcome::Busy { deployment: active });
                }
                let err = port_error("CreateDeployment", e);
                Ok(CreateOutcome::Failed {
                    reason: err.to_string(),
                    retryable: err.is_retryable(),
                })
            }
        }
    }

    async fn find(
        &self,
        group: &GroupKey,
        intent: &IntentId,
        since: Millis,
    ) -> Result<CreateOutcome, PortError> {
        let range = TimeRange::builder()
            .start(DateTime::from_millis(
                i64::try_from(since.0.saturating_sub(IntentId::FIND_SLACK_MS)).unwrap_or(0),
            ))
            .build();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(group, token.take(), |r| r.create_time_range(range.clone()))
                .await?;
            for id in page.deployments() {
                let info = self.deployment(id).await?;
                if info.description().is_some_and(|d| intent.marks(d)) {
                    return Ok(CreateOutcome::Created {
                        deployment: DeploymentId(id.clone()),
                        revision: info.revision().map(revision_of),
                    });
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(CreateOutcome::NotFound),
            }
        }
    }

    async fn status(
        &self,
        deployment: &DeploymentId,
        instances: &[InstanceId],
    ) -> Result<(DeploymentState, Vec<(InstanceId, TargetState)>), PortError> {
        let info = self.deployment(deployment.as_str()).await?;
        let mut targets = if instances.is_empty() {
            Vec::new()
        } else {
            self.targets(deployment, instances).await?
        };
        // An instance that is not a target (never selected, or gone) is Unknown to the core.
        for i in instances {
            if !targets.iter().any(|(t, _)| t == i) {
                targets.push((i.clone(), TargetState::Unknown));
            }
        }
        Ok((deployment_state(info.status()), targets))
    }

    async fn stop(&self, deployment: &DeploymentId) -> Result<(), PortError> {
        match self
            .client
            .stop_deployment()
            .deployment_id(deployment.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_deployment_already_completed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(port_error("StopDeployment", e)),
        }
    }

    async fn revision(&self, group: &GroupKey) -> Result<GroupRevision, PortError> {
        let info = self.group_info(group).await?;
        let active = info
            .last_attempted_deployment()
            .filter(|d| is_active(d.status()))
            .and_then(|d| d.deployment_id())
            .map(|d| DeploymentId(d.to_owned()));
        Ok(GroupRevision {
            group: group.clone(),
            revision: info.target_revision().map(revision_of),
            active,
            touched: None,
        })
    }

    async fn prefetch(&self, group: &GroupKey) {
        match self.group_info(group).await {
            Ok(info) => {
                // An ended deployment's outcome does not change: read it now, beside the
                // commit, rather than before the create. An active one is read by `create`.
                let ended = info
                    .last_attempted_deployment()
                    .is_some_and(|d| !is_active(d.status()));
                let last = if ended {
                    Some(self.last_attempt(&info).await)
                } else {
                    None
                };
                let mut p = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
                p.insert(group.clone(), (std::time::Instant::now(), info, last));
            }
            Err(e) => tracing::debug!(error = %e, %group, "prefetch failed; create reads it"),
        }
    }

    async fn holding(
        &self,
        group: &GroupKey,
        instance: &InstanceId,
        done_in: Option<&DeploymentId>,
        since: Option<Millis>,
    ) -> Result<LeaveFound, PortError> {
        Ok(match since {
            Some(since) => self.reached(group, instance, done_in, since).await?,
            None => self
                .active_holding(group, instance, done_in)
                .await?
                .map_or(LeaveFound::Clear, LeaveFound::Held),
        })
    }
}

impl CodeDeploy {
    /// Every deployment of the group created since `since` but `done_in` that has the instance
    /// as a target: the first one still running on it, else the first one done with it. One
    /// `ListDeployments` when nothing else deployed to the group (the usual case); a target
    /// read, and a status read if the target is unfinished, for each other deployment.
    async fn reached(
        &self,
        group: &GroupKey,
        instance: &InstanceId,
        done_in: Option<&DeploymentId>,
        since: Millis,
    ) -> Result<LeaveFound, PortError> {
        let range = TimeRange::builder()
            .start(DateTime::from_millis(
                i64::try_from(since.0.saturating_sub(LeaveFound::LOOK_BACK_SLACK_MS)).unwrap_or(0),
            ))
            .build();
        let mut touched = None;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(group, token.take(), |r| r.create_time_range(range.clone()))
                .await?;
            for id in page.deployments() {
                let deployment = DeploymentId(id.clone());
                if Some(&deployment) == done_in {
                    continue;
                }
                // Not a target (created after the gate closed, or other tags): nothing to see.
                let Some((_, state)) = self
                    .targets(&deployment, std::slice::from_ref(instance))
                    .await?
                    .into_iter()
                    .next()
                else {
                    continue;
                };
                // Skipped: it found the instance up to date and installed nothing.
                if state == TargetState::Skipped {
                    continue;
                }
                let unfinished = matches!(
                    state,
                    TargetState::Pending | TargetState::InProgress | TargetState::Unknown
                );
                if unfinished && is_active(self.deployment(id).await?.status()) {
                    return Ok(LeaveFound::Held(deployment));
                }
                touched.get_or_insert(deployment);
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(touched.map_or(LeaveFound::Clear, LeaveFound::Touched)),
            }
        }
    }

    /// The group's active deployment, if it is not `done_in` and still has the instance as an
    /// unfinished target.
    async fn active_holding(
        &self,
        group: &GroupKey,
        instance: &InstanceId,
        done_in: Option<&DeploymentId>,
    ) -> Result<Option<DeploymentId>, PortError> {
        let info = self.group_info(group).await?;
        let Some(active) = info
            .last_attempted_deployment()
            .filter(|d| is_active(d.status()))
            .and_then(|d| d.deployment_id())
            .map(|d| DeploymentId(d.to_owned()))
        else {
            return Ok(None);
        };
        if Some(&active) == done_in {
            return Ok(None);
        }
        let targets = self
            .targets(&active, std::slice::from_ref(instance))
            .await?;
        let unfinished = targets.iter().any(|(_, s)| {
            matches!(
                s,
                TargetState::Pending | TargetState::InProgress | TargetState::Unknown
            )
        });
        Ok(unfinished.then_some(active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_deployment_id_is_parsed_from_both_wordings() {
        assert_eq!(
            busy_deployment(
                "The Deployment Group 'web' already has an active Deployment 'd-ABC123XYZ'"
            ),
            Some(DeploymentId("d-ABC123XYZ".into()))
        );
        assert_eq!(
            busy_deployment("Deployment group web is already deploying 'd-1234567'"),
            Some(DeploymentId("d-1234567".into()))
        );
        assert_eq!(
            busy_deployment("The maximum number of concurrent deployments was exceeded"),
            None
        );
    }
}
