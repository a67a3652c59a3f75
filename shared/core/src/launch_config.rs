//! Which deployment configuration a launch deployment may use.
//!
//! A launch deployment is created with `updateOutdatedInstancesOnly`, and the in-service
//! members of the group carry every gate, so it reaches every in-service member that is not
//! on the group's target revision as well as the new instances. With the plan's override
//! (default `CodeDeployDefault.AllAtOnce`) those serving instances would all be deployed to at
//! once. The rule: the override is used only while CodeDeploy's record of the group's last
//! attempted deployment shows that no in-service member can be outdated; otherwise the group's
//! own configuration applies, so a serving instance is never deployed to harder than the
//! group's owner chose (docs/design.md, "Launch deployments and outdated in-service
//! instances").

/// The group's last attempted deployment as CodeDeploy reports it (`GetDeploymentGroup`'s
/// `lastAttemptedDeployment`, then `GetDeployment`'s `status`, `deploymentOverview`,
/// `deploymentConfigName` and `description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastAttempt {
    /// The group has no deployment at all.
    None,
    /// Still active, or its outcome could not be read.
    Unknown,
    /// It has ended.
    Ended {
        /// `Succeeded` (not `Failed` or `Stopped`).
        succeeded: bool,
        /// `deploymentOverview.Failed`: targets the deployment failed on.
        failed_targets: u64,
        /// turnstile created it (its description carries the intent marker).
        ours: bool,
        /// The configuration it ran with.
        config: Option<String>,
    },
}

/// Why a launch deployment falls back to the group's own configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutdatedRisk {
    /// The last attempt is still running or its outcome is unknown.
    LastAttemptUnknown,
    /// Someone's deployment (or ours with the group's own configuration) failed or was
    /// stopped: members it reached may be on its revision, the others on the old one.
    LastAttemptDidNotSucceed,
    /// It succeeded but failed on some targets, which stay on their old revision.
    LastAttemptFailedOnTargets,
}

impl OutdatedRisk {
    pub fn as_str(self) -> &'static str {
        match self {
            OutdatedRisk::LastAttemptUnknown => "last attempted deployment still active or unread",
            OutdatedRisk::LastAttemptDidNotSucceed => {
                "last attempted deployment failed or was stopped"
            }
            OutdatedRisk::LastAttemptFailedOnTargets => {
                "last attempted deployment failed on some targets"
            }
        }
    }
}

/// The configuration to create a launch deployment with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchConfig<'a> {
    /// `deploymentConfigName` to send; `None` leaves the group's own.
    pub config: Option<&'a str>,
    /// Set when the plan's override was dropped, and why.
    pub fallback: Option<OutdatedRisk>,
}

/// The rule. `requested` is the plan step's `deploymentConfig` (`None`: `inherit`),
/// `group_config` the group's own (`GetDeploymentGroup`'s `deploymentConfigName`).
///
/// In-service members are all on the group's target revision when the last attempted
/// deployment either succeeded on every target it had (the members were its targets, so all
/// got its revision, which is now the target revision), or was one of ours created with an
/// override: by this same rule that one was created only when no member was outdated, so it
/// deployed to new instances only, and whatever it did to them, no serving instance moved.
pub fn launch_config<'a>(
    requested: Option<&'a str>,
    group_config: Option<&str>,
    last: &LastAttempt,
) -> LaunchConfig<'a> {
    let keep = LaunchConfig {
        config: requested,
        fallback: None,
    };
    let Some(wanted) = requested else {
        return keep;
    };
    // The group's own configuration anyway: nothing to decide.
    if Some(wanted) == group_config {
        return keep;
    }
    let risk = match last {
        LastAttempt::None => return keep,
        LastAttempt::Unknown => OutdatedRisk::LastAttemptUnknown,
        LastAttempt::Ended {
            ours: true, config, ..
        } if config.is_some() && config.as_deref() != group_config => return keep,
        LastAttempt::Ended {
            succeeded: true,
            failed_targets: 0,
            ..
        } => return keep,
        LastAttempt::Ended {
            succeeded: true, ..
        } => OutdatedRisk::LastAttemptFailedOnTargets,
        LastAttempt::Ended { .. } => OutdatedRisk::LastAttemptDidNotSucceed,
    };
    LaunchConfig {
        config: None,
        fallback: Some(risk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &str = "CodeDeployDefault.AllAtOnce";
    const ONE: &str = "CodeDeployDefault.OneAtATime";

    fn ended(succeeded: bool, failed_targets: u64, ours: bool, config: &str) -> LastAttempt {
        LastAttempt::Ended {
            succeeded,
            failed_targets,
            ours,
            config: Some(config.to_owned()),
        }
    }

    /// Every row: (requested, group's own, last attempt) → (config sent, fallback reason).
    #[test]
    fn rule_outdated_in_service_members_never_get_the_launch_override() {
        use OutdatedRisk::*;
        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            LastAttempt,
            Option<&'a str>,
            Option<OutdatedRisk>,
        );
        let rows: Vec<Row> = vec![
            // `inherit`: the group's own, always.
            (None, Some(ONE), ended(false, 3, false, ONE), None, None),
            // The override is the group's own: nothing to decide.
            (Some(ONE), Some(ONE), LastAttempt::Unknown, Some(ONE), None),
            // A group that never deployed has no outdated member.
            (Some(ALL), Some(ONE), LastAttempt::None, Some(ALL), None),
            // A user's deployment that succeeded everywhere: every member on the target revision.
            (
                Some(ALL),
                Some(ONE),
                ended(true, 0, false, ONE),
                Some(ALL),
                None,
            ),
            // A user's deployment that failed on one member: that member is outdated.
            (
                Some(ALL),
                Some(ONE),
                ended(true, 1, false, ONE),
                None,
                Some(LastAttemptFailedOnTargets),
            ),
            // Failed or stopped: members it reached run a revision that is not the target.
            (
                Some(ALL),
                Some(ONE),
                ended(false, 0, false, ONE),
                None,
                Some(LastAttemptDidNotSucceed),
            ),
            (
                Some(ALL),
                Some(ONE),
                ended(false, 2, false, ALL),
                None,
                Some(LastAttemptDidNotSucceed),
            ),
            // Still running, or unread: not known to be safe.
            (
                Some(ALL),
                Some(ONE),
                LastAttempt::Unknown,
                None,
                Some(LastAttemptUnknown),
            ),
            // Ours with the override: it only reached new instances, whatever its outcome.
            (
                Some(ALL),
                Some(ONE),
                ended(false, 4, true, ALL),
                Some(ALL),
                None,
            ),
            (
                Some(ALL),
                Some(ONE),
                ended(true, 1, true, ALL),
                Some(ALL),
                None,
            ),
            // Ours with the group's own configuration (a fallback) may have failed on a
            // serving member: the same as anyone's.
            (
                Some(ALL),
                Some(ONE),
                ended(true, 1, true, ONE),
                None,
                Some(LastAttemptFailedOnTargets),
            ),
            (
                Some(ALL),
                Some(ONE),
                ended(true, 0, true, ONE),
                Some(ALL),
                None,
            ),
            // A group without a configuration of its own (CodeDeploy then uses OneAtATime).
            (
                Some(ALL),
                None,
                ended(true, 1, false, ONE),
                None,
                Some(LastAttemptFailedOnTargets),
            ),
        ];
        for (requested, group, last, config, fallback) in rows {
            assert_eq!(
                launch_config(requested, group, &last),
                LaunchConfig { config, fallback },
                "{requested:?} on a {group:?} group after {last:?}"
            );
        }
    }
}
