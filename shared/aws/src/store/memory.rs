//! An in-memory store with the same semantics as the DynamoDB one (versions, conditional
//! atomic commits, event dedupe, indexes). Used by the simulation and the crash tests;
//! the DynamoDB store's own tests run against DynamoDB Local.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use turnstile_core::{DeploymentId, EventId, Gate, GroupKey, InstanceId, Key, Millis};

use super::*;

#[derive(Debug, Default)]
struct State {
    records: BTreeMap<Key, (Record, u64)>,
    /// Processed event ids. Kept for the whole run: the DynamoDB store's TTL matters only over
    /// days.
    events: BTreeSet<EventId>,
    deployments: BTreeMap<DeploymentId, GroupKey>,
}

/// Cloning shares the state (like two Lambda invocations sharing one table).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test failure already; keep the data usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every record, for invariant checks and tooling in tests.
    pub fn snapshot(&self) -> World {
        let s = self.lock();
        let mut w = World::default();
        for (k, (r, _)) in &s.records {
            match (k, r) {
                (Key::Instance(i), Record::Instance(x)) => {
                    w.instances.insert(i.clone(), Some(x.clone()));
                }
                (Key::Group(g), Record::Group(x)) => {
                    w.groups.insert(g.clone(), Some(x.clone()));
                }
                _ => {}
            }
        }
        w
    }
}

impl Store for MemoryStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let s = self.lock();
        let mut out = Loaded::default();
        for k in keys {
            let found = s.records.get(k);
            out.versions.insert(k.clone(), found.map_or(0, |(_, v)| *v));
            match k {
                Key::Instance(i) => {
                    let rec = match found {
                        Some((Record::Instance(x), _)) => Some(x.clone()),
                        _ => None,
                    };
                    out.world.instances.insert(i.clone(), rec);
                }
                Key::Group(g) => {
                    let rec = match found {
                        Some((Record::Group(x), _)) => Some(x.clone()),
                        _ => None,
                    };
                    out.world.groups.insert(g.clone(), rec);
                }
            }
        }
        Ok(out)
    }

    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        let mut s = self.lock();
        for (k, _, v) in &c.writes {
            let current = s.records.get(k).map_or(0, |(_, v)| *v);
            if current != *v {
                return Err(StoreError::Conflict);
            }
        }
        if let Some(e) = &c.event
            && s.events.contains(e)
        {
            return Err(StoreError::Duplicate(e.clone()));
        }
        for (k, rec, v) in c.writes {
            match rec {
                Some(r) => {
                    s.records.insert(k, (r, v + 1));
                }
                None => {
                    s.records.remove(&k);
                }
            }
        }
        if let Some(e) = c.event {
            s.events.insert(e);
        }
        for (d, g) in c.deployments {
            s.deployments.insert(d, g);
        }
        Ok(())
    }

    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Key>, StoreError> {
        let s = self.lock();
        Ok(s.records
            .iter()
            .filter(|(_, (r, _))| wake_of(r).is_some_and(|w| w <= now))
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect())
    }

    async fn in_flight(&self, asg: &str) -> Result<Vec<InstanceId>, StoreError> {
        let s = self.lock();
        Ok(s.records
            .iter()
            .filter_map(|(k, (r, _))| match k {
                Key::Instance(i) if in_flight_asg(r) == Some(asg) => Some(i.clone()),
                _ => None,
            })
            .collect())
    }

    async fn overflowed(
        &self,
        group: &GroupKey,
        limit: usize,
    ) -> Result<Vec<InstanceId>, StoreError> {
        let g = pk(&Key::Group(group.clone()));
        let s = self.lock();
        let mut waiting: Vec<(Millis, InstanceId)> = s
            .records
            .iter()
            .filter_map(|(k, (r, _))| match (k, overflow_of(r)) {
                (Key::Instance(i), Some((og, since))) if og == g => Some((since, i.clone())),
                _ => None,
            })
            .collect();
        waiting.sort();
        Ok(waiting.into_iter().take(limit).map(|(_, i)| i).collect())
    }

    async fn awaiting_ready(&self, limit: usize) -> Result<Vec<(InstanceId, Gate)>, StoreError> {
        let s = self.lock();
        Ok(s.records
            .iter()
            .filter_map(|(k, (r, _))| match (k, ready_of(r)) {
                (Key::Instance(i), Some(tag)) => Some((i.clone(), tag.clone())),
                _ => None,
            })
            .take(limit)
            .collect())
    }

    async fn deployment_group(&self, d: &DeploymentId) -> Result<Option<GroupKey>, StoreError> {
        Ok(self.lock().deployments.get(d).cloned())
    }
}
