//! CodeDeploy's API: deployment groups, creating, describing, listing and stopping
//! deployments, and the launch hook CodeDeploy installs on an associated Auto Scaling group.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{
    ApiError, Cloud, Creator, DeployConfig, Deployment, DeploymentGroup, DeploymentStatus, Fact,
    GroupKey, Hook, HookResult, InstanceState, Ms, Target, TargetStatus, Transition,
};

impl Cloud {
    /// Associates a deployment group with an Auto Scaling group the way CodeDeploy does: it
    /// installs its own launch hook (`CodeDeploy-managed-automatic-launch-deployment-hook-<group>-<uuid>`,
    /// 600 s heartbeat, ABANDON) [aws-behaviour §3.6].
    pub fn associate_asg(&mut self, asg: &str, group: &GroupKey) {
        let uuid = self.uuid();
        let name = format!(
            "CodeDeploy-managed-automatic-launch-deployment-hook-{}-{uuid}",
            group.1
        );
        let Some(a) = self.asgs.get_mut(asg) else {
            return;
        };
        a.hooks.push(Hook {
            name: name.clone(),
            transition: Transition::Launching,
            heartbeat_secs: 600,
            default_result: HookResult::Abandon,
            metadata: Some(uuid),
        });
        self.native_hooks
            .insert((asg.to_owned(), name), group.clone());
    }

    /// CodeDeploy's answer to its own hook's notification: a deployment (creator
    /// `autoscaling`) of the group's last successful revision to the new instance, heartbeated
    /// until it ends, then CONTINUE or ABANDON [aws-behaviour §3.6 Flow].
    pub(crate) fn native_launch(
        &mut self,
        instance: &str,
        asg: &str,
        hook: &str,
        token: &str,
        group: &GroupKey,
    ) {
        let Some(revision) = self
            .groups
            .get(group)
            .and_then(|g| g.target_revision.clone())
        else {
            let _ =
                self.complete_lifecycle_action(asg, hook, Some(token), None, HookResult::Continue);
            return;
        };
        let config = self
            .groups
            .get(group)
            .map_or(DeployConfig::OneAtATime, |g| g.config);
        let id = format!("d-{:09X}", self.next());
        let mut targets = BTreeMap::new();
        targets.insert(
            instance.to_owned(),
            Target {
                status: TargetStatus::Pending,
                started_at: None,
                ended_at: None,
            },
        );
        self.facts.push(Fact::DeploymentCreated {
            deployment: id.clone(),
            group: group.clone(),
            creator: Creator::Autoscaling,
            targets: vec![instance.to_owned()],
            config,
            config_override: false,
            serving_targets: Vec::new(),
            at: self.now,
        });
        self.active.insert(id.clone());
        self.deployments.insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                group: group.clone(),
                revision,
                config,
                config_override: false,
                creator: Creator::Autoscaling,
                description: String::new(),
                status: DeploymentStatus::InProgress,
                targets,
                created_at: self.now,
                ended_at: None,
                undispatched: VecDeque::from([instance.to_owned()]),
                native: Some((asg.to_owned(), hook.to_owned(), token.to_owned())),
            },
        );
        self.publish_deployment(&id, "START");
        self.dispatch(&id);
        self.maybe_finish(&id);
    }

    pub fn get_deployment_group(&mut self, key: &GroupKey) -> Result<DeploymentGroup, ApiError> {
        self.count("GetDeploymentGroup");
        self.groups
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::DeploymentGroupDoesNotExist(format!("{}/{}", key.0, key.1)))
    }

    /// The Auto Scaling groups a deployment group is associated with, each with the launch
    /// hook CodeDeploy installed on it, in (group, hook) order [aws-behaviour §3.8].
    pub fn associated_asgs(&self, key: &GroupKey) -> Vec<(String, String)> {
        self.native_hooks
            .iter()
            .filter(|(_, g)| *g == key)
            .map(|((asg, hook), _)| (asg.clone(), hook.clone()))
            .collect()
    }

    pub fn active_deployment(&self, key: &GroupKey) -> Option<&Deployment> {
        self.active_deployments()
            .find(|d| &d.group == key && d.status.is_active())
    }

    /// The deployments still in progress.
    pub fn active_deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.active.iter().filter_map(|id| self.deployments.get(id))
    }

    /// CreateDeployment [aws-behaviour §3.1; §3.1 Targets by tag]: one active deployment per group, else
    /// `DeploymentLimitExceededException` naming the active one; targets are the group's
    /// tag-selected instances *at creation* (CodeDeploy user guide, instances-tagging: the
    /// instances meeting the tag criteria "when a deployment to that deployment group is
    /// created"; tags changed later do not change a running deployment's targets); with
    /// `update_outdated_only`, up-to-date ones are skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn create_deployment(
        &mut self,
        key: &GroupKey,
        revision: Option<&str>,
        config: Option<&str>,
        update_outdated_only: bool,
        description: &str,
        creator: Creator,
    ) -> Result<String, ApiError> {
        self.count("CreateDeployment");
        let group =
            self.groups.get(key).cloned().ok_or_else(|| {
                ApiError::DeploymentGroupDoesNotExist(format!("{}/{}", key.0, key.1))
            })?;
        if let Some(active) = self.active_deployment(key) {
            let active = active.id.clone();
            self.facts.push(Fact::CreateRejected {
                group: key.clone(),
                active: active.clone(),
                at: self.now,
            });
            return Err(ApiError::DeploymentLimitExceeded {
                message: format!(
                    "The Deployment Group '{}' already has an active Deployment '{active}'",
                    key.1
                ),
                active,
            });
        }
        let revision = revision
            .map(str::to_owned)
            .or(group.target_revision.clone())
            .ok_or(ApiError::RevisionRequired)?;
        let named = config.and_then(DeployConfig::parse);
        let config = named.unwrap_or(group.config);
        // Naming the group's own configuration changes nothing: not an override.
        let config_override = named.is_some_and(|c| c != group.config);
        let id = format!("d-{:09X}", self.next());
        let mut targets = BTreeMap::new();
        let mut undispatched = VecDeque::new();
        let mut serving_targets = Vec::new();
        for inst in self.live_instances() {
            // An instance held on its way into the warm pool is running and can be deployed
            // to; a stopped one cannot [aws-behaviour §2 Warm pools].
            let live = matches!(
                inst.state,
                InstanceState::PendingWait
                    | InstanceState::InService
                    | InstanceState::WarmedPendingWait
            );
            if !live || !group.selects(&inst.tags) {
                continue;
            }
            let up_to_date = inst.installed.get(key) == Some(&revision);
            let status = if update_outdated_only && up_to_date {
                TargetStatus::Skipped
            } else {
                undispatched.push_back(inst.id.clone());
                if inst.state == InstanceState::InService {
                    serving_targets.push(inst.id.clone());
                }
                TargetStatus::Pending
            };
            targets.insert(
                inst.id.clone(),
                Target {
                    status,
                    started_at: None,
                    ended_at: None,
                },
            );
        }
        let dep = Deployment {
            id: id.clone(),
            group: key.clone(),
            revision,
            config,
            config_override,
            creator,
            description: description.to_owned(),
            status: DeploymentStatus::InProgress,
            targets,
            created_at: self.now,
            ended_at: None,
            undispatched,
            native: None,
        };
        self.facts.push(Fact::DeploymentCreated {
            deployment: id.clone(),
            group: key.clone(),
            creator,
            targets: dep.targets.keys().cloned().collect(),
            config,
            config_override,
            serving_targets,
            at: self.now,
        });
        self.active.insert(id.clone());
        self.deployments.insert(id.clone(), dep);
        self.publish_deployment(&id, "START");
        self.dispatch(&id);
        self.maybe_finish(&id);
        Ok(id)
    }

    pub fn get_deployment(&mut self, id: &str) -> Result<Deployment, ApiError> {
        self.count("GetDeployment");
        self.deployments
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::DeploymentDoesNotExist(id.to_owned()))
    }

    /// ListDeployments of a group (newest first), optionally only active ones.
    pub fn list_deployments(
        &mut self,
        key: &GroupKey,
        active_only: bool,
        since: Ms,
    ) -> Vec<String> {
        self.count("ListDeployments");
        let mut ids: Vec<(Ms, String)> = self
            .deployments
            .values()
            .filter(|d| {
                &d.group == key && (!active_only || d.status.is_active()) && d.created_at >= since
            })
            .map(|d| (d.created_at, d.id.clone()))
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids.into_iter().map(|(_, i)| i).collect()
    }

    /// StopDeployment [aws-behaviour §3.5]: in-flight targets fail, pending ones are skipped.
    pub fn stop_deployment(&mut self, id: &str) -> Result<(), ApiError> {
        self.count("StopDeployment");
        let Some(d) = self.deployments.get(id) else {
            return Err(ApiError::DeploymentDoesNotExist(id.to_owned()));
        };
        if !d.status.is_active() {
            return Err(ApiError::DeploymentAlreadyCompleted(id.to_owned()));
        }
        let targets: Vec<(String, TargetStatus)> = d
            .targets
            .iter()
            .map(|(i, t)| (i.clone(), t.status))
            .collect();
        for (inst, status) in targets {
            match status {
                TargetStatus::InProgress => {
                    if let Some(i) = self.instances.get_mut(&inst) {
                        i.agent.running = None;
                    }
                    self.set_target(id, &inst, TargetStatus::Failed);
                    self.publish_instance(id, &inst, "STOP");
                    self.start_next(&inst);
                }
                TargetStatus::Pending => {
                    if let Some(i) = self.instances.get_mut(&inst) {
                        i.agent.queue.retain(|(d, _)| d != id);
                    }
                    self.set_target(id, &inst, TargetStatus::Skipped);
                }
                _ => {}
            }
        }
        self.end_deployment(id, DeploymentStatus::Stopped);
        Ok(())
    }

    /// Every (deployment, instance) where a deployment created with a configuration other
    /// than the group's own deployed to an instance that was in service at its creation.
    pub fn override_on_serving(&self) -> Vec<(String, String)> {
        self.facts
            .iter()
            .filter_map(|f| match f {
                Fact::DeploymentCreated {
                    deployment,
                    config_override: true,
                    serving_targets,
                    ..
                } => Some(
                    serving_targets
                        .iter()
                        .map(|i| (deployment.clone(), i.clone())),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Active deployments that have `instance` as a target still in flight.
    pub fn in_flight_on(&self, instance: &str) -> BTreeSet<String> {
        self.active_deployments()
            .filter(|d| d.is_target_in_flight(instance))
            .map(|d| d.id.clone())
            .collect()
    }
}
