//! `turnstile pause APPLICATION DEPLOYMENT_GROUP` and `turnstile resume …`: stop and restart
//! the creation of deployments for one deployment group, for an outage of something its
//! deployments need (a package mirror, a secrets store) so that it does not fail, and abandon,
//! every new instance meanwhile.
//!
//! Paused, new launches join the group's list and wait in `Pending:Wait` with their
//! heartbeats; a deployment already created runs to its end; nothing new is created until the
//! group is resumed, which admits what waits at once. Before a pause is applied the command
//! says which waiting instance's global deadline a long pause would outlive.

use std::io::Write;

use clap::Args;
use turnstile_aws::store::Store;
use turnstile_core::{GroupKey, Key, Millis, World};

use super::act::{self, ActArgs, Action};
use super::{store, store_failed};
use crate::output::{at, relative};
use crate::{Context, Exit, Global};

pub const PAUSE_HELP: &str = "Paused, new instances keep their place in the group's queue and \
their heartbeats, but every hook has a global timeout (min(100 × heartbeat timeout, 48 h)): an \
instance still waiting when it passes gets the hook's default result. The command prints the \
nearest such deadline before it sends the pause.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, or no --table / --queue-url
  5  already paused, or refused when it was handled";

pub const RESUME_HELP: &str = "The group admits what waits at once.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, or no --table / --queue-url
  4  no record for the deployment group
  5  not paused, or refused when it was handled";

#[derive(Debug, Args)]
pub struct PauseArgs {
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
    args: &PauseArgs,
    paused: bool,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let group = GroupKey::new(args.application.as_str(), args.deployment_group.as_str());
    let key = Key::Group(group.clone());
    let name = if paused { "pause" } else { "resume" };
    let mut action = Action::new(name, key, &args.act.reason, act::request_id(act::now(&ctx)));
    if paused {
        let s = match store(global, &ctx, err).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        match deadline_warning(&s, &group, act::now(&ctx)).await {
            Ok(w) => action.warnings.extend(w),
            Err(e) => {
                return store_failed(&e, global.table.as_deref().unwrap_or_default(), err);
            }
        }
    }
    let check = if paused { not_paused } else { is_paused };
    act::run(global, &args.act, action, &check, ctx, out, err).await
}

/// The waiting instance whose global deadline comes first: a pause longer than that hands it
/// to its hook's default result.
async fn deadline_warning<S: Store>(
    s: &S,
    group: &GroupKey,
    now: Millis,
) -> Result<Option<String>, turnstile_aws::store::StoreError> {
    let loaded = s.load(&[Key::Group(group.clone())]).await?;
    let Some(g) = loaded.world.group(group) else {
        return Ok(None);
    };
    let keys: Vec<Key> = g
        .instances()
        .into_iter()
        .cloned()
        .map(Key::Instance)
        .collect();
    if keys.is_empty() {
        return Ok(None);
    }
    let instances = s.load(&keys).await?.world;
    let nearest = instances
        .instances
        .values()
        .flatten()
        .filter(|i| !i.phase.is_finished())
        .min_by_key(|i| i.global_deadline);
    Ok(nearest.map(|i| {
        format!(
            "{} waits on {group} and must finish by {} ({}): a pause longer than that gives it its hook's default result",
            i.id,
            at(i.global_deadline),
            relative(i.global_deadline, now)
        )
    }))
}

fn not_paused(world: &World, key: &Key) -> Result<(), (Exit, String)> {
    let Key::Group(g) = key else {
        return Ok(());
    };
    match world.group(g).and_then(|r| r.paused.as_ref()) {
        Some(p) => Err((
            Exit::Precondition,
            format!(
                "{g} is already paused (by {} at {}: {})",
                p.actor,
                at(p.at),
                p.reason
            ),
        )),
        None => Ok(()),
    }
}

fn is_paused(world: &World, key: &Key) -> Result<(), (Exit, String)> {
    let Key::Group(g) = key else {
        return Ok(());
    };
    match world.group(g) {
        None => Err((
            Exit::NotFound,
            format!("no record for deployment group {g}"),
        )),
        Some(r) if r.paused.is_none() => Err((Exit::Precondition, format!("{g} is not paused"))),
        Some(_) => Ok(()),
    }
}
