//! Fast redelivery (docs/design.md "Fast redelivery"): how soon a record the queue function
//! reported as failed comes back.
//!
//! Left alone, a failed record comes back after the queue's visibility timeout (360 s in the
//! template), and a launch that failed before its first write has no pipeline, so nobody
//! heartbeats its lifecycle action meanwhile: one throttled read loses an instance on any hook
//! whose heartbeat timeout is shorter. So the handler sets each failed record's visibility
//! itself (`ChangeMessageVisibility`, aws-behaviour §5.5 ChangeMessageVisibility):
//!
//! - a **transient** failure (`Disposition::Retry`) comes back after [`Backoff::delay_secs`]
//!   of its receive count: 5, 10, 20, 40, then 60 s, each jittered down to as little as half;
//!   all five receives the queue allows fall within 75 s, inside the shortest heartbeat
//!   timeout the docs recommend (120 s);
//! - a **poison** message (`Disposition::Poison`: it cannot be parsed, no retry can help)
//!   is made visible at once, so its receives are used up in seconds and it reaches the
//!   dead-letter queue, and its alarm, right away instead of after 5 × 360 s;
//! - a **permanent** failure (`Disposition::Failed`: a missing permission, a deleted
//!   deployment group) is left to the visibility timeout: what causes it is a configuration an
//!   operator can fix, and the normal pace gives them about 30 minutes before the message is
//!   dead-lettered, while fast retries could not succeed any sooner.
//!
//! Jitter comes from a hash of a seed, the message id and the receive count: deterministic (the
//! tests and the simulations replay exactly) and different for every message, so records that
//! failed together in one outage do not all come back in the same second.

use std::collections::HashMap;

use crate::handler::Disposition;
use crate::ports::Visibility;

/// The SQS message attribute that counts the receives of a message (1 on the first).
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "ApproximateReceiveCount";

/// Exponential back-off with jitter, by receive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first receive failed, before jitter.
    pub first_secs: u32,
    /// No delay is longer than this, before jitter.
    pub cap_secs: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first_secs: 5,
            cap_secs: 60,
        }
    }
}

impl Backoff {
    /// The visibility timeout, in seconds, for a record that failed on its `receive_count`-th
    /// receive (`ApproximateReceiveCount`; 0 is read as 1). Before jitter the delay doubles
    /// with every receive, from `first_secs` up to `cap_secs`; `jitter` (0 to 1, clamped)
    /// takes it anywhere from half of that to all of it ("equal jitter": spread, but never
    /// close to zero, which would burn a receive at once). Rounded up to whole seconds, at
    /// least 1.
    pub fn delay_secs(&self, receive_count: u32, jitter: f64) -> u32 {
        let doublings = receive_count.saturating_sub(1).min(31);
        let full_ms = u64::from(self.first_secs)
            .saturating_mul(1 << doublings)
            .min(u64::from(self.cap_secs))
            .saturating_mul(1000);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let half = full_ms / 2;
        // Both factors are at most `cap_secs` × 1000, far inside f64's exact integers.
        let extra = ((full_ms - half) as f64 * jitter).round() as u64;
        u32::try_from((half + extra).div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// A jitter fraction in `[0, 1]` for one receive of one message, from `seed`: FNV-1a over the
/// message id and the receive count, then SplitMix64's finaliser to spread the bits.
pub fn jitter(seed: u64, message_id: &str, receive_count: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in message_id.bytes().chain(receive_count.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // 53 bits: every value is exact in f64.
    (h >> 11) as f64 / ((1u64 << 53) - 1) as f64
}

/// The receive count SQS reported for a record; 1 when the attribute is missing or unreadable
/// (the shortest delay: a record is never held back longer for lack of a count).
pub fn receive_count(attributes: &HashMap<String, String>) -> u32 {
    attributes
        .get(RECEIVE_COUNT_ATTRIBUTE)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1)
}

/// How the queue handler sets failed records' visibility: the port, the curve and the seed.
pub struct Redelivery<V> {
    pub port: V,
    pub backoff: Backoff,
    pub seed: u64,
}

/// One failed record whose visibility the handler changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sooner {
    pub message_id: String,
    pub receipt_handle: String,
    pub secs: u32,
}

impl<V: Visibility> Redelivery<V> {
    /// The default curve; the seed only matters to tests (message ids already differ).
    pub fn new(port: V) -> Self {
        Self {
            port,
            backoff: Backoff::default(),
            seed: 0,
        }
    }

    /// When a record that ended as `disposition` on its `receive_count`-th receive should be
    /// visible again, in seconds from now; `None`: leave it to the queue's visibility timeout.
    pub fn delay_secs(
        &self,
        disposition: &Disposition,
        message_id: &str,
        receive_count: u32,
    ) -> Option<u32> {
        match disposition {
            Disposition::Retry(_) => Some(
                self.backoff
                    .delay_secs(receive_count, jitter(self.seed, message_id, receive_count)),
            ),
            Disposition::Poison(_) => Some(0),
            Disposition::Failed(_)
            | Disposition::Processed
            | Disposition::Duplicate
            | Disposition::Ignored(_) => None,
        }
    }

    /// Sets each record's visibility. A call that fails is logged and otherwise ignored: that
    /// record then comes back after the queue's visibility timeout, and the batch's result
    /// stands.
    pub async fn apply(&self, records: &[Sooner]) {
        for r in records {
            match self.port.visible_in(&r.receipt_handle, r.secs).await {
                Ok(()) => tracing::info!(
                    message_id = r.message_id,
                    visible_in_secs = r.secs,
                    "failed record made visible again sooner"
                ),
                Err(e) => tracing::warn!(
                    message_id = r.message_id,
                    error = %e,
                    "could not change the failed record's visibility; it comes back after the queue's visibility timeout"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The curve, receive by receive: (receive count, jitter) → seconds.
    #[test]
    fn redelivery_backoff_doubles_per_receive_with_equal_jitter_up_to_the_cap() {
        let b = Backoff::default();
        let table: &[(u32, f64, u32)] = &[
            // The first failed receive: 2.5 s (rounded up to 3) to 5 s.
            (1, 0.0, 3),
            (1, 0.5, 4),
            (1, 1.0, 5),
            (2, 0.0, 5),
            (2, 1.0, 10),
            (3, 0.0, 10),
            (3, 0.5, 15),
            (3, 1.0, 20),
            (4, 0.0, 20),
            (4, 1.0, 40),
            // From the fifth receive on, the cap.
            (5, 0.0, 30),
            (5, 1.0, 60),
            (6, 1.0, 60),
            (1000, 1.0, 60),
            (u32::MAX, 0.0, 30),
            // A missing count reads as 1; out-of-range jitter is clamped.
            (0, 1.0, 5),
            (1, -3.0, 3),
            (1, 7.0, 5),
            (1, f64::NAN, 3),
        ];
        for &(count, j, want) in table {
            assert_eq!(b.delay_secs(count, j), want, "receive {count}, jitter {j}");
        }
    }

    /// What the docs promise: the receives the queue allows (5) all fall within 75 s of the
    /// first, inside the shortest recommended heartbeat timeout (120 s), and a message that
    /// keeps failing is dead-lettered 67.5 to 135 s after its first receive.
    #[test]
    fn redelivery_all_five_receives_fit_in_the_shortest_recommended_heartbeat_timeout() {
        let b = Backoff::default();
        let upto = |n: u32, j: f64| -> u32 { (1..=n).map(|c| b.delay_secs(c, j)).sum() };
        assert_eq!(upto(4, 1.0), 75, "the fifth receive, at the latest");
        assert!(upto(4, 1.0) < 120);
        assert_eq!(upto(5, 1.0), 135, "dead-lettered, at the latest");
        assert_eq!(
            upto(5, 0.0),
            68,
            "dead-lettered, at the earliest (3+5+10+20+30)"
        );
    }

    #[test]
    fn redelivery_jitter_is_seeded_spread_and_within_bounds() {
        let a = jitter(1, "m-1", 1);
        assert!(
            (a - jitter(1, "m-1", 1)).abs() < f64::EPSILON,
            "deterministic"
        );
        let draws: Vec<f64> = (0..1000).map(|i| jitter(7, &format!("m-{i}"), 1)).collect();
        assert!(draws.iter().all(|j| (0.0..=1.0).contains(j)));
        let low = draws.iter().filter(|j| **j < 0.5).count();
        assert!((400..600).contains(&low), "spread: {low} of 1000 below 0.5");
        assert!(
            (jitter(7, "m-1", 1) - jitter(7, "m-1", 2)).abs() > f64::EPSILON,
            "a new receive draws anew"
        );
        assert!(
            (jitter(7, "m-1", 1) - jitter(8, "m-1", 1)).abs() > f64::EPSILON,
            "the seed matters"
        );
    }

    #[test]
    fn redelivery_reads_the_receive_count_attribute() {
        let attrs = |v: &str| HashMap::from([(RECEIVE_COUNT_ATTRIBUTE.to_owned(), v.to_owned())]);
        assert_eq!(receive_count(&attrs("3")), 3);
        assert_eq!(receive_count(&attrs("x")), 1);
        assert_eq!(receive_count(&HashMap::new()), 1);
    }
}
