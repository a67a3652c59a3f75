//! Test support: the model-backed ports (from `turnstile-localcloud`), a crash injector and
//! DynamoDB Local.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use turnstile_aws::runner::{Observer, RunError};
use turnstile_core::Command;
#[allow(unused_imports)]
pub use turnstile_localcloud::direct::{Aws, ModelClock, ModelPorts, Wakeups, driver};

/// Crashes before the n-th effectful command (counted across the whole test), once.
#[derive(Clone, Default)]
pub struct CrashAt(pub Arc<AtomicI64>);

impl CrashAt {
    pub fn arm(&self, n: i64) {
        self.0.store(n, Ordering::SeqCst);
    }
}

impl Observer for CrashAt {
    fn before(&self, c: &Command) -> Result<(), RunError> {
        if matches!(c, Command::Metric(_) | Command::Alert(_)) {
            return Ok(());
        }
        let left = self.0.fetch_sub(1, Ordering::SeqCst);
        if left == 1 {
            Err(RunError::Crashed)
        } else {
            Ok(())
        }
    }
}

pub mod dynamo_local;

/// A visibility port that accepts every change: for tests whose messages all succeed.
#[derive(Clone, Copy, Default)]
pub struct AnyVisibility;

impl turnstile_aws::ports::Visibility for AnyVisibility {
    async fn visible_in(&self, _: &str, _: u32) -> Result<(), turnstile_aws::ports::PortError> {
        Ok(())
    }
}
