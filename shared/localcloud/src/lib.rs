//! The local cloud: the whole flow on one machine, with the real handlers.
//!
//! See [`run`] for how a scenario runs, [`wire`] for the simulator's wire protocols and
//! [`checks`] for the invariants checked on the simulator's record.

pub mod batch;
pub mod bench;
pub mod checks;
pub mod direct;
pub mod report;
pub mod rules;
pub mod run;
pub mod scenario;
pub mod stack;
pub mod userdata;
pub mod wire;

pub use run::{RunRecord, run};
pub use scenario::{Mode, Scenario};
pub use stack::Stack;
