//! `turnstile doctor --asg NAME`: reads one Auto Scaling group, its lifecycle hooks, the
//! deployment groups of its plan and its in-service instances, and reports every way the set-up
//! keeps turnstile from working, each with why it matters and how to fix it (the AWS CLI
//! command where there is one). Read-only.
//!
//! [`gather`] makes the calls and [`diagnose`] judges what they returned, so the rules are
//! plain functions of [`Facts`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use aws_config::SdkConfig;
use clap::Args;
use serde_json::{Value, json};
use turnstile_aws::ports::Tags;
use turnstile_aws::tags::Ec2Tags;
use turnstile_core::engine::MIN_ROBUST_HEARTBEAT_SECS;
use turnstile_core::{DEFAULT_LAUNCH_HOOK, Gate, HookNames, InstanceId, Plan};

use super::plan_check::Budget;
use super::written;
use crate::output::{Style, paint, write_json};
use crate::{Context, Exit, Format, Global};

/// The AWS operations of `doctor` (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the operator policies do not allow them.
pub const AWS_CALLS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLifecycleHooks",
    "codedeploy:GetDeploymentGroup",
    "codedeploy:GetDeploymentConfig",
];

pub const SCHEMA: &str = "turnstile.doctor/v1";

/// The prefix of the launch hooks CodeDeploy installs for an associated deployment group
/// (docs/aws-behaviour.md §3.6).
pub const CODEDEPLOY_HOOK_PREFIX: &str = "CodeDeploy-managed-automatic-launch-deployment-hook-";
/// CodeDeploy accepts at most three tag groups in a deployment group's tag set (§3.8).
pub const MAX_TAG_GROUPS: usize = 3;
const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
/// What CodeDeploy uses when a group names no configuration (§3.9).
const DEFAULT_CONFIG: &str = "CodeDeployDefault.OneAtATime";

pub const AFTER_HELP: &str = "CHECKS:
  launch-hook        exactly one turnstile launch hook (--launch-hooks), with a valid plan as its
                     notification metadata that fits the hook's global timeout
  default-result     the hook's default result (CONTINUE lets an instance in without its applications)
  codedeploy-hook    no CodeDeploy-managed-automatic-launch-deployment-hook-* left on the group
  propagated-gate    no gate tag of the plan is an Auto Scaling group tag with PropagateAtLaunch
  deployment-group   each step's deployment group exists
  group-asg          it lists no Auto Scaling group (CodeDeploy would install its racing hook)
  gate-tag-group     its EC2 tag set has the step's gate as a tag group of its own
  tag-groups         at most 3 tag groups
  target-revision    it has a target revision (otherwise turnstile skips the step)
  deployment-config  its deployment configuration, and the step's deploymentConfig, exist
  instance-gates     every in-service instance carries every gate of the plan

It calls autoscaling:DescribeAutoScalingGroups and DescribeLifecycleHooks,
codedeploy:GetDeploymentGroup and GetDeploymentConfig, and ec2:DescribeTags; it changes nothing.

EXIT CODES:
  0  no error found (warnings do not change it)
  1  an AWS call failed
  2  usage
  3  errors found (each printed with why it matters and its fix)
  4  the Auto Scaling group does not exist
  5  no AWS region configured";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The Auto Scaling group to check.
    #[arg(long, value_name = "NAME")]
    pub asg: String,
    #[command(flatten)]
    pub hooks: super::LaunchHooksArgs,
}

// ---- what the account says ------------------------------------------------------------------

/// One lifecycle hook of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFact {
    pub name: String,
    pub transition: String,
    pub heartbeat_secs: u64,
    pub default_result: String,
    pub metadata: Option<String>,
}

/// One filter of a tag group: key, value and `Type` (`KEY_AND_VALUE`, `KEY_ONLY`, `VALUE_ONLY`).
/// Serialized as the AWS CLI's `--ec2-tag-set` expects, always in this field order (a struct,
/// not a `serde_json::Value`, whose key order depends on a feature another crate may enable).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TagFilter {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `--ec2-tag-set`'s document.
#[derive(serde::Serialize)]
struct TagSet<'a> {
    #[serde(rename = "ec2TagSetList")]
    list: Vec<Vec<&'a TagFilter>>,
}

/// The `--ec2-tag-set` argument for these tag groups.
fn tag_set_arg(groups: Vec<Vec<&TagFilter>>) -> String {
    sq(&serde_json::to_string(&TagSet { list: groups }).unwrap_or_default())
}

impl TagFilter {
    /// Whether an instance carrying the gate (and only the gate) matches this filter.
    fn is_gate(&self, gate: &Gate) -> bool {
        match self.kind.as_str() {
            "KEY_ONLY" => self.key == gate.key,
            "VALUE_ONLY" => false,
            _ => self.key == gate.key && self.value == gate.value,
        }
    }

    fn label(&self) -> String {
        match self.kind.as_str() {
            "KEY_ONLY" => format!("{} (any value)", self.key),
            "VALUE_ONLY" => format!("(any key)={}", self.value),
            _ => format!("{}={}", self.key, self.value),
        }
    }
}

/// A deployment group as `GetDeploymentGroup` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFact {
    /// `(Auto Scaling group, hook CodeDeploy installed)`.
    pub asgs: Vec<(String, String)>,
    /// The tag groups (`ec2TagSet`, or the single group of `ec2TagFilters`).
    pub tag_groups: Vec<Vec<TagFilter>>,
    /// The group uses the older `ec2TagFilters` (one ORed group) instead of `ec2TagSet`.
    pub legacy_filters: bool,
    pub target_revision: Option<String>,
    pub config: Option<String>,
}

/// Everything doctor read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub asg: String,
    pub hooks: Vec<HookFact>,
    /// `(key, value, PropagateAtLaunch)`.
    pub asg_tags: Vec<(String, String, bool)>,
    /// `(instance, LifecycleState)`.
    pub instances: Vec<(String, String)>,
    /// `None`: the group does not exist.
    pub groups: BTreeMap<(String, String), Option<GroupFact>>,
    /// Configuration name → its compute platform (`None`: it does not exist).
    pub configs: BTreeMap<String, Option<String>>,
    /// The plan's gate tags on the in-service instances.
    pub instance_tags: BTreeMap<String, BTreeMap<String, String>>,
}

// ---- findings ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Ok,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Ok => "ok",
        }
    }

    fn style(self) -> Style {
        match self {
            Severity::Error => Style::Red,
            Severity::Warning => Style::Yellow,
            Severity::Ok => Style::Green,
        }
    }
}

/// One thing doctor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The check's name (listed in `--help`).
    pub check: &'static str,
    /// What it is about: the group, a hook, `step 2 app/dg`, a gate.
    pub subject: String,
    pub message: String,
    /// Why it matters (empty for `ok`).
    pub why: String,
    /// How to fix it, with the command where there is one.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Ok,
            check,
            subject: subject.into(),
            message: message.into(),
            why: String::new(),
            fix: None,
        }
    }

    fn bad(
        severity: Severity,
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            check,
            subject: subject.into(),
            message: message.into(),
            why: why.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The diagnosis: the hook and plan it read, and what it found.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub hook: Option<String>,
    pub plan: Option<Plan>,
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}

/// Shell-quotes `s` in single quotes.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The hooks turnstile acts on, of the launch transition.
fn turnstile_hooks<'a>(facts: &'a Facts, owned: &HookNames) -> Vec<&'a HookFact> {
    facts
        .hooks
        .iter()
        .filter(|h| h.transition == LAUNCHING && owned.matches(&h.name))
        .collect()
}

/// The plan of the one hook doctor reads: the first of turnstile's launch hooks whose metadata
/// is a valid plan. `gather` uses it to know which groups to read.
pub fn plan_of(facts: &Facts, owned: &HookNames) -> Option<(String, u64, Plan)> {
    turnstile_hooks(facts, owned).into_iter().find_map(|h| {
        let plan = Plan::parse(h.metadata.as_deref()?).ok()?;
        Some((h.name.clone(), h.heartbeat_secs, plan))
    })
}

/// Judges the facts. Pure: every rule of the checks listed in [`AFTER_HELP`].
pub fn diagnose(facts: &Facts, owned: &HookNames) -> Diagnosis {
    let asg = facts.asg.as_str();
    let mut out = Vec::new();
    let ours = turnstile_hooks(facts, owned);
    let put_hook = format!(
        "aws autoscaling put-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {} \
         --lifecycle-transition {LAUNCHING} --heartbeat-timeout 600 --default-result ABANDON \
         --notification-metadata file://plan.json",
        owned
            .names()
            .first()
            .map_or(DEFAULT_LAUNCH_HOOK, String::as_str)
    );
    match ours.as_slice() {
        [] => out.push(Finding::bad(
            Severity::Error,
            "launch-hook",
            asg,
            format!("no turnstile launch hook (looked for {owned}) on the group"),
            "no lifecycle event reaches turnstile, so new instances go into service (or wait for \
             another tool's hook) without turnstile running their plan",
            format!(
                "add the hook with the plan as its metadata (or deploy the stack with Plan set): {put_hook}; \
                 if your hook has another name, pass --launch-hooks NAME as the functions' TURNSTILE_LAUNCH_HOOKS says"
            ),
        )),
        [one] => out.push(Finding::ok(
            "launch-hook",
            asg,
            format!("one turnstile launch hook: {}", one.name),
        )),
        many => {
            let names: Vec<&str> = many.iter().map(|h| h.name.as_str()).collect();
            let extra: Vec<String> = names
                .iter()
                .skip(1)
                .map(|n| {
                    format!(
                        "aws autoscaling delete-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {n}"
                    )
                })
                .collect();
            out.push(Finding::bad(
                Severity::Error,
                "launch-hook",
                asg,
                format!(
                    "{} turnstile launch hooks: {}",
                    many.len(),
                    names.join(", ")
                ),
                "each hook sends its own launch event with its own plan, so every new instance \
                 gets one pipeline per hook, and they fight over its lifecycle action and gates",
                format!(
                    "keep one and delete the others, e.g. {}",
                    extra.join(" && ")
                ),
            ));
        }
    }
    for h in &ours {
        let subject = format!("hook {}", h.name);
        let Some(meta) = h.metadata.as_deref().filter(|m| !m.trim().is_empty()) else {
            out.push(Finding::bad(
                Severity::Error,
                "launch-hook",
                subject,
                "the hook has no notification metadata: no plan",
                "turnstile reads the plan from the hook's metadata; without one every launch is \
                 left to the hook's default result with an alert",
                format!(
                    "put the plan on the hook: aws autoscaling put-lifecycle-hook --auto-scaling-group-name {asg} \
                     --lifecycle-hook-name {} --notification-metadata file://plan.json \
                     (check it first with turnstile plan check plan.json)",
                    h.name
                ),
            ));
            continue;
        };
        match Plan::parse(meta) {
            Err(e) => {
                let problems: Vec<String> = e.issues.iter().map(ToString::to_string).collect();
                out.push(Finding::bad(
                    Severity::Error,
                    "launch-hook",
                    subject,
                    format!("the hook's metadata is not a valid plan: {}", problems.join("; ")),
                    "an invalid plan is never half-applied: every launch is left to the hook's \
                     default result, with an alert",
                    format!(
                        "fix the plan (turnstile plan check plan.json lists every problem), then: \
                         aws autoscaling put-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {} \
                         --notification-metadata file://plan.json",
                        h.name
                    ),
                ));
            }
            Ok(plan) => {
                let budget = Budget::of(&plan, h.heartbeat_secs);
                match budget.issue() {
                    Some(issue) => {
                        let needed = budget.total_secs.div_ceil(100).clamp(30, 7200);
                        out.push(Finding::bad(
                            Severity::Error,
                            "launch-hook",
                            subject.clone(),
                            issue.reason,
                            "turnstile holds every launch whose plan cannot finish before the \
                             hook's global timeout, rather than abandon it into a relaunch loop",
                            if budget.total_secs <= 172_800 {
                                format!(
                                    "raise the heartbeat timeout (global timeout = min(100 × heartbeat, 48 h)): \
                                     aws autoscaling put-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {} \
                                     --heartbeat-timeout {needed}, or lower the steps' timeoutSecs",
                                    h.name
                                )
                            } else {
                                "lower the steps' timeoutSecs: the plan needs more than the 48 h \
                                 most a hook allows"
                                    .to_owned()
                            },
                        ));
                    }
                    None => out.push(Finding::ok(
                        "launch-hook",
                        subject.clone(),
                        format!(
                            "valid plan of {} step{}; timeouts {} s fit the global timeout {} s",
                            plan.steps.len(),
                            if plan.steps.len() == 1 { "" } else { "s" },
                            budget.total_secs,
                            budget.timeouts.global_secs
                        ),
                    )),
                }
                if h.heartbeat_secs < MIN_ROBUST_HEARTBEAT_SECS {
                    out.push(Finding::bad(
                        Severity::Warning,
                        "launch-hook",
                        subject.clone(),
                        format!(
                            "heartbeat timeout {} s is below {MIN_ROBUST_HEARTBEAT_SECS} s",
                            h.heartbeat_secs
                        ),
                        "a single lost timer message can then miss a heartbeat (turnstile alerts on it)",
                        format!(
                            "aws autoscaling put-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {} \
                             --heartbeat-timeout 600",
                            h.name
                        ),
                    ));
                }
            }
        }
        if h.default_result == "CONTINUE" {
            out.push(Finding::bad(
                Severity::Warning,
                "default-result",
                format!("hook {}", h.name),
                "the hook's default result is CONTINUE",
                "an instance whose hook times out (or whose plan is invalid) goes into service \
                 without its applications",
                format!(
                    "aws autoscaling put-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {} \
                     --default-result ABANDON",
                    h.name
                ),
            ));
        }
    }

    // CodeDeploy's own launch hooks.
    let native: Vec<&HookFact> = facts
        .hooks
        .iter()
        .filter(|h| h.name.starts_with(CODEDEPLOY_HOOK_PREFIX))
        .collect();
    for h in &native {
        let owner = facts.groups.iter().find_map(|((app, dg), g)| {
            g.as_ref()
                .filter(|g| g.asgs.iter().any(|(a, hook)| a == asg && *hook == h.name))
                .map(|_| (app.clone(), dg.clone()))
        });
        let delete = format!(
            "aws autoscaling delete-lifecycle-hook --auto-scaling-group-name {asg} --lifecycle-hook-name {}",
            h.name
        );
        let fix = match owner {
            Some((app, dg)) => format!(
                "detach the group from {app}/{dg}, which removes CodeDeploy's hook: \
                 aws deploy update-deployment-group --application-name {app} --current-deployment-group-name {dg} \
                 --auto-scaling-groups '[]'"
            ),
            None => format!(
                "detach the Auto Scaling group from the deployment group named in the hook \
                 (aws deploy update-deployment-group --application-name APP --current-deployment-group-name GROUP \
                 --auto-scaling-groups '[]'), then, if the hook is still there, {delete}"
            ),
        };
        out.push(Finding::bad(
            Severity::Error,
            "codedeploy-hook",
            format!("hook {}", h.name),
            "a CodeDeploy-managed launch hook is on the group",
            "CodeDeploy deploys its group to every new instance at once through it, racing \
             turnstile's one-at-a-time plan: the relaunch loop turnstile replaces",
            fix,
        ));
    }
    if native.is_empty() {
        out.push(Finding::ok(
            "codedeploy-hook",
            asg,
            format!("no {CODEDEPLOY_HOOK_PREFIX}* hook"),
        ));
    }

    let Some((hook, _, plan)) = plan_of(facts, owned) else {
        return Diagnosis {
            hook: None,
            plan: None,
            findings: out,
        };
    };

    // Gates propagated at launch.
    let mut propagated = false;
    for s in &plan.steps {
        for (k, v, p) in &facts.asg_tags {
            if *p && *k == s.gate.key {
                propagated = true;
                out.push(Finding::bad(
                    Severity::Error,
                    "propagated-gate",
                    format!("gate {}", s.gate.key),
                    format!(
                        "the Auto Scaling group tag {k}={v} is propagated at launch (PropagateAtLaunch=true)"
                    ),
                    "every new instance carries the gate from its launch, so the deployment \
                     group reaches it at once, beside every other group: all gates open together",
                    format!(
                        "stop propagating it: aws autoscaling create-or-update-tags --tags \
                         ResourceId={asg},ResourceType=auto-scaling-group,Key={k},Value={v},PropagateAtLaunch=false \
                         (or remove it: aws autoscaling delete-tags --tags ResourceId={asg},ResourceType=auto-scaling-group,Key={k})"
                    ),
                ));
            }
        }
    }
    if !propagated {
        out.push(Finding::ok(
            "propagated-gate",
            asg,
            "no gate tag of the plan is propagated at launch",
        ));
    }

    // Each step's deployment group.
    for (i, s) in plan.steps.iter().enumerate() {
        let app = s.group.application.as_str();
        let dg = s.group.deployment_group.as_str();
        let subject = format!("step {} {app}/{dg}", i + 1);
        let gate = &s.gate;
        let gate_filter = TagFilter {
            key: gate.key.clone(),
            value: gate.value.clone(),
            kind: "KEY_AND_VALUE".into(),
        };
        let Some(g) = facts
            .groups
            .get(&(app.to_owned(), dg.to_owned()))
            .and_then(Option::as_ref)
        else {
            out.push(Finding::bad(
                Severity::Error,
                "deployment-group",
                subject,
                format!("deployment group {app}/{dg} does not exist"),
                "turnstile cannot deploy this step: its calls fail with \
                 DeploymentGroupDoesNotExistException and new instances wait until their hook times out",
                format!(
                    "correct steps[{i}].application / deploymentGroup in the plan, or create it with the gate as a tag group of its own: \
                     aws deploy create-deployment-group --application-name {app} --deployment-group-name {dg} \
                     --service-role-arn ROLE_ARN --ec2-tag-set {}",
                    tag_set_arg(vec![vec![&gate_filter]])
                ),
            ));
            continue;
        };
        out.push(Finding::ok(
            "deployment-group",
            subject.clone(),
            "the deployment group exists",
        ));

        // Associated Auto Scaling groups.
        if g.asgs.is_empty() {
            out.push(Finding::ok(
                "group-asg",
                subject.clone(),
                "lists no Auto Scaling group",
            ));
        }
        for (a, h) in &g.asgs {
            let (severity, why) = if a == asg {
                (
                    Severity::Error,
                    "CodeDeploy keeps its own launch hook on this group for it and deploys to \
                     every new instance at once, racing turnstile (and it reinstalls the hook \
                     if you only delete it)",
                )
            } else {
                (
                    Severity::Warning,
                    "CodeDeploy installs its own launch hook on that group; if turnstile \
                     manages it too, the two race",
                )
            };
            out.push(Finding::bad(
                severity,
                "group-asg",
                subject.clone(),
                format!("the deployment group lists the Auto Scaling group {a} (hook {h})"),
                why,
                format!(
                    "aws deploy update-deployment-group --application-name {app} --current-deployment-group-name {dg} \
                     --auto-scaling-groups '[]'"
                ),
            ));
        }

        // The gate's tag group.
        let n = g.tag_groups.len();
        let own = g
            .tag_groups
            .iter()
            .position(|tg| !tg.is_empty() && tg.iter().all(|f| f.is_gate(gate)));
        let shared = g
            .tag_groups
            .iter()
            .position(|tg| tg.iter().any(|f| f.is_gate(gate)));
        let fixed_set = || {
            let mut groups: Vec<Vec<&TagFilter>> = g
                .tag_groups
                .iter()
                .map(|tg| tg.iter().filter(|f| !f.is_gate(gate)).collect::<Vec<_>>())
                .filter(|tg| !tg.is_empty())
                .collect();
            groups.push(vec![&gate_filter]);
            let too_many = groups.len() > MAX_TAG_GROUPS;
            let legacy = if g.legacy_filters {
                " --ec2-tag-filters '[]'"
            } else {
                ""
            };
            let cmd = format!(
                "aws deploy update-deployment-group --application-name {app} --current-deployment-group-name {dg} \
                 --ec2-tag-set {}{legacy}",
                tag_set_arg(groups.clone())
            );
            if too_many {
                format!(
                    "the tag set would then have {} tag groups but CodeDeploy allows {MAX_TAG_GROUPS}: merge two of \
                     the others into one first, then add the gate as a group of its own, e.g. {cmd}",
                    groups.len()
                )
            } else {
                format!("make the gate a tag group of its own: {cmd}")
            }
        };
        match (own, shared) {
            (Some(k), _) => out.push(Finding::ok(
                "gate-tag-group",
                subject.clone(),
                format!(
                    "gate {}={} is tag group {} of {n}, on its own",
                    gate.key,
                    gate.value,
                    k + 1
                ),
            )),
            (None, Some(k)) => {
                let others: Vec<String> = g
                    .tag_groups
                    .get(k)
                    .into_iter()
                    .flatten()
                    .filter(|f| !f.is_gate(gate))
                    .map(TagFilter::label)
                    .collect();
                out.push(Finding::bad(
                    Severity::Error,
                    "gate-tag-group",
                    subject.clone(),
                    format!(
                        "gate {}={} shares tag group {} with {}",
                        gate.key,
                        gate.value,
                        k + 1,
                        others.join(", ")
                    ),
                    "tags inside one tag group are ORed: any instance carrying one of the others \
                     is selected with or without the gate, so the gate admits nothing (or \
                     everything): deployments reach new instances whatever turnstile says",
                    fixed_set(),
                ));
            }
            (None, None) => {
                let have = if n == 0 {
                    "the deployment group has no EC2 tag set".to_owned()
                } else {
                    let labels: Vec<String> = g
                        .tag_groups
                        .iter()
                        .map(|tg| {
                            let l: Vec<String> = tg.iter().map(TagFilter::label).collect();
                            format!("[{}]", l.join(" OR "))
                        })
                        .collect();
                    format!(
                        "the tag set ({}) has no tag group with it",
                        labels.join(" AND ")
                    )
                };
                out.push(Finding::bad(
                    Severity::Error,
                    "gate-tag-group",
                    subject.clone(),
                    format!("gate {}={} missing: {have}", gate.key, gate.value),
                    "opening the gate admits nothing: the group selects instances by its other \
                     tags alone, so its deployments reach new instances at once (or never)",
                    fixed_set(),
                ));
            }
        }
        if n > MAX_TAG_GROUPS {
            out.push(Finding::bad(
                Severity::Error,
                "tag-groups",
                subject.clone(),
                format!("{n} tag groups"),
                format!(
                    "CodeDeploy allows at most {MAX_TAG_GROUPS} tag groups in a tag set: the set cannot be \
                     saved as it is, and the gate needs a group of its own"
                ),
                format!(
                    "merge tag groups until there are at most {MAX_TAG_GROUPS}, one of them the gate alone \
                     (aws deploy update-deployment-group --application-name {app} --current-deployment-group-name {dg} \
                     --ec2-tag-set '{{\"ec2TagSetList\":[...]}}')"
                ),
            ));
        } else {
            out.push(Finding::ok(
                "tag-groups",
                subject.clone(),
                format!("{n} of at most {MAX_TAG_GROUPS} tag groups"),
            ));
        }

        // Target revision.
        match &g.target_revision {
            Some(r) => out.push(Finding::ok(
                "target-revision",
                subject.clone(),
                format!("target revision {r}"),
            )),
            None => out.push(Finding::bad(
                Severity::Warning,
                "target-revision",
                subject.clone(),
                "the deployment group has no target revision (no deployment has succeeded yet)",
                "turnstile has nothing to deploy and counts the step as done: new instances go \
                 into service without this application",
                format!(
                    "deploy a first revision: aws deploy create-deployment --application-name {app} \
                     --deployment-group-name {dg} --s3-location bucket=BUCKET,key=KEY,bundleType=zip"
                ),
            )),
        }

        // Deployment configurations: the group's own, and the step's override.
        let own_config = g
            .config
            .clone()
            .unwrap_or_else(|| DEFAULT_CONFIG.to_owned());
        let mut names = vec![(
            "the group's deployment configuration".to_owned(),
            own_config,
        )];
        if let Some(c) = &s.deployment_config {
            names.push((format!("steps[{i}].deploymentConfig"), c.clone()));
        }
        for (whose, name) in names {
            match facts.configs.get(&name) {
                Some(Some(platform)) if platform == "Server" => out.push(Finding::ok(
                    "deployment-config",
                    subject.clone(),
                    format!("{whose} {name} exists"),
                )),
                Some(Some(platform)) => out.push(Finding::bad(
                    Severity::Error,
                    "deployment-config",
                    subject.clone(),
                    format!("{whose} {name} is for {platform}, not EC2/On-Premises"),
                    "CreateDeployment refuses it for an EC2 deployment group, so every launch fails this step",
                    format!("use an EC2/On-Premises configuration (aws deploy list-deployment-configs), e.g. {DEFAULT_CONFIG}"),
                )),
                _ => {
                    let fix = if whose.starts_with("steps[") {
                        format!(
                            "set steps[{i}].deploymentConfig to an existing configuration (aws deploy \
                             list-deployment-configs), or create it: aws deploy create-deployment-config \
                             --deployment-config-name {name} --minimum-healthy-hosts type=HOST_COUNT,value=0"
                        )
                    } else {
                        format!(
                            "aws deploy update-deployment-group --application-name {app} --current-deployment-group-name {dg} \
                             --deployment-config-name {DEFAULT_CONFIG}"
                        )
                    };
                    out.push(Finding::bad(
                        Severity::Error,
                        "deployment-config",
                        subject.clone(),
                        format!("{whose} {name} does not exist"),
                        "CreateDeployment fails with DeploymentConfigDoesNotExistException, so \
                         every launch fails this step",
                        fix,
                    ));
                }
            }
        }
    }

    // In-service instances carry every gate.
    let in_service: Vec<&str> = facts
        .instances
        .iter()
        .filter(|(_, state)| state == "InService")
        .map(|(id, _)| id.as_str())
        .collect();
    let mut all_gated = true;
    let gates: BTreeSet<&Gate> = plan.steps.iter().map(|s| &s.gate).collect();
    for gate in gates {
        let missing: Vec<&str> = in_service
            .iter()
            .copied()
            .filter(|id| {
                facts.instance_tags.get(*id).and_then(|t| t.get(&gate.key)) != Some(&gate.value)
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        all_gated = false;
        let shown: Vec<&str> = missing.iter().copied().take(10).collect();
        let more = missing.len().saturating_sub(shown.len());
        out.push(Finding::bad(
            Severity::Error,
            "instance-gates",
            format!("gate {}={}", gate.key, gate.value),
            format!(
                "{} in-service instance{} without the gate: {}{}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            "the deployment group selects only instances with the gate, so your own deployments \
             of it silently stop reaching these instances",
            format!(
                "aws ec2 create-tags --resources {} --tags Key={},Value={}",
                missing.join(" "),
                gate.key,
                gate.value
            ),
        ));
    }
    if all_gated {
        out.push(Finding::ok(
            "instance-gates",
            asg,
            format!(
                "{} in-service instance{} carr{} every gate",
                in_service.len(),
                if in_service.len() == 1 { "" } else { "s" },
                if in_service.len() == 1 { "ies" } else { "y" }
            ),
        ));
    }

    Diagnosis {
        hook: Some(hook),
        plan: Some(plan),
        findings: out,
    }
}

// ---- reading the account ----------------------------------------------------------------------

/// An AWS call that failed, with the call's name.
#[derive(Debug)]
pub struct CallFailed(pub String);

fn failed<E>(call: &str, e: &E) -> CallFailed
where
    E: std::error::Error,
{
    CallFailed(format!(
        "{call}: {}",
        aws_sdk_autoscaling::error::DisplayErrorContext(e)
    ))
}

/// Reads what doctor judges. `Ok(None)`: the Auto Scaling group does not exist.
pub async fn gather(
    conf: &SdkConfig,
    asg: &str,
    owned: &HookNames,
) -> Result<Option<Facts>, CallFailed> {
    use aws_sdk_codedeploy::error::ProvideErrorMetadata;
    let autoscaling = aws_sdk_autoscaling::Client::new(conf);
    let codedeploy = aws_sdk_codedeploy::Client::new(conf);
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let mut facts = Facts {
        asg: asg.to_owned(),
        ..Facts::default()
    };

    let groups = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| failed("DescribeAutoScalingGroups", &e))?;
    let Some(group) = groups
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(asg))
    else {
        return Ok(None);
    };
    facts.asg_tags = group
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
                t.propagate_at_launch().unwrap_or(false),
            )
        })
        .collect();
    facts.instances = group
        .instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_owned(),
                i.lifecycle_state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();

    let hooks = autoscaling
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(asg)
        .send()
        .await
        .map_err(|e| failed("DescribeLifecycleHooks", &e))?;
    facts.hooks = hooks
        .lifecycle_hooks()
        .iter()
        .map(|h| HookFact {
            name: h.lifecycle_hook_name().unwrap_or_default().to_owned(),
            transition: h.lifecycle_transition().unwrap_or_default().to_owned(),
            heartbeat_secs: h
                .heartbeat_timeout()
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(3600),
            default_result: h.default_result().unwrap_or("ABANDON").to_owned(),
            metadata: h.notification_metadata().map(str::to_owned),
        })
        .collect();

    let Some((_, _, plan)) = plan_of(&facts, owned) else {
        return Ok(Some(facts));
    };

    let mut config_names: BTreeSet<String> = BTreeSet::new();
    for s in &plan.steps {
        let key = (
            s.group.application.clone(),
            s.group.deployment_group.clone(),
        );
        if let Some(c) = &s.deployment_config {
            config_names.insert(c.clone());
        }
        if facts.groups.contains_key(&key) {
            continue;
        }
        let got = codedeploy
            .get_deployment_group()
            .application_name(&key.0)
            .deployment_group_name(&key.1)
            .send()
            .await;
        let fact = match got {
            Ok(out) => out.deployment_group_info().map(|info| {
                let set = info
                    .ec2_tag_set()
                    .map(|s| s.ec2_tag_set_list())
                    .unwrap_or_default();
                let filter = |f: &aws_sdk_codedeploy::types::Ec2TagFilter| TagFilter {
                    key: f.key().unwrap_or_default().to_owned(),
                    value: f.value().unwrap_or_default().to_owned(),
                    kind: f
                        .r#type()
                        .map_or("KEY_AND_VALUE", |t| t.as_str())
                        .to_owned(),
                };
                let mut tag_groups: Vec<Vec<TagFilter>> =
                    set.iter().map(|g| g.iter().map(filter).collect()).collect();
                let legacy = info.ec2_tag_filters();
                let legacy_filters = tag_groups.is_empty() && !legacy.is_empty();
                if legacy_filters {
                    tag_groups = vec![legacy.iter().map(filter).collect()];
                }
                GroupFact {
                    asgs: info
                        .auto_scaling_groups()
                        .iter()
                        .map(|a| {
                            (
                                a.name().unwrap_or_default().to_owned(),
                                a.hook().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                    tag_groups,
                    legacy_filters,
                    target_revision: info.target_revision().map(revision_text),
                    config: info.deployment_config_name().map(str::to_owned),
                }
            }),
            Err(e)
                if matches!(
                    e.code(),
                    Some("DeploymentGroupDoesNotExistException")
                        | Some("ApplicationDoesNotExistException")
                ) =>
            {
                None
            }
            Err(e) => return Err(failed("GetDeploymentGroup", &e)),
        };
        if let Some(g) = &fact {
            config_names.insert(
                g.config
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONFIG.to_owned()),
            );
        }
        facts.groups.insert(key, fact);
    }
    for name in config_names {
        let got = codedeploy
            .get_deployment_config()
            .deployment_config_name(&name)
            .send()
            .await;
        let platform = match got {
            Ok(out) => Some(
                out.deployment_config_info()
                    .and_then(|i| i.compute_platform())
                    .map_or("Server", |p| p.as_str())
                    .to_owned(),
            ),
            Err(e) if e.code() == Some("DeploymentConfigDoesNotExistException") => None,
            Err(e) => return Err(failed("GetDeploymentConfig", &e)),
        };
        facts.configs.insert(name, platform);
    }

    let in_service: Vec<String> = facts
        .instances
        .iter()
        .filter(|(_, s)| s == "InService")
        .map(|(id, _)| id.clone())
        .collect();
    let keys: Vec<String> = plan
        .steps
        .iter()
        .map(|s| s.gate.key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The functions' own read (200 instances per DescribeTags, paged).
    let ids: Vec<InstanceId> = in_service
        .iter()
        .map(|i| InstanceId::from(i.as_str()))
        .collect();
    let found = Ec2Tags::new(ec2)
        .read(&ids, &keys)
        .await
        .map_err(|e| failed("DescribeTags", &e))?;
    for (id, k, v) in found {
        facts.instance_tags.entry(id.0).or_default().insert(k, v);
    }
    Ok(Some(facts))
}

/// A revision location, short: `s3://bucket/key`, `github:repo@commit`, or its type.
fn revision_text(r: &aws_sdk_codedeploy::types::RevisionLocation) -> String {
    if let Some(s3) = r.s3_location() {
        return format!(
            "s3://{}/{}",
            s3.bucket().unwrap_or_default(),
            s3.key().unwrap_or_default()
        );
    }
    if let Some(gh) = r.git_hub_location() {
        return format!(
            "github:{}@{}",
            gh.repository().unwrap_or_default(),
            gh.commit_id().unwrap_or_default()
        );
    }
    r.revision_type()
        .map_or("a revision", |t| t.as_str())
        .to_owned()
}

// ---- the command ------------------------------------------------------------------------------

pub async fn run(
    global: &Global,
    args: &DoctorArgs,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let owned = match args.hooks.parse(err) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if args.asg.trim().is_empty() {
        let _ = writeln!(err, "error: --asg must name an Auto Scaling group");
        return Exit::Usage;
    }
    let conf = match super::sdk_config(global, err).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let facts = match gather(&conf, &args.asg, &owned).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            let _ = writeln!(
                err,
                "error: Auto Scaling group {} does not exist (check --asg and the region)",
                args.asg
            );
            return Exit::NotFound;
        }
        Err(CallFailed(m)) => {
            let _ = writeln!(err, "error: {m}");
            return Exit::Failure;
        }
    };
    let d = diagnose(&facts, &owned);
    let r = match global.output {
        Format::Json => write_json(out, &document(&args.asg, &owned, &d)),
        Format::Table => table(&args.asg, &d, ctx.color, out),
    };
    match written(r, err) {
        Exit::Ok if d.count(Severity::Error) > 0 => Exit::Problems,
        other => other,
    }
}

/// The `turnstile.doctor/v1` document.
pub fn document(asg: &str, owned: &HookNames, d: &Diagnosis) -> Value {
    json!({
        "schema": SCHEMA,
        "asg": asg,
        "launchHooks": owned.to_string(),
        "hook": d.hook,
        "plan": d.plan.as_ref().map(Plan::to_document),
        "summary": {
            "errors": d.count(Severity::Error),
            "warnings": d.count(Severity::Warning),
            "ok": d.count(Severity::Ok),
        },
        "findings": d.findings.iter().map(|f| json!({
            "severity": f.severity.as_str(),
            "check": f.check,
            "subject": f.subject,
            "message": f.message,
            "why": if f.why.is_empty() { Value::Null } else { Value::from(f.why.clone()) },
            "fix": f.fix,
        })).collect::<Vec<_>>(),
    })
}

fn table(asg: &str, d: &Diagnosis, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let width = d.findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    for f in &d.findings {
        let sev = f.severity.as_str();
        writeln!(
            out,
            "{}{}  {:width$}  {}: {}",
            paint(sev, f.severity.style(), color),
            " ".repeat(7usize.saturating_sub(sev.len())),
            f.check,
            f.subject,
            f.message
        )?;
        if f.severity != Severity::Ok {
            writeln!(out, "         why: {}", f.why)?;
            if let Some(fix) = &f.fix {
                writeln!(out, "         fix: {fix}")?;
            }
        }
    }
    if d.plan.is_none() {
        writeln!(
            out,
            "no valid plan on a turnstile launch hook: the plan's groups, gates and instances were not checked"
        )?;
    }
    let (e, w, o) = (
        d.count(Severity::Error),
        d.count(Severity::Warning),
        d.count(Severity::Ok),
    );
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let summary = format!("{}, {}, {} ok", plural(e, "error"), plural(w, "warning"), o);
    let style = if e > 0 {
        Style::Red
    } else if w > 0 {
        Style::Yellow
    } else {
        Style::Green
    };
    writeln!(out, "{asg}: {}", paint(&summary, style, color))
}
