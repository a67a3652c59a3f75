//! `turnstile show INSTANCE`: one pipeline's record in detail, step by step, with what the
//! group records of its plan say about it. Only what the records keep, so no log search is
//! needed: each step's attempt count, when its current attempt started, what it installed and
//! its last finished attempts (deployment, times, result); the heartbeats confirmed; the last
//! alerts; the operator actions.

use std::io::Write;

use clap::Args;
use serde_json::{Value, json};
use turnstile_aws::store::{Store, StoreError};
use turnstile_core::{
    AttemptLog, AttemptResult, Instance, InstanceId, Key, Millis, NoteOutcome, OperatorNote, Phase,
    Place,
};

use super::{store, store_failed, written};
use crate::describe::{self, Activity, Groups, finished_word, result_word};
use crate::output::{self, Cell, Style, Table, at, dur, relative, write_json};
use crate::{Context, Exit, Format, Global};

pub const SCHEMA: &str = "turnstile.show/v1";

pub const AFTER_HELP: &str =
    "Finished pipelines stay in the table for 7 days (then TTL removes them).

EXIT CODES:
  0  ok
  1  a DynamoDB call failed
  2  usage, or no --table
  4  no record for the instance
  5  no AWS region, or the table does not exist";

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The EC2 instance id, e.g. i-0123456789abcdef0.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
}

/// A pipeline record and the group records of its plan.
#[derive(Debug, Clone)]
pub struct Shown {
    pub instance: Instance,
    pub groups: Groups,
}

/// Reads the instance's record and its plan's group records; `None` if there is no record.
pub async fn gather<S: Store>(store: &S, id: &InstanceId) -> Result<Option<Shown>, StoreError> {
    let loaded = store.load(&[Key::Instance(id.clone())]).await?;
    let Some(instance) = loaded.world.instance(id).cloned() else {
        return Ok(None);
    };
    let keys: Vec<Key> = instance
        .plan
        .steps
        .iter()
        .map(|s| Key::Group(s.group.clone()))
        .collect();
    let groups = store
        .load(&keys)
        .await?
        .world
        .groups
        .into_iter()
        .filter_map(|(k, g)| g.map(|g| (k, g)))
        .collect();
    Ok(Some(Shown { instance, groups }))
}

pub async fn run(
    global: &Global,
    args: &ShowArgs,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let s = match store(global, &ctx, err).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let table_name = global.table.as_deref().unwrap_or_default();
    let id = InstanceId::from(args.instance.as_str());
    let shown = match gather(&s, &id).await {
        Ok(Some(shown)) => shown,
        Ok(None) => {
            let _ = writeln!(
                err,
                "error: no pipeline record for {id} in {table_name} (never launched through turnstile, or finished more than 7 days ago)"
            );
            return Exit::NotFound;
        }
        Err(e) => return store_failed(&e, table_name, err),
    };
    let now = output::millis(ctx.now);
    let r = match global.output {
        Format::Json => write_json(out, &document(&shown, now)),
        Format::Table => table(&shown, now, ctx.color, out),
    };
    written(r, err)
}

/// One step as the records tell it.
struct StepView {
    state: String,
    deployment: Option<String>,
}

fn step_view(shown: &Shown, activity: &Activity, i: usize) -> StepView {
    let inst = &shown.instance;
    let rec = inst.steps.get(i).cloned().unwrap_or_default();
    if let Some(n) = &rec.overridden {
        return StepView {
            state: format!("skipped by {} ({})", n.actor, n.reason),
            deployment: None,
        };
    }
    if let Some(installed) = &rec.installed {
        return StepView {
            state: match installed {
                Some(_) => "done".into(),
                None => "done (nothing to deploy)".into(),
            },
            deployment: None,
        };
    }
    if activity.step == Some(i) {
        return StepView {
            state: activity.word.into(),
            deployment: activity.deployment.clone(),
        };
    }
    let state = match &inst.phase {
        Phase::Finished { .. } if rec.attempts > 0 => "not finished",
        Phase::Finished { .. } => "not run",
        _ if rec.attempts > 0 => "attempted",
        _ => "pending",
    };
    StepView {
        state: state.into(),
        deployment: None,
    }
}

fn place(p: Option<Place>) -> &'static str {
    match p {
        None | Some(Place::AutoScalingGroup) => "Auto Scaling group",
        Some(Place::WarmPool) => "warm pool",
        Some(Place::Ec2) => "EC2",
    }
}

fn opt_at(m: Option<Millis>) -> Value {
    m.map_or(Value::Null, |m| Value::String(at(m)))
}

/// The `turnstile.show/v1` document.
pub fn document(shown: &Shown, now: Millis) -> Value {
    let inst = &shown.instance;
    let activity = describe::activity(inst, &shown.groups);
    let steps: Vec<Value> = inst
        .plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let rec = inst.steps.get(i).cloned().unwrap_or_default();
            let view = step_view(shown, &activity, i);
            json!({
                "step": i + 1,
                "application": s.group.application,
                "deploymentGroup": s.group.deployment_group,
                "gate": {"key": s.gate.key, "value": s.gate.value},
                "state": view.state,
                "deployment": view.deployment,
                "attempts": rec.attempts,
                "allowedAttempts": s.retries + 1,
                "startedAt": opt_at(rec.started_at),
                "timeoutSecs": s.timeout_secs,
                "installed": rec.installed.as_ref().map(|r| json!({
                    "revision": r.as_ref().map(ToString::to_string),
                })),
                "history": rec.log.iter().map(attempt_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (completing, finished, held_since) = match &inst.phase {
        Phase::Completing {
            result,
            reason,
            since,
            ..
        } => (
            json!({"result": result_word(*result), "reason": reason, "since": at(*since)}),
            Value::Null,
            Value::Null,
        ),
        Phase::Finished { outcome, at: t } => (
            Value::Null,
            json!({"outcome": finished_word(*outcome), "at": at(*t)}),
            Value::Null,
        ),
        Phase::Held { since, .. } => (Value::Null, Value::Null, Value::String(at(*since))),
        _ => (Value::Null, Value::Null, Value::Null),
    };
    json!({
        "schema": SCHEMA,
        "generatedAt": at(now),
        "instance": inst.id.to_string(),
        "asg": inst.action.asg,
        "hook": inst.action.hook,
        "tokenKnown": inst.action.token.is_some(),
        "adoptedAt": opt_at(inst.adopted_at),
        "destination": place(inst.destination),
        "phase": activity.word,
        "detail": activity.detail,
        "step": activity.step.map(|s| s + 1),
        "steps": steps,
        "deployment": activity.deployment,
        "startedAt": at(inst.started_at),
        "inPipelineSecs": now.since(inst.started_at) / 1000,
        "globalDeadline": at(inst.global_deadline),
        "deadlineLeftSecs": inst.global_deadline.since(now) / 1000,
        "heartbeat": {
            "timeoutSecs": inst.timeouts.heartbeat_secs,
            "hookGlobalTimeoutSecs": inst.timeouts.global_secs,
            "lastConfirmed": at(inst.last_heartbeat),
            "sentUnconfirmed": opt_at(inst.heartbeat_sent),
            "confirmed": inst.heartbeats,
        },
        "alerts": inst.alerts.iter().map(|a| json!({
            "at": at(a.at),
            "kind": format!("{:?}", a.kind),
            "message": a.message,
        })).collect::<Vec<_>>(),
        "wakeAt": opt_at(inst.wake_at),
        "heldReason": (activity.word == "held").then(|| activity.detail.clone()),
        "heldSince": held_since,
        "completing": completing,
        "finished": finished,
        "operator": inst.operator.iter().map(note_json).collect::<Vec<_>>(),
    })
}

/// One finished attempt of a step.
fn attempt_json(a: &AttemptLog) -> Value {
    let (result, why) = attempt_result(&a.result);
    json!({
        "queuedAt": opt_at(a.queued_at),
        "endedAt": at(a.ended_at),
        "deployment": a.deployment.as_ref().map(ToString::to_string),
        "result": result,
        "why": why,
    })
}

fn attempt_result(r: &AttemptResult) -> (&'static str, Option<String>) {
    match r {
        AttemptResult::Succeeded => ("succeeded", None),
        AttemptResult::Failed(why) => ("failed", Some(why.clone())),
    }
}

/// One operator action as the record keeps it.
pub fn note_json(n: &OperatorNote) -> Value {
    let (outcome, refused) = match &n.outcome {
        NoteOutcome::Applied => ("applied", None),
        NoteOutcome::Refused(why) => ("refused", Some(why.clone())),
    };
    json!({
        "request": n.request,
        "action": n.action,
        "actor": n.actor,
        "reason": n.reason,
        "at": at(n.at),
        "outcome": outcome,
        "refused": refused,
    })
}

fn table(shown: &Shown, now: Millis, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let inst = &shown.instance;
    let activity = describe::activity(inst, &shown.groups);
    let total = inst.plan.steps.len();
    let mut phase = format!(
        "{} (step {})",
        activity.word,
        describe::step_of(activity.step, total)
    );
    if let Some(d) = &activity.deployment {
        phase.push_str(&format!(", deployment {d}"));
    }
    let mut kv = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: Cell| kv.row(vec![k.into(), v]);
    row("instance", inst.id.to_string().into());
    row("asg", inst.action.asg.clone().into());
    row(
        "hook",
        format!(
            "{}{}",
            inst.action.hook,
            match inst.adopted_at {
                Some(t) => format!(" (adopted by the sweep at {}, no token)", at(t)),
                None if inst.action.token.is_none() => " (no token)".into(),
                None => String::new(),
            }
        )
        .into(),
    );
    row("destination", place(inst.destination).into());
    row(
        "phase",
        Cell::styled(
            phase,
            if activity.word == "held" {
                Style::Red
            } else {
                Style::Bold
            },
        ),
    );
    if !activity.detail.is_empty() {
        let label = if activity.word == "held" {
            "hold reason"
        } else {
            "detail"
        };
        row(label, activity.detail.clone().into());
    }
    row(
        "started",
        format!(
            "{} ({})",
            at(inst.started_at),
            relative(inst.started_at, now)
        )
        .into(),
    );
    let left = inst.global_deadline.since(now) / 1000;
    row(
        "global deadline",
        Cell::styled(
            format!(
                "{} ({}, hook global timeout {} s)",
                at(inst.global_deadline),
                relative(inst.global_deadline, now),
                inst.timeouts.global_secs
            ),
            if left < 600 && !inst.phase.is_finished() {
                Style::Red
            } else {
                Style::Plain
            },
        ),
    );
    row(
        "last heartbeat",
        format!(
            "{} ({}, heartbeat timeout {} s; {} confirmed)",
            at(inst.last_heartbeat),
            relative(inst.last_heartbeat, now),
            inst.timeouts.heartbeat_secs,
            inst.heartbeats
        )
        .into(),
    );
    if let Some(t) = inst.heartbeat_sent {
        row(
            "heartbeat sent",
            format!("{} ({}), not confirmed yet", at(t), relative(t, now)).into(),
        );
    }
    if let Some(t) = inst.wake_at {
        row(
            "next timer",
            format!("{} ({})", at(t), relative(t, now)).into(),
        );
    }
    kv.write(out, color)?;
    writeln!(out)?;

    let mut t = Table::new(&[
        "STEP",
        "GROUP",
        "GATE",
        "STATE",
        "DEPLOYMENT",
        "ATTEMPTS",
        "STARTED",
        "TIMEOUT",
        "INSTALLED",
    ]);
    for (i, s) in inst.plan.steps.iter().enumerate() {
        let rec = inst.steps.get(i).cloned().unwrap_or_default();
        let view = step_view(shown, &activity, i);
        t.row(vec![
            (i + 1).to_string().into(),
            s.group.to_string().into(),
            format!("{}={}", s.gate.key, s.gate.value).into(),
            view.state.into(),
            view.deployment.unwrap_or("-".into()).into(),
            format!("{}/{}", rec.attempts, s.retries + 1).into(),
            rec.started_at
                .map_or_else(|| "-".to_owned(), |t| relative(t, now))
                .into(),
            dur(s.timeout_secs).into(),
            match &rec.installed {
                Some(Some(r)) => r.to_string(),
                Some(None) => "(nothing to deploy)".into(),
                None => "-".into(),
            }
            .into(),
        ]);
    }
    t.write(out, color)?;
    let attempts: Vec<(usize, &AttemptLog)> = inst
        .steps
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.log.iter().map(move |a| (i, a)))
        .collect();
    if !attempts.is_empty() {
        writeln!(out)?;
        let mut h = Table::new(&["STEP", "QUEUED", "ENDED", "DEPLOYMENT", "RESULT"]);
        for (i, a) in attempts {
            let (result, why) = attempt_result(&a.result);
            h.row(vec![
                (i + 1).to_string().into(),
                a.queued_at.map_or_else(|| "-".to_owned(), at).into(),
                at(a.ended_at).into(),
                a.deployment
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string)
                    .into(),
                match why {
                    Some(w) => Cell::styled(format!("{result}: {w}"), Style::Red),
                    None => result.to_owned().into(),
                },
            ]);
        }
        h.write(out, color)?;
    }
    if !inst.alerts.is_empty() {
        writeln!(out)?;
        let mut al = Table::new(&["ALERT", "AT", "MESSAGE"]);
        for a in &inst.alerts {
            al.row(vec![
                format!("{:?}", a.kind).into(),
                at(a.at).into(),
                a.message.clone().into(),
            ]);
        }
        al.write(out, color)?;
    }
    if !inst.operator.is_empty() {
        writeln!(out)?;
        let mut ops = Table::new(&["OPERATOR", "ACTION", "BY", "AT", "OUTCOME", "REASON"]);
        for n in &inst.operator {
            ops.row(vec![
                n.request.clone().into(),
                n.action.clone().into(),
                n.actor.clone().into(),
                at(n.at).into(),
                match &n.outcome {
                    NoteOutcome::Applied => "applied".to_owned(),
                    NoteOutcome::Refused(why) => format!("refused: {why}"),
                }
                .into(),
                n.reason.clone().into(),
            ]);
        }
        ops.write(out, color)?;
    }
    Ok(())
}
