//! One file per command. Each has `run` (arguments in, exit code out) and keeps its logic in
//! functions that take the store and `now` as arguments, so tests are deterministic.

use std::io::Write;

use aws_config::{BehaviorVersion, Region};
use turnstile_aws::store::StoreError;
use turnstile_aws::store::dynamo::DynamoStore;

use crate::{Context, Exit, Global};

pub mod abandon;
pub mod act;
pub mod breaker;
pub mod dlq;
pub mod doctor;
pub mod pause;
pub mod plan_check;
pub mod retry;
pub mod show;
pub mod skip;
pub mod status;

/// The store the read-only commands use: `ctx.dynamo` if given, else a client from the SDK's
/// configuration chain (profile, region, `AWS_ENDPOINT_URL[_DYNAMODB]`, credentials), on the
/// table from `--table` / `TURNSTILE_TABLE`. Says on `err` what is missing.
pub(crate) async fn store(
    global: &Global,
    ctx: &Context,
    err: &mut dyn Write,
) -> Result<DynamoStore, Exit> {
    let Some(table) = global.table.as_deref().filter(|t| !t.trim().is_empty()) else {
        let _ = writeln!(
            err,
            "error: no table: pass --table TABLE or set TURNSTILE_TABLE (the stack's DynamoDB table)"
        );
        return Err(Exit::Usage);
    };
    if let Some(client) = &ctx.dynamo {
        return Ok(DynamoStore::new(client.clone(), table));
    }
    let conf = sdk_config(global, err).await?;
    Ok(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&conf),
        table,
    ))
}

/// The queue the actions are sent to: `ctx.sqs` if given, else a client from the SDK's chain,
/// and the URL from `--queue-url` / `TURNSTILE_QUEUE_URL`.
pub(crate) async fn queue(
    global: &Global,
    ctx: &Context,
    err: &mut dyn Write,
) -> Result<(aws_sdk_sqs::Client, String), Exit> {
    let Some(url) = global.queue_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        let _ = writeln!(
            err,
            "error: no queue: pass --queue-url URL or set TURNSTILE_QUEUE_URL (the stack's queue)"
        );
        return Err(Exit::Usage);
    };
    Ok((queue_client(global, ctx, err).await?, url.to_owned()))
}

/// An SQS client: `ctx.sqs` if given, else one from the SDK's chain.
pub(crate) async fn queue_client(
    global: &Global,
    ctx: &Context,
    err: &mut dyn Write,
) -> Result<aws_sdk_sqs::Client, Exit> {
    if let Some(client) = &ctx.sqs {
        return Ok(client.clone());
    }
    let conf = sdk_config(global, err).await?;
    Ok(aws_sdk_sqs::Client::new(&conf))
}

/// The SDK's configuration chain with `--profile` and `--region` applied; no region is a
/// precondition (5).
pub(crate) async fn sdk_config(
    global: &Global,
    err: &mut dyn Write,
) -> Result<aws_config::SdkConfig, Exit> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = &global.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &global.region {
        loader = loader.region(Region::new(r.clone()));
    }
    let conf = loader.load().await;
    if conf.region().is_none() {
        let _ = writeln!(
            err,
            "error: no AWS region: pass --region, set AWS_REGION, or give the profile a region"
        );
        return Err(Exit::Precondition);
    }
    Ok(conf)
}

/// Reports a store failure on `err`; a missing table is a precondition (5), the rest a failure
/// (1).
pub(crate) fn store_failed(e: &StoreError, table: &str, err: &mut dyn Write) -> Exit {
    let text = e.to_string();
    if text.contains("ResourceNotFoundException") {
        let _ = writeln!(
            err,
            "error: table {table} does not exist (check --table / TURNSTILE_TABLE and the region): {text}"
        );
        Exit::Precondition
    } else {
        let _ = writeln!(err, "error: reading table {table}: {text}");
        Exit::Failure
    }
}

/// Writes to stdout; a closed pipe or full disk is a failure.
pub(crate) fn written(r: std::io::Result<()>, err: &mut dyn Write) -> Exit {
    match r {
        Ok(()) => Exit::Ok,
        Err(e) => {
            let _ = writeln!(err, "error: writing the output: {e}");
            Exit::Failure
        }
    }
}

/// `--launch-hooks`, as `doctor` and `pause --asg` / `resume --asg` read it.
#[derive(Debug, clap::Args)]
pub struct LaunchHooksArgs {
    /// turnstile's launch hooks: comma-separated names, or prefixes ending in `*` (the
    /// functions' TURNSTILE_LAUNCH_HOOKS: the stack's LaunchHookName, and OwnedHookPrefix*).
    #[arg(
        long,
        env = "TURNSTILE_LAUNCH_HOOKS",
        value_name = "LIST",
        default_value = turnstile_core::DEFAULT_LAUNCH_HOOK
    )]
    pub launch_hooks: String,
}

impl LaunchHooksArgs {
    /// The list, parsed; a bad list is a usage error, reported on `err`.
    pub(crate) fn parse(&self, err: &mut dyn Write) -> Result<turnstile_core::HookNames, Exit> {
        turnstile_core::HookNames::parse(&self.launch_hooks).map_err(|e| {
            let _ = writeln!(err, "error: --launch-hooks: {e}");
            Exit::Usage
        })
    }
}
