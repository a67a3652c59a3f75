//! What a run shows: the per-instance timeline and a summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use turnstile_model::{Creator, Fact, HookResult, Ms};
use turnstile_sim::timeline::{percentile, render, time_to_in_service};

use crate::record::RunRecord;
use crate::scenario::{Mode, Scenario};

/// The figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub launched: usize,
    /// Launched by Auto Scaling to replace an abandoned instance.
    pub replacements: usize,
    pub in_service: usize,
    /// In service with every plan group deployed.
    pub complete: usize,
    pub abandoned: usize,
    pub held: usize,
    pub collided: usize,
    pub p50_ms: Option<Ms>,
    pub p99_ms: Option<Ms>,
    /// Median over in-service instances of time to InService minus the sum of that instance's
    /// own deployment durations.
    pub overhead_p50_ms: Option<Ms>,
    pub overhead_p99_ms: Option<Ms>,
    pub makespan_ms: Ms,
    pub deployments_ours: usize,
    pub deployments_other: usize,
    pub aws_calls: BTreeMap<String, u64>,
    /// Instances whose launch the timer sweep adopted (its event never arrived), and how long
    /// each waited from launch to the heartbeat that adopted it.
    pub adopted: usize,
    pub adoption_wait_p50_ms: Option<Ms>,
    pub adoption_wait_max_ms: Option<Ms>,
}

impl Summary {
    pub fn of(record: &RunRecord, scenario: &Scenario) -> Self {
        let cloud = &record.cloud;
        let steps = scenario.steps();
        let launched = cloud.instances.len();
        let initial: usize = scenario.events.iter().filter_map(|e| e.launch).sum();
        let abandoned = cloud
            .facts
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Fact::Completed {
                        result: HookResult::Abandon,
                        ..
                    } | Fact::TimedOut {
                        result: HookResult::Abandon,
                        transition: turnstile_model::Transition::Launching,
                        ..
                    }
                )
            })
            .count();
        let own = own_deployment_time(cloud);
        let mut in_service = 0;
        let mut complete = 0;
        let mut overheads = Vec::new();
        for i in cloud.instances.values() {
            let Some(at) = i.in_service_at.filter(|_| i.terminated_at.is_none()) else {
                continue;
            };
            in_service += 1;
            if steps.iter().all(|g| {
                cloud
                    .groups
                    .get(g)
                    .is_none_or(|x| x.target_revision.is_none())
                    || i.installed.contains_key(g)
            }) {
                complete += 1;
            }
            let own = own.get(i.id.as_str()).copied().unwrap_or(0);
            overheads.push((at - i.launched_at).saturating_sub(own));
        }
        overheads.sort_unstable();
        let tis = time_to_in_service(cloud);
        let makespan_ms = cloud
            .facts
            .iter()
            .filter_map(|f| match f {
                Fact::InService { at, .. } | Fact::Terminated { at, .. } => Some(*at),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let ours = |d: &&turnstile_model::Deployment| {
            turnstile_core::IntentId::from_description(&d.description).is_some()
        };
        let deployments_ours = cloud.deployments.values().filter(ours).count();
        let deployments_other = cloud
            .deployments
            .values()
            .filter(|d| {
                !ours(d) && (d.creator == Creator::Autoscaling || record.mode != Mode::Native)
            })
            .count();
        let waits = adoption_waits(cloud);
        Summary {
            adopted: waits.len(),
            adoption_wait_p50_ms: percentile(&waits, 50),
            adoption_wait_max_ms: waits.last().copied(),
            launched,
            replacements: launched.saturating_sub(initial),
            in_service,
            complete,
            abandoned,
            held: record.held.len(),
            collided: record.collided.len(),
            p50_ms: percentile(&tis, 50),
            p99_ms: percentile(&tis, 99),
            overhead_p50_ms: percentile(&overheads, 50),
            overhead_p99_ms: percentile(&overheads, 99),
            makespan_ms,
            deployments_ours,
            deployments_other,
            aws_calls: cloud
                .calls
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        }
    }
}

/// Per adopted instance, sorted: launch → the first heartbeat by instance id that found
/// turnstile's action pending (the sweep's adoption).
pub fn adoption_waits(cloud: &turnstile_model::Cloud) -> Vec<Ms> {
    let mut first: BTreeMap<&str, Ms> = BTreeMap::new();
    for c in &cloud.lifecycle_calls {
        let by_instance = c.token.is_none() && c.hook == crate::scenario::LAUNCH_HOOK;
        if let (true, true, Some(id)) = (by_instance, c.matched, c.instance.as_deref()) {
            first.entry(id).or_insert(c.at);
        }
    }
    let mut waits: Vec<Ms> = first
        .into_iter()
        .filter_map(|(id, at)| Some(at - cloud.instances.get(id)?.launched_at))
        .collect();
    waits.sort_unstable();
    waits
}

/// Per instance, the sum of its own deployments' durations (one pass over the deployments).
pub fn own_deployment_time(cloud: &turnstile_model::Cloud) -> BTreeMap<&str, Ms> {
    let mut own: BTreeMap<&str, Ms> = BTreeMap::new();
    for d in cloud.deployments.values() {
        for (i, t) in &d.targets {
            if let (Some(a), Some(b)) = (t.started_at, t.ended_at) {
                *own.entry(i.as_str()).or_default() += b - a;
            }
        }
    }
    own
}

fn secs(ms: Option<Ms>) -> String {
    ms.map_or("-".into(), |m| format!("{:.0} s", m as f64 / 1000.0))
}

/// The timeline and the summary of a run, as printed.
pub fn render_run(record: &RunRecord, scenario: &Scenario, summary: &Summary) -> String {
    let mut out = String::new();
    let title = match record.mode {
        Mode::Native => "CodeDeploy's built-in per-group launch hooks",
        Mode::Orchestrator => "turnstile (the real handlers on the local cloud)",
        Mode::UserData => "user-data script: one deployment per application, fixed sleeps",
    };
    let _ = writeln!(out, "== {}: {title}", scenario.name);
    out.push_str(&render(&record.cloud, &scenario.steps()));
    let s = summary;
    let _ = writeln!(
        out,
        "instances: {} launched ({} replacements), {} InService ({} with every group), {} abandoned, {} held",
        s.launched, s.replacements, s.in_service, s.complete, s.abandoned, s.held
    );
    let _ = writeln!(
        out,
        "time to InService: p50 {}, p99 {}; orchestration overhead p50 {}; makespan {}",
        secs(s.p50_ms),
        secs(s.p99_ms),
        secs(s.overhead_p50_ms),
        secs(Some(s.makespan_ms))
    );
    let _ = writeln!(
        out,
        "instances with two deployments in flight at once: {}",
        s.collided
    );
    match record.mode {
        Mode::Native | Mode::UserData => {
            let _ = writeln!(
                out,
                "deployments created by CodeDeploy's hooks or the script: {}",
                s.deployments_other
            );
        }
        Mode::Orchestrator => {
            let a = &record.activity;
            let _ = writeln!(
                out,
                "deployments: {} by turnstile, {} by users",
                s.deployments_ours, s.deployments_other
            );
            let total: u64 = s.aws_calls.values().sum();
            let calls: Vec<String> = s
                .aws_calls
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                out,
                "AWS calls to the simulator: {total} ({})",
                calls.join(", ")
            );
            let _ = writeln!(
                out,
                "functions: {} queue invocations ({} messages: {:?}), {} timer sweeps; {} DynamoDB calls; {} timer messages",
                a.queue_invocations,
                a.messages,
                a.dispositions,
                a.timer_invocations,
                a.dynamodb_calls,
                a.sqs_sends
            );
            if s.adopted > 0 {
                let _ = writeln!(
                    out,
                    "adopted by the timer sweep (launch event lost): {} instances; launch → adoption p50 {}, max {} (heartbeat timeout {} s)",
                    s.adopted,
                    secs(s.adoption_wait_p50_ms),
                    secs(s.adoption_wait_max_ms),
                    scenario.fleet.heartbeat_timeout_secs
                );
            }
            let _ = writeln!(
                out,
                "faults: {} events dropped, {} duplicates, {} calls throttled, {} transient store failures, {} redeliveries ({} sooner than the visibility timeout), {} dead-lettered",
                a.events_dropped,
                a.duplicates_injected,
                a.throttled,
                a.transient_failures,
                a.redeliveries,
                a.redelivered_sooner,
                a.dead_lettered
            );
        }
    }
    if record.mode == Mode::Orchestrator {
        if record.violations.is_empty() {
            let _ = writeln!(out, "invariants: {} checks, all held", record.checks);
        } else {
            let _ = writeln!(out, "invariants: {} VIOLATED:", record.violations.len());
            for v in &record.violations {
                let _ = writeln!(out, "  - {v}");
            }
        }
    }
    let _ = writeln!(out, "wall time: {:.1} s", record.wall.as_secs_f64());
    out
}
