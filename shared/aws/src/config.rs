//! Function configuration from the environment, validated at start: every problem is listed at
//! once, not one per deploy.

use std::fmt;

use turnstile_core::{HookNames, OwnedHooks, PlanScope};

/// Due items one timer sweep handles unless `TURNSTILE_SWEEP_LIMIT` says otherwise. The sweep
/// runs every minute within the function's 60 s timeout: 500 ticks of tens of milliseconds each
/// fit in it, and whatever is left over is still due at the next sweep.
pub const DEFAULT_SWEEP_LIMIT: usize = 500;
/// The largest `TURNSTILE_SWEEP_LIMIT` accepted.
pub const MAX_SWEEP_LIMIT: usize = 10_000;

/// What both functions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DynamoDB table (`TURNSTILE_TABLE`).
    pub table: String,
    /// The queue the queue function consumes; timer messages are sent to it
    /// (`TURNSTILE_QUEUE_URL`).
    pub queue_url: String,
    /// How many due items one timer sweep handles (`TURNSTILE_SWEEP_LIMIT`, default
    /// [`DEFAULT_SWEEP_LIMIT`]).
    pub sweep_limit: usize,
    /// The lifecycle hooks turnstile acts on (`TURNSTILE_LAUNCH_HOOKS`,
    /// `TURNSTILE_TERMINATE_HOOKS`: comma-separated names, `prefix*` for a prefix; the stack's
    /// default hook names when unset).
    pub owned_hooks: OwnedHooks,
    /// The Auto Scaling groups whose waiting instances the timer sweep checks for lost launch
    /// events (`TURNSTILE_MANAGED_GROUPS`, comma-separated; the stack sets it from
    /// `ManagedAutoScalingGroupNames`). Empty: no adoption, and the timer says so at start.
    pub managed_groups: Vec<String>,
    /// What a plan may name (`TURNSTILE_GATE_PREFIX`, `TURNSTILE_MANAGED_APPLICATIONS`,
    /// comma-separated; the stack sets both from `GateTagPrefix` and `ManagedApplications`):
    /// a plan outside it is refused at validation, before any AWS call IAM would refuse.
    pub plan_scope: PlanScope,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `var` (the environment in production).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |name: &str, what: &str| match var(name).filter(|v| !v.trim().is_empty())
        {
            Some(v) => v,
            None => {
                problems.push(format!("{name} is not set: {what}"));
                String::new()
            }
        };
        let table = required("TURNSTILE_TABLE", "the DynamoDB table name");
        let queue_url = required(
            "TURNSTILE_QUEUE_URL",
            "the URL of the orchestrator's SQS queue",
        );
        let looks_like_url = queue_url.starts_with("https://") || queue_url.starts_with("http://");
        if !queue_url.is_empty() && !looks_like_url {
            problems.push(format!(
                "TURNSTILE_QUEUE_URL is `{queue_url}`: expected an SQS queue URL (https://…)"
            ));
        }
        if var("AWS_REGION").filter(|v| !v.is_empty()).is_none()
            && var("AWS_DEFAULT_REGION")
                .filter(|v| !v.is_empty())
                .is_none()
        {
            problems.push(
                "AWS_REGION is not set (Lambda sets it; set it when running elsewhere)".into(),
            );
        }
        let sweep_limit = match var("TURNSTILE_SWEEP_LIMIT") {
            None => DEFAULT_SWEEP_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_SWEEP_LIMIT).contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "TURNSTILE_SWEEP_LIMIT is `{v}`: expected a number from 1 to {MAX_SWEEP_LIMIT}"
                    ));
                    DEFAULT_SWEEP_LIMIT
                }
            },
        };
        let defaults = OwnedHooks::default();
        let mut hooks = |name: &str, default: HookNames| match var(name) {
            None => default,
            Some(v) => HookNames::parse(&v).unwrap_or_else(|e| {
                problems.push(format!("{name}: {e}"));
                default
            }),
        };
        let owned_hooks = OwnedHooks {
            launch: hooks("TURNSTILE_LAUNCH_HOOKS", defaults.launch),
            terminate: hooks("TURNSTILE_TERMINATE_HOOKS", defaults.terminate),
        };
        let managed_groups: Vec<String> = var("TURNSTILE_MANAGED_GROUPS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        let gate_prefix = var("TURNSTILE_GATE_PREFIX").filter(|p| !p.is_empty());
        let applications: Option<std::collections::BTreeSet<String>> =
            var("TURNSTILE_MANAGED_APPLICATIONS").map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            });
        if applications.as_ref().is_some_and(|a| a.is_empty()) {
            problems.push(
                "TURNSTILE_MANAGED_APPLICATIONS is set but names no application: every plan would be refused"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(Self {
                table,
                queue_url,
                sweep_limit,
                owned_hooks,
                managed_groups,
                plan_scope: PlanScope {
                    gate_prefix,
                    applications,
                },
            })
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn every_problem_is_listed() {
        let err = with(&[
            ("TURNSTILE_QUEUE_URL", "my-queue"),
            ("TURNSTILE_SWEEP_LIMIT", "lots"),
            ("TURNSTILE_LAUNCH_HOOKS", "turnstile-launch,,x"),
        ])
        .unwrap_err();
        assert_eq!(err.problems.len(), 5, "{err}");
        let text = err.to_string();
        for needle in [
            "TURNSTILE_TABLE",
            "TURNSTILE_QUEUE_URL is `my-queue`",
            "AWS_REGION",
            "TURNSTILE_SWEEP_LIMIT",
            "TURNSTILE_LAUNCH_HOOKS: `turnstile-launch,,x` has an empty entry",
        ] {
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn a_complete_environment_is_accepted() {
        let c = with(&[
            ("TURNSTILE_TABLE", "t"),
            (
                "TURNSTILE_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/q",
            ),
            ("AWS_REGION", "us-east-1"),
        ])
        .unwrap();
        assert_eq!(c.sweep_limit, 500);
        assert_eq!(
            c.owned_hooks,
            OwnedHooks::default(),
            "the stack's hook names"
        );
        assert!(c.managed_groups.is_empty(), "no adoption unless configured");
    }

    #[test]
    fn hostile_plan_scope_is_read_from_the_stacks_gate_prefix_and_applications() {
        let base = [
            ("TURNSTILE_TABLE", "t"),
            (
                "TURNSTILE_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/q",
            ),
            ("AWS_REGION", "us-east-1"),
        ];
        let c = with(&base).unwrap();
        assert_eq!(c.plan_scope, PlanScope::default(), "unset: open");
        let mut vars = base.to_vec();
        vars.push(("TURNSTILE_GATE_PREFIX", "turnstile:gate:"));
        vars.push(("TURNSTILE_MANAGED_APPLICATIONS", "web, api,"));
        let c = with(&vars).unwrap();
        assert_eq!(c.plan_scope.gate_prefix.as_deref(), Some("turnstile:gate:"));
        let apps: Vec<&str> = c
            .plan_scope
            .applications
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(apps, ["api", "web"]);
        let mut vars = base.to_vec();
        vars.push(("TURNSTILE_MANAGED_APPLICATIONS", " , "));
        let err = with(&vars).unwrap_err();
        assert!(err.to_string().contains("names no application"), "{err}");
    }

    #[test]
    fn adopt_reads_the_managed_groups_as_a_comma_separated_list() {
        let c = with(&[
            ("TURNSTILE_TABLE", "t"),
            (
                "TURNSTILE_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/q",
            ),
            ("AWS_REGION", "us-east-1"),
            ("TURNSTILE_MANAGED_GROUPS", " web-asg, ,batch-asg,"),
        ])
        .unwrap();
        assert_eq!(c.managed_groups, vec!["web-asg", "batch-asg"]);
    }

    #[test]
    fn foreign_hook_owned_hooks_are_read_as_names_and_prefixes() {
        let c = with(&[
            ("TURNSTILE_TABLE", "t"),
            (
                "TURNSTILE_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/q",
            ),
            ("AWS_REGION", "us-east-1"),
            ("TURNSTILE_LAUNCH_HOOKS", "web-launch,team-*"),
            ("TURNSTILE_TERMINATE_HOOKS", "web-launch-terminate"),
        ])
        .unwrap();
        assert!(c.owned_hooks.launch.matches("web-launch"));
        assert!(c.owned_hooks.launch.matches("team-api"));
        assert!(!c.owned_hooks.launch.matches("turnstile-launch"));
        assert!(c.owned_hooks.terminate.matches("web-launch-terminate"));
        assert!(!c.owned_hooks.terminate.matches("team-api"));
    }
}
