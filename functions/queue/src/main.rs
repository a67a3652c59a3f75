//! The queue function: lifecycle and CodeDeploy events (through EventBridge, or a hook's own
//! SQS notifications) and timer messages. Reports partial batch failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use turnstile_aws::config::Config;
use turnstile_aws::{bootstrap, handler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    bootstrap::init_logging();
    let config = Config::from_env().inspect_err(|e| tracing::error!("{e}"))?;
    let sdk = bootstrap::sdk_config().await;
    let runner = bootstrap::runner_with(&sdk, &config);
    // Failed records come back within seconds (ChangeMessageVisibility on this queue).
    let redelivery = bootstrap::redelivery(&sdk, &config);
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (runner, redelivery) = (&runner, &redelivery);
        async move {
            let (response, _) = handler::handle_batch(runner, redelivery, event.payload).await;
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}
