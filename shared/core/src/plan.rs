//! The deployment plan of an Auto Scaling group: which CodeDeploy deployment groups an instance
//! receives, in which order, and what to do when a step fails.
//!
//! A plan is JSON, small enough to live in the lifecycle hook's `NotificationMetadata`
//! (≤ 4000 printable ASCII characters), so every lifecycle event carries its own plan.
//! [`Plan::parse`] reports *every* problem it finds, each naming the field (a JSON path such as
//! `steps[2].timeoutSecs`) and the reason. A plan that does not parse never skips a deployment:
//! the core holds the instance and raises an alert instead.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::GroupKey;

/// Longest `NotificationMetadata` Auto Scaling accepts.
pub const MAX_METADATA_LEN: usize = 4000;
/// CodeDeploy's limit on instances in one deployment.
pub const CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT: u32 = 1000;
/// CodeDeploy's in-place deployment maximum (12 h).
pub const MAX_STEP_TIMEOUT_SECS: u64 = 12 * 3600;
const MAX_STEPS: usize = 20;
const MAX_RETRIES: u32 = 10;

/// A validated plan with every default applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warm_pool: WarmPoolPolicy,
    /// How long a free group waits for more instances before it admits a batch.
    pub batch_window_secs: u64,
    /// How long an instance that finished a step waits for its batch-mates (still running the
    /// same deployment) before the next group is admitted without them. Moving a batch
    /// together keeps the next group from being taken by its fastest member alone.
    pub batch_follow_secs: u64,
    /// Upper bound of instances admitted into one deployment.
    pub max_batch: u32,
    pub breaker: BreakerPolicy,
    /// Hold the first step until the instance tags itself ready (`None`: start at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
}

/// The readiness signal: a tag the instance sets on itself at the end of its bootstrap (user
/// data, `cfn-init`), after which its CodeDeploy agent runs. AWS's order for a new instance is
/// boot, bootstrap, agent, first deployment [aws-behaviour §3.6 Bootstrap and the
/// agent]; a deployment that comes earlier fails and costs a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The tag the instance sets, and the value that means ready.
    pub tag: Gate,
    /// Longest the pipeline waits for it, counted from the lifecycle action's start.
    pub timeout_secs: u64,
    pub on_timeout: OnNotReady,
}

/// What happens when the readiness tag has not come within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnNotReady {
    /// Complete the lifecycle action with ABANDON: the group replaces the instance.
    Abandon,
    /// Keep the instance waiting (heartbeats continue) and alert an operator.
    Hold,
    /// Start the first step anyway (its retries cover an agent that comes up late).
    Start,
}

impl OnNotReady {
    pub fn name(self) -> &'static str {
        match self {
            OnNotReady::Abandon => "abandon",
            OnNotReady::Hold => "hold",
            OnNotReady::Start => "start",
        }
    }
}

/// One deployment group the instance must receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub group: GroupKey,
    pub gate: Gate,
    /// Attempts after the first one.
    pub retries: u32,
    /// Back-off before retry `n` (1-based) is `retry_backoff_secs * 2^(n-1)`.
    pub retry_backoff_secs: u64,
    /// Longest one attempt may run, counted from the instance's admission into a deployment.
    pub timeout_secs: u64,
    /// Deployment configuration used for launch deployments (`None`: the group's own).
    pub deployment_config: Option<String>,
    pub on_failure: OnFailure,
}

/// The EC2 tag that admits an instance into a deployment group (the group's tag set ANDs it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Gate {
    pub key: String,
    pub value: String,
}

/// What happens when a step has used up its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Complete the lifecycle action with ABANDON (the group replaces the instance), unless the
    /// repeated-failure breaker is tripped, in which case hold.
    Abandon,
    /// Keep the instance in `Pending:Wait` (heartbeats continue) and alert an operator.
    Hold,
}

/// Which launch transitions run the plan when the group has a warm pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WarmPoolPolicy {
    /// Deploy when an instance enters the group (from EC2 or from the pool); let instances enter
    /// the pool at once.
    DeployOnExit,
    /// Deploy while the instance is entering the pool; let it leave the pool at once.
    DeployOnEntry,
    /// Deploy on both transitions.
    DeployOnBoth,
}

/// The repeated-failure breaker: after `threshold` abandons of the same step within
/// `window_secs`, further failures of that step hold instead of abandon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerPolicy {
    pub threshold: u32,
    pub window_secs: u64,
}

/// What the stack lets the functions touch (the template's `GateTagPrefix` and
/// `ManagedApplications`). A plan outside it could only fail later, at an AWS call IAM refuses
/// (a gate tag the functions may not write, a deployment group of an application they may not
/// deploy, whose events no rule forwards), so it is refused at validation, with the field.
/// `None` leaves that side open (tests, and stacks that set nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanScope {
    pub gate_prefix: Option<String>,
    pub applications: Option<BTreeSet<String>>,
}

impl PlanScope {
    /// Every step of `plan` inside the scope, or every step outside it, each with its field.
    pub fn check(&self, plan: &Plan) -> Result<(), PlanError> {
        let mut issues = Vec::new();
        for (i, s) in plan.steps.iter().enumerate() {
            if let Some(prefix) = &self.gate_prefix
                && !s.gate.key.starts_with(prefix.as_str())
            {
                issues.push(PlanIssue {
                    field: format!("steps[{i}].gateTag"),
                    reason: format!(
                        "`{}` is outside the stack's gate tag prefix `{prefix}`: turnstile may write no other tag (IAM would refuse CreateTags)",
                        s.gate.key
                    ),
                });
            }
            if let Some(apps) = &self.applications
                && !apps.contains(&s.group.application)
            {
                let managed: Vec<&str> = apps.iter().map(String::as_str).collect();
                issues.push(PlanIssue {
                    field: format!("steps[{i}].application"),
                    reason: format!(
                        "`{}` is not one of the stack's managed applications ({}): turnstile may not deploy it (IAM would refuse CreateDeployment) and no rule forwards its events",
                        s.group.application,
                        managed.join(", ")
                    ),
                });
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(PlanError { issues })
        }
    }
}

/// One problem found in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanIssue {
    /// JSON path of the offending field, e.g. `steps[1].gateTag`.
    pub field: String,
    pub reason: String,
}

/// Every problem found in a plan. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid plan: {}", render_issues(.issues))]
pub struct PlanError {
    pub issues: Vec<PlanIssue>,
}

fn render_issues(issues: &[PlanIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("{}: {}", i.field, i.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for PlanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl PlanError {
    fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            issues: vec![PlanIssue {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }
}

// ---- the document as users write it -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlanDoc {
    version: u32,
    steps: Vec<StepDoc>,
    #[serde(default)]
    defaults: StepOptions,
    warm_pool: Option<WarmPoolPolicy>,
    batch_window_secs: Option<u64>,
    batch_follow_secs: Option<u64>,
    max_batch: Option<u32>,
    breaker: Option<BreakerDoc>,
    readiness: Option<ReadinessDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReadinessDoc {
    tag: String,
    value: Option<String>,
    timeout_secs: Option<u64>,
    on_timeout: Option<OnNotReady>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StepDoc {
    application: String,
    deployment_group: String,
    gate_tag: String,
    gate_value: Option<String>,
    // The step options, spelled out rather than `#[serde(flatten)]`ed: flatten would lose the
    // field path in errors and disable `deny_unknown_fields`.
    retries: Option<u32>,
    retry_backoff_secs: Option<u64>,
    timeout_secs: Option<u64>,
    deployment_config: Option<String>,
    on_failure: Option<OnFailure>,
}

impl StepDoc {
    fn options(&self) -> StepOptions {
        StepOptions {
            retries: self.retries,
            retry_backoff_secs: self.retry_backoff_secs,
            timeout_secs: self.timeout_secs,
            deployment_config: self.deployment_config.clone(),
            on_failure: self.on_failure,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StepOptions {
    retries: Option<u32>,
    retry_backoff_secs: Option<u64>,
    timeout_secs: Option<u64>,
    deployment_config: Option<String>,
    on_failure: Option<OnFailure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BreakerDoc {
    threshold: Option<u32>,
    window_secs: Option<u64>,
}

/// Defaults, documented in the README's plan reference.
pub mod defaults {
    pub const RETRIES: u32 = 2;
    pub const RETRY_BACKOFF_SECS: u64 = 30;
    pub const TIMEOUT_SECS: u64 = 1800;
    /// Launch deployments go to instances that serve no traffic yet.
    pub const DEPLOYMENT_CONFIG: &str = "CodeDeployDefault.AllAtOnce";
    pub const GATE_VALUE: &str = "open";
    pub const BATCH_WINDOW_SECS: u64 = 2;
    pub const BATCH_FOLLOW_SECS: u64 = 300;
    /// CodeDeploy's own limit: a burst moves through each group in one deployment (lockstep),
    /// which is the fastest a one-deployment-per-group schedule can be (docs/design.md).
    pub const MAX_BATCH: u32 = super::CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT;
    pub const BREAKER_THRESHOLD: u32 = 3;
    pub const BREAKER_WINDOW_SECS: u64 = 3600;
    pub const READINESS_VALUE: &str = "true";
    /// Long enough for a slow bootstrap (package installs, `cfn-init`), short enough that an
    /// instance whose bootstrap failed is replaced within the quarter hour.
    pub const READINESS_TIMEOUT_SECS: u64 = 900;
}

/// Bounds of `readiness.timeoutSecs`: a sweep must be able to see the tag at least once, and
/// no bootstrap is worth more than the hook's 48 h maximum.
pub const READINESS_TIMEOUT_RANGE_SECS: std::ops::RangeInclusive<u64> = 60..=172_800;

impl Plan {
    /// Parses and validates a plan as a lifecycle hook carries it, reporting every problem
    /// found: the metadata's length limit, then [`Plan::from_json`].
    pub fn parse(json: &str) -> Result<Plan, PlanError> {
        if json.len() > MAX_METADATA_LEN {
            return Err(PlanError::single(
                "$",
                format!(
                    "plan is {} characters; lifecycle hook metadata holds at most {MAX_METADATA_LEN}",
                    json.len()
                ),
            ));
        }
        Self::from_json(json)
    }

    /// Parses and validates a plan document of any length: what [`Plan::to_document`] wrote
    /// (every default spelled out, which for a plan of many steps can be longer than a hook's
    /// metadata holds) reads back as the same plan.
    pub fn from_json(json: &str) -> Result<Plan, PlanError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let doc: PlanDoc = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                "$".to_owned()
            } else {
                path
            };
            PlanError::single(field, e.into_inner().to_string())
        })?;
        doc.resolve()
    }

    /// Serializes the plan back into the user-facing document, every default spelled out (used
    /// by tooling and tests). [`Plan::from_json`] reads it back; it may be too long for a
    /// hook's metadata, which holds the document the user wrote.
    pub fn to_document(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut v = serde_json::json!({
                    "application": s.group.application,
                    "deploymentGroup": s.group.deployment_group,
                    "gateTag": s.gate.key,
                    "gateValue": s.gate.value,
                    "retries": s.retries,
                    "retryBackoffSecs": s.retry_backoff_secs,
                    "timeoutSecs": s.timeout_secs,
                    "onFailure": s.on_failure,
                });
                if let Some(obj) = v.as_object_mut() {
                    let cfg = s.deployment_config.as_deref().unwrap_or("inherit");
                    obj.insert("deploymentConfig".into(), cfg.into());
                }
                v
            })
            .collect();
        let mut doc = serde_json::json!({
            "version": 1,
            "steps": steps,
            "warmPool": self.warm_pool,
            "batchWindowSecs": self.batch_window_secs,
            "batchFollowSecs": self.batch_follow_secs,
            "maxBatch": self.max_batch,
            "breaker": {"threshold": self.breaker.threshold, "windowSecs": self.breaker.window_secs},
        });
        if let (Some(r), Some(obj)) = (&self.readiness, doc.as_object_mut()) {
            obj.insert(
                "readiness".into(),
                serde_json::json!({
                    "tag": r.tag.key,
                    "value": r.tag.value,
                    "timeoutSecs": r.timeout_secs,
                    "onTimeout": r.on_timeout,
                }),
            );
        }
        doc
    }

    /// The longest the plan can take: the readiness wait, then every step's timeout.
    pub fn budget_secs(&self) -> u64 {
        let steps: u64 = self.steps.iter().map(|s| s.timeout_secs).sum();
        steps + self.readiness.as_ref().map_or(0, |r| r.timeout_secs)
    }
}

impl PlanDoc {
    fn resolve(self) -> Result<Plan, PlanError> {
        let mut issues = Vec::new();
        let mut push = |field: String, reason: String| issues.push(PlanIssue { field, reason });

        if self.version != 1 {
            push(
                "version".into(),
                format!(
                    "unsupported version {}; this release reads version 1",
                    self.version
                ),
            );
        }
        if self.steps.is_empty() {
            push("steps".into(), "a plan needs at least one step".into());
        }
        if self.steps.len() > MAX_STEPS {
            push(
                "steps".into(),
                format!(
                    "{} steps; at most {MAX_STEPS} are supported",
                    self.steps.len()
                ),
            );
        }
        check_options("defaults", &self.defaults, &mut push);

        let steps = resolve_steps(self.steps, &self.defaults, &mut push);
        let readiness = self
            .readiness
            .map(|r| resolve_readiness(r, &steps, &mut push));

        let max_batch = self.max_batch.unwrap_or(defaults::MAX_BATCH);
        if max_batch == 0 || max_batch > CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT {
            push(
                "maxBatch".into(),
                format!(
                    "must be 1..={CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT} (CodeDeploy's instances per deployment)"
                ),
            );
        }
        let batch_window_secs = self
            .batch_window_secs
            .unwrap_or(defaults::BATCH_WINDOW_SECS);
        if batch_window_secs > 300 {
            push("batchWindowSecs".into(), "must be at most 300".into());
        }
        let batch_follow_secs = self
            .batch_follow_secs
            .unwrap_or(defaults::BATCH_FOLLOW_SECS);
        if batch_follow_secs > 3600 {
            push("batchFollowSecs".into(), "must be at most 3600".into());
        }
        let breaker = BreakerPolicy {
            threshold: self
                .breaker
                .as_ref()
                .and_then(|b| b.threshold)
                .unwrap_or(defaults::BREAKER_THRESHOLD),
            window_secs: self
                .breaker
                .as_ref()
                .and_then(|b| b.window_secs)
                .unwrap_or(defaults::BREAKER_WINDOW_SECS),
        };
        if breaker.threshold == 0 {
            push("breaker.threshold".into(), "must be at least 1".into());
        }
        if breaker.window_secs == 0 {
            push("breaker.windowSecs".into(), "must be at least 1".into());
        }

        if issues.is_empty() {
            Ok(Plan {
                steps,
                warm_pool: self.warm_pool.unwrap_or(WarmPoolPolicy::DeployOnExit),
                batch_window_secs,
                batch_follow_secs,
                max_batch,
                breaker,
                readiness,
            })
        } else {
            Err(PlanError { issues })
        }
    }
}

/// Resolves each step's options against the plan's defaults, checking names, tags and that no
/// group or gate tag is used twice.
fn resolve_steps(
    docs: Vec<StepDoc>,
    d: &StepOptions,
    push: &mut impl FnMut(String, String),
) -> Vec<Step> {
    let mut groups = BTreeSet::new();
    let mut gates = BTreeSet::new();
    let mut steps = Vec::with_capacity(docs.len());
    for (i, s) in docs.into_iter().enumerate() {
        let at = |f: &str| format!("steps[{i}].{f}");
        let o = s.options();
        check_name(&at("application"), &s.application, push);
        check_name(&at("deploymentGroup"), &s.deployment_group, push);
        check_tag_key(&at("gateTag"), &s.gate_tag, push);
        let gate_value = s
            .gate_value
            .unwrap_or_else(|| defaults::GATE_VALUE.to_owned());
        if gate_value.chars().count() > 256 {
            push(
                at("gateValue"),
                "EC2 tag values are at most 256 characters".into(),
            );
        }
        check_options(&format!("steps[{i}]"), &o, push);

        let group = GroupKey::new(s.application, s.deployment_group);
        if !groups.insert(group.clone()) {
            push(
                at("deploymentGroup"),
                format!("{group} appears twice; each deployment group runs once per instance"),
            );
        }
        if !gates.insert(s.gate_tag.clone()) {
            push(
                at("gateTag"),
                format!(
                    "gate tag `{}` is used by an earlier step; each step needs its own gate",
                    s.gate_tag
                ),
            );
        }
        steps.push(Step {
            group,
            gate: Gate {
                key: s.gate_tag,
                value: gate_value,
            },
            retries: o.retries.or(d.retries).unwrap_or(defaults::RETRIES),
            retry_backoff_secs: o
                .retry_backoff_secs
                .or(d.retry_backoff_secs)
                .unwrap_or(defaults::RETRY_BACKOFF_SECS),
            timeout_secs: o
                .timeout_secs
                .or(d.timeout_secs)
                .unwrap_or(defaults::TIMEOUT_SECS),
            deployment_config: o
                .deployment_config
                .or_else(|| d.deployment_config.clone())
                .or_else(|| Some(defaults::DEPLOYMENT_CONFIG.to_owned()))
                .filter(|c| c != "inherit"),
            on_failure: o.on_failure.or(d.on_failure).unwrap_or(OnFailure::Abandon),
        });
    }
    steps
}

/// Checks the readiness signal: a tag key the instance may set on itself, not one of the
/// plan's gates (turnstile opens and closes those, so a gate can never mean "bootstrapped").
fn resolve_readiness(
    r: ReadinessDoc,
    steps: &[Step],
    push: &mut impl FnMut(String, String),
) -> Readiness {
    check_tag_key("readiness.tag", &r.tag, push);
    if let Some(i) = steps.iter().position(|s| s.gate.key == r.tag) {
        push(
            "readiness.tag".into(),
            format!(
                "`{}` is steps[{i}]'s gate tag; the readiness tag must be one only the instance sets",
                r.tag
            ),
        );
    }
    let value = r
        .value
        .unwrap_or_else(|| defaults::READINESS_VALUE.to_owned());
    if value.chars().count() > 256 {
        push(
            "readiness.value".into(),
            "EC2 tag values are at most 256 characters".into(),
        );
    }
    let timeout_secs = r.timeout_secs.unwrap_or(defaults::READINESS_TIMEOUT_SECS);
    if !READINESS_TIMEOUT_RANGE_SECS.contains(&timeout_secs) {
        push(
            "readiness.timeoutSecs".into(),
            format!(
                "must be {}..={} (at least one timer sweep, at most the hook's 48 h)",
                READINESS_TIMEOUT_RANGE_SECS.start(),
                READINESS_TIMEOUT_RANGE_SECS.end()
            ),
        );
    }
    Readiness {
        tag: Gate { key: r.tag, value },
        timeout_secs,
        on_timeout: r.on_timeout.unwrap_or(OnNotReady::Abandon),
    }
}

fn check_options(prefix: &str, o: &StepOptions, push: &mut impl FnMut(String, String)) {
    if let Some(r) = o.retries
        && r > MAX_RETRIES
    {
        push(
            format!("{prefix}.retries"),
            format!("must be at most {MAX_RETRIES}"),
        );
    }
    if let Some(t) = o.timeout_secs
        && !(60..=MAX_STEP_TIMEOUT_SECS).contains(&t)
    {
        push(
            format!("{prefix}.timeoutSecs"),
            format!("must be 60..={MAX_STEP_TIMEOUT_SECS} (CodeDeploy's in-place maximum is 12 h)"),
        );
    }
    if let Some(b) = o.retry_backoff_secs
        && b > 3600
    {
        push(
            format!("{prefix}.retryBackoffSecs"),
            "must be at most 3600".into(),
        );
    }
    if let Some(c) = &o.deployment_config
        && (c.is_empty() || c.len() > 100)
    {
        push(
            format!("{prefix}.deploymentConfig"),
            "must be 1..=100 characters (a deployment configuration name, or `inherit`)".into(),
        );
    }
}

fn check_name(field: &str, value: &str, push: &mut impl FnMut(String, String)) {
    if value.is_empty() || value.chars().count() > 100 {
        push(field.to_owned(), "must be 1..=100 characters".into());
    } else {
        check_printable(field, value, push);
    }
}

/// Names and tags end up in AWS calls, logs and the operator's terminal: a control character
/// (a newline that forges a log line, an escape sequence) has no business in them.
fn check_printable(field: &str, value: &str, push: &mut impl FnMut(String, String)) {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        push(
            field.to_owned(),
            format!("contains the control character {:?}", c),
        );
    }
}

fn check_tag_key(field: &str, key: &str, push: &mut impl FnMut(String, String)) {
    if key.is_empty() || key.chars().count() > 128 {
        push(
            field.to_owned(),
            "EC2 tag keys are 1..=128 characters".into(),
        );
    } else if key.to_ascii_lowercase().starts_with("aws:") {
        push(
            field.to_owned(),
            "tag keys starting with `aws:` are reserved by AWS".into(),
        );
    } else {
        check_printable(field, key, push);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"version":1,"steps":[
        {"application":"web","deploymentGroup":"web-dg","gateTag":"gate-web"},
        {"application":"api","deploymentGroup":"api-dg","gateTag":"gate-api","retries":0,"timeoutSecs":600,"onFailure":"hold","deploymentConfig":"inherit"}
      ],"defaults":{"retries":4}}"#;

    #[test]
    fn plan_parses_with_defaults_applied() {
        let p = Plan::parse(GOOD).unwrap();
        assert_eq!(p.steps.len(), 2);
        assert_eq!(
            p.steps[0].retries, 4,
            "plan-level default wins over built-in"
        );
        assert_eq!(p.steps[0].timeout_secs, defaults::TIMEOUT_SECS);
        assert_eq!(p.steps[0].gate.value, "open");
        assert_eq!(
            p.steps[0].deployment_config.as_deref(),
            Some("CodeDeployDefault.AllAtOnce")
        );
        assert_eq!(p.steps[1].retries, 0, "step option wins over plan default");
        assert_eq!(
            p.steps[1].deployment_config, None,
            "`inherit` keeps the group's config"
        );
        assert_eq!(p.steps[1].on_failure, OnFailure::Hold);
        assert_eq!(p.warm_pool, WarmPoolPolicy::DeployOnExit);
    }

    #[test]
    fn plan_round_trips_through_its_document() {
        let p = Plan::parse(GOOD).unwrap();
        let again = Plan::parse(&p.to_document().to_string()).unwrap();
        assert_eq!(p, again);
    }

    fn issues(json: &str) -> Vec<(String, String)> {
        Plan::parse(json)
            .unwrap_err()
            .issues
            .into_iter()
            .map(|i| (i.field, i.reason))
            .collect()
    }

    #[test]
    fn plan_validation_names_the_field_of_a_type_error() {
        let got = issues(
            r#"{"version":1,"steps":[{"application":"a","deploymentGroup":"g","gateTag":"t","retries":"two"}]}"#,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "steps[0].retries");
        assert!(got[0].1.contains("invalid type"), "{got:?}");
    }

    #[test]
    fn plan_validation_names_unknown_and_missing_fields() {
        let got = issues(r#"{"version":1,"steps":[],"stepz":[]}"#);
        assert!(got[0].1.contains("unknown field `stepz`"), "{got:?}");
        let got = issues(r#"{"version":1,"steps":[{"application":"a","gateTag":"t"}]}"#);
        assert_eq!(got[0].0, "steps[0]");
        assert!(
            got[0].1.contains("missing field `deploymentGroup`"),
            "{got:?}"
        );
    }

    #[test]
    fn plan_validation_reports_every_semantic_problem() {
        let got = issues(
            r#"{"version":2,"steps":[
                {"application":"a","deploymentGroup":"g","gateTag":"aws:x","timeoutSecs":5},
                {"application":"a","deploymentGroup":"g","gateTag":"aws:x","retries":99}
              ],"maxBatch":0,"breaker":{"threshold":0}}"#,
        );
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        for want in [
            "version",
            "steps[0].gateTag",
            "steps[0].timeoutSecs",
            "steps[1].retries",
            "steps[1].deploymentGroup",
            "steps[1].gateTag",
            "maxBatch",
            "breaker.threshold",
        ] {
            assert!(fields.contains(&want), "missing {want} in {got:?}");
        }
    }

    #[test]
    fn plan_validation_rejects_empty_and_oversized_plans() {
        assert_eq!(issues(r#"{"version":1,"steps":[]}"#)[0].0, "steps");
        let big = format!(r#"{{"version":1,"steps":[],"x":"{}"}}"#, "a".repeat(4000));
        let got = issues(&big);
        assert_eq!(got[0].0, "$");
        assert!(got[0].1.contains("at most 4000"));
    }

    const ONE_STEP: &str = r#"{"application":"a","deploymentGroup":"g","gateTag":"gate-a"}"#;

    /// Found by the fuzz target: twenty short steps fit in a hook's 4,000 characters, but the
    /// resolved document spells out every default and does not; it still reads back.
    #[test]
    fn plan_document_of_a_full_plan_may_exceed_the_metadata_limit_and_still_reads_back() {
        let steps: Vec<String> = (0..20)
            .map(|i| {
                format!(r#"{{"application":"app","deploymentGroup":"g{i}","gateTag":"t{i}"}}"#)
            })
            .collect();
        let json = format!(r#"{{"version":1,"steps":[{}]}}"#, steps.join(","));
        let p = Plan::parse(&json).unwrap();
        let doc = p.to_document().to_string();
        assert!(doc.len() > MAX_METADATA_LEN, "{}", doc.len());
        assert!(Plan::parse(&doc).is_err(), "not hook metadata");
        assert_eq!(Plan::from_json(&doc).unwrap(), p);
    }

    #[test]
    fn readiness_defaults_and_round_trip() {
        let p = Plan::parse(&format!(
            r#"{{"version":1,"steps":[{ONE_STEP}],"readiness":{{"tag":"turnstile:ready"}}}}"#
        ))
        .unwrap();
        let r = p.readiness.clone().unwrap();
        assert_eq!(r.tag.value, defaults::READINESS_VALUE);
        assert_eq!(r.timeout_secs, defaults::READINESS_TIMEOUT_SECS);
        assert_eq!(r.on_timeout, OnNotReady::Abandon);
        assert_eq!(p.budget_secs(), defaults::TIMEOUT_SECS + 900);
        assert_eq!(Plan::parse(&p.to_document().to_string()).unwrap(), p);
        let none = Plan::parse(&format!(r#"{{"version":1,"steps":[{ONE_STEP}]}}"#)).unwrap();
        assert_eq!(none.readiness, None);
        assert!(none.to_document().get("readiness").is_none());
    }

    #[test]
    fn readiness_invalid_fields_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"tag":"aws:ready"}"#, "readiness.tag", "reserved by AWS"),
            (r#"{"tag":""}"#, "readiness.tag", "1..=128"),
            (
                r#"{"tag":"gate-a"}"#,
                "readiness.tag",
                "steps[0]'s gate tag",
            ),
            (
                r#"{"tag":"r","timeoutSecs":5}"#,
                "readiness.timeoutSecs",
                "60..=172800",
            ),
            (
                r#"{"tag":"r","timeoutSecs":172801}"#,
                "readiness.timeoutSecs",
                "60..=172800",
            ),
            (
                r#"{"tag":"r","onTimeout":"retry"}"#,
                "readiness.onTimeout",
                "unknown variant `retry`",
            ),
            (
                r#"{"tag":"r","valu":"x"}"#,
                "readiness.valu",
                "unknown field `valu`",
            ),
            (r#"{"value":"x"}"#, "readiness", "missing field `tag`"),
            (
                r#"{"tag":"r","timeoutSecs":"900"}"#,
                "readiness.timeoutSecs",
                "invalid type",
            ),
        ];
        for (readiness, field, reason) in cases {
            let got = issues(&format!(
                r#"{{"version":1,"steps":[{ONE_STEP}],"readiness":{readiness}}}"#
            ));
            assert!(
                got.iter().any(|(f, r)| f == field && r.contains(reason)),
                "{readiness}: want {field}: …{reason}…, got {got:?}"
            );
        }
        let long = "v".repeat(257);
        let got = issues(&format!(
            r#"{{"version":1,"steps":[{ONE_STEP}],"readiness":{{"tag":"r","value":"{long}"}}}}"#
        ));
        assert_eq!(got[0].0, "readiness.value", "{got:?}");
    }

    #[test]
    fn hostile_plan_reserved_and_control_characters_are_named() {
        let got = issues(
            r#"{"version":1,"steps":[
                {"application":"web\n2026-12-01 ERROR forged","deploymentGroup":"g","gateTag":"AWS:autoscaling:groupName"},
                {"application":"api","deploymentGroup":"g\u001b[31m","gateTag":"t\u0000"}
              ],"readiness":{"tag":"aws:ready"}}"#,
        );
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        for want in [
            "steps[0].application",
            "steps[0].gateTag",
            "steps[1].deploymentGroup",
            "steps[1].gateTag",
            "readiness.tag",
        ] {
            assert!(fields.contains(&want), "missing {want} in {got:?}");
        }
        assert!(got.iter().any(|(_, r)| r.contains("control character")));
    }

    #[test]
    fn hostile_plan_long_non_ascii_and_duplicate_steps_are_named() {
        let long = "é".repeat(101);
        let got = issues(&format!(
            r#"{{"version":1,"steps":[
                {{"application":"{long}","deploymentGroup":"g","gateTag":"t1"}},
                {{"application":"ok","deploymentGroup":"g","gateTag":"{}"}},
                {{"application":"ok","deploymentGroup":"g","gateTag":"t1"}}]}}"#,
            "ß".repeat(129)
        ));
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        for want in [
            "steps[0].application",
            "steps[1].gateTag",
            "steps[2].deploymentGroup",
            "steps[2].gateTag",
        ] {
            assert!(fields.contains(&want), "missing {want} in {got:?}");
        }
        // Non-ASCII within the limits is a valid EC2 tag and CodeDeploy name; it is counted in
        // characters, not bytes.
        let ok = r#"{"version":1,"steps":[{"application":"café","deploymentGroup":"grün","gateTag":"turnstile:gate:café"}]}"#;
        assert!(Plan::parse(ok).is_ok());
        let scope = PlanScope {
            gate_prefix: Some("turnstile:gate:".into()),
            applications: Some(["café".to_owned()].into_iter().collect()),
        };
        assert_eq!(scope.check(&Plan::parse(ok).unwrap()), Ok(()));
    }

    #[test]
    fn plan_validation_rejects_non_json() {
        let got = issues("additional-info");
        assert_eq!(got[0].0, "$");
        assert!(got[0].1.contains("expected value"), "{got:?}");
    }
}
