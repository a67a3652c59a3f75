//! A terminal timeline (Gantt chart) of a run: one row per instance, one cell per time slice,
//! showing which plan step's deployment ran on the instance.

use std::collections::BTreeMap;
use std::fmt::Write;

use turnstile_model::{Cloud, Fact, Ms, TargetStatus};

const WIDTH: usize = 72;

/// One character per plan step (`1`…`9`, then letters); `x` a failed attempt; `.` waiting;
/// `#` in service; blank before launch and after termination.
pub fn render(cloud: &Cloud, steps: &[(String, String)]) -> String {
    let end = cloud.now.max(1);
    let slice = end.div_ceil(WIDTH as Ms).max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<19} |{}| 0 .. {:.0} s (one column = {:.1} s)",
        "instance",
        "-".repeat(WIDTH),
        end as f64 / 1000.0,
        slice as f64 / 1000.0
    );
    let glyph = |i: usize| -> char { char::from_digit((i + 1) as u32, 36).unwrap_or('?') };
    for inst in cloud.instances.values() {
        let mut row = vec![' '; WIDTH];
        let col = |t: Ms| ((t / slice) as usize).min(WIDTH - 1);
        let stop = inst.terminated_at.unwrap_or(end);
        for c in col(inst.launched_at)..=col(stop) {
            if let Some(cell) = row.get_mut(c) {
                *cell = '.';
            }
        }
        if let Some(t) = inst.in_service_at {
            for c in col(t)..=col(stop) {
                if let Some(cell) = row.get_mut(c) {
                    *cell = '#';
                }
            }
        }
        for d in cloud.deployments.values() {
            let Some(step) = steps.iter().position(|g| *g == d.group) else {
                continue;
            };
            let Some(t) = d.targets.get(&inst.id) else {
                continue;
            };
            let (Some(a), Some(b)) = (t.started_at, t.ended_at) else {
                continue;
            };
            let ch = if t.status == TargetStatus::Failed {
                'x'
            } else {
                glyph(step)
            };
            for c in col(a)..=col(b) {
                if let Some(cell) = row.get_mut(c) {
                    *cell = ch;
                }
            }
        }
        let _ = writeln!(
            out,
            "{:<19} |{}|",
            inst.id,
            row.into_iter().collect::<String>()
        );
    }
    let legend: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, (a, g))| format!("{}={a}/{g}", glyph(i)))
        .collect();
    let _ = writeln!(
        out,
        "legend: {}  x=failed attempt  .=waiting  #=in service",
        legend.join(" ")
    );
    out
}

/// Per-instance time from launch to InService, in ms, for instances that got there.
pub fn time_to_in_service(cloud: &Cloud) -> Vec<Ms> {
    let launched: BTreeMap<&String, Ms> = cloud
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Launched { instance, at } => Some((instance, *at)),
            _ => None,
        })
        .collect();
    let mut v: Vec<Ms> = cloud
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::InService { instance, at } => launched.get(instance).map(|l| at - l),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

/// The p-th percentile (0–100) of sorted values.
pub fn percentile(sorted: &[Ms], p: usize) -> Option<Ms> {
    if sorted.is_empty() {
        return None;
    }
    let idx = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted.get(idx.min(sorted.len() - 1)).copied()
}
