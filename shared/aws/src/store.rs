//! Durable state: one DynamoDB table holding instance pipelines, deployment-group records,
//! processed event ids, and a deployment → group index.
//!
//! Every state change is one `TransactWriteItems` in which each record is conditional on the
//! version it was read at (optimistic concurrency): two concurrent invocations never both win.
//!
//! Key design (no scans anywhere):
//!
//! | item | `pk` | `sk` | extra attributes |
//! |---|---|---|---|
//! | instance pipeline | `I#<instance-id>` | `I` | `asg_inflight` while in flight (GSI `inflight`), `overflow_group` + `overflow_since` while it waits outside a full group list (GSI `overflow`), `ready_shard` + `ready_key` + `ready_value` while it waits for its readiness tag (GSI `ready`), `ttl` once finished |
//! | deployment group | `G#<application>#<group>` | `G` | |
//! | processed event | `E#<event-id>` | `E` | `ttl` |
//! | deployment index | `D#<deployment-id>` | `D` | `app`, `dg`, `ttl` |
//!
//! Records carry `due_shard` + `wake` (GSI `due`) while they need the timer, so the timer path
//! queries what is due instead of scanning.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use turnstile_core::{
    DeploymentId, EventId, Gate, Group, GroupKey, Instance, InstanceId, Key, Millis, World,
};

pub mod dynamo;
pub mod memory;

/// Shards of the `due` index partition key, to spread the timer's reads and writes.
pub const DUE_SHARDS: u32 = 4;
/// Finished pipelines stay this long for operators, then TTL removes them.
pub const FINISHED_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// Processed event ids are remembered this long (longer than any redelivery).
pub const EVENT_RETENTION_SECS: u64 = 2 * 24 * 3600;
/// Deployment → group index entries are kept 30 days: far longer than a launch deployment runs
/// or an event about it can arrive late, so no lookup outlives its entry, while the index still
/// empties itself rather than growing with every deployment ever created.
pub const DEPLOYMENT_INDEX_RETENTION_SECS: u64 = 30 * 24 * 3600;

/// A record the core reads and writes, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Record {
    Instance(Instance),
    Group(Group),
}

/// What `load` returns: the records and the versions they were read at (0 = absent).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub world: World,
    pub versions: BTreeMap<Key, u64>,
}

impl Loaded {
    pub fn version(&self, key: &Key) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }

    /// Adds freshly loaded records (for a second round of `Missing` keys).
    pub fn merge(&mut self, other: Loaded) {
        self.world.instances.extend(other.world.instances);
        self.world.groups.extend(other.world.groups);
        self.versions.extend(other.versions);
    }
}

/// One atomic state change.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// `(key, new record or None to delete, version it was read at)`.
    pub writes: Vec<(Key, Option<Record>, u64)>,
    /// Recorded as processed in the same transaction; a second commit with it fails.
    pub event: Option<EventId>,
    /// Deployments created, for the deployment → group index.
    pub deployments: Vec<(DeploymentId, GroupKey)>,
    pub now: Millis,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.event.is_none() && self.deployments.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record changed since it was read: re-read and decide again.
    #[error("conflict: a record changed since it was read")]
    Conflict,
    /// The event was already processed.
    #[error("event {0} was already processed")]
    Duplicate(EventId),
    /// A stored item could not be decoded (a bug or a foreign writer).
    #[error("stored item {key} is not readable: {reason}")]
    Corrupt { key: String, reason: String },
    /// A record would exceed DynamoDB's item size limit: every write of it would fail, so the
    /// runner raises an alert naming it. Retrying cannot help.
    #[error("record {key} would be {bytes} bytes, over DynamoDB's 400 KB item limit")]
    TooLarge { key: String, bytes: usize },
    /// Throttling, timeouts, service errors: retrying can help.
    #[error("{op}: {source}")]
    Transient {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Validation, permissions, a missing table: retrying cannot help.
    #[error("{op}: {source}")]
    Permanent {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict | StoreError::Transient { .. })
    }
}

/// The durable state the runner needs.
pub trait Store: Send + Sync {
    /// Strongly consistent read of the records (absent ones load as `None`).
    fn load(&self, keys: &[Key]) -> impl Future<Output = Result<Loaded, StoreError>> + Send;
    /// Applies the commit atomically, or fails with `Conflict` / `Duplicate` and changes nothing.
    fn commit(&self, commit: Commit) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records whose wake time is at or before `now`.
    fn due(
        &self,
        now: Millis,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Key>, StoreError>> + Send;
    /// Instances of an Auto Scaling group whose pipeline is still in flight. Its readers come
    /// with the operator command line (`turnstile status` lists them) and with the adoption of
    /// lost launches (an instance in `Pending:Wait` that is not in this list has no pipeline);
    /// until then only the store tests read it, and the index is kept so those steps need no
    /// migration.
    fn in_flight(
        &self,
        asg: &str,
    ) -> impl Future<Output = Result<Vec<InstanceId>, StoreError>> + Send;
    /// The instances that wait outside `group`'s full list ([`turnstile_core::StepWait::Overflow`]),
    /// longest waiting first, at most `limit` (the `overflow` index).
    fn overflowed(
        &self,
        group: &GroupKey,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<InstanceId>, StoreError>> + Send;
    /// Instances waiting for their readiness tag ([`turnstile_core::Phase::Readying`]), each
    /// with the tag it waits for, at most `limit` (the `ready` index): the timer sweep reads
    /// their tags in one call.
    fn awaiting_ready(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(InstanceId, Gate)>, StoreError>> + Send;
    /// The group a deployment belongs to (deployment → group index). Read by the operator
    /// command line to resolve a deployment id an alert names; until then only by the tests.
    fn deployment_group(
        &self,
        deployment: &DeploymentId,
    ) -> impl Future<Output = Result<Option<GroupKey>, StoreError>> + Send;
}

/// The `overflow` index entry of a record: the partition key of the group whose full list it
/// waits outside of, and since when.
pub fn overflow_of(record: &Record) -> Option<(String, Millis)> {
    match record {
        Record::Instance(i) => i
            .overflowed_on()
            .map(|(g, since)| (pk(&Key::Group(g.clone())), since)),
        Record::Group(_) => None,
    }
}

/// The `ready` index entry of a record: the tag an instance waiting for readiness waits for.
pub fn ready_of(record: &Record) -> Option<&Gate> {
    match record {
        Record::Instance(i) => i.awaiting_ready(),
        Record::Group(_) => None,
    }
}

/// The `ready` index partition of a record's partition key (`R0` … `R3`), spread like the
/// `due` index's shards.
pub fn ready_shard(pk: &str) -> String {
    format!("R{}", shard_of(pk))
}

/// Partition key of a record.
pub fn pk(key: &Key) -> String {
    match key {
        Key::Instance(i) => format!("I#{i}"),
        Key::Group(g) => format!("G#{}#{}", g.application, g.deployment_group),
    }
}

/// Parses a record partition key back into a key.
pub fn key_of(pk: &str) -> Option<Key> {
    if let Some(i) = pk.strip_prefix("I#") {
        return Some(Key::Instance(InstanceId(i.to_owned())));
    }
    let rest = pk.strip_prefix("G#")?;
    let (app, dg) = rest.split_once('#')?;
    Some(Key::Group(GroupKey::new(app, dg)))
}

/// The `due` shard of a partition key (stable across processes).
pub fn shard_of(pk: &str) -> u32 {
    // FNV-1a: small, stable, good enough to spread keys.
    let mut h: u32 = 0x811c_9dc5;
    for b in pk.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % DUE_SHARDS
}

/// When a record needs the timer, if ever.
pub fn wake_of(record: &Record) -> Option<Millis> {
    match record {
        Record::Instance(i) => i.wake_at,
        Record::Group(g) => g.wake_at,
    }
}

/// TTL (epoch seconds) for a finished pipeline.
pub fn ttl_of(record: &Record) -> Option<u64> {
    match record {
        Record::Instance(i) => match i.phase {
            turnstile_core::Phase::Finished { at, .. } => {
                Some(at.0 / 1000 + FINISHED_RETENTION_SECS)
            }
            _ => None,
        },
        Record::Group(_) => None,
    }
}

/// The Auto Scaling group whose in-flight index lists the record.
pub fn in_flight_asg(record: &Record) -> Option<&str> {
    match record {
        Record::Instance(i) if !i.phase.is_finished() => Some(&i.action.asg),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_partition_keys() {
        for k in [
            Key::Instance("i-0abc".into()),
            Key::Group(GroupKey::new("app", "dg#with#hashes")),
        ] {
            assert_eq!(key_of(&pk(&k)), Some(k));
        }
        assert_eq!(key_of("E#x"), None);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("I#i-1"), shard_of("I#i-1"));
        let used: std::collections::BTreeSet<u32> =
            (0..100).map(|i| shard_of(&format!("I#i-{i}"))).collect();
        assert_eq!(used.len() as u32, DUE_SHARDS);
    }
}
