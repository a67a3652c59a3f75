//! What a pipeline is doing, in words, from its instance record and the group records of its
//! plan. Read-only interpretation of the records the core keeps: nothing here decides.

use std::collections::BTreeMap;

use turnstile_core::{
    Active, DeploymentEnd, Group, GroupKey, Instance, LifecycleResult, MemberStatus, Outcome,
    Phase, StepWait,
};

use crate::output;

/// An instance's current activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// One word: `booting`, `waiting`, `admitted`, `deploying`, `deployed`, `settling`, `queued`,
    /// `backoff`, `leaving`, `draining`, `overflow`, `verifying`, `completing`, `held`,
    /// `finished`.
    pub word: &'static str,
    /// The plan step (0-based) it is on, if any.
    pub step: Option<usize>,
    /// The deployment it is in or waits on, if the records name one.
    pub deployment: Option<String>,
    /// A short explanation (the hold's reason for a held pipeline).
    pub detail: String,
}

/// The group records loaded for a set of pipelines (absent ones are missing from the map).
pub type Groups = BTreeMap<GroupKey, Group>;

fn outcome_word(o: DeploymentEnd) -> &'static str {
    match o {
        DeploymentEnd::Succeeded => "succeeded",
        DeploymentEnd::Failed => "failed",
        DeploymentEnd::Stopped => "stopped",
        DeploymentEnd::NotCreated => "could not be created",
        DeploymentEnd::NothingToDeploy => "had nothing to deploy",
    }
}

pub fn finished_word(o: Outcome) -> &'static str {
    match o {
        Outcome::InService => "in service",
        Outcome::PassedThrough => "passed through (nothing to deploy on this transition)",
        Outcome::Abandoned => "abandoned",
        Outcome::Gone => "lifecycle action gone",
        Outcome::Terminated => "terminated",
        Outcome::Rejected => "plan rejected",
    }
}

pub fn result_word(r: LifecycleResult) -> &'static str {
    match r {
        LifecycleResult::Continue => "CONTINUE",
        LifecycleResult::Abandon => "ABANDON",
    }
}

/// The activity of a step the instance is `Queued` on, from the group record.
fn queued(inst: &Instance, step: usize, group: Option<&Group>) -> Activity {
    let id = &inst.id;
    let at = |word, deployment: Option<String>, detail: String| Activity {
        word,
        step: Some(step),
        deployment,
        detail,
    };
    let Some(g) = group else {
        return at("queued", None, "the group's record is not there".into());
    };
    if g.waiting.contains_key(id) {
        let detail = match &g.active {
            Some(Active::Foreign { deployment, .. }) => {
                format!("the group runs someone else's deployment {deployment}")
            }
            Some(_) => "the group's deployment serves other instances".into(),
            None => match g.admit_at {
                Some(t) => format!("batch admitted at {}", output::at(t)),
                None => "waiting for admission".into(),
            },
        };
        let deployment = match &g.active {
            Some(Active::Foreign { deployment, .. }) => Some(deployment.to_string()),
            _ => None,
        };
        return at("waiting", deployment, detail);
    }
    if let Some(active) = &g.active
        && let Some(m) = active.members().and_then(|ms| ms.get(id))
    {
        return match active {
            Active::Creating { intent, .. } => at(
                "admitted",
                None,
                format!("gate open; deployment being created (intent {intent})"),
            ),
            Active::Ours { deployment, .. } => {
                let d = Some(deployment.to_string());
                match m.status {
                    MemberStatus::Pending => at("deploying", d, String::new()),
                    MemberStatus::Succeeded | MemberStatus::Skipped => {
                        at("deployed", d, "its target finished; moving on".into())
                    }
                    MemberStatus::Failed => {
                        at("failed", d, "its target failed; retry or hold next".into())
                    }
                }
            }
            Active::Foreign { .. } => at("queued", None, String::new()),
        };
    }
    if let Some(s) = g.settling.iter().find(|s| s.members.contains_key(id)) {
        return at(
            "settling",
            s.deployment.as_ref().map(ToString::to_string),
            format!(
                "the deployment {}; its result for this instance is being read",
                outcome_word(s.outcome)
            ),
        );
    }
    at(
        "queued",
        None,
        "not listed in the group's record yet".into(),
    )
}

/// The deployment of `group` that serves `inst`, if the group record lists it as a member.
fn serving(inst: &Instance, group: Option<&Group>) -> Option<String> {
    let g = group?;
    if let Some(active) = &g.active
        && active.members().is_some_and(|m| m.contains_key(&inst.id))
    {
        return active.deployment().map(ToString::to_string);
    }
    g.settling
        .iter()
        .find(|s| s.members.contains_key(&inst.id))
        .and_then(|s| s.deployment.as_ref().map(ToString::to_string))
}

/// What the pipeline is doing now.
pub fn activity(inst: &Instance, groups: &Groups) -> Activity {
    match &inst.phase {
        Phase::Running { step, wait } => {
            let step = *step;
            let group = inst.plan.steps.get(step).and_then(|s| groups.get(&s.group));
            let at = |word, deployment, detail| Activity {
                word,
                step: Some(step),
                deployment,
                detail,
            };
            match wait {
                StepWait::Queued { .. } => queued(inst, step, group),
                StepWait::Backoff { until } => at(
                    "backoff",
                    None,
                    format!(
                        "the attempt failed; the next starts at {}",
                        output::at(*until)
                    ),
                ),
                StepWait::Leaving {
                    blocked_by,
                    done_in,
                    ..
                } => at(
                    "leaving",
                    blocked_by
                        .as_ref()
                        .or(done_in.as_ref())
                        .map(ToString::to_string),
                    match blocked_by {
                        Some(d) => format!("step done; deployment {d} still targets it"),
                        None => "step done; checking no other deployment still targets it".into(),
                    },
                ),
                StepWait::Draining { .. } => at(
                    "draining",
                    serving(inst, group),
                    "the attempt timed out; waiting until the deployment no longer touches it"
                        .into(),
                ),
                StepWait::Overflow { since, .. } => at(
                    "overflow",
                    None,
                    format!(
                        "the group's list is full; waiting in its own record since {}",
                        output::at(*since)
                    ),
                ),
            }
        }
        Phase::Readying { since, .. } => Activity {
            word: "booting",
            step: None,
            deployment: None,
            detail: match &inst.plan.readiness {
                Some(r) => format!(
                    "waiting for the instance to tag itself {}={} (its bootstrap's end), at most until {}",
                    r.tag.key,
                    r.tag.value,
                    output::at(since.plus_secs(r.timeout_secs))
                ),
                None => "waiting for the instance's readiness signal".into(),
            },
        },
        Phase::Verifying { waiting_for, .. } => Activity {
            word: "verifying",
            step: None,
            deployment: waiting_for.as_ref().map(ToString::to_string),
            detail: match waiting_for {
                Some(d) => format!("every step done; waiting for deployment {d} on a plan group"),
                None => "every step done; checking each group's current revision".into(),
            },
        },
        Phase::Completing {
            result,
            reason,
            probing,
            ..
        } => Activity {
            word: "completing",
            step: None,
            deployment: None,
            detail: format!(
                "{}{}: {reason}",
                result_word(*result),
                if *probing {
                    " (probing whether it landed)"
                } else {
                    ""
                }
            ),
        },
        Phase::Held { step, reason, .. } => Activity {
            word: "held",
            step: *step,
            deployment: None,
            detail: reason.clone(),
        },
        Phase::Finished { outcome, .. } => Activity {
            word: "finished",
            step: None,
            deployment: None,
            detail: finished_word(*outcome).into(),
        },
    }
}

/// `k/N` for the step the pipeline is on (`-/N` when it is on none).
pub fn step_of(step: Option<usize>, total: usize) -> String {
    match step {
        Some(s) => format!("{}/{total}", s + 1),
        None => format!("-/{total}"),
    }
}
