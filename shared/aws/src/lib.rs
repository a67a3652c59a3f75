//! # turnstile-aws
//!
//! Makes the core's decisions real and durable: the DynamoDB [`store`], one adapter per AWS
//! service behind the narrow [`ports`], and the [`runner`] that executes one input with
//! crash-safe ordering.

pub mod autoscaling;
pub mod codedeploy;
pub mod error;
pub mod ports;
pub mod runner;
pub mod store;
pub mod tags;

pub use runner::{Outcome, RunError, Runner};
