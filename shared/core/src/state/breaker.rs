//! The repeated-failure breaker of a group: too many abandons caused by one group within a
//! window, and further failures hold their instances instead of feeding a relaunch loop.

use serde::{Deserialize, Serialize};

use crate::ids::Millis;
use crate::plan::BreakerPolicy;

/// The repeated-failure breaker of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// Times of recent abandons caused by this group.
    pub failures: Vec<Millis>,
    pub tripped_since: Option<Millis>,
}

/// What the breaker says about a pipeline that failed at its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbandonVerdict {
    /// Below the threshold: the abandon is counted and goes ahead.
    Abandon,
    /// Tripped: hold the instance instead.
    Hold {
        /// Whether this failure tripped it (so the alert is raised once).
        newly_tripped: bool,
        /// Abandons within the window when it tripped.
        recent: usize,
    },
}

impl Breaker {
    /// Counts an abandon at `now` against the policy, forgetting failures older than its
    /// window. Once tripped, the breaker stays tripped until an operator resets it.
    pub fn record_abandon(&mut self, policy: BreakerPolicy, now: Millis) -> AbandonVerdict {
        let window = policy.window_secs.saturating_mul(1000);
        self.failures.retain(|t| now.since(*t) < window);
        if self.tripped_since.is_some() || self.failures.len() as u32 >= policy.threshold {
            let newly_tripped = self.tripped_since.is_none();
            self.tripped_since.get_or_insert(now);
            return AbandonVerdict::Hold {
                newly_tripped,
                recent: self.failures.len(),
            };
        }
        self.failures.push(now);
        AbandonVerdict::Abandon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        threshold: 2,
        window_secs: 60,
    };

    #[test]
    fn breaker_trips_once_the_threshold_of_abandons_is_reached() {
        let mut b = Breaker::default();
        assert_eq!(b.record_abandon(POLICY, Millis(0)), AbandonVerdict::Abandon);
        assert_eq!(
            b.record_abandon(POLICY, Millis(1_000)),
            AbandonVerdict::Abandon
        );
        assert_eq!(
            b.record_abandon(POLICY, Millis(2_000)),
            AbandonVerdict::Hold {
                newly_tripped: true,
                recent: 2
            }
        );
        assert_eq!(b.tripped_since, Some(Millis(2_000)));
    }

    #[test]
    fn breaker_stays_tripped_and_alerts_only_when_it_trips() {
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record_abandon(POLICY, Millis(t));
        }
        // Long after the window: still tripped, and not newly.
        assert_eq!(
            b.record_abandon(POLICY, Millis(10_000_000)),
            AbandonVerdict::Hold {
                newly_tripped: false,
                recent: 0
            }
        );
        assert_eq!(b.tripped_since, Some(Millis(2)));
    }

    #[test]
    fn breaker_forgets_abandons_older_than_its_window() {
        let mut b = Breaker::default();
        b.record_abandon(POLICY, Millis(0));
        b.record_abandon(POLICY, Millis(1_000));
        // 60 s after the first one, it no longer counts; the second still does.
        assert_eq!(
            b.record_abandon(POLICY, Millis(60_000)),
            AbandonVerdict::Abandon
        );
        assert_eq!(b.failures, vec![Millis(1_000), Millis(60_000)]);
        assert_eq!(b.tripped_since, None);
    }
}
