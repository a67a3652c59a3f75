//! `turnstile plan check FILE`: validates a plan offline, the way the core will read it from the
//! launch hook's metadata, and does the timeout arithmetic the core does at launch
//! (`engine/lifecycle.rs`, `on_launch`: the steps' timeouts, one attempt each, must add up to
//! at most the hook's global timeout, [`HookTimeouts::from_heartbeat`]).

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};
use turnstile_core::engine::MIN_ROBUST_HEARTBEAT_SECS;
use turnstile_core::{HookTimeouts, OnFailure, Plan, PlanIssue, PlanScope};

use super::written;
use crate::output::{Cell, Style, Table, dur, paint, write_json};
use crate::{Context, Exit, Format, Global};

pub const SCHEMA: &str = "turnstile.plan-check/v1";

/// The stack's default `HeartbeatTimeout` (infra/template.yaml).
pub const DEFAULT_HEARTBEAT_SECS: u64 = 600;

pub const AFTER_HELP: &str = "FILE may hold the plan document itself, or the hook's metadata as \
stored: a JSON string whose content is the plan, or an object with a NotificationMetadata \
string (one lifecycle hook as describe-lifecycle-hooks prints it).

EXIT CODES:
  0  the plan is valid and fits the hook's global timeout
  1  FILE could not be read
  2  usage
  3  problems found (each printed with its field)";

#[derive(Debug, Args)]
pub struct PlanCheckArgs {
    /// The plan file, or `-` for stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The launch hook's heartbeat timeout, in seconds (Auto Scaling allows 30 to 7200). The
    /// hook's global timeout is min(100 × this, 48 h).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = DEFAULT_HEARTBEAT_SECS,
        value_parser = clap::value_parser!(u64).range(30..=7200)
    )]
    pub heartbeat_timeout: u64,
    /// The stack's `GateTagPrefix`: a gate outside it is refused, as the functions refuse it
    /// (they may write no other tag).
    #[arg(long, value_name = "PREFIX")]
    pub gate_prefix: Option<String>,
    /// The stack's `ManagedApplications` (comma-separated): a step of another application is
    /// refused, as the functions refuse it.
    #[arg(long, value_name = "APP,...", value_delimiter = ',')]
    pub applications: Option<Vec<String>>,
}

impl PlanCheckArgs {
    /// The stack's scope as given on the command line (open where nothing is given).
    pub fn scope(&self) -> PlanScope {
        PlanScope {
            gate_prefix: self.gate_prefix.clone().filter(|p| !p.is_empty()),
            applications: self.applications.as_ref().map(|a| {
                a.iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        }
    }
}

/// The timeout arithmetic of a valid plan against its hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub timeouts: HookTimeouts,
    /// `(group, timeoutSecs, retries, retryBackoffSecs)` per step.
    pub steps: Vec<(String, u64, u32, u64)>,
    /// The readiness wait's timeout, when the plan has one (counted in `total_secs`).
    pub readiness_secs: u64,
    /// The readiness wait and one attempt of each step: what the core checks at launch.
    pub total_secs: u64,
    /// Every retry of every step used, with its back-off: not checked at launch (the core fails
    /// a pipeline early when the rest can no longer fit), shown for planning.
    pub worst_case_secs: u64,
}

impl Budget {
    pub fn of(plan: &Plan, heartbeat_secs: u64) -> Self {
        let timeouts = HookTimeouts::from_heartbeat(heartbeat_secs);
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|s| {
                (
                    s.group.to_string(),
                    s.timeout_secs,
                    s.retries,
                    s.retry_backoff_secs,
                )
            })
            .collect();
        let readiness_secs = plan.readiness.as_ref().map_or(0, |r| r.timeout_secs);
        let total_secs = plan.budget_secs();
        let worst_case_secs = steps
            .iter()
            .map(|&(_, t, r, b)| {
                let backoffs: u64 = (0..r)
                    .map(|n| b.saturating_mul(1u64 << n.min(32)))
                    .fold(0, u64::saturating_add);
                t.saturating_mul(u64::from(r) + 1).saturating_add(backoffs)
            })
            .fold(0, u64::saturating_add)
            .saturating_add(readiness_secs);
        Self {
            timeouts,
            steps,
            readiness_secs,
            total_secs,
            worst_case_secs,
        }
    }

    pub fn fits(&self) -> bool {
        self.total_secs <= self.timeouts.global_secs
    }

    /// The issue the core would hold every launch for.
    pub fn issue(&self) -> Option<PlanIssue> {
        (!self.fits()).then(|| PlanIssue {
            field: if self.readiness_secs > 0 {
                "readiness.timeoutSecs, steps[*].timeoutSecs".into()
            } else {
                "steps[*].timeoutSecs".into()
            },
            reason: format!(
                "the plan's timeouts (readiness wait and steps) add up to {} s but the hook's global timeout is {} s \
                 (100 × {} s heartbeat timeout, at most 48 h): every launch would be held",
                self.total_secs, self.timeouts.global_secs, self.timeouts.heartbeat_secs
            ),
        })
    }
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Checked {
    pub plan: Option<Plan>,
    pub issues: Vec<PlanIssue>,
    pub warnings: Vec<String>,
    pub budget: Option<Budget>,
}

/// The plan text inside a file as users store it: the document itself, a JSON string holding
/// it (the hook's `NotificationMetadata` value), or one hook object carrying that string.
pub fn plan_text(content: &str) -> Result<String, PlanIssue> {
    let trimmed = content.trim();
    if trimmed.starts_with('"') {
        return serde_json::from_str::<String>(trimmed).map_err(|e| PlanIssue {
            field: "$".into(),
            reason: format!("the file starts like a JSON string but is not one: {e}"),
        });
    }
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(trimmed)
        && !o.contains_key("version")
        && !o.contains_key("steps")
        && let Some(m) = o.get("NotificationMetadata")
    {
        return match m {
            Value::String(s) => Ok(s.clone()),
            _ => Err(PlanIssue {
                field: "NotificationMetadata".into(),
                reason: "must be a string holding the plan".into(),
            }),
        };
    }
    Ok(trimmed.to_owned())
}

/// Checks a plan file's content against a hook with this heartbeat timeout, and the stack's
/// scope.
pub fn check(content: &str, heartbeat_secs: u64, scope: &PlanScope) -> Checked {
    let mut warnings = Vec::new();
    if heartbeat_secs < MIN_ROBUST_HEARTBEAT_SECS {
        warnings.push(format!(
            "a {heartbeat_secs} s heartbeat timeout is below {MIN_ROBUST_HEARTBEAT_SECS} s: a single lost timer message can miss a heartbeat (turnstile alerts on it)"
        ));
    }
    let text = match plan_text(content) {
        Ok(t) => t,
        Err(issue) => {
            return Checked {
                plan: None,
                issues: vec![issue],
                warnings,
                budget: None,
            };
        }
    };
    match Plan::parse(&text) {
        Ok(plan) => {
            let budget = Budget::of(&plan, heartbeat_secs);
            let mut issues: Vec<PlanIssue> = scope
                .check(&plan)
                .err()
                .map(|e| e.issues)
                .unwrap_or_default();
            issues.extend(budget.issue());
            Checked {
                issues,
                plan: Some(plan),
                warnings,
                budget: Some(budget),
            }
        }
        Err(e) => Checked {
            plan: None,
            issues: e.issues,
            warnings,
            budget: None,
        },
    }
}

fn read(file: &PathBuf, ctx: &mut Context) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        ctx.stdin.read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
    }
}

pub fn run(
    global: &Global,
    args: &PlanCheckArgs,
    mut ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let name = if args.file.as_os_str() == "-" {
        "(stdin)".to_owned()
    } else {
        args.file.display().to_string()
    };
    let content = match read(&args.file, &mut ctx) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "error: reading {name}: {e}");
            return Exit::Failure;
        }
    };
    let checked = check(&content, args.heartbeat_timeout, &args.scope());
    let r = match global.output {
        Format::Json => write_json(out, &document(&name, &checked)),
        Format::Table => table(&name, &checked, ctx.color, out),
    };
    match written(r, err) {
        Exit::Ok if checked.issues.is_empty() => Exit::Ok,
        Exit::Ok => Exit::Problems,
        other => other,
    }
}

/// The `turnstile.plan-check/v1` document.
pub fn document(file: &str, c: &Checked) -> Value {
    let budget = c.budget.as_ref().map(|b| {
        json!({
            "heartbeatTimeoutSecs": b.timeouts.heartbeat_secs,
            "hookGlobalTimeoutSecs": b.timeouts.global_secs,
            "steps": b.steps.iter().enumerate().map(|(i, (g, t, r, back))| json!({
                "step": i + 1,
                "group": g,
                "timeoutSecs": t,
                "retries": r,
                "retryBackoffSecs": back,
            })).collect::<Vec<_>>(),
            "readinessSecs": b.readiness_secs,
            "totalSecs": b.total_secs,
            "worstCaseWithRetriesSecs": b.worst_case_secs,
            "fits": b.fits(),
        })
    });
    json!({
        "schema": SCHEMA,
        "file": file,
        "valid": c.issues.is_empty(),
        "issues": c.issues.iter().map(|i| json!({"field": i.field, "reason": i.reason})).collect::<Vec<_>>(),
        "warnings": c.warnings,
        "timeouts": budget,
        "plan": c.plan.as_ref().map(Plan::to_document),
    })
}

fn table(file: &str, c: &Checked, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(plan) = &c.plan {
        let mut t = Table::new(&[
            "STEP",
            "GROUP",
            "GATE",
            "TIMEOUT",
            "RETRIES",
            "BACKOFF",
            "ON FAILURE",
        ]);
        for (i, s) in plan.steps.iter().enumerate() {
            t.row(vec![
                (i + 1).to_string().into(),
                s.group.to_string().into(),
                format!("{}={}", s.gate.key, s.gate.value).into(),
                format!("{} s", s.timeout_secs).into(),
                s.retries.to_string().into(),
                format!("{} s", s.retry_backoff_secs).into(),
                match s.on_failure {
                    OnFailure::Abandon => "abandon",
                    OnFailure::Hold => "hold",
                }
                .into(),
            ]);
        }
        t.write(out, color)?;
    }
    if let Some(b) = &c.budget {
        let sum: Vec<String> = b.steps.iter().map(|s| s.1.to_string()).collect();
        writeln!(
            out,
            "timeouts: {} = {} s ({}); hook global timeout = min(100 × {} s, 172800 s) = {} s ({}): {}",
            sum.join(" + "),
            b.total_secs,
            dur(b.total_secs),
            b.timeouts.heartbeat_secs,
            b.timeouts.global_secs,
            dur(b.timeouts.global_secs),
            if b.fits() {
                paint("fits", Style::Green, color)
            } else {
                paint("does not fit", Style::Red, color)
            }
        )?;
        writeln!(
            out,
            "worst case with every retry and back-off: {} s ({}); a pipeline that can no longer fit fails early",
            b.worst_case_secs,
            dur(b.worst_case_secs)
        )?;
    }
    for w in &c.warnings {
        writeln!(out, "{}: {w}", paint("warning", Style::Yellow, color))?;
    }
    if c.issues.is_empty() {
        writeln!(out, "{file}: {}", paint("valid", Style::Green, color))?;
        return Ok(());
    }
    let mut t = Table::new(&["FIELD", "PROBLEM"]);
    for i in &c.issues {
        t.row(vec![
            Cell::styled(i.field.clone(), Style::Red),
            i.reason.clone().into(),
        ]);
    }
    t.write(out, color)?;
    let n = c.issues.len();
    writeln!(
        out,
        "{file}: {}",
        paint(
            &format!("{n} problem{}", if n == 1 { "" } else { "s" }),
            Style::Red,
            color
        )
    )
}
