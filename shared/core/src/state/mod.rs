//! The durable records the core reads and writes: one per instance pipeline and one per
//! deployment group. The store persists them as they are (serde), one item each, with
//! optimistic concurrency on a version kept outside the core.
//!
//! Ownership rule: the **group** record is the authority on which instances a deployment serves
//! (`waiting`, `active.members`, `settling`), so admitting a batch of a thousand instances writes
//! one item. The **instance** record is the authority on the instance's own progress (which step,
//! which attempt, which revision each finished step installed). An instance learns a result the
//! group recorded for it the next time it is woken ([`crate::Command::Wakeup`]).
//!
//! Every state records when it began (`since`). The timers read it where a state can time out
//! or owes a re-send; where no rule reads it (a queued or draining step, a foreign or settling
//! deployment, a held instance) it stays because the operator actions of the next step report
//! how long each instance and deployment has been where it is, as the hold's `reason` does.

use serde::{Deserialize, Serialize};

use crate::ids::*;

mod breaker;
mod group;
mod instance;
mod operator;
mod seen;
mod standing;

pub use breaker::*;
pub use group::*;
pub use instance::*;
pub use operator::*;
pub use seen::*;
pub(crate) use standing::*;

/// Which lifecycle action the orchestrator holds for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRef {
    pub asg: String,
    pub hook: String,
    /// The action's token, from its event. `None` for an action the timer sweep adopted
    /// without one (its event never arrived): Auto Scaling's calls then name the instance
    /// instead, which both accept [aws-behaviour §2 RecordLifecycleActionHeartbeat].
    pub token: Option<Token>,
    pub instance: InstanceId,
}

impl ActionRef {
    /// How an Auto Scaling call names the action: `(token, instance id)`, exactly one of them
    /// set. The token when the event gave one, else the instance.
    pub fn address(&self) -> (Option<&str>, Option<&str>) {
        match &self.token {
            Some(t) => (Some(t.as_str()), None),
            None => (None, Some(self.instance.as_str())),
        }
    }

    /// The token for logs: the token, or how the action is addressed without one.
    pub fn token_or_instance(&self) -> String {
        match &self.token {
            Some(t) => t.to_string(),
            None => format!("(by instance id {})", self.instance),
        }
    }
}

/// Timeouts of the lifecycle hook, as described by Auto Scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTimeouts {
    pub heartbeat_secs: u64,
    /// min(100 × heartbeat timeout, 48 h).
    pub global_secs: u64,
}

impl HookTimeouts {
    pub fn from_heartbeat(heartbeat_secs: u64) -> Self {
        Self {
            heartbeat_secs,
            global_secs: (heartbeat_secs.saturating_mul(100)).min(172_800),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleResult {
    Continue,
    Abandon,
}

/// Where an instance comes from and goes to on a launch transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    Ec2,
    AutoScalingGroup,
    WarmPool,
}
