//! CodeDeploy's answers and events: target and deployment states, polls, creation outcomes
//! and the seal.

use super::*;

impl Cx<'_> {
    /// A deployment's state change event, deduplicated on its event id.
    pub(super) fn on_deployment_event(
        &mut self,
        event_id: Option<&EventId>,
        key: &GroupKey,
        deployment: &DeploymentId,
        state: DeploymentState,
    ) {
        if self.group_seen(key, event_id) {
            return;
        }
        self.on_deployment(key, deployment, state, &[]);
    }

    /// A target's state change event, deduplicated on its event id: recorded on the group's
    /// member entry, then picked up by the instance.
    pub(super) fn on_target(
        &mut self,
        event_id: Option<&EventId>,
        key: &GroupKey,
        deployment: &DeploymentId,
        id: &InstanceId,
        state: TargetState,
    ) {
        if self.instance_seen(id, event_id) {
            return;
        }
        if !self.set_member_status(key, deployment, id, state) {
            self.ignore(format!(
                "{deployment} is not serving {id} for the orchestrator"
            ));
            return;
        }
        self.resolve(id);
    }

    /// Records a target's status on the member entry of `deployment`
    /// ([`Group::set_member_status`]). Returns whether the instance is a member of it.
    fn set_member_status(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        id: &InstanceId,
        state: TargetState,
    ) -> bool {
        let status = match state {
            TargetState::Pending | TargetState::InProgress => MemberStatus::Pending,
            TargetState::Succeeded => MemberStatus::Succeeded,
            TargetState::Failed | TargetState::Unknown => MemberStatus::Failed,
            TargetState::Skipped => MemberStatus::Skipped,
        };
        self.group_mut(key)
            .is_some_and(|g| g.set_member_status(deployment, id, status))
    }

    pub(super) fn on_deployment(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        state: DeploymentState,
        targets: &[(InstanceId, TargetState)],
    ) {
        let now = self.now;
        if self.group(key).is_none() {
            self.ignore(format!("no record of {key}"));
            return;
        }
        for (i, t) in targets {
            self.set_member_status(key, deployment, i, *t);
        }
        let mut woken: Vec<InstanceId> = Vec::new();
        let Some(g) = self.group_mut(key) else {
            return;
        };
        match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                polled_at,
                ..
            }) if d == deployment => {
                *polled_at = now;
                if state.is_terminal() {
                    let end = match state {
                        DeploymentState::Succeeded => DeploymentEnd::Succeeded,
                        DeploymentState::Stopped => DeploymentEnd::Stopped,
                        _ => DeploymentEnd::Failed,
                    };
                    woken.extend(self.settle(key, end));
                }
            }
            Some(Active::Ours { deployment: d, .. }) => {
                if state == DeploymentState::Started {
                    // A new deployment started, so ours ended unseen: ask about ours now.
                    let ours = d.clone();
                    self.poll(key, &ours);
                }
            }
            Some(Active::Creating { .. }) => {
                // It may be our own deployment whose creation answer is not recorded yet; the
                // creation outcome (or its recovery) decides.
            }
            Some(Active::Foreign { .. }) | None => follow_foreign(g, deployment, state, now),
        }
        if let Some(g) = self.group_mut(key) {
            for s in &mut g.settling {
                if s.deployment.as_ref() == Some(deployment) {
                    s.polled_at = now;
                }
            }
            // Whoever has a result to read, including those an earlier answer resolved whose
            // wake was lost; members still pending are not woken.
            woken.extend(g.resolved_of(deployment));
        }
        self.try_admit(key);
        self.wake_all(woken);
    }

    /// Ends the group's own active deployment ([`Group::settle`]) and asks about the members
    /// whose result is not known yet. Returns the members whose result can be read now.
    fn settle(&mut self, key: &GroupKey, end: DeploymentEnd) -> Vec<InstanceId> {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return Vec::new();
        };
        let settled = g.settle(end, now);
        if let Some((deployment, instances)) = settled.poll {
            self.out.push(Command::PollDeployment {
                group: key.clone(),
                deployment,
                instances,
            });
        }
        settled.ready
    }

    pub(super) fn poll(&mut self, key: &GroupKey, deployment: &DeploymentId) {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let mut instances = Vec::new();
        match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                members,
                polled_at,
                ..
            }) if d == deployment => {
                *polled_at = now;
                instances.extend(
                    members
                        .iter()
                        .filter(|(_, m)| !m.status.is_terminal())
                        .map(|(i, _)| i.clone()),
                );
            }
            Some(Active::Foreign {
                deployment: d,
                polled_at,
                ..
            }) if d == deployment => *polled_at = now,
            _ => {}
        }
        for s in &mut g.settling {
            if s.deployment.as_ref() == Some(deployment) {
                s.polled_at = now;
                instances.extend(
                    s.members
                        .iter()
                        .filter(|(_, m)| !m.status.is_terminal())
                        .map(|(i, _)| i.clone()),
                );
            }
        }
        self.out.push(Command::PollDeployment {
            group: key.clone(),
            deployment: deployment.clone(),
            instances,
        });
    }

    pub(super) fn wake_all(&mut self, ids: Vec<InstanceId>) {
        let set: BTreeSet<InstanceId> = ids.into_iter().collect();
        for i in set {
            self.out.push(Command::Wakeup {
                key: Key::Instance(i),
                at: self.now,
            });
        }
    }

    /// The answer to `CreateDeployment` (or to the lookup of a creation intent left by a
    /// crashed invocation).
    pub(super) fn on_create_outcome(
        &mut self,
        key: &GroupKey,
        intent: &IntentId,
        outcome: &CreateOutcome,
    ) {
        let now = self.now;
        let retry_at = now.plus_ms(self.cfg.create_retry_ms);
        let Some(g) = self.group_mut(key) else {
            self.ignore(format!("no record of {key}"));
            return;
        };
        let members = match &g.active {
            Some(Active::Creating {
                intent: i, members, ..
            }) if i == intent => members.clone(),
            _ => {
                self.ignore(format!(
                    "creation answer for {intent}, which is no longer pending"
                ));
                return;
            }
        };
        let gate = g.gate.clone();
        let ids: Vec<InstanceId> = members.keys().cloned().collect();
        match outcome {
            CreateOutcome::Created {
                deployment,
                revision,
            } => self.created(key, deployment, revision, members),
            CreateOutcome::Busy { deployment } => {
                // Someone else's deployment holds the group: wait for it, gates closed.
                for i in &ids {
                    g.waiting.insert(i.clone(), now);
                }
                g.active = Some(Active::Foreign {
                    deployment: deployment.clone(),
                    since: now,
                    polled_at: now,
                });
                if !ids.is_empty() {
                    self.out.push(Command::CloseGate {
                        gates: vec![gate],
                        instances: ids,
                    });
                }
            }
            CreateOutcome::NoRevision => {
                let ready = self.settle(key, DeploymentEnd::NothingToDeploy);
                self.wake_all(ready);
            }
            CreateOutcome::NotFound => self.create_again(key, intent, ids),
            CreateOutcome::Failed {
                reason,
                retryable: true,
            } => {
                for i in &ids {
                    g.waiting.insert(i.clone(), now);
                }
                g.active = None;
                g.admit_at = Some(retry_at);
                self.out.push(Command::CloseGate {
                    gates: vec![gate],
                    instances: ids,
                });
                self.ignore(format!("CreateDeployment will be retried: {reason}"));
            }
            CreateOutcome::Failed {
                reason,
                retryable: false,
            } => {
                self.out.push(Command::CloseGate {
                    gates: vec![gate],
                    instances: ids,
                });
                self.alert(
                    AlertKind::CreateFailed,
                    None,
                    Some(key),
                    format!("CreateDeployment for {key} failed: {reason}"),
                );
                let ready = self.settle(key, DeploymentEnd::NotCreated);
                self.wake_all(ready);
            }
        }
        self.try_admit(key);
    }

    /// Our deployment exists: it becomes the group's active one, and its members' gate is
    /// sealed behind them (the targets are fixed at creation).
    fn created(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        revision: &Option<Revision>,
        members: BTreeMap<InstanceId, Member>,
    ) {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return;
        };
        let gate = g.gate.clone();
        let ids: Vec<InstanceId> = members.keys().cloned().collect();
        let seal = if ids.is_empty() {
            Seal::Open
        } else {
            Seal::Pending { since: now }
        };
        g.active = Some(Active::Ours {
            deployment: deployment.clone(),
            revision: revision.clone(),
            members,
            since: now,
            polled_at: now,
            seal,
        });
        self.metric(
            MetricName::DeploymentCreated,
            ids.len() as f64,
            MetricUnit::Count,
            None,
            Some(key.clone()),
        );
        if ids.is_empty() {
            // Every instance it was meant for left while it was being created.
            self.out.push(Command::StopDeployment {
                group: key.clone(),
                deployment: deployment.clone(),
            });
        } else {
            // The targets are fixed now: close the gate behind them.
            self.out.push(Command::SealGate {
                group: key.clone(),
                deployment: deployment.clone(),
                gate,
                instances: ids,
            });
        }
    }

    /// The crashed creator never got as far as CreateDeployment: create it now, under the
    /// same intent.
    fn create_again(&mut self, key: &GroupKey, intent: &IntentId, ids: Vec<InstanceId>) {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return;
        };
        if let Some(Active::Creating { since, .. }) = &mut g.active {
            *since = now;
        }
        let (gate, config) = (g.gate.clone(), g.config.clone());
        self.out.push(Command::OpenGate {
            gates: vec![gate],
            instances: ids.clone(),
        });
        self.out.push(Command::CreateDeployment {
            group: key.clone(),
            intent: intent.clone(),
            instances: ids,
            config,
        });
    }

    /// The seal's answer: the deployment's status, read after its members' gate was closed.
    pub(super) fn on_gate_sealed(
        &mut self,
        key: &GroupKey,
        deployment: &DeploymentId,
        state: DeploymentState,
    ) {
        let Some(g) = self.group_mut(key) else {
            self.ignore(format!("no record of {key}"));
            return;
        };
        match &mut g.active {
            Some(Active::Ours {
                deployment: d,
                seal,
                ..
            }) if d == deployment && *seal != Seal::Open => {
                if state.is_terminal() {
                    // Over before this close was confirmed: unless an earlier answer sealed
                    // it, another deployment may have taken a member through its open gate,
                    // so members leave through the check.
                    if *seal != Seal::Sealed {
                        *seal = Seal::Open;
                    }
                    self.on_deployment(key, deployment, state, &[]);
                } else {
                    *seal = Seal::Sealed;
                }
            }
            _ => self.ignore(format!("seal answer for {deployment}, which is not active")),
        }
    }
}

/// A deployment that is not the group's own was seen in `state`: the foreign deployment the
/// group waits on is followed (polled, replaced by a newer one, ended), and a running one on a
/// free group becomes the one waited on.
fn follow_foreign(g: &mut Group, deployment: &DeploymentId, state: DeploymentState, now: Millis) {
    match &mut g.active {
        Some(Active::Foreign {
            deployment: d,
            polled_at,
            ..
        }) => {
            if d == deployment {
                *polled_at = now;
                if state.is_terminal() {
                    g.active = None;
                    if !g.waiting.is_empty() {
                        g.admit_at = Some(now);
                    }
                }
            } else if state == DeploymentState::Started {
                *d = deployment.clone();
                *polled_at = now;
            }
        }
        None => {
            let settled = g
                .settling
                .iter()
                .any(|s| s.deployment.as_ref() == Some(deployment));
            if !settled
                && matches!(
                    state,
                    DeploymentState::Started | DeploymentState::InProgress
                )
            {
                g.active = Some(Active::Foreign {
                    deployment: deployment.clone(),
                    since: now,
                    polled_at: now,
                });
            }
        }
        Some(Active::Creating { .. } | Active::Ours { .. }) => {}
    }
}
