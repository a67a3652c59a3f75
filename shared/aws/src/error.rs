//! What a failed AWS call means, decided in one place for every adapter (Auto Scaling,
//! CodeDeploy, EC2 tags, SQS, DynamoDB): the lifecycle action is *gone*, a retry can help
//! (*transient*), or it cannot (*permanent*). The SDK error is kept as the source while its full
//! context is shown (the SDK's own `Display` says only "service error").

use std::error::Error;

// Every SDK crate re-exports the same `SdkError` (from `aws-smithy-runtime-api`); this one
// stands for all of them.
use aws_sdk_autoscaling::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::error::operation::BuildError;

use crate::ports::PortError;
use crate::store::StoreError;

/// An AWS SDK failure: displays the whole error chain, keeps the original as `source`.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SdkFailure {
    context: String,
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

pub fn sdk_failure<E>(e: E) -> Box<dyn Error + Send + Sync>
where
    E: Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let context = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
    };
    Box::new(SdkFailure {
        context,
        source: Box::new(e),
    })
}

/// Service error codes after which the same call can succeed later. One list for every
/// service: a code one service never returns costs nothing in another's classification.
const TRANSIENT_CODES: &[&str] = &[
    // Every service (the common errors of the AWS APIs).
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    // Auto Scaling: another call is changing the same group.
    "ResourceContention",
    // DynamoDB.
    "ProvisionedThroughputExceededException",
    "InternalServerError",
    "TransactionInProgressException",
];

/// How a failed AWS call is to be treated.
#[derive(Debug)]
pub enum Failure {
    /// Auto Scaling has no such active lifecycle action (completed, timed out, instance gone).
    Gone { message: String },
    /// Throttling, contention, timeouts, transport failures, 5xx: a later retry can help.
    Transient(Box<dyn Error + Send + Sync>),
    /// Validation, permissions, missing resources, a request that could not even be built:
    /// retrying cannot help.
    Permanent(Box<dyn Error + Send + Sync>),
}

impl Failure {
    /// Sorts an SDK error: "No active Lifecycle Action found" is *gone*; throttling,
    /// contention and transport failures are transient; the rest is permanent. A request the
    /// SDK could not build (`ConstructionFailure`) is permanent: the same input fails the same
    /// way on every retry.
    pub fn of_sdk<E, R>(e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let transient = match &e {
            SdkError::ServiceError(se) => {
                let code = se.err().code();
                let message = se.err().message().unwrap_or_default();
                if code == Some("ValidationError")
                    && message.contains("No active Lifecycle Action found")
                {
                    return Failure::Gone {
                        message: message.to_owned(),
                    };
                }
                code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ConstructionFailure(_) => false,
            _ => false,
        };
        let source = sdk_failure(e);
        if transient {
            Failure::Transient(source)
        } else {
            Failure::Permanent(source)
        }
    }

    /// A builder's failure (a required field missing): permanent, since the same input builds
    /// the same way on every retry.
    pub fn of_build(e: BuildError) -> Self {
        Failure::Permanent(Box::new(e))
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }

    /// The failure as a port's error.
    pub fn into_port(self, op: &'static str) -> PortError {
        match self {
            Failure::Gone { message } => PortError::Gone { op, message },
            Failure::Transient(source) => PortError::Transient { op, source },
            Failure::Permanent(source) => PortError::Permanent { op, source },
        }
    }

    /// The failure as the store's error. The store has no lifecycle actions, so *gone* cannot
    /// come from it; were it to, retrying would not help.
    pub fn into_store(self, op: &'static str) -> StoreError {
        match self {
            Failure::Gone { message } => StoreError::Permanent {
                op,
                source: message.into(),
            },
            Failure::Transient(source) => StoreError::Transient { op, source },
            Failure::Permanent(source) => StoreError::Permanent { op, source },
        }
    }
}

/// An SDK error as a port's error (every adapter but the store).
pub fn port_error<E, R>(op: &'static str, e: SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    Failure::of_sdk(e).into_port(op)
}

/// An SDK error as the store's error.
pub fn store_error<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    Failure::of_sdk(e).into_store(op)
}

/// A builder's failure as the store's error (permanent).
pub fn store_build_error(op: &'static str, e: BuildError) -> StoreError {
    Failure::of_build(e).into_store(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;

    fn service(code: &str, message: &str) -> SdkError<ErrorMetadata, ()> {
        SdkError::service_error(
            ErrorMetadata::builder().code(code).message(message).build(),
            (),
        )
    }

    #[test]
    fn throttling_and_contention_codes_are_transient() {
        for code in TRANSIENT_CODES {
            assert!(
                Failure::of_sdk(service(code, "slow down")).is_transient(),
                "{code}"
            );
        }
        assert!(
            !Failure::of_sdk(service("AccessDeniedException", "no")).is_transient(),
            "a permission error does not mend itself"
        );
    }

    #[test]
    fn no_active_lifecycle_action_is_gone_other_validation_errors_are_permanent() {
        let gone = service(
            "ValidationError",
            "No active Lifecycle Action found with token t",
        );
        assert!(matches!(
            Failure::of_sdk(gone).into_port("CompleteLifecycleAction"),
            PortError::Gone { .. }
        ));
        let invalid = service("ValidationError", "1 validation error detected");
        assert!(matches!(
            Failure::of_sdk(invalid).into_port("RecordLifecycleActionHeartbeat"),
            PortError::Permanent { .. }
        ));
    }

    #[test]
    fn timeouts_and_transport_failures_are_transient() {
        let timeout: SdkError<ErrorMetadata, ()> = SdkError::timeout_error("took too long");
        assert!(Failure::of_sdk(timeout).is_transient());
    }

    #[test]
    fn builder_errors_are_not_transient() {
        let construction: SdkError<ErrorMetadata, ()> =
            SdkError::construction_failure(BuildError::missing_field("table_name", "required"));
        assert!(!Failure::of_sdk(construction).is_transient());
        // What the DynamoDB store does with a request part that fails to build: retrying the
        // same input builds it the same way, so the message must not be handed back for it.
        let built = store_build_error(
            "TransactWriteItems",
            BuildError::missing_field("table_name", "required"),
        );
        assert!(!built.is_retryable(), "{built}");
        assert!(matches!(built, StoreError::Permanent { .. }));
    }

    #[test]
    fn the_store_never_reports_gone_and_keeps_transient_retryable() {
        let e = store_error(
            "Query",
            service("ProvisionedThroughputExceededException", "x"),
        );
        assert!(e.is_retryable());
        let e = store_error(
            "Query",
            service("ValidationError", "No active Lifecycle Action found"),
        );
        assert!(matches!(e, StoreError::Permanent { .. }));
    }
}
