//! The local stand-ins of one machine: DynamoDB Local and moto server, started on free ports and
//! stopped by PID when the stack is dropped. Runs share a stack and are isolated from each other
//! by their own table, queues and event bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use turnstile_harness::{HarnessError, Service};

pub struct Stack {
    pub dynamodb: Service,
    pub moto: Service,
    runs: AtomicU64,
}

impl Stack {
    pub fn start() -> Result<Self, HarnessError> {
        Ok(Self {
            dynamodb: turnstile_harness::dynamodb_local()?,
            moto: turnstile_harness::moto_server()?,
            runs: AtomicU64::new(0),
        })
    }

    /// A name no other run on this stack uses.
    pub fn next_run(&self) -> String {
        format!("run{}", self.runs.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub async fn config(&self, endpoint: &str) -> SdkConfig {
        turnstile_harness::sdk_config(endpoint).await
    }
}

/// Counts the calls (not attempts) a client makes.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(pub Arc<AtomicU64>);

impl CallCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
