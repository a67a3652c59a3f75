//! The group record: a CodeDeploy deployment group as the orchestrator sees it, the authority
//! on which instances its deployments serve.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Breaker, Seen};
use crate::config::Config;
use crate::ids::*;
use crate::plan::Gate;

/// A CodeDeploy deployment group as the orchestrator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: GroupKey,
    pub gate: Gate,
    /// Deployment configuration override for the next launch deployment.
    pub config: Option<String>,
    pub max_batch: u32,
    /// Instances waiting for this group, with the time they started waiting.
    pub waiting: BTreeMap<InstanceId, Millis>,
    /// When the waiting batch is admitted (if the group is free by then).
    pub admit_at: Option<Millis>,
    pub active: Option<Active>,
    /// Deployments that ended before every member's result was known.
    pub settling: Vec<Settling>,
    pub breaker: Breaker,
    /// Counter for intent ids.
    pub seq: u64,
    pub seen: Seen,
    pub wake_at: Option<Millis>,
    /// Some instance found the list full and waits in its own record
    /// ([`crate::StepWait::Overflow`]): when room frees, the group wakes the longest waiting
    /// ([`crate::Command::WakeOverflowed`]). A hint: cleared when a wake finds fewer than it
    /// asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflowed: bool,
    /// When the group last woke its overflowed instances: the next wake waits
    /// [`Config::overflow_wake_ms`] (the group's timer sends it then, if there is room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_woken_at: Option<Millis>,
    /// Operator actions on this group (breaker resets), the most recent
    /// [`super::OPERATOR_NOTES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator: Vec<super::OperatorNote>,
    /// An operator paused the group (`turnstile pause`): no deployment is created for it until
    /// it is resumed. Instances keep joining its list and keep their heartbeats; a deployment
    /// already created runs to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<super::OperatorNote>,
}

/// The one active deployment of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Active {
    /// The intent to create a deployment is recorded; `CreateDeployment` may or may not have
    /// been called.
    Creating {
        intent: IntentId,
        members: BTreeMap<InstanceId, Member>,
        since: Millis,
    },
    /// The orchestrator's own deployment.
    Ours {
        deployment: DeploymentId,
        revision: Option<Revision>,
        members: BTreeMap<InstanceId, Member>,
        since: Millis,
        polled_at: Millis,
        /// Whether the members' gate is closed behind the deployment (see [`Seal`]).
        #[serde(default)]
        seal: Seal,
    },
    /// Someone else's deployment (a user's, a rollback, an auto-update): waited on, not fought.
    Foreign {
        deployment: DeploymentId,
        since: Millis,
        polled_at: Millis,
    },
}

/// Whether the gate of an active deployment's members was closed while it was still active
/// ([`crate::Command::SealGate`]).
///
/// CodeDeploy picks an in-place deployment's targets when the deployment is created, and a
/// group runs one deployment at a time. So once the gate is closed while our deployment is still
/// active, no other deployment of the group can have a member as a target: none could be
/// created while ours ran, and those created later no longer select the member. A member of a
/// sealed deployment moves on as soon as its own target succeeds, with no leave check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seal {
    /// Not sealed: the deployment ended first, or the record predates seals. Members leave
    /// through the leave check.
    #[default]
    Open,
    /// Sent at `since` and not answered yet; the group's timer sends it again.
    Pending { since: Millis },
    /// The gate was closed while the deployment was still active.
    Sealed,
}

/// An instance served by one of the orchestrator's deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub admitted_at: Millis,
    pub status: MemberStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    Pending,
    Succeeded,
    Failed,
    /// CodeDeploy skipped the instance: up to date if the deployment succeeded, not deployed
    /// if it failed or stopped.
    Skipped,
}

impl MemberStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, MemberStatus::Pending)
    }
}

/// A deployment that ended while some members' results were still unknown or unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settling {
    pub deployment: Option<DeploymentId>,
    pub revision: Option<Revision>,
    pub outcome: DeploymentEnd,
    pub members: BTreeMap<InstanceId, Member>,
    pub since: Millis,
    pub polled_at: Millis,
    /// Whether the deployment was sealed ([`Seal::Sealed`]) before it ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentEnd {
    Succeeded,
    Failed,
    Stopped,
    /// The deployment could not be created (the creation failed for good).
    NotCreated,
    /// The group has no revision to deploy: every member trivially succeeds.
    NothingToDeploy,
}

impl Group {
    pub fn new(key: GroupKey, gate: Gate) -> Self {
        Self {
            key,
            gate,
            config: None,
            max_batch: crate::plan::defaults::MAX_BATCH,
            waiting: BTreeMap::new(),
            admit_at: None,
            active: None,
            settling: Vec::new(),
            breaker: Breaker::default(),
            seq: 0,
            seen: Seen::default(),
            wake_at: None,
            overflowed: false,
            overflow_woken_at: None,
            operator: Vec::new(),
            paused: None,
        }
    }

    /// Every instance the group's deployments still serve or wait to serve.
    pub fn instances(&self) -> BTreeSet<&InstanceId> {
        let mut all: BTreeSet<&InstanceId> = self.waiting.keys().collect();
        if let Some(m) = self.active.as_ref().and_then(Active::members) {
            all.extend(m.keys());
        }
        for s in &self.settling {
            all.extend(s.members.keys());
        }
        all
    }

    /// Whether nothing is recorded that needs this group record to stay. Operator notes keep
    /// it: they are the audit trail the command line waits for and shows (bounded, a few
    /// hundred bytes).
    pub fn is_idle(&self) -> bool {
        !self.overflowed
            && self.operator.is_empty()
            && self.paused.is_none()
            && self.waiting.is_empty()
            && self.active.is_none()
            && self.settling.is_empty()
            && self.breaker.tripped_since.is_none()
            && self.breaker.failures.is_empty()
    }
}

impl Active {
    pub fn members(&self) -> Option<&BTreeMap<InstanceId, Member>> {
        match self {
            Active::Creating { members, .. } | Active::Ours { members, .. } => Some(members),
            Active::Foreign { .. } => None,
        }
    }
    pub fn members_mut(&mut self) -> Option<&mut BTreeMap<InstanceId, Member>> {
        match self {
            Active::Creating { members, .. } | Active::Ours { members, .. } => Some(members),
            Active::Foreign { .. } => None,
        }
    }
    pub fn deployment(&self) -> Option<&DeploymentId> {
        match self {
            Active::Creating { .. } => None,
            Active::Ours { deployment, .. } | Active::Foreign { deployment, .. } => {
                Some(deployment)
            }
        }
    }
}

/// What ending the group's own deployment left to do (see [`Group::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Members whose result can be read now.
    pub ready: Vec<InstanceId>,
    /// A deployment to ask about, for the members whose target result is not known yet.
    pub poll: Option<(DeploymentId, Vec<InstanceId>)>,
}

impl Group {
    /// How many instances the record lists: waiting, members of the active deployment and of
    /// the settling ones. Its size grows with this number, so admission bounds it
    /// ([`Config::group_capacity`]).
    pub fn listed(&self) -> usize {
        let active = self
            .active
            .as_ref()
            .and_then(Active::members)
            .map_or(0, BTreeMap::len);
        let settling: usize = self.settling.iter().map(|s| s.members.len()).sum();
        self.waiting.len() + active + settling
    }

    /// Removes `id` from every list of the group and returns the deployment it was the last
    /// pending member of: one that now serves nobody and must be stopped.
    pub fn remove(&mut self, id: &InstanceId) -> Option<DeploymentId> {
        self.waiting.remove(id);
        let mut stop = None;
        if let Some(active) = &mut self.active {
            let deployment = active.deployment().cloned();
            if let Some(members) = active.members_mut()
                && let Some(m) = members.remove(id)
            {
                let others_pending = members.values().any(|m| m.status == MemberStatus::Pending);
                if m.status == MemberStatus::Pending && !others_pending {
                    stop = deployment;
                }
            }
        }
        for s in &mut self.settling {
            s.members.remove(id);
        }
        self.settling.retain(|s| !s.members.is_empty());
        if self.waiting.is_empty() {
            self.admit_at = None;
        }
        stop
    }

    /// Records a target's status on the member entry of `deployment` (the active one or a
    /// settling one); a terminal status is never overwritten. Returns whether the instance is
    /// a member of that deployment.
    pub fn set_member_status(
        &mut self,
        deployment: &DeploymentId,
        id: &InstanceId,
        status: MemberStatus,
    ) -> bool {
        let entry = match &mut self.active {
            Some(Active::Ours {
                deployment: d,
                members,
                ..
            }) if d == deployment => members.get_mut(id),
            _ => self
                .settling
                .iter_mut()
                .filter(|s| s.deployment.as_ref() == Some(deployment))
                .find_map(|s| s.members.get_mut(id)),
        };
        let Some(m) = entry else {
            return false;
        };
        if !m.status.is_terminal() {
            m.status = status;
        }
        true
    }

    /// The deployment that serves (or served) `id`: the active one or a settling one.
    pub fn deployment_of(&self, id: &InstanceId) -> Option<DeploymentId> {
        match &self.active {
            Some(Active::Ours {
                deployment,
                members,
                ..
            }) if members.contains_key(id) => Some(deployment.clone()),
            _ => self
                .settling
                .iter()
                .find(|s| s.members.contains_key(id))
                .and_then(|s| s.deployment.clone()),
        }
    }

    /// The members of `deployment` (active or settling) whose result is known and still to be
    /// read: the ones a poll's answer wakes. Members still pending have nothing to read, and
    /// waking them all on every poll cost one decision per member per poll, each reading this
    /// record (at 1,000 members, 1,000 wasted decisions a minute).
    pub fn resolved_of(&self, deployment: &DeploymentId) -> Vec<InstanceId> {
        let active = match &self.active {
            Some(Active::Ours {
                deployment: d,
                members,
                ..
            }) if d == deployment => Some(members),
            _ => None,
        };
        let settling = self
            .settling
            .iter()
            .filter(|s| s.deployment.as_ref() == Some(deployment))
            .map(|s| &s.members);
        active
            .into_iter()
            .chain(settling)
            .flat_map(|m| m.iter())
            .filter(|(_, m)| m.status.is_terminal())
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// Ends the group's own active deployment (or creation) with `end`: its members move to a
    /// settling entry, and the waiting instances may be admitted at once. A foreign deployment
    /// is left as it is.
    pub fn settle(&mut self, end: DeploymentEnd, now: Millis) -> Settled {
        let (deployment, revision, members, sealed) = match self.active.take() {
            Some(Active::Ours {
                deployment,
                revision,
                members,
                seal,
                ..
            }) => (Some(deployment), revision, members, seal == Seal::Sealed),
            Some(Active::Creating { members, .. }) => (None, None, members, false),
            other => {
                self.active = other;
                return Settled {
                    ready: Vec::new(),
                    poll: None,
                };
            }
        };
        if !self.waiting.is_empty() {
            self.admit_at = Some(now);
        }
        let nothing_ran = matches!(
            end,
            DeploymentEnd::NotCreated | DeploymentEnd::NothingToDeploy
        );
        let ready: Vec<InstanceId> = members
            .iter()
            .filter(|(_, m)| m.status.is_terminal() || nothing_ran)
            .map(|(i, _)| i.clone())
            .collect();
        let unknown: Vec<InstanceId> = members
            .iter()
            .filter(|(_, m)| !m.status.is_terminal())
            .map(|(i, _)| i.clone())
            .collect();
        if !members.is_empty() {
            self.settling.push(Settling {
                deployment: deployment.clone(),
                revision,
                outcome: end,
                members,
                since: now,
                polled_at: now,
                sealed,
            });
        }
        let poll = match deployment {
            Some(d) if !unknown.is_empty() && !nothing_ran => Some((d, unknown)),
            _ => None,
        };
        Settled { ready, poll }
    }

    /// When the timer must next look at this group: to admit the waiting batch, to recover a
    /// creation intent left by a crashed invocation, to poll a quiet deployment, or to re-send
    /// an unanswered seal.
    pub fn wake_at(&self, cfg: &Config) -> Option<Millis> {
        let mut at = Vec::new();
        match &self.active {
            // A paused group admits nothing: its resume admits at once.
            None => {
                if !self.waiting.is_empty() && self.paused.is_none() {
                    at.extend(self.admit_at);
                }
            }
            Some(Active::Creating { since, .. }) => at.push(since.plus_ms(cfg.create_lease_ms)),
            Some(Active::Ours {
                polled_at, seal, ..
            }) => {
                at.push(polled_at.plus_ms(cfg.poll_interval_ms));
                if let Seal::Pending { since } = seal {
                    at.push(since.plus_ms(cfg.resend_ms));
                }
            }
            Some(Active::Foreign { polled_at, .. }) => {
                at.push(polled_at.plus_ms(cfg.poll_interval_ms))
            }
        }
        at.extend(
            self.settling
                .iter()
                .map(|s| s.polled_at.plus_ms(cfg.poll_interval_ms)),
        );
        // The next wake of the overflowed, while there is room for them.
        if self.overflowed && self.listed() < cfg.group_capacity {
            at.extend(
                self.overflow_woken_at
                    .map(|t| t.plus_ms(cfg.overflow_wake_ms)),
            );
        }
        at.into_iter().min()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::state::{Standing, StepResult};

    pub(crate) fn i(n: u32) -> InstanceId {
        InstanceId::from(format!("i-{n}").as_str())
    }

    pub(crate) fn dep(n: u32) -> DeploymentId {
        DeploymentId::from(format!("d-{n}").as_str())
    }

    pub(crate) fn member(status: MemberStatus) -> Member {
        Member {
            admitted_at: Millis(1_000),
            status,
        }
    }

    pub(crate) fn group() -> Group {
        Group::new(
            GroupKey::new("app", "dg"),
            Gate {
                key: "gate".into(),
                value: "open".into(),
            },
        )
    }

    /// A group whose own deployment `d-1` serves the given members.
    pub(crate) fn ours(members: &[(u32, MemberStatus)], seal: Seal) -> Group {
        let mut g = group();
        g.active = Some(Active::Ours {
            deployment: dep(1),
            revision: Some(Revision::from("r1")),
            members: members.iter().map(|(n, s)| (i(*n), member(*s))).collect(),
            since: Millis(1_000),
            polled_at: Millis(1_000),
            seal,
        });
        g
    }

    #[test]
    fn remove_stops_a_deployment_only_its_last_pending_member_leaves() {
        let mut g = ours(
            &[(1, MemberStatus::Pending), (2, MemberStatus::Pending)],
            Seal::Open,
        );
        assert_eq!(g.remove(&i(1)), None, "another member is still pending");
        assert_eq!(g.remove(&i(2)), Some(dep(1)));
        let mut g = ours(
            &[(1, MemberStatus::Succeeded), (2, MemberStatus::Pending)],
            Seal::Open,
        );
        assert_eq!(g.remove(&i(1)), None, "a finished member holds nothing");
    }

    #[test]
    fn remove_forgets_the_instance_everywhere() {
        let mut g = ours(&[(1, MemberStatus::Pending)], Seal::Open);
        g.settle(DeploymentEnd::Failed, Millis(2_000));
        g.waiting.insert(i(1), Millis(2_000));
        g.admit_at = Some(Millis(3_000));
        g.remove(&i(1));
        assert!(g.waiting.is_empty());
        assert!(g.settling.is_empty(), "an empty settling entry goes");
        assert_eq!(g.admit_at, None, "nobody is left to admit");
        assert!(g.is_idle());
    }

    #[test]
    fn set_member_status_never_overwrites_a_terminal_status() {
        let mut g = ours(
            &[(1, MemberStatus::Pending), (2, MemberStatus::Succeeded)],
            Seal::Open,
        );
        assert!(g.set_member_status(&dep(1), &i(1), MemberStatus::Failed));
        assert!(g.set_member_status(&dep(1), &i(2), MemberStatus::Failed));
        assert!(matches!(
            g.standing(&i(2)),
            Standing::Done(StepResult::Success { .. })
        ));
        assert!(matches!(
            g.standing(&i(1)),
            Standing::Done(StepResult::Failure(_))
        ));
    }

    #[test]
    fn set_member_status_finds_members_of_a_settling_deployment_only() {
        let mut g = ours(&[(1, MemberStatus::Pending)], Seal::Open);
        assert!(!g.set_member_status(&dep(2), &i(1), MemberStatus::Succeeded));
        assert!(!g.set_member_status(&dep(1), &i(9), MemberStatus::Succeeded));
        g.settle(DeploymentEnd::Succeeded, Millis(2_000));
        assert!(g.set_member_status(&dep(1), &i(1), MemberStatus::Succeeded));
    }

    #[test]
    fn settle_polls_for_the_members_whose_result_is_unknown() {
        let mut g = ours(
            &[(1, MemberStatus::Succeeded), (2, MemberStatus::Pending)],
            Seal::Sealed,
        );
        g.waiting.insert(i(3), Millis(1_500));
        let settled = g.settle(DeploymentEnd::Succeeded, Millis(2_000));
        assert_eq!(settled.ready, vec![i(1)]);
        assert_eq!(settled.poll, Some((dep(1), vec![i(2)])));
        assert_eq!(g.active, None);
        assert_eq!(
            g.admit_at,
            Some(Millis(2_000)),
            "the waiting batch may go now"
        );
        let s = g.settling.first().unwrap();
        assert!(s.sealed, "the seal is remembered");
        assert_eq!(s.outcome, DeploymentEnd::Succeeded);
    }

    #[test]
    fn settle_without_a_deployment_makes_every_member_ready() {
        let mut g = group();
        g.active = Some(Active::Creating {
            intent: IntentId::from("1-0"),
            members: [(i(1), member(MemberStatus::Pending))].into(),
            since: Millis(1_000),
        });
        let settled = g.settle(DeploymentEnd::NotCreated, Millis(2_000));
        assert_eq!(settled.ready, vec![i(1)]);
        assert_eq!(settled.poll, None);
        assert!(matches!(
            g.standing(&i(1)),
            Standing::Done(StepResult::Failure(_))
        ));
    }

    #[test]
    fn settle_leaves_a_foreign_deployment_alone() {
        let mut g = group();
        let foreign = Active::Foreign {
            deployment: dep(7),
            since: Millis(0),
            polled_at: Millis(0),
        };
        g.active = Some(foreign.clone());
        let settled = g.settle(DeploymentEnd::Failed, Millis(2_000));
        assert!(settled.ready.is_empty() && settled.poll.is_none());
        assert_eq!(g.active, Some(foreign));
    }

    #[test]
    fn wake_at_is_the_earliest_of_poll_seal_and_settling() {
        let cfg = Config::default();
        let mut g = ours(
            &[(1, MemberStatus::Pending)],
            Seal::Pending {
                since: Millis(1_000),
            },
        );
        assert_eq!(g.wake_at(&cfg), Some(Millis(1_000 + cfg.resend_ms)));
        g.active = None;
        assert_eq!(g.wake_at(&cfg), None, "nothing to do");
        g.waiting.insert(i(2), Millis(5_000));
        g.admit_at = Some(Millis(9_000));
        assert_eq!(g.wake_at(&cfg), Some(Millis(9_000)));
        g.active = Some(Active::Creating {
            intent: IntentId::from("1-0"),
            members: BTreeMap::new(),
            since: Millis(4_000),
        });
        assert_eq!(
            g.wake_at(&cfg),
            Some(Millis(4_000 + cfg.create_lease_ms)),
            "a creation intent is recovered after its lease"
        );
    }
}
