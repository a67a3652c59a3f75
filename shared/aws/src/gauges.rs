//! Gauges the timer publishes every sweep, so alarms stay true for as long as the condition
//! lasts: an alert line fires once, while a held instance stays held (and its alarm must not go
//! quiet) until an operator acts.
//!
//! Per managed Auto Scaling group (dimension `AutoScalingGroup`) and for the whole stack (no
//! dimension, what the stack's alarms watch): pipelines in flight, held, waiting on a paused
//! deployment group, the oldest pipeline's age, and the time left before the nearest global
//! deadline. Cost per sweep: one query of the `inflight` index per group and batch reads of the
//! records it lists (100 keys per call), plus one batch read of their plans' group records.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use turnstile_core::{Key, Millis, Phase, StepWait};

use crate::runner::{Observer, Ports, RunError, Runner};
use crate::store::Store;

/// One group's gauges (or the stack's, with `asg` `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    pub asg: Option<String>,
    pub in_flight: u64,
    pub held: u64,
    /// In flight and queued on a paused deployment group.
    pub paused: u64,
    /// Age of the oldest pipeline in flight (0 when none).
    pub oldest_ms: u64,
    /// Time left before the nearest global deadline of a pipeline in flight.
    pub deadline_left_ms: Option<u64>,
}

impl Gauges {
    fn add(&mut self, other: &Gauges) {
        self.in_flight += other.in_flight;
        self.held += other.held;
        self.paused += other.paused;
        self.oldest_ms = self.oldest_ms.max(other.oldest_ms);
        self.deadline_left_ms = match (self.deadline_left_ms, other.deadline_left_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Reads the gauges of `asgs`, and the stack's total last.
pub async fn read<P: Ports>(
    runner: &Runner<P>,
    asgs: &[String],
    now: Millis,
) -> Result<Vec<Gauges>, RunError> {
    let store = &runner.ports.store;
    let mut all = Vec::with_capacity(asgs.len() + 1);
    let mut total = Gauges::default();
    for asg in asgs {
        let ids = store.in_flight(asg).await?;
        let keys: Vec<Key> = ids.into_iter().map(Key::Instance).collect();
        let mut instances = Vec::new();
        for chunk in keys.chunks(100) {
            let loaded = store.load(chunk).await?;
            instances.extend(loaded.world.instances.into_values().flatten());
        }
        let groups: BTreeSet<Key> = instances
            .iter()
            .filter_map(|i| match &i.phase {
                Phase::Running { step, .. } => i.plan.steps.get(*step).map(|s| s.group.clone()),
                _ => None,
            })
            .map(Key::Group)
            .collect();
        let groups: Vec<Key> = groups.into_iter().collect();
        let mut paused = BTreeSet::new();
        for chunk in groups.chunks(100) {
            let loaded = store.load(chunk).await?;
            paused.extend(
                loaded
                    .world
                    .groups
                    .into_iter()
                    .filter_map(|(k, g)| g.filter(|g| g.paused.is_some()).map(|_| k)),
            );
        }
        let mut g = Gauges {
            asg: Some(asg.clone()),
            ..Gauges::default()
        };
        for i in instances.iter().filter(|i| !i.phase.is_finished()) {
            g.in_flight += 1;
            match &i.phase {
                Phase::Held { .. } => g.held += 1,
                Phase::Running {
                    step,
                    wait: StepWait::Queued { .. } | StepWait::Overflow { .. },
                } if i
                    .plan
                    .steps
                    .get(*step)
                    .is_some_and(|s| paused.contains(&s.group)) =>
                {
                    g.paused += 1
                }
                _ => {}
            }
            g.oldest_ms = g.oldest_ms.max(now.since(i.started_at));
            let left = i.global_deadline.since(now);
            g.deadline_left_ms = Some(g.deadline_left_ms.map_or(left, |l| l.min(left)));
        }
        total.add(&g);
        all.push(g);
    }
    all.push(total);
    Ok(all)
}

/// The EMF line of one group's (or the stack's) gauges.
pub fn line(g: &Gauges, now: Millis) -> String {
    let mut doc = Map::new();
    let dims: Vec<&str> = match &g.asg {
        Some(asg) => {
            doc.insert("AutoScalingGroup".into(), Value::from(asg.clone()));
            vec!["AutoScalingGroup"]
        }
        None => vec![],
    };
    let mut metrics = vec![
        ("InFlight", "Count", g.in_flight as f64),
        ("HeldNow", "Count", g.held as f64),
        ("WaitingOnPause", "Count", g.paused as f64),
        ("OldestPipelineAge", "Milliseconds", g.oldest_ms as f64),
    ];
    if let Some(left) = g.deadline_left_ms {
        metrics.push(("DeadlineLeft", "Milliseconds", left as f64));
    }
    crate::emf::lines_doc(doc, &metrics, &dims, now)
}

/// Reads and publishes the gauges; a failure is logged (the next sweep publishes again).
pub async fn publish<P: Ports>(runner: &Runner<P>, asgs: &[String], now: Millis) {
    if asgs.is_empty() {
        return;
    }
    match read(runner, asgs, now).await {
        Ok(all) => {
            for g in &all {
                runner.ports.observer.emit(line(g, now));
            }
        }
        Err(e) => tracing::warn!(error = %e, "gauges not published; the next sweep tries again"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stack_line_has_no_dimension_and_every_gauge() {
        let g = Gauges {
            asg: None,
            in_flight: 3,
            held: 2,
            paused: 1,
            oldest_ms: 60_000,
            deadline_left_ms: Some(1_000),
        };
        let v: Value = serde_json::from_str(&line(&g, Millis(5))).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Turnstile");
        assert_eq!(
            (
                v["InFlight"].as_f64(),
                v["HeldNow"].as_f64(),
                v["WaitingOnPause"].as_f64()
            ),
            (Some(3.0), Some(2.0), Some(1.0))
        );
        assert_eq!(v["DeadlineLeft"].as_f64(), Some(1_000.0));
    }

    #[test]
    fn a_group_line_carries_its_group_and_no_deadline_when_nothing_is_in_flight() {
        let g = Gauges {
            asg: Some("fleet".into()),
            ..Gauges::default()
        };
        let v: Value = serde_json::from_str(&line(&g, Millis(5))).unwrap();
        assert_eq!(v["AutoScalingGroup"], "fleet");
        assert_eq!(
            v["HeldNow"].as_f64(),
            Some(0.0),
            "zero, not missing: the alarm resolves"
        );
        assert!(v.get("DeadlineLeft").is_none());
    }
}
