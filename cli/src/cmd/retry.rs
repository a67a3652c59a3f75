//! `turnstile retry INSTANCE`: run a held pipeline's step again with fresh attempts (or its
//! final check, if it was held there).

use std::io::Write;

use clap::Args;
use turnstile_core::{InstanceId, Key, Phase, World};

use super::act::{self, ActArgs, Action};
use crate::{Context, Exit, Global};

pub const AFTER_HELP: &str = "The step starts again with its full number of attempts; the \
instance keeps its place in the plan. Reset the group's breaker first if it tripped \
(`turnstile breaker reset`), or the retry may be held again.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, or no --table / --queue-url
  4  no record for the instance
  5  not held, already finishing, or refused when it was handled (the reason is printed)";

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The EC2 instance id of a held pipeline.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
    #[command(flatten)]
    pub act: ActArgs,
}

pub async fn run(
    global: &Global,
    args: &RetryArgs,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let key = Key::Instance(InstanceId::from(args.instance.as_str()));
    let action = Action::new(
        "retry",
        key,
        &args.act.reason,
        act::request_id(act::now(&ctx)),
    );
    act::run(global, &args.act, action, &held, ctx, out, err).await
}

/// Only a held pipeline can be retried.
fn held(world: &World, key: &Key) -> Result<(), (Exit, String)> {
    let Key::Instance(id) = key else {
        return Ok(());
    };
    match world.instance(id).map(|i| &i.phase) {
        None => Err((Exit::NotFound, format!("no pipeline record for {id}"))),
        Some(Phase::Held { .. }) => Ok(()),
        Some(Phase::Finished { .. } | Phase::Completing { .. }) => Err((
            Exit::Precondition,
            format!("{id} is already finishing: nothing to retry"),
        )),
        Some(_) => Err((
            Exit::Precondition,
            format!("{id} is not held: its pipeline is running (see `turnstile show {id}`)"),
        )),
    }
}
