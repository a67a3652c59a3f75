//! `turnstile breaker reset APPLICATION DEPLOYMENT_GROUP`: clear a deployment group's
//! repeated-failure breaker, so failures abandon again instead of holding.

use std::io::Write;

use clap::{Args, Subcommand};
use turnstile_core::{GroupKey, Key, World};

use super::act::{self, ActArgs, Action};
use crate::{Context, Exit, Global};

pub const AFTER_HELP: &str = "Instances the breaker held stay held: retry each \
(`turnstile retry INSTANCE`) or abandon it once the cause is fixed.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, or no --table / --queue-url
  4  no record for the deployment group
  5  nothing to reset (no recent failures), or refused when it was handled";

#[derive(Debug, Subcommand)]
pub enum BreakerCommand {
    /// Reset a deployment group's repeated-failure breaker.
    #[command(after_help = AFTER_HELP)]
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The CodeDeploy application.
    #[arg(value_name = "APPLICATION")]
    pub application: String,
    /// The deployment group.
    #[arg(value_name = "DEPLOYMENT_GROUP")]
    pub deployment_group: String,
    #[command(flatten)]
    pub act: ActArgs,
}

pub async fn run(
    global: &Global,
    command: &BreakerCommand,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let BreakerCommand::Reset(args) = command;
    let key = Key::Group(GroupKey::new(
        args.application.as_str(),
        args.deployment_group.as_str(),
    ));
    let action = Action::new(
        "reset-breaker",
        key,
        &args.act.reason,
        act::request_id(act::now(&ctx)),
    );
    act::run(
        global,
        &args.act,
        action,
        &something_to_reset,
        ctx,
        out,
        err,
    )
    .await
}

fn something_to_reset(world: &World, key: &Key) -> Result<(), (Exit, String)> {
    let Key::Group(g) = key else {
        return Ok(());
    };
    match world.group(g) {
        None => Err((
            Exit::NotFound,
            format!("no record for deployment group {g}: nothing has failed there lately"),
        )),
        Some(r) if r.breaker.tripped_since.is_none() && r.breaker.failures.is_empty() => Err((
            Exit::Precondition,
            format!("the breaker of {g} is closed and counts no failures: nothing to reset"),
        )),
        Some(_) => Ok(()),
    }
}
