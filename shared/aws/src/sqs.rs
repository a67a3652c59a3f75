//! The queue the queue function consumes: timer messages (wakeups are delayed SQS messages on
//! it) and the visibility of the records the function failed.

use aws_sdk_sqs::Client;
use turnstile_core::{Key, Millis};
use turnstile_events::wakeup_body;

use crate::error::port_error;
use crate::ports::{Clock, PortError, SystemClock, Timer, Visibility};

/// The AWS operations of [`SqsTimer`], the runner's timer messages, in both functions (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the template does not allow what the caller needs.
pub const AWS_CALLS: &[&str] = &["sqs:SendMessage"];

/// The AWS operations of [`SqsVisibility`], the queue function's fast redelivery only; checked
/// as [`AWS_CALLS`] is.
pub const VISIBILITY_AWS_CALLS: &[&str] = &["sqs:ChangeMessageVisibility"];

/// SQS's longest message delay. A wakeup further out is left to the timer sweep, which finds
/// the record through the `due` index.
pub const MAX_DELAY_SECS: u64 = 900;

pub struct SqsTimer<C: Clock = SystemClock> {
    client: Client,
    queue_url: String,
    clock: C,
}

impl SqsTimer {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            clock: SystemClock,
        }
    }
}

/// The delay for a wakeup at `at`, or `None` when it is beyond SQS's maximum.
pub fn delay_secs(now: Millis, at: Millis) -> Option<i32> {
    let secs = at.since(now).div_ceil(1000);
    (secs <= MAX_DELAY_SECS).then(|| i32::try_from(secs).unwrap_or(0))
}

impl<C: Clock> Timer for SqsTimer<C> {
    async fn wake(&self, key: &Key, at: Millis) -> Result<(), PortError> {
        let Some(delay) = delay_secs(self.clock.now(), at) else {
            return Ok(());
        };
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(wakeup_body(key))
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| port_error("SendMessage", e))?;
        Ok(())
    }
}

/// `ChangeMessageVisibility` on the function's own queue (aws-behaviour §5.5
/// ChangeMessageVisibility): the production [`Visibility`] port.
pub struct SqsVisibility {
    client: Client,
    queue_url: String,
}

impl SqsVisibility {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Visibility for SqsVisibility {
    async fn visible_in(&self, receipt_handle: &str, secs: u32) -> Result<(), PortError> {
        // SQS takes 0 to 43,200 s; the back-off stays far below the top.
        let secs = i32::try_from(secs.min(43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| port_error("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_and_stop_at_fifteen_minutes() {
        assert_eq!(delay_secs(Millis(1000), Millis(1000)), Some(0));
        assert_eq!(
            delay_secs(Millis(1000), Millis(500)),
            Some(0),
            "past wakeups go now"
        );
        assert_eq!(delay_secs(Millis(0), Millis(1001)), Some(2));
        assert_eq!(delay_secs(Millis(0), Millis(900_000)), Some(900));
        assert_eq!(delay_secs(Millis(0), Millis(900_001)), None);
    }
}
