//! `make bench`: bursts of instances into a fleet shared by six deployment groups, run side by
//! side under the same simulated world for four ways of deploying them:
//!
//! - **turnstile**: the real runner (core, handlers' logic, ports) over the model, with an
//!   in-memory store and SQS-like delivery in batches of ten ([`crate::direct::driver`]);
//! - **turnstile, serial**: the same with `maxBatch = 1` (per-instance deployments, no batching);
//! - **native hooks**: CodeDeploy's built-in per-group launch hooks;
//! - **user data**: one hook, and a script creating one deployment per application with fixed
//!   sleeps ([`crate::userdata`]).
//!
//! Deployment durations per instance are uniform in [`DURATION_SECS`]; nothing fails, so every
//! difference comes from how deployments are scheduled.

use std::fmt::Write;
use std::time::Instant;

use turnstile_model::Ms;
use turnstile_sim::Script;

use crate::direct::Quiet;
use crate::direct::driver::{Driver, Faults};
use crate::record::{Activity, RunRecord};
use crate::report::Summary;
use crate::scenario::{Mode, Scenario};

pub const GROUPS: usize = 6;
pub const DURATION_SECS: [u64; 2] = [60, 180];
pub const BURSTS: [usize; 4] = [1, 10, 100, 1000];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    Turnstile,
    Serial,
    Native,
    UserData,
}

impl Contender {
    pub const ALL: [Contender; 4] = [
        Contender::Turnstile,
        Contender::Serial,
        Contender::Native,
        Contender::UserData,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Turnstile => "turnstile",
            Contender::Serial => "turnstile serial (maxBatch 1)",
            Contender::Native => "CodeDeploy native hooks",
            Contender::UserData => "user-data script",
        }
    }
}

/// One row of the results.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub contender: &'static str,
    pub instances: usize,
    pub makespan_s: f64,
    /// The physical floor of the makespan: the longest sum of one instance's own deployments.
    pub floor_s: f64,
    /// The makespan of ideal lockstep: the whole burst in one deployment per group, each as
    /// long as its slowest instance, with no overhead (the sum over groups of the longest own
    /// deployment). With one active deployment per group, splitting a burst that arrives at
    /// once only puts a second deployment behind the first in some group.
    pub lockstep_s: f64,
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    /// Of the instances asked for, the share that ended InService with every group deployed.
    pub complete_share: f64,
    pub abandoned: usize,
    pub relaunched: usize,
    pub overhead_p50_s: Option<f64>,
    pub overhead_p99_s: Option<f64>,
    pub invocations_per_instance: f64,
    pub messages_per_instance: f64,
    pub dynamodb_writes_per_instance: f64,
    pub aws_calls_per_instance: f64,
    pub core_us_per_decision: Option<f64>,
    pub violations: usize,
    pub wall_s: f64,
}

pub fn scenario(instances: usize, seed: u64, max_batch: Option<u32>) -> Scenario {
    let mut toml = format!(
        "name = \"bench-{instances}\"\nseed = {seed}\nhorizon_secs = 7200\n[fleet]\nauto_scaling_group = \"fleet\"\nheartbeat_timeout_secs = 600\nreplace_after_secs = 30\n[orchestrator]\n"
    );
    if let Some(n) = max_batch {
        let _ = writeln!(toml, "max_batch = {n}");
    }
    for i in 0..GROUPS {
        let _ = write!(
            toml,
            "[[groups]]\napplication = \"app{i}\"\ndeployment_group = \"dg{i}\"\nduration_secs = [{}, {}]\n",
            DURATION_SECS[0], DURATION_SECS[1]
        );
    }
    let _ = write!(toml, "[[events]]\nat_secs = 0\nlaunch = {instances}\n");
    // The text above is ours and valid; a failure here is a bug in this function.
    Scenario::parse("bench", &toml).unwrap_or_else(|e| unreachable!("bench scenario: {e}"))
}

fn secs(ms: Option<Ms>) -> Option<f64> {
    ms.map(|m| m as f64 / 1000.0)
}

/// Runs one contender on a burst of `instances`.
pub async fn run(contender: Contender, instances: usize, seed: u64) -> Row {
    run_with(contender, instances, seed, None).await
}

/// Like [`run`], with the plan's `maxBatch` for turnstile (the serial contender is always 1).
pub async fn run_with(
    contender: Contender,
    instances: usize,
    seed: u64,
    max_batch: Option<u32>,
) -> Row {
    let started = Instant::now();
    let serial = contender == Contender::Serial;
    let s = scenario(instances, seed, if serial { Some(1) } else { max_batch });
    let mut work = None;
    let mut core = None;
    let record = match contender {
        Contender::Native => crate::native::run(&s).await,
        Contender::UserData => crate::userdata::run(&s).await,
        Contender::Turnstile | Contender::Serial => {
            let mut d = Driver::new(
                s.cloud(Mode::Orchestrator),
                Quiet,
                Faults::default(),
                seed,
                s.steps(),
            );
            // The invariant checks read the whole state; check less often in big runs.
            d.check_every = if instances >= 1000 { 2000 } else { 20 };
            // Per-instance deployments of a big burst do not finish within the horizon; the
            // table reports how many did.
            d.check_end = !serial;
            d.schedule(0, Script::Launch(instances));
            d.run(s.horizon_ms()).await;
            let held = d.held();
            let ct = &d.runner.core_time;
            let decisions = ct.decisions.load(std::sync::atomic::Ordering::Relaxed);
            let nanos = ct.nanos.load(std::sync::atomic::Ordering::Relaxed);
            core = (decisions > 0).then(|| nanos as f64 / decisions as f64 / 1000.0);
            work = Some((
                d.work,
                d.store_counts
                    .items
                    .load(std::sync::atomic::Ordering::Relaxed),
            ));
            let cloud = d.aws.lock().clone();
            RunRecord {
                mode: Mode::Orchestrator,
                cloud,
                activity: Activity::default(),
                violations: d.violations.clone(),
                checks: 0,
                held,
                collided: Default::default(),
                wall: started.elapsed(),
            }
        }
    };
    let summary = Summary::of(&record, &s);
    let n = instances as f64;
    let calls: u64 = record.cloud.calls.values().sum();
    let floor = crate::report::own_deployment_time(&record.cloud)
        .into_values()
        .max()
        .unwrap_or(0);
    let mut slowest: std::collections::BTreeMap<&turnstile_model::GroupKey, Ms> =
        std::collections::BTreeMap::new();
    for d in record.cloud.deployments.values() {
        for t in d.targets.values() {
            if let (Some(a), Some(b)) = (t.started_at, t.ended_at) {
                let m = slowest.entry(&d.group).or_default();
                *m = (*m).max(b - a);
            }
        }
    }
    let lockstep: Ms = slowest.values().sum();
    Row {
        contender: contender.name(),
        instances,
        makespan_s: summary.makespan_ms as f64 / 1000.0,
        floor_s: floor as f64 / 1000.0,
        lockstep_s: lockstep as f64 / 1000.0,
        p50_s: secs(summary.p50_ms),
        p99_s: secs(summary.p99_ms),
        complete_share: (summary.complete.min(instances) as f64 / n).min(1.0),
        abandoned: summary.abandoned,
        relaunched: summary.replacements,
        overhead_p50_s: secs(summary.overhead_p50_ms),
        overhead_p99_s: secs(summary.overhead_p99_ms),
        invocations_per_instance: work.map_or(0.0, |(w, _)| w.invocations as f64 / n),
        messages_per_instance: work.map_or(0.0, |(w, _)| w.messages as f64 / n),
        dynamodb_writes_per_instance: work.map_or(0.0, |(_, items)| items as f64 / n),
        aws_calls_per_instance: calls as f64 / n,
        core_us_per_decision: core,
        violations: record.violations.len(),
        wall_s: started.elapsed().as_secs_f64(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0}"))
}

pub const CSV_HEADER: &str = "contender,instances,makespan_s,floor_s,lockstep_s,ttis_p50_s,ttis_p99_s,complete_share,abandoned,relaunched,overhead_p50_s,overhead_p99_s,invocations_per_instance,messages_per_instance,dynamodb_writes_per_instance,aws_calls_per_instance,core_us_per_decision,violations,wall_s";

pub fn csv_line(r: &Row) -> String {
    let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.3}"));
    format!(
        "{},{},{:.1},{:.1},{:.1},{},{},{:.3},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{},{},{:.2}",
        r.contender,
        r.instances,
        r.makespan_s,
        r.floor_s,
        r.lockstep_s,
        o(r.p50_s),
        o(r.p99_s),
        r.complete_share,
        r.abandoned,
        r.relaunched,
        o(r.overhead_p50_s),
        o(r.overhead_p99_s),
        r.invocations_per_instance,
        r.messages_per_instance,
        r.dynamodb_writes_per_instance,
        r.aws_calls_per_instance,
        o(r.core_us_per_decision),
        r.violations,
        r.wall_s
    )
}

/// The results as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| instances | contender | makespan (floor, lockstep) | to InService p50 / p99 | complete | abandoned / relaunched | overhead p50 / p99 | per instance: invocations, messages, DynamoDB writes, AWS calls |\n|---:|---|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} s ({:.0}, {:.0} s) | {} / {} s | {:.0} % | {} / {} | {} / {} s | {:.1}, {:.1}, {:.1}, {:.1} |",
            r.instances,
            r.contender,
            r.makespan_s,
            r.floor_s,
            r.lockstep_s,
            opt(r.p50_s),
            opt(r.p99_s),
            r.complete_share * 100.0,
            r.abandoned,
            r.relaunched,
            opt(r.overhead_p50_s),
            opt(r.overhead_p99_s),
            r.invocations_per_instance,
            r.messages_per_instance,
            r.dynamodb_writes_per_instance,
            r.aws_calls_per_instance,
        );
    }
    out
}

/// Grouped bars: makespan per burst size, one bar per contender (the floor as a tick).
pub fn svg(rows: &[Row]) -> String {
    let colours = ["#2b8a3e", "#74b816", "#e03131", "#f08c00"];
    let (w, h, left, bottom, top) = (760.0, 360.0, 60.0, 60.0, 30.0);
    let max = rows.iter().map(|r| r.makespan_s).fold(1.0_f64, f64::max) / 60.0;
    let scale = (h - bottom - top) / max;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14">Makespan (minutes) by burst size, 6 deployment groups, {}-{} s per deployment</text>"#,
        DURATION_SECS[0], DURATION_SECS[1]
    );
    let group_w = (w - left - 20.0) / BURSTS.len() as f64;
    let bar_w = group_w / (Contender::ALL.len() as f64 + 1.0);
    for (g, n) in BURSTS.iter().enumerate() {
        let x0 = left + g as f64 * group_w;
        let _ = write!(
            out,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">{n} instance{}</text>"#,
            x0 + group_w / 2.0,
            h - bottom + 18.0,
            if *n == 1 { "" } else { "s" }
        );
        for (c, contender) in Contender::ALL.iter().enumerate() {
            let Some(r) = rows
                .iter()
                .find(|r| r.instances == *n && r.contender == contender.name())
            else {
                continue;
            };
            let bh = r.makespan_s / 60.0 * scale;
            let x = x0 + bar_w * (c as f64 + 0.5);
            let y = h - bottom - bh;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}: {:.0} s</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{:.0}</text>"#,
                bar_w * 0.9,
                colours.get(c).unwrap_or(&"gray"),
                contender.name(),
                r.makespan_s,
                x + bar_w * 0.45,
                y - 3.0,
                r.makespan_s / 60.0
            );
        }
    }
    let _ = write!(
        out,
        r#"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/>"#,
        h - bottom,
        w - 20.0
    );
    for (c, contender) in Contender::ALL.iter().enumerate() {
        let x = left + c as f64 * 170.0;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            h - 22.0,
            colours.get(c).unwrap_or(&"gray"),
            x + 14.0,
            h - 13.0,
            contender.name()
        );
    }
    out.push_str("</svg>\n");
    out
}

// ---- staggered scale-outs and slow boots ---------------------------------------------------

/// The staggered scale-out: this many instances per wave, a wave every this many seconds, this
/// many waves (3 every 2 minutes for 20 minutes).
pub const STAGGER: (usize, u64, usize) = (3, 120, 10);
/// Instances of the slow-boot fleet, and the range of their bootstrap.
pub const SLOW_BOOT_INSTANCES: usize = 20;
pub const SLOW_BOOT_SECS: [u64; 2] = [60, 240];

/// A row of the staggered and slow-boot tables: per-instance figures of one run.
#[derive(Debug, Clone, Default)]
pub struct FleetRow {
    pub label: String,
    pub instances: usize,
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    /// Per instance, the sum of its own deployments (its floor), p50 and p99.
    pub floor_p50_s: Option<f64>,
    pub floor_p99_s: Option<f64>,
    /// Per instance, its arrival wave's lockstep bound (the wave in one deployment per group,
    /// each as long as the wave's slowest own deployment in it), p50 and p99.
    pub wave_p50_s: Option<f64>,
    pub wave_p99_s: Option<f64>,
    pub complete_share: f64,
    pub deployments: usize,
    /// Targets of any deployment that failed on an instance.
    pub failed_attempts: usize,
    pub abandoned: usize,
    pub violations: usize,
}

fn quantile(mut v: Vec<Ms>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v.get(i).map(|m| *m as f64 / 1000.0)
}

/// The fleet scenario: six groups as in the bursts, `extra` TOML for the fleet and plan, and
/// `waves` of `per_wave` instances every `every_secs`.
fn fleet_scenario(
    seed: u64,
    extra: &str,
    per_wave: usize,
    every_secs: u64,
    waves: usize,
) -> Scenario {
    let mut toml = format!(
        "name = \"bench-fleet\"\nseed = {seed}\nhorizon_secs = 7200\n[fleet]\nauto_scaling_group = \"fleet\"\nheartbeat_timeout_secs = 600\nreplace_after_secs = 30\n{extra}"
    );
    for i in 0..GROUPS {
        let _ = write!(
            toml,
            "[[groups]]\napplication = \"app{i}\"\ndeployment_group = \"dg{i}\"\nduration_secs = [{}, {}]\n",
            DURATION_SECS[0], DURATION_SECS[1]
        );
    }
    for w in 0..waves {
        let _ = write!(
            toml,
            "[[events]]\nat_secs = {}\nlaunch = {per_wave}\n",
            w as u64 * every_secs
        );
    }
    Scenario::parse("bench-fleet", &toml).unwrap_or_else(|e| unreachable!("bench scenario: {e}"))
}

/// Runs the real runner (or CodeDeploy's native hooks) over a fleet scenario.
async fn run_fleet(label: String, s: &Scenario, seed: u64, native: bool) -> FleetRow {
    let record = if native {
        crate::native::run(s).await
    } else {
        let mut d = Driver::new(
            s.cloud(Mode::Orchestrator),
            Quiet,
            Faults::default(),
            seed,
            s.steps(),
        );
        d.check_every = 20;
        for (at, action) in s.script() {
            if let crate::scenario::Action::Launch(n) = action {
                d.schedule(at, Script::Launch(n));
            }
        }
        d.run(s.horizon_ms()).await;
        let cloud = d.aws.lock().clone();
        RunRecord {
            mode: Mode::Orchestrator,
            cloud,
            activity: Activity::default(),
            violations: d.violations.clone(),
            checks: 0,
            held: d.held(),
            collided: Default::default(),
            wall: std::time::Duration::ZERO,
        }
    };
    let summary = Summary::of(&record, s);
    let cloud = &record.cloud;
    let own = crate::report::own_deployment_time(cloud);
    // Each instance's own successful deployment time per group, for the wave bounds.
    let mut per_group: std::collections::BTreeMap<(&str, &turnstile_model::GroupKey), Ms> =
        std::collections::BTreeMap::new();
    for d in cloud.deployments.values() {
        for (i, t) in &d.targets {
            if let (Some(a), Some(b), turnstile_model::TargetStatus::Succeeded) =
                (t.started_at, t.ended_at, t.status)
            {
                per_group.insert((i.as_str(), &d.group), b - a);
            }
        }
    }
    let launched = |at: Ms| {
        cloud
            .instances
            .values()
            .filter(move |i| i.launched_at == at)
    };
    let mut ttis = Vec::new();
    let mut floors = Vec::new();
    let mut waves = Vec::new();
    for i in cloud.instances.values() {
        let Some(in_service) = i.in_service_at else {
            continue;
        };
        ttis.push(in_service.saturating_sub(i.launched_at));
        floors.push(own.get(i.id.as_str()).copied().unwrap_or(0));
        let bound: Ms = cloud
            .groups
            .keys()
            .map(|g| {
                launched(i.launched_at)
                    .filter_map(|m| per_group.get(&(m.id.as_str(), g)).copied())
                    .max()
                    .unwrap_or(0)
            })
            .sum();
        waves.push(bound);
    }
    let failed_attempts = cloud
        .deployments
        .values()
        .flat_map(|d| d.targets.values())
        .filter(|t| t.status == turnstile_model::TargetStatus::Failed)
        .count();
    let asked: usize = s
        .script()
        .iter()
        .map(|(_, a)| match a {
            crate::scenario::Action::Launch(n) => *n,
            _ => 0,
        })
        .sum();
    FleetRow {
        label,
        instances: asked,
        p50_s: quantile(ttis.clone(), 0.5),
        p99_s: quantile(ttis, 0.99),
        floor_p50_s: quantile(floors.clone(), 0.5),
        floor_p99_s: quantile(floors, 0.99),
        wave_p50_s: quantile(waves.clone(), 0.5),
        wave_p99_s: quantile(waves, 0.99),
        complete_share: (summary.complete.min(asked) as f64 / asked.max(1) as f64).min(1.0),
        deployments: cloud.deployments.len(),
        failed_attempts,
        abandoned: summary.abandoned,
        violations: record.violations.len(),
    }
}

/// The staggered scale-out ([`STAGGER`]) for turnstile, turnstile without batching and
/// CodeDeploy's native hooks.
pub async fn staggered(seed: u64) -> Vec<FleetRow> {
    let (per_wave, every, waves) = STAGGER;
    let mut rows = Vec::new();
    for (label, extra, native) in [
        ("turnstile", "", false),
        (
            "turnstile serial (maxBatch 1)",
            "[orchestrator]\nmax_batch = 1\n",
            false,
        ),
        ("CodeDeploy native hooks", "", true),
    ] {
        let s = fleet_scenario(seed, extra, per_wave, every, waves);
        rows.push(run_fleet(label.into(), &s, seed, native).await);
    }
    rows
}

/// The slow-boot fleet ([`SLOW_BOOT_INSTANCES`] launched together, bootstrap in
/// [`SLOW_BOOT_SECS`]), with the agent started by the bootstrap and with the agent baked in
/// the AMI, each without and with `readiness`.
pub async fn slow_boot(seed: u64) -> Vec<FleetRow> {
    let [lo, hi] = SLOW_BOOT_SECS;
    let mut rows = Vec::new();
    for (agent, agent_label) in [
        ("after-bootstrap", "agent after bootstrap"),
        ("at-boot", "agent at boot (AMI)"),
    ] {
        for readiness in [false, true] {
            let mut extra = format!(
                "[fleet.bootstrap]\nsecs = [{lo}, {hi}]\nagent = \"{agent}\"\nready_tag = \"turnstile:ready\"\n"
            );
            if readiness {
                extra.push_str(
                    "[orchestrator]\nreadiness = { tag = \"turnstile:ready\", timeout_secs = 900 }\n",
                );
            }
            let s = fleet_scenario(seed, &extra, SLOW_BOOT_INSTANCES, 0, 1);
            let label = format!(
                "{agent_label}, {}",
                if readiness {
                    "with readiness"
                } else {
                    "without readiness"
                }
            );
            rows.push(run_fleet(label, &s, seed, false).await);
        }
    }
    rows
}

/// The staggered rows as a Markdown table.
pub fn staggered_table(rows: &[FleetRow]) -> String {
    let mut out = String::from(
        "| contender | instances | to InService p50 / p99 | floor p50 / p99 | wave lockstep p50 / p99 | complete | deployments |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} s | {} / {} s | {} / {} s | {:.0} % | {} |",
            r.label,
            r.instances,
            opt(r.p50_s),
            opt(r.p99_s),
            opt(r.floor_p50_s),
            opt(r.floor_p99_s),
            opt(r.wave_p50_s),
            opt(r.wave_p99_s),
            r.complete_share * 100.0,
            r.deployments
        );
    }
    out
}

/// The slow-boot rows as a Markdown table.
pub fn slow_boot_table(rows: &[FleetRow]) -> String {
    let mut out = String::from(
        "| fleet | instances | failed attempts | deployments | to InService p50 / p99 | complete | abandoned |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} s | {:.0} % | {} |",
            r.label,
            r.instances,
            r.failed_attempts,
            r.deployments,
            opt(r.p50_s),
            opt(r.p99_s),
            r.complete_share * 100.0,
            r.abandoned
        );
    }
    out
}

/// The calls on the critical path between "step 1's target succeeded" and "step 2's deployment
/// created", on one instance: AWS calls and DynamoDB operations in the order the runner made
/// them (all sequential), with the timer messages between them marked.
pub async fn critical_path() -> Vec<&'static str> {
    let s = scenario(1, 1, None);
    let mut d = Driver::new(
        s.cloud(Mode::Orchestrator),
        Quiet,
        Faults::default(),
        1,
        s.steps(),
    );
    d.aws.1.record();
    d.schedule(0, Script::Launch(1));
    d.run(s.horizon_ms()).await;
    let log = d.aws.1.recorded();
    let Some(start) = log.iter().position(|op| *op == "<instance SUCCESS event>") else {
        return Vec::new();
    };
    log.iter()
        .skip(start + 1)
        .take_while(|op| **op != "CreateDeployment")
        .copied()
        .chain(std::iter::once("CreateDeployment"))
        .collect()
}

/// Sequential round trips in a critical path: markers (`<...>`) and calls made concurrently
/// with the one before (`‖ ...`) add none.
pub fn trips(path: &[&str]) -> usize {
    path.iter()
        .filter(|op| !op.starts_with('<') && !op.starts_with('‖'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn between_two_steps_four_round_trips_read_commit_open_create() {
        let path = critical_path().await;
        let commits = path.iter().filter(|op| **op == "DynamoDB write").count();
        assert_eq!(commits, 1, "{path:?}");
        assert!(
            !path
                .iter()
                .any(|op| *op == "DeleteTags" || op.starts_with("GetDeploymentGroup")),
            "the seal closed the gate while step 1 ran, so no close and no check: {path:?}"
        );
        assert!(
            path.iter().position(|op| *op == "DynamoDB write")
                < path.iter().position(|op| *op == "CreateTags"),
            "the admission is durable before the next gate opens: {path:?}"
        );
        assert!(
            path.iter().any(|op| op.starts_with("‖ GetDeploymentGroup")),
            "the next group's revision is read beside the commit: {path:?}"
        );
        assert_eq!(trips(&path), 4, "{path:?}");
    }
}
