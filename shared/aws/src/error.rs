//! Keeps an SDK error as the source while showing its full context (the SDK's own `Display`
//! says only "service error").

use std::error::Error;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

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
