//! What a Lambda `main` does once per cold start: logging, configuration, clients, runner.

use aws_config::{BehaviorVersion, SdkConfig};
use turnstile_core::Engine;

use crate::autoscaling::AutoScaling;
use crate::codedeploy::CodeDeploy;
use crate::config::Config;
use crate::ports::SystemClock;
use crate::redelivery::Redelivery;
use crate::runner::{Adapters, Ports, Runner, Stdout};
use crate::sqs::{SqsTimer, SqsVisibility};
use crate::store::dynamo::DynamoStore;
use crate::tags::Ec2Tags;

/// The production wiring: the SDK adapters, the system clock, metric lines on stdout.
pub struct AwsPorts;

impl Ports for AwsPorts {
    type Store = DynamoStore;
    type Lifecycle = AutoScaling;
    type Deployments = CodeDeploy;
    type Tags = Ec2Tags;
    type Timer = SqsTimer;
    type Clock = SystemClock;
    type Observer = Stdout;
}

/// The runner wired to AWS.
pub type AwsRunner = Runner<AwsPorts>;

/// JSON logs on stdout (CloudWatch Logs), level from `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .init();
}

/// The SDK configuration from the environment. `aws-config` honours `AWS_ENDPOINT_URL` and
/// the per-service `AWS_ENDPOINT_URL_*`, which is how the local cloud points the real functions
/// at its stand-ins.
pub async fn sdk_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

/// Builds every client once from the environment.
pub async fn runner(config: &Config) -> AwsRunner {
    runner_with(&sdk_config().await, config)
}

/// The runner, with clients built from `sdk`.
pub fn runner_with(sdk: &SdkConfig, config: &Config) -> AwsRunner {
    Runner::new(
        Engine::new(turnstile_core::Config {
            owned_hooks: config.owned_hooks.clone(),
            plan_scope: config.plan_scope.clone(),
            ..turnstile_core::Config::default()
        }),
        Adapters {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.table),
            lifecycle: AutoScaling::new(aws_sdk_autoscaling::Client::new(sdk)),
            deployments: CodeDeploy::new(aws_sdk_codedeploy::Client::new(sdk)),
            tags: Ec2Tags::new(aws_sdk_ec2::Client::new(sdk)),
            timer: SqsTimer::new(aws_sdk_sqs::Client::new(sdk), &config.queue_url),
            clock: SystemClock,
            observer: Stdout,
        },
    )
}

/// What the queue function sets failed records' visibility with: `ChangeMessageVisibility` on
/// its own queue (`TURNSTILE_QUEUE_URL`, the queue its event source mapping reads).
pub fn redelivery(sdk: &SdkConfig, config: &Config) -> Redelivery<SqsVisibility> {
    Redelivery::new(SqsVisibility::new(
        aws_sdk_sqs::Client::new(sdk),
        &config.queue_url,
    ))
}
