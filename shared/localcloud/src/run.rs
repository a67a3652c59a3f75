//! One scenario run on the local cloud, in one of three modes, each in its own module:
//!
//! - [`crate::native`]: CodeDeploy's own per-group launch hooks; nothing of ours runs.
//! - [`crate::userdata`]: one launch hook and a user-data script that deploys every group.
//! - [`crate::orchestrated`]: the orchestrator's hooks, with the real handlers behind moto's
//!   EventBridge and SQS and state in DynamoDB Local.
//!
//! All three run the same simulated-time loop (`sim_loop`) and leave a
//! [`RunRecord`] ([`crate::record`]).

pub use crate::error::RunError;
pub use crate::orchestrated::{
    LocalTimer, LocalVisibility, MAX_RECEIVE_COUNT, MOTO_VISIBILITY_SECS, Metrics, SWEEP_EVERY_MS,
    SimClock, TransientStore, VISIBILITY_TIMEOUT_SECS, rule_patterns,
};
pub use crate::record::{Activity, RunRecord};
use crate::scenario::{Mode, Scenario};
use crate::stack::Stack;

/// Runs `scenario` in `mode`. The orchestrator mode needs the stack.
pub async fn run(
    stack: Option<&Stack>,
    scenario: &Scenario,
    mode: Mode,
) -> Result<RunRecord, RunError> {
    match (mode, stack) {
        (Mode::Native, _) => Ok(crate::native::run(scenario).await),
        (Mode::UserData, _) => Ok(crate::userdata::run(scenario).await),
        (Mode::Orchestrator, Some(stack)) => crate::orchestrated::run(stack, scenario).await,
        (Mode::Orchestrator, None) => Err(RunError::Stack(
            "the orchestrator run needs DynamoDB Local and moto".into(),
        )),
    }
}
