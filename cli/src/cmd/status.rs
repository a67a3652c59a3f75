//! `turnstile status`: every pipeline in flight in the given Auto Scaling groups (the store's
//! `inflight` index), then every deployment group those pipelines' plans use. Read-only.

use std::collections::BTreeSet;
use std::io::Write;

use clap::Args;
use serde_json::{Value, json};
use turnstile_aws::store::{Store, StoreError};
use turnstile_core::{Active, GroupKey, Key, Millis, OperatorNote};

use super::{store, store_failed, written};
use crate::describe::{self, Activity, Groups};
use crate::output::{self, Cell, Style, Table, at, dur, relative, write_json};
use crate::{Context, Exit, Format, Global};

pub const SCHEMA: &str = "turnstile.status/v1";

pub const AFTER_HELP: &str =
    "Without --asg, the groups in TURNSTILE_MANAGED_GROUPS (comma-separated, \
as the functions have it) are listed; with neither, the command says what to pass and exits 2.

PHASES:
  booting     waiting for the instance to tag itself ready (the plan's readiness signal)
  waiting     in the group's waiting list (the group is busy, or its batch window is open)
  admitted    gate open, the deployment is being created
  deploying   a target of turnstile's deployment
  deployed    its target finished; moving to the next step
  settling    the deployment ended; its result for the instance is being read
  leaving     step done; checking no other deployment still targets it
  backoff     an attempt failed; waiting to retry
  draining    an attempt timed out; waiting for the deployment to let go of it
  overflow    the group's list is full; waiting in its own record
  verifying   every step done; the final revision check
  completing  the lifecycle action is being completed
  held        kept in Pending:Wait for an operator (the reason is shown)

EXIT CODES:
  0  ok (also when nothing is in flight)
  1  a DynamoDB call failed
  2  usage, or no --table / no Auto Scaling group given
  5  no AWS region, or the table does not exist";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// An Auto Scaling group to list (repeat for several). Default: TURNSTILE_MANAGED_GROUPS.
    #[arg(long = "asg", value_name = "NAME")]
    pub asgs: Vec<String>,
    /// Refresh until interrupted: the table redrawn (a screen on a terminal), or one JSON
    /// document per line with --output json.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, value_name = "SECS", default_value_t = 5, requires = "watch")]
    pub interval: u64,
    /// Stop after this many refreshes (for scripts and tests).
    #[arg(long, value_name = "N", hide = true, requires = "watch")]
    pub count: Option<u64>,
}

/// One pipeline in flight.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub asg: String,
    pub instance: String,
    pub steps: usize,
    pub group: Option<GroupKey>,
    pub activity: Activity,
    pub started_at: Millis,
    pub global_deadline: Millis,
    pub last_heartbeat: Millis,
}

/// One deployment group a pipeline in flight uses.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub key: GroupKey,
    /// Whether the group has a record (an idle group may have none).
    pub recorded: bool,
    /// `(kind, deployment, since, members)` of the active deployment.
    pub active: Option<(&'static str, Option<String>, Millis, usize)>,
    pub waiting: usize,
    pub settling: usize,
    pub breaker_tripped_since: Option<Millis>,
    pub breaker_failures: usize,
    /// `turnstile pause`: who, when, why.
    pub paused: Option<OperatorNote>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub asgs: Vec<String>,
    pub instances: Vec<InstanceRow>,
    pub groups: Vec<GroupRow>,
    /// Listed by the index but without a readable in-flight record (finished meanwhile).
    pub gone: Vec<String>,
}

/// Reads what is in flight in `asgs`. Records keep absolute times, so the reading needs no
/// clock: `now` goes to the renderers ([`document`]), which is what keeps tests deterministic.
pub async fn gather<S: Store>(store: &S, asgs: &[String]) -> Result<Report, StoreError> {
    let mut listed: Vec<(String, Key)> = Vec::new();
    for asg in asgs {
        for id in store.in_flight(asg).await? {
            listed.push((asg.clone(), Key::Instance(id)));
        }
    }
    let keys: Vec<Key> = listed.iter().map(|(_, k)| k.clone()).collect();
    let loaded = store.load(&keys).await?;
    let mut instances = Vec::new();
    let mut gone = Vec::new();
    let mut group_keys = BTreeSet::new();
    for (asg, key) in &listed {
        let Key::Instance(id) = key else { continue };
        match loaded.world.instance(id) {
            Some(i) if !i.phase.is_finished() => {
                group_keys.extend(i.plan.steps.iter().map(|s| s.group.clone()));
                instances.push((asg.clone(), i.clone()));
            }
            _ => gone.push(id.to_string()),
        }
    }
    let gkeys: Vec<Key> = group_keys.iter().cloned().map(Key::Group).collect();
    let loaded_groups = store.load(&gkeys).await?;
    let groups: Groups = loaded_groups
        .world
        .groups
        .into_iter()
        .filter_map(|(k, g)| g.map(|g| (k, g)))
        .collect();

    let mut rows: Vec<InstanceRow> = instances
        .iter()
        .map(|(asg, i)| {
            let activity = describe::activity(i, &groups);
            InstanceRow {
                asg: asg.clone(),
                instance: i.id.to_string(),
                steps: i.plan.steps.len(),
                group: activity
                    .step
                    .and_then(|s| i.plan.steps.get(s))
                    .map(|s| s.group.clone()),
                activity,
                started_at: i.started_at,
                global_deadline: i.global_deadline,
                last_heartbeat: i.last_heartbeat,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.asg, a.started_at, &a.instance).cmp(&(&b.asg, b.started_at, &b.instance))
    });
    let group_rows = group_keys
        .into_iter()
        .map(|key| group_row(key, &groups))
        .collect();
    Ok(Report {
        asgs: asgs.to_vec(),
        instances: rows,
        groups: group_rows,
        gone,
    })
}

fn group_row(key: GroupKey, groups: &Groups) -> GroupRow {
    let Some(g) = groups.get(&key) else {
        return GroupRow {
            key,
            recorded: false,
            active: None,
            waiting: 0,
            settling: 0,
            breaker_tripped_since: None,
            breaker_failures: 0,
            paused: None,
        };
    };
    let active = g.active.as_ref().map(|a| match a {
        Active::Creating { members, since, .. } => ("creating", None, *since, members.len()),
        Active::Ours {
            deployment,
            members,
            since,
            ..
        } => ("ours", Some(deployment.to_string()), *since, members.len()),
        Active::Foreign {
            deployment, since, ..
        } => ("foreign", Some(deployment.to_string()), *since, 0),
    });
    GroupRow {
        key,
        recorded: true,
        active,
        waiting: g.waiting.len(),
        settling: g.settling.len(),
        breaker_tripped_since: g.breaker.tripped_since,
        breaker_failures: g.breaker.failures.len(),
        paused: g.paused.clone(),
    }
}

/// The asgs to list: `--asg`, else `TURNSTILE_MANAGED_GROUPS`.
pub fn asgs_of(args: &StatusArgs, managed: Option<&str>) -> Vec<String> {
    let from = if args.asgs.is_empty() {
        managed
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    } else {
        args.asgs.clone()
    };
    let mut seen = BTreeSet::new();
    from.into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty() && seen.insert(a.clone()))
        .collect()
}

pub async fn run(
    global: &Global,
    args: &StatusArgs,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let asgs = asgs_of(args, ctx.managed_groups.as_deref());
    if asgs.is_empty() {
        let _ = writeln!(
            err,
            "error: which Auto Scaling groups? pass --asg NAME (repeatable), or set \
             TURNSTILE_MANAGED_GROUPS=name1,name2 as the functions have it"
        );
        return Exit::Usage;
    }
    let s = match store(global, &ctx, err).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let table_name = global.table.as_deref().unwrap_or_default();
    if !args.watch {
        let report = match gather(&s, &asgs).await {
            Ok(r) => r,
            Err(e) => return store_failed(&e, table_name, err),
        };
        let now = output::millis(ctx.now);
        let r = match global.output {
            Format::Json => write_json(out, &document(&report, now)),
            Format::Table => table(&report, now, ctx.color, out),
        };
        return written(r, err);
    }
    // Watching: the clock moves on from the context's start; a failed read is reported and
    // tried again at the next refresh (a watch outlives a throttled call).
    let started = std::time::Instant::now();
    let mut n = 0u64;
    loop {
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now = output::millis(ctx.now).plus_ms(elapsed);
        match gather(&s, &asgs).await {
            Ok(report) => {
                let r = match global.output {
                    Format::Json => writeln!(out, "{}", document(&report, now)),
                    Format::Table => {
                        let clear = if ctx.color { "\x1b[2J\x1b[H" } else { "" };
                        write!(
                            out,
                            "{clear}{} (every {} s)\n\n",
                            output::at(now),
                            args.interval
                        )
                        .and_then(|()| table(&report, now, ctx.color, out))
                        .and_then(|()| if ctx.color { Ok(()) } else { writeln!(out) })
                    }
                };
                if let e @ (Exit::Failure | Exit::Usage) =
                    written(r.and_then(|()| out.flush()), err)
                {
                    return e;
                }
            }
            Err(e) => {
                let _ = writeln!(err, "warning: reading {table_name}: {e}; trying again");
            }
        }
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            return Exit::Ok;
        }
        tokio::time::sleep(std::time::Duration::from_secs(args.interval)).await;
    }
}

fn opt_at(m: Option<Millis>) -> Value {
    m.map_or(Value::Null, |m| Value::String(at(m)))
}

/// The `turnstile.status/v1` document.
pub fn document(r: &Report, now: Millis) -> Value {
    let instances: Vec<Value> = r
        .instances
        .iter()
        .map(|i| {
            json!({
                "asg": i.asg,
                "instance": i.instance,
                "step": i.activity.step.map(|s| s + 1),
                "steps": i.steps,
                "application": i.group.as_ref().map(|g| g.application.clone()),
                "deploymentGroup": i.group.as_ref().map(|g| g.deployment_group.clone()),
                "phase": i.activity.word,
                "detail": i.activity.detail,
                "deployment": i.activity.deployment,
                "startedAt": at(i.started_at),
                "inPipelineSecs": now.since(i.started_at) / 1000,
                "globalDeadline": at(i.global_deadline),
                "deadlineLeftSecs": i.global_deadline.since(now) / 1000,
                "lastHeartbeat": at(i.last_heartbeat),
                "heldReason": (i.activity.word == "held").then(|| i.activity.detail.clone()),
            })
        })
        .collect();
    let groups: Vec<Value> = r
        .groups
        .iter()
        .map(|g| {
            json!({
                "application": g.key.application,
                "deploymentGroup": g.key.deployment_group,
                "recorded": g.recorded,
                "active": g.active.as_ref().map(|(kind, d, since, members)| json!({
                    "kind": kind,
                    "deployment": d,
                    "since": at(*since),
                    "members": members,
                })),
                "waiting": g.waiting,
                "settling": g.settling,
                "breaker": {
                    "state": if g.breaker_tripped_since.is_some() { "tripped" } else { "closed" },
                    "trippedSince": opt_at(g.breaker_tripped_since),
                    "recentAbandons": g.breaker_failures,
                },
                "paused": g.paused.as_ref().map(|p| json!({
                    "by": p.actor,
                    "since": at(p.at),
                    "reason": p.reason,
                })),
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "generatedAt": at(now),
        "asgs": r.asgs,
        "instances": instances,
        "groups": groups,
        "gone": r.gone,
    })
}

fn phase_style(word: &str) -> Style {
    match word {
        "held" | "failed" => Style::Red,
        "backoff" | "draining" | "overflow" => Style::Yellow,
        "deploying" | "deployed" | "verifying" | "completing" => Style::Green,
        _ => Style::Plain,
    }
}

fn table(r: &Report, now: Millis, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if r.instances.is_empty() {
        writeln!(out, "no pipelines in flight in {}", r.asgs.join(", "))?;
    } else {
        let mut t = Table::new(&[
            "ASG",
            "INSTANCE",
            "STEP",
            "GROUP",
            "PHASE",
            "DEPLOYMENT",
            "IN PIPELINE",
            "DEADLINE IN",
            "HEARTBEAT",
            "NOTE",
        ]);
        for i in &r.instances {
            let left = i.global_deadline.since(now) / 1000;
            t.row(vec![
                i.asg.clone().into(),
                i.instance.clone().into(),
                describe::step_of(i.activity.step, i.steps).into(),
                i.group
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string)
                    .into(),
                Cell::styled(i.activity.word, phase_style(i.activity.word)),
                i.activity.deployment.clone().unwrap_or("-".into()).into(),
                dur(now.since(i.started_at) / 1000).into(),
                Cell::styled(
                    dur(left),
                    if left < 600 { Style::Red } else { Style::Plain },
                ),
                relative(i.last_heartbeat, now).into(),
                i.activity.detail.clone().into(),
            ]);
        }
        t.write(out, color)?;
    }
    if !r.groups.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(&["GROUP", "ACTIVE", "WAITING", "SETTLING", "BREAKER"]);
        for g in &r.groups {
            let active = match &g.active {
                None if !g.recorded => "no record (idle)".to_owned(),
                None => "-".to_owned(),
                Some((kind, d, since, members)) => {
                    let d = d.as_deref().unwrap_or("(being created)");
                    let who = if *kind == "foreign" {
                        String::new()
                    } else {
                        format!(", {members} member{}", if *members == 1 { "" } else { "s" })
                    };
                    format!("{kind} {d} ({}{who})", relative(*since, now))
                }
            };
            let active = match &g.paused {
                Some(p) => format!(
                    "PAUSED by {} {} ({}); {active}",
                    p.actor,
                    relative(p.at, now),
                    p.reason
                ),
                None => active,
            };
            let breaker = match g.breaker_tripped_since {
                Some(t) => Cell::styled(format!("TRIPPED {}", relative(t, now)), Style::Red),
                None if g.breaker_failures > 0 => {
                    format!("closed ({} recent abandons)", g.breaker_failures).into()
                }
                None => "closed".into(),
            };
            t.row(vec![
                g.key.to_string().into(),
                active.into(),
                g.waiting.to_string().into(),
                g.settling.to_string().into(),
                breaker,
            ]);
        }
        t.write(out, color)?;
    }
    if !r.gone.is_empty() {
        writeln!(
            out,
            "\nlisted in flight but finished or without a record (the index lags): {}",
            r.gone.join(", ")
        )?;
    }
    Ok(())
}
