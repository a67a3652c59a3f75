//! # turnstile-aws
//!
//! Makes the core's decisions real and durable: the DynamoDB [`store`], one adapter per AWS
//! service behind the narrow [`ports`], and the [`runner`] that executes one input with
//! crash-safe ordering.

pub mod adopt;
pub mod autoscaling;
pub mod bootstrap;
pub mod codedeploy;
pub mod config;
pub mod emf;
pub mod error;
pub mod gauges;
pub mod handler;
pub mod ports;
pub mod readiness;
pub mod redelivery;
pub mod runner;
pub mod sqs;
pub mod store;
pub mod tags;

pub use runner::{Adapters, Observer, Outcome, Ports, RunError, Runner};
