//! `turnstile skip-failed-step INSTANCE --step-group APP/GROUP`: the override. A held
//! pipeline goes on without the step that failed, and the instance may then go in service
//! without that application. Named and guarded so that nobody types it by accident: the
//! deployment group of the held step must be given, the action is confirmed (or `--yes`), and
//! the record keeps who skipped what and why, as does the CONTINUE's reason.

use std::io::Write;

use clap::Args;
use turnstile_core::{InstanceId, Key, Phase, World};

use super::act::{self, ActArgs, Action};
use crate::{Context, Exit, Global};

pub const AFTER_HELP: &str = "The instance goes on to its next step (or its final check) and \
can go in service WITHOUT the skipped application: users' deployments of that group reach it \
once it is in service. Prefer `turnstile retry` once the cause is fixed.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, no --table / --queue-url, or no --yes without a terminal
  4  no record for the instance
  5  not held at a failed step, --step-group is not the held step's group, not confirmed, or \
refused when it was handled";

#[derive(Debug, Args)]
pub struct SkipArgs {
    /// The EC2 instance id of a pipeline held at a failed step.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,
    /// The held step's deployment group, as APPLICATION/DEPLOYMENT_GROUP: proof that you mean
    /// this step.
    #[arg(long, value_name = "APP/GROUP")]
    pub step_group: String,
    #[command(flatten)]
    pub act: ActArgs,
}

pub async fn run(
    global: &Global,
    args: &SkipArgs,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let key = Key::Instance(InstanceId::from(args.instance.as_str()));
    let mut action = Action::new(
        "skip-failed-step",
        key,
        &args.act.reason,
        act::request_id(act::now(&ctx)),
    );
    action.destructive = Some(format!(
        "skip the failed step {} on {}: the instance may go in service without it",
        args.step_group, args.instance
    ));
    let check = |world: &World, key: &Key| held_at(world, key, &args.step_group);
    act::run(global, &args.act, action, &check, ctx, out, err).await
}

fn held_at(world: &World, key: &Key, named: &str) -> Result<(), (Exit, String)> {
    held_at_failed(world, key)?;
    let Key::Instance(id) = key else {
        return Ok(());
    };
    let Some(inst) = world.instance(id) else {
        return Ok(());
    };
    let Phase::Held { step: Some(k), .. } = inst.phase else {
        return Ok(());
    };
    let group = inst.plan.steps.get(k).map(|s| s.group.to_string());
    if group.as_deref() == Some(named) {
        Ok(())
    } else {
        Err((
            Exit::Precondition,
            format!(
                "{id} is held at step {} ({}), not at {named}: nothing skipped",
                k + 1,
                group.unwrap_or_default()
            ),
        ))
    }
}

fn held_at_failed(world: &World, key: &Key) -> Result<(), (Exit, String)> {
    let Key::Instance(id) = key else {
        return Ok(());
    };
    match world.instance(id).map(|i| &i.phase) {
        None => Err((Exit::NotFound, format!("no pipeline record for {id}"))),
        Some(Phase::Held { step: Some(_), .. }) => Ok(()),
        Some(_) => Err((
            Exit::Precondition,
            format!("{id} is not held at a failed step: nothing to skip"),
        )),
    }
}
