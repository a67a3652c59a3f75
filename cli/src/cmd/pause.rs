//! `turnstile pause APPLICATION DEPLOYMENT_GROUP` and `turnstile resume …`: stop and restart
//! the creation of deployments for one deployment group, for an outage of something its
//! deployments need (a package mirror, a secrets store) so that it does not fail, and abandon,
//! every new instance meanwhile. `--asg NAME` acts on every deployment group of the plan on
//! that Auto Scaling group's turnstile launch hooks, one action each.
//!
//! Paused, new launches join the group's list and wait in `Pending:Wait` with their
//! heartbeats; a deployment already created runs to its end; nothing new is created until the
//! group is resumed, which admits what waits at once. Before a pause is applied the command
//! says which waiting instance's global deadline a long pause would outlive.

use std::io::Write;

use clap::Args;
use serde_json::json;
use turnstile_aws::store::Store;
use turnstile_core::{GroupKey, HookNames, Key, Millis, Plan, World};

use super::act::{self, ActArgs, Action};
use super::{store, store_failed, written};
use crate::output::{at, relative, write_json};
use crate::{Context, Exit, Format, Global};

/// The AWS operations `pause --asg` and `resume --asg` make to find the plan (the actions
/// themselves are [`act::AWS_CALLS`]) (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the operator policies do not allow them.
pub const AWS_CALLS: &[&str] = &["autoscaling:DescribeLifecycleHooks"];

/// The document of `pause --asg` / `resume --asg`: one `turnstile.action/v1` per group.
pub const FLEET_SCHEMA: &str = "turnstile.actions/v1";

pub const PAUSE_HELP: &str = "Paused, new instances keep their place in the group's queue and \
their heartbeats, but every hook has a global timeout (min(100 × heartbeat timeout, 48 h)): an \
instance still waiting when it passes gets the hook's default result. The command prints the \
nearest such deadline before it sends the pause. With --asg, every deployment group of the plan \
on the Auto Scaling group's turnstile launch hooks is paused, one after the other.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, or no --table / --queue-url
  4  --asg: no turnstile launch hook on the group carries a valid plan, or no such group
  5  already paused, or refused when it was handled (--asg: for any group; the others are
     still paused)";

pub const RESUME_HELP: &str = "The group admits what waits at once. With --asg, every deployment \
group of the plan on the Auto Scaling group's turnstile launch hooks is resumed.

EXIT CODES:
  0  applied (or sent, with --wait-secs 0; or printed, with --dry-run)
  1  an AWS call failed, or no result within --wait-secs
  2  usage, or no --table / --queue-url
  4  no record for the deployment group (--asg: no turnstile launch hook on the group carries
     a valid plan, or no such group)
  5  not paused, or refused when it was handled (--asg: for any group; the others are still
     resumed)";

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The CodeDeploy application.
    #[arg(
        value_name = "APPLICATION",
        required_unless_present = "asg",
        conflicts_with = "asg"
    )]
    pub application: Option<String>,
    /// The deployment group.
    #[arg(value_name = "DEPLOYMENT_GROUP", required_unless_present = "asg")]
    pub deployment_group: Option<String>,
    /// Every deployment group of the plan on this Auto Scaling group's turnstile launch hooks,
    /// instead of APPLICATION DEPLOYMENT_GROUP.
    #[arg(long, value_name = "NAME")]
    pub asg: Option<String>,
    // With --asg: which of its hooks are turnstile's.
    #[command(flatten)]
    pub hooks: super::LaunchHooksArgs,
    #[command(flatten)]
    pub act: ActArgs,
}

pub async fn run(
    global: &Global,
    args: &PauseArgs,
    paused: bool,
    mut ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    if let Some(asg) = &args.asg {
        return fleet(global, args, asg, paused, ctx, out, err).await;
    }
    let (Some(app), Some(dg)) = (&args.application, &args.deployment_group) else {
        let _ = writeln!(err, "error: name APPLICATION DEPLOYMENT_GROUP, or --asg");
        return Exit::Usage;
    };
    let group = GroupKey::new(app.as_str(), dg.as_str());
    let action = match action_for(global, args, &group, paused, &ctx, err).await {
        Ok(a) => a,
        Err(e) => return e,
    };
    let check = if paused { not_paused } else { is_paused };
    match act::perform(global, &args.act, action, &check, &mut ctx, err).await {
        Ok(done) if done.not_sent => done.exit,
        Ok(done) => act::write_done(global, &done, out, err),
        Err(e) => e,
    }
}

/// The pause or resume of `group`, with the deadline warning a pause carries.
async fn action_for(
    global: &Global,
    args: &PauseArgs,
    group: &GroupKey,
    paused: bool,
    ctx: &Context,
    err: &mut dyn Write,
) -> Result<Action, Exit> {
    let key = Key::Group(group.clone());
    let name = if paused { "pause" } else { "resume" };
    let mut action = Action::new(name, key, &args.act.reason, act::request_id(act::now(ctx)));
    if paused {
        let s = store(global, ctx, err).await?;
        match deadline_warning(&s, group, act::now(ctx)).await {
            Ok(w) => action.warnings.extend(w),
            Err(e) => {
                return Err(store_failed(
                    &e,
                    global.table.as_deref().unwrap_or_default(),
                    err,
                ));
            }
        }
    }
    Ok(action)
}

/// `--asg`: one action per deployment group of the plan, in plan order, then one document.
async fn fleet(
    global: &Global,
    args: &PauseArgs,
    asg: &str,
    paused: bool,
    mut ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let owned = match args.hooks.parse(err) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let groups = match plan_groups(global, &ctx, asg, &owned, err).await {
        Ok(g) => g,
        Err(e) => return e,
    };
    if groups.is_empty() {
        let _ = writeln!(
            err,
            "error: no turnstile launch hook ({}) on {asg} carries a valid plan: nothing to {}; `turnstile doctor --asg {asg}` says why",
            args.hooks.launch_hooks,
            if paused { "pause" } else { "resume" }
        );
        return Exit::NotFound;
    }
    let check = if paused { not_paused } else { is_paused };
    let (mut docs, mut lines, mut exit) = (Vec::new(), Vec::new(), Exit::Ok);
    for group in &groups {
        let action = match action_for(global, args, group, paused, &ctx, err).await {
            Ok(a) => a,
            Err(e) => return e,
        };
        let done = match act::perform(global, &args.act, action, &check, &mut ctx, err).await {
            Ok(d) => d,
            Err(e) => return e,
        };
        if exit == Exit::Ok {
            exit = done.exit;
        }
        docs.push(done.doc);
        lines.push(done.line);
    }
    let r = match global.output {
        Format::Json => write_json(
            out,
            &json!({ "schema": FLEET_SCHEMA, "asg": asg, "actions": docs }),
        ),
        Format::Table => lines.iter().try_for_each(|l| writeln!(out, "{l}")),
    };
    match written(r, err) {
        Exit::Ok => exit,
        e => e,
    }
}

/// The deployment groups of the plans on `asg`'s turnstile launch hooks, in plan order, each
/// once. A hook whose metadata is not a valid plan is named on `err` and skipped.
async fn plan_groups(
    global: &Global,
    ctx: &Context,
    asg: &str,
    owned: &HookNames,
    err: &mut dyn Write,
) -> Result<Vec<GroupKey>, Exit> {
    use aws_sdk_autoscaling::error::ProvideErrorMetadata;
    let client = match &ctx.autoscaling {
        Some(c) => c.clone(),
        None => aws_sdk_autoscaling::Client::new(&super::sdk_config(global, err).await?),
    };
    let hooks = match client
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(asg)
        .send()
        .await
    {
        Ok(h) => h,
        Err(e) => {
            let text = aws_sdk_autoscaling::error::DisplayErrorContext(&e).to_string();
            // Auto Scaling answers a group that does not exist with a ValidationError.
            let missing = e.code() == Some("ValidationError") && text.contains("not found");
            let _ = writeln!(err, "error: DescribeLifecycleHooks of {asg}: {text}");
            return Err(if missing {
                Exit::NotFound
            } else {
                Exit::Failure
            });
        }
    };
    let mut groups: Vec<GroupKey> = Vec::new();
    for h in hooks.lifecycle_hooks() {
        let name = h.lifecycle_hook_name().unwrap_or_default();
        if h.lifecycle_transition() != Some(LAUNCHING) || !owned.matches(name) {
            continue;
        }
        match Plan::parse(h.notification_metadata().unwrap_or_default()) {
            Ok(plan) => {
                for s in plan.steps {
                    if !groups.contains(&s.group) {
                        groups.push(s.group);
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(
                    err,
                    "warning: the metadata of hook {name} on {asg} is not a valid plan ({e}): skipped; `turnstile plan check` names the fields"
                );
            }
        }
    }
    Ok(groups)
}

const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

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
