//! The recent event ids a record remembers, for duplicate detection.

use serde::{Deserialize, Serialize};

use crate::ids::EventId;

/// Recently handled event ids of one record, oldest first, bounded by a capacity the engine
/// passes in. Stored as a plain list (`#[serde(transparent)]`), as records always were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seen(Vec<EventId>);

impl Seen {
    /// Whether `event` is among the recent ids; remembers it if not.
    pub fn seen_before(&mut self, event: &EventId, cap: usize) -> bool {
        if self.0.contains(event) {
            return true;
        }
        self.remember(event, cap);
        false
    }

    /// Remembers `event`, forgetting the oldest ids beyond `cap`.
    pub fn remember(&mut self, event: &EventId, cap: usize) {
        self.0.push(event.clone());
        if self.0.len() > cap {
            let excess = self.0.len() - cap;
            self.0.drain(..excess);
        }
    }

    pub fn contains(&self, event: &EventId) -> bool {
        self.0.contains(event)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<EventId> for Seen {
    fn from_iter<T: IntoIterator<Item = EventId>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> EventId {
        EventId::from(format!("e-{n}").as_str())
    }

    #[test]
    fn seen_reports_a_repeated_event_and_remembers_a_new_one() {
        let mut seen = Seen::default();
        assert!(!seen.seen_before(&id(1), 4));
        assert!(seen.seen_before(&id(1), 4));
        assert!(!seen.seen_before(&id(2), 4));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn seen_forgets_the_oldest_beyond_its_cap() {
        let mut seen: Seen = (1..=3).map(id).collect();
        seen.remember(&id(4), 3);
        assert!(!seen.contains(&id(1)), "the oldest id is forgotten");
        assert!(seen.contains(&id(2)) && seen.contains(&id(4)));
        assert_eq!(seen.len(), 3);
        // A forgotten id counts as new again.
        assert!(!seen.seen_before(&id(1), 3));
    }

    #[test]
    fn seen_is_stored_as_a_plain_list() {
        let seen: Seen = [id(1), id(2)].into_iter().collect();
        let json = serde_json::to_string(&seen).unwrap_or_default();
        assert_eq!(json, r#"["e-1","e-2"]"#);
        let back: Seen = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, seen);
    }
}
