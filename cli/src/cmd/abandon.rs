//! `turnstile abandon INSTANCE`: complete a pipeline's lifecycle action with ABANDON now
//! (its deployment, if it is the last instance in it, is stopped).

use std::io::Write;

use clap::Args;
use turnstile_core::{InstanceId, Key, Phase, World};

use super::act::{self, ActArgs, Action};
use crate::{Context, Exit, Global};

pub const AFTER_HELP: &str = "ABANDON makes Auto Scaling terminate the instance (and launch a \
replacement if the group is below its desired capacity). Asks for confirmation on a terminal; \
pass --yes otherwise.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, no --table / --queue-url, or no --yes without a terminal
  4  no record for the instance
  5  already finishing, not confirmed, or refused when it was handled (the reason is printed)";

#[derive(Debug, Args)]
pub struct AbandonArgs {
    /// The EC2 instance id of a pipeline in flight.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
    #[command(flatten)]
    pub act: ActArgs,
}

pub async fn run(
    global: &Global,
    args: &AbandonArgs,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let key = Key::Instance(InstanceId::from(args.instance.as_str()));
    let mut action = Action::new(
        "abandon",
        key,
        &args.act.reason,
        act::request_id(act::now(&ctx)),
    );
    action.destructive = Some(format!(
        "abandon {}: Auto Scaling terminates the instance",
        args.instance
    ));
    act::run(global, &args.act, action, &in_flight, ctx, out, err).await
}

fn in_flight(world: &World, key: &Key) -> Result<(), (Exit, String)> {
    let Key::Instance(id) = key else {
        return Ok(());
    };
    match world.instance(id).map(|i| &i.phase) {
        None => Err((Exit::NotFound, format!("no pipeline record for {id}"))),
        Some(Phase::Finished { .. } | Phase::Completing { .. }) => {
            Err((Exit::Precondition, format!("{id} is already finishing")))
        }
        Some(_) => Ok(()),
    }
}
