//! What a run leaves behind, for the report and for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use turnstile_model::Cloud;

use crate::scenario::Mode;

/// What the functions did during a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    /// Invocations of the queue function (one per batch) and of the timer function.
    pub queue_invocations: u64,
    pub timer_invocations: u64,
    pub messages: u64,
    pub duplicates_injected: u64,
    pub events_dropped: u64,
    /// Failed messages left for redelivery; of those, the ones the queue function asked to
    /// see again sooner than the visibility timeout.
    pub redeliveries: u64,
    pub redelivered_sooner: u64,
    /// Of the redeliveries, those of launch events: each one an instance without a pipeline,
    /// whose lifecycle action nobody heartbeats until the event comes back.
    pub launch_retries: u64,
    /// Store reads failed by `faults.transient`.
    pub transient_failures: u64,
    pub dead_lettered: u64,
    /// What the dead-letter queue holds at the end of the run.
    pub dead_letter_bodies: Vec<String>,
    pub dispositions: BTreeMap<String, u64>,
    pub dynamodb_calls: u64,
    pub sqs_sends: u64,
    pub throttled: u64,
    /// Alerts the functions raised, and every embedded-metric line they wrote.
    pub alerts: u64,
    pub metric_lines: u64,
}

/// Everything a run left behind, for the report and for tests.
pub struct RunRecord {
    pub mode: Mode,
    pub cloud: Cloud,
    pub activity: Activity,
    pub violations: Vec<String>,
    pub checks: u64,
    /// Instances the orchestrator holds (on-failure `hold`), from its DynamoDB records.
    pub held: BTreeSet<String>,
    /// Instances that had two deployments in flight at once.
    pub collided: BTreeSet<String>,
    pub wall: Duration,
}
