//! Timer messages: wakeups are delayed SQS messages on the queue the queue function consumes.

use aws_sdk_sqs::Client;
use turnstile_core::{Key, Millis};
use turnstile_events::wakeup_body;

use crate::error::port_error;
use crate::ports::{Clock, PortError, SystemClock, Timer};

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
