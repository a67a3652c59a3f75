//! Where an instance stands in a group: the group record is the authority on a step's result,
//! and this is how the pipeline reads it.

use std::collections::BTreeMap;

use super::{Active, DeploymentEnd, Group, Member, MemberStatus, Seal, Settling};
use crate::ids::*;

/// Where an instance stands in a group (see [`Group::standing`]).
pub(crate) enum Standing {
    Waiting,
    /// Served by a deployment whose result for it is not known yet.
    InFlight {
        deployment: Option<DeploymentId>,
        admitted_at: Millis,
        /// Whether no other member of that deployment is still pending.
        sole: bool,
    },
    /// A result is known.
    Done(StepResult),
    /// Not known to the group at all (its record was lost or reset).
    Absent,
}

/// The result of an instance's step, as the group recorded it.
pub(crate) enum StepResult {
    Success {
        revision: Option<Revision>,
        deployment: Option<DeploymentId>,
        /// The deployment was sealed ([`Seal`]): nothing else can hold the instance.
        sealed: bool,
    },
    Failure(String),
}

impl Group {
    /// Where `id` stands in this group, without changing anything.
    pub(crate) fn standing(&self, id: &InstanceId) -> Standing {
        if self.waiting.contains_key(id) {
            return Standing::Waiting;
        }
        let sole = |members: &BTreeMap<InstanceId, Member>| {
            !members
                .iter()
                .any(|(i, m)| i != id && m.status == MemberStatus::Pending)
        };
        match &self.active {
            Some(Active::Creating { members, .. }) => {
                if let Some(m) = members.get(id) {
                    return Standing::InFlight {
                        deployment: None,
                        admitted_at: m.admitted_at,
                        sole: sole(members),
                    };
                }
            }
            Some(Active::Ours {
                members,
                deployment,
                revision,
                seal,
                ..
            }) => {
                if let Some(m) = members.get(id) {
                    return match m.status {
                        MemberStatus::Succeeded => Standing::Done(StepResult::Success {
                            revision: revision.clone(),
                            deployment: Some(deployment.clone()),
                            sealed: *seal == Seal::Sealed,
                        }),
                        MemberStatus::Failed => Standing::Done(StepResult::Failure(format!(
                            "deployment {deployment} failed on the instance"
                        ))),
                        // Skipped means "up to date" only if the deployment succeeds.
                        MemberStatus::Pending | MemberStatus::Skipped => Standing::InFlight {
                            deployment: Some(deployment.clone()),
                            admitted_at: m.admitted_at,
                            sole: sole(members),
                        },
                    };
                }
            }
            Some(Active::Foreign { .. }) | None => {}
        }
        self.settling
            .iter()
            .find_map(|s| s.members.get(id).map(|m| s.standing(m)))
            .unwrap_or(Standing::Absent)
    }

    /// Whether batch-mates of `id` have yet to move on: members of the same deployment whose
    /// result is not a failure, whether still pending or finished but not picked up yet (each
    /// instance resolves on its own record, so the group's answer reaches them one by one).
    /// They will probably join the next group too: wait for them, up to `batchFollowSecs`; the
    /// last one to come admits the batch at once. A failed member retries its step and is not
    /// waited for.
    pub(crate) fn mates_to_come(&self, id: &InstanceId) -> bool {
        let mates = match self.active.as_ref().and_then(Active::members) {
            Some(members) if members.contains_key(id) => members,
            _ => match self.settling.iter().find(|s| s.members.contains_key(id)) {
                Some(s) => &s.members,
                None => return false,
            },
        };
        mates.keys().any(|mate| {
            mate != id && !matches!(self.standing(mate), Standing::Done(StepResult::Failure(_)))
        })
    }
}

impl Settling {
    /// Where a member of this ended deployment stands.
    fn standing(&self, m: &Member) -> Standing {
        let dep = self.deployment.as_ref().map_or_else(
            || "the deployment".to_owned(),
            |d| format!("deployment {d}"),
        );
        match (self.outcome, m.status) {
            // Nothing was deployed, so nothing sealed the gate: the leave check closes it.
            (DeploymentEnd::NothingToDeploy, _) => Standing::Done(StepResult::Success {
                revision: None,
                deployment: None,
                sealed: false,
            }),
            (DeploymentEnd::NotCreated, _) => Standing::Done(StepResult::Failure(
                "the deployment could not be created".into(),
            )),
            (_, MemberStatus::Succeeded) | (DeploymentEnd::Succeeded, MemberStatus::Skipped) => {
                Standing::Done(StepResult::Success {
                    revision: self.revision.clone(),
                    deployment: self.deployment.clone(),
                    sealed: self.sealed,
                })
            }
            (_, MemberStatus::Failed) => {
                Standing::Done(StepResult::Failure(format!("{dep} failed on the instance")))
            }
            (end, MemberStatus::Skipped) => Standing::Done(StepResult::Failure(format!(
                "{dep} ended {end:?} before reaching the instance"
            ))),
            (_, MemberStatus::Pending) => Standing::InFlight {
                deployment: self.deployment.clone(),
                admitted_at: m.admitted_at,
                sole: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::group::tests::{group, i, ours};
    use super::*;

    #[test]
    fn standing_of_a_member_follows_its_target_status() {
        let g = ours(
            &[
                (1, MemberStatus::Succeeded),
                (2, MemberStatus::Failed),
                (3, MemberStatus::Pending),
            ],
            Seal::Sealed,
        );
        assert!(matches!(
            g.standing(&i(1)),
            Standing::Done(StepResult::Success { sealed: true, .. })
        ));
        assert!(matches!(
            g.standing(&i(2)),
            Standing::Done(StepResult::Failure(_))
        ));
        assert!(matches!(
            g.standing(&i(3)),
            Standing::InFlight { sole: true, .. }
        ));
        assert!(matches!(g.standing(&i(4)), Standing::Absent));
    }

    #[test]
    fn standing_skipped_counts_as_success_only_if_the_deployment_succeeded() {
        for (end, success) in [
            (DeploymentEnd::Succeeded, true),
            (DeploymentEnd::Failed, false),
            (DeploymentEnd::Stopped, false),
        ] {
            let mut g = ours(&[(1, MemberStatus::Skipped)], Seal::Open);
            // While the deployment runs, a skipped target is not a result yet.
            assert!(matches!(g.standing(&i(1)), Standing::InFlight { .. }));
            g.settle(end, Millis(2_000));
            let done = matches!(
                g.standing(&i(1)),
                Standing::Done(StepResult::Success { .. })
            );
            assert_eq!(done, success, "{end:?}");
        }
    }

    #[test]
    fn standing_of_a_waiting_instance_is_waiting() {
        let mut g = group();
        g.waiting.insert(i(1), Millis(0));
        assert!(matches!(g.standing(&i(1)), Standing::Waiting));
    }

    #[test]
    fn mates_to_come_counts_unfinished_and_unread_mates_but_not_failed_ones() {
        let g = ours(
            &[(1, MemberStatus::Succeeded), (2, MemberStatus::Succeeded)],
            Seal::Sealed,
        );
        assert!(
            g.mates_to_come(&i(1)),
            "a mate that has not read its result"
        );
        let g = ours(
            &[(1, MemberStatus::Succeeded), (2, MemberStatus::Failed)],
            Seal::Sealed,
        );
        assert!(!g.mates_to_come(&i(1)), "a failed mate retries its step");
        assert!(!ours(&[(1, MemberStatus::Succeeded)], Seal::Sealed).mates_to_come(&i(1)));
    }
}
