//! The engine's tunables. A module of its own so that records (`state`) can compute their own
//! timers from it without importing the engine.

use crate::hooks::OwnedHooks;
use crate::ids::DeploymentId;

/// Tunables of the engine. The defaults are what the functions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Ask CodeDeploy directly when a deployment has been quiet this long.
    pub poll_interval_ms: u64,
    /// A creation intent older than this is presumed to belong to a crashed invocation.
    /// Must exceed the queue function's timeout.
    pub create_lease_ms: u64,
    /// Heartbeat after this many thousandths of the heartbeat timeout (must stay below 500).
    pub heartbeat_permille: u64,
    /// Re-send `CheckRevisions` / `CompleteLifecycleAction` when unanswered this long.
    pub resend_ms: u64,
    /// Re-send a command whose answer never came after this long, where sending it twice does
    /// no harm: a heartbeat (each only restarts the timeout), the probe of a CONTINUE (a
    /// heartbeat), the final check's close of every gate and its reads (an answer to an
    /// earlier check is ignored). What these wait for runs against a clock, the heartbeat
    /// timeout or gates open on an instance still pending, and each failed attempt spends a
    /// share of it, so an attempt must be cheap in time.
    pub retry_ms: u64,
    /// Back-off after a retryable `CreateDeployment` failure.
    pub create_retry_ms: u64,
    /// How many recent event ids a record remembers.
    pub seen_capacity: usize,
    /// A pipeline still working this close to the global timeout fails rather than let the
    /// hook's default result decide.
    pub deadline_guard_ms: u64,
    /// The lifecycle hooks turnstile acts on; every other hook's events are left to their
    /// owner (docs/design.md "Own hooks only").
    pub owned_hooks: OwnedHooks,
    /// The most instances one group record lists (waiting, and members of its active and
    /// settling deployments). At about 60 bytes per listed member the record stays under
    /// 100 KB, far below DynamoDB's 400 KB item limit, however many instances wait; the rest
    /// wait in their own records ([`crate::StepWait::Overflow`]). At least the largest
    /// `maxBatch` (1,000), so a full batch always fits.
    pub group_capacity: usize,
    /// How often an instance that found its group's list full tries again to join it, should
    /// the group's wake ([`crate::Command::WakeOverflowed`]) not reach it: a backstop.
    pub overflow_retry_ms: u64,
    /// A group wakes its overflowed instances at most this often, each time as many as it has
    /// room for: the instances woken last time have usually joined by then, so they are not
    /// woken again and again while a batch leaves one by one.
    pub overflow_wake_ms: u64,
    /// What the stack lets the functions touch: a plan outside it is refused at validation
    /// ([`crate::PlanScope`]).
    pub plan_scope: crate::PlanScope,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            poll_interval_ms: 60_000,
            create_lease_ms: 90_000,
            heartbeat_permille: 400,
            resend_ms: 30_000,
            retry_ms: 10_000,
            create_retry_ms: 15_000,
            seen_capacity: 32,
            deadline_guard_ms: 30_000,
            owned_hooks: OwnedHooks::default(),
            group_capacity: 1_500,
            overflow_retry_ms: 300_000,
            overflow_wake_ms: 10_000,
            plan_scope: crate::PlanScope::default(),
        }
    }
}

impl Config {
    /// How long a completing instance waits before it sends its completion again. The first
    /// re-send waits `resend_ms`, long enough for a slow invocation still sending the
    /// completion to finish. A CONTINUE is re-sent as a probe (a heartbeat, see the engine's
    /// "re-sending a CONTINUE"), and an unanswered probe is a heartbeat like any other, sent
    /// again after `retry_ms`: while a CONTINUE that never landed is being probed, every gate
    /// is open on an instance still in `Pending:Wait`.
    pub fn completion_resend_ms(&self, probing: bool) -> u64 {
        if probing {
            self.retry_ms
        } else {
            self.resend_ms
        }
    }

    /// How long a verifying instance waits before it checks again. An unanswered check (the
    /// close of every gate, then the reads) is sent again after `retry_ms`: after a probed
    /// CONTINUE the gates may still be open. One that found another deployment running on a
    /// plan group looks again after `resend_ms`, the gates closed by then (the answer came
    /// after the close).
    pub fn verify_resend_ms(&self, waiting: bool) -> u64 {
        if waiting {
            self.resend_ms
        } else {
            self.retry_ms
        }
    }

    /// How long a leaving instance waits before its leave check is sent again: a lost answer
    /// is re-asked after `resend_ms`; a deployment that still held the instance is looked at
    /// again after `poll_interval_ms`.
    pub fn leave_resend_ms(&self, blocked_by: Option<&DeploymentId>) -> u64 {
        match blocked_by {
            Some(_) => self.poll_interval_ms,
            None => self.resend_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_resent_after_resend_ms_and_an_unanswered_probe_like_a_heartbeat() {
        let cfg = Config::default();
        assert_eq!(cfg.completion_resend_ms(false), cfg.resend_ms);
        assert_eq!(cfg.completion_resend_ms(true), cfg.retry_ms);
        assert!(cfg.retry_ms < cfg.resend_ms);
    }

    #[test]
    fn an_unanswered_final_check_is_resent_soon_and_one_waiting_on_a_deployment_less_often() {
        let cfg = Config::default();
        assert_eq!(cfg.verify_resend_ms(false), cfg.retry_ms);
        assert_eq!(cfg.verify_resend_ms(true), cfg.resend_ms);
    }

    #[test]
    fn leave_check_is_resent_soon_and_a_blocking_deployment_polled_less_often() {
        let cfg = Config::default();
        assert_eq!(cfg.leave_resend_ms(None), cfg.resend_ms);
        let d = DeploymentId::from("d-1");
        assert_eq!(cfg.leave_resend_ms(Some(&d)), cfg.poll_interval_ms);
    }
}
