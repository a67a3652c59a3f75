//! # turnstile-core
//!
//! The sans-IO orchestration core of turnstile, the Auto Scaling lifecycle-hook orchestrator
//! for CodeDeploy: `decide(world, input, now) -> (world', commands)`.
//!
//! It has no AWS types, no I/O, no clock and no randomness. The runner (crate `turnstile-aws`)
//! loads the records an input needs ([`Engine::keys_for`]), calls [`Engine::decide`], writes
//! the changed records conditionally, then executes the [`Command`]s and feeds their answers
//! back as [`Input`]s.

mod config;
pub mod engine;
pub mod hooks;
pub mod ids;
pub mod io;
pub mod launch_config;
pub mod plan;
pub mod state;

pub use engine::{Config, Decision, Engine, Missing, World};
pub use hooks::{DEFAULT_LAUNCH_HOOK, DEFAULT_TERMINATE_HOOK, HookNames, OwnedHooks};
pub use ids::*;
pub use io::*;
pub use launch_config::{LastAttempt, LaunchConfig, OutdatedRisk, launch_config};
pub use plan::{
    Gate, OnFailure, OnNotReady, Plan, PlanError, PlanIssue, PlanScope, Readiness, Step,
    WarmPoolPolicy,
};
pub use state::*;
