//! What can stop a run on the local cloud.

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("local stand-in: {0}")]
    Stack(String),
    #[error("{op} failed: {message}")]
    Aws { op: &'static str, message: String },
}

/// An AWS call's failure with a message of our own.
pub(crate) fn aws_err(op: &'static str) -> impl Fn(String) -> RunError {
    move |message| RunError::Aws { op, message }
}

/// An SDK call's failure, as the SDK describes it.
pub(crate) fn sdk<E: std::fmt::Debug>(op: &'static str) -> impl Fn(E) -> RunError {
    move |e| RunError::Aws {
        op,
        message: format!("{e:?}"),
    }
}
