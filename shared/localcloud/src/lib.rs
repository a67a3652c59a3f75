//! The local cloud: the whole flow on one machine, with the real handlers.
//!
//! See [`mod@run`] for how a scenario runs (one module per mode: [`native`], [`userdata`],
//! [`orchestrated`], all on the one simulated-time loop in `sim_loop`), [`wire`] for the
//! simulator's wire protocols and [`checks`] for the invariants checked on the simulator's
//! record.

pub mod batch;
pub mod bench;
pub mod checks;
pub mod direct;
pub mod error;
pub mod native;
pub mod orchestrated;
pub mod record;
pub mod report;
pub mod rules;
pub mod run;
pub mod scenario;
mod sim_loop;
pub mod stack;
pub mod userdata;
pub mod wire;

pub use record::RunRecord;
pub use run::run;
pub use scenario::{Mode, Scenario};
pub use stack::Stack;
