//! What every operator action shares: check the record, build the message, confirm, send it
//! to the queue, and wait until the record shows what came of it.
//!
//! An action is a queue message the queue function handles like any other input (same runner,
//! same conditional writes, deduped on its request id); the actor recorded is the message's SQS
//! sender, which this command cannot choose. The command waits for the note with its request
//! id to appear in the record ([`turnstile_core::OperatorNote`]).

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use turnstile_aws::store::Store;
use turnstile_core::{Key, Millis, NoteOutcome, OperatorNote};
use turnstile_events::OperatorBody;
use turnstile_events::operator::{OPERATOR_KIND, OPERATOR_VERSION};

use super::{queue, store, store_failed, written};
use crate::output::{self, at, write_json};
use crate::{Context, Exit, Format, Global};

/// The AWS operations every operator action makes (its message to the queue) (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the operator policies do not allow them.
pub const AWS_CALLS: &[&str] = &["sqs:SendMessage"];

pub const SCHEMA: &str = "turnstile.action/v1";

/// Options every action takes.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// Why: stored in the record with the action and shown by `show`.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Print the message that would be sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the confirmation a destructive action asks for (needed when stdin is not a
    /// terminal).
    #[arg(long)]
    pub yes: bool,
    /// How long to wait for the records to show the result, in seconds (0: send and return).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub wait_secs: u64,
    /// How often to look at the records while waiting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub poll_ms: u64,
}

/// One action, ready to check and send.
pub struct Action {
    /// `retry`, `abandon`, `reset-breaker`.
    pub name: &'static str,
    /// The record the note appears in.
    pub key: Key,
    /// What the message's target fields are.
    pub body: OperatorBody,
    /// Asks for confirmation (on a terminal) or `--yes`.
    pub destructive: Option<String>,
    /// What the operator should know before it is applied (printed first, and in the JSON).
    pub warnings: Vec<String>,
}

impl Action {
    pub fn new(name: &'static str, key: Key, reason: &str, request: String) -> Self {
        let (instance, application, deployment_group) = match &key {
            Key::Instance(i) => (Some(i.as_str().to_owned()), None, None),
            Key::Group(g) => (
                None,
                Some(g.application.clone()),
                Some(g.deployment_group.clone()),
            ),
        };
        Self {
            name,
            key,
            body: OperatorBody {
                turnstile: OPERATOR_KIND.into(),
                version: OPERATOR_VERSION,
                request,
                action: name.into(),
                instance,
                application,
                deployment_group,
                reason: reason.to_owned(),
            },
            destructive: None,
            warnings: Vec::new(),
        }
    }
}

/// A request id no other invocation picks: the time and a random part.
pub fn request_id(now: Millis) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now.0);
    h.write_u32(std::process::id());
    format!("op-{}-{:016x}", now.0, h.finish())
}

/// What a record says before anything is sent: `Err` is the exit code and its message.
pub type Precheck<'a> = &'a dyn Fn(&turnstile_core::World, &Key) -> Result<(), (Exit, String)>;

/// What came of one action: its `turnstile.action/v1` document (or, when the precheck refused
/// it, what would have been sent), the line for a person, and the exit code.
pub struct Done {
    pub doc: Value,
    pub line: String,
    pub exit: Exit,
    /// The precheck refused it: nothing was sent (the reason is on stderr already).
    pub not_sent: bool,
}

/// Runs `action`: precheck against the record, confirm, send, wait, report.
pub async fn run(
    global: &Global,
    args: &ActArgs,
    action: Action,
    precheck: Precheck<'_>,
    mut ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    match perform(global, args, action, precheck, &mut ctx, err).await {
        Ok(done) if done.not_sent => done.exit,
        Ok(done) => write_done(global, &done, out, err),
        Err(exit) => exit,
    }
}

/// Writes one action's outcome: its document, or its line.
pub fn write_done(global: &Global, done: &Done, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let r = match global.output {
        Format::Json => write_json(out, &done.doc),
        Format::Table => writeln!(out, "{}", done.line),
    };
    match written(r, err) {
        Exit::Ok => done.exit,
        e => e,
    }
}

/// Precheck, confirm, send and wait for one action; `Err` when the table or the queue could
/// not be used at all (reported on `err`).
pub async fn perform(
    global: &Global,
    args: &ActArgs,
    action: Action,
    precheck: Precheck<'_>,
    ctx: &mut Context,
    err: &mut dyn Write,
) -> Result<Done, Exit> {
    let s = store(global, ctx, err).await?;
    let table = global.table.as_deref().unwrap_or_default().to_owned();
    let before = match s.load(std::slice::from_ref(&action.key)).await {
        Ok(l) => l.world,
        Err(e) => return Err(store_failed(&e, &table, err)),
    };
    if let Err((exit, why)) = precheck(&before, &action.key) {
        let _ = writeln!(err, "error: {why}");
        let mut doc = document(&action, "not-sent", None);
        if let Some(refused) = doc.get_mut("refused") {
            *refused = Value::String(why.clone());
        }
        return Ok(Done {
            doc,
            line: format!("{} {}: not sent: {why}", action.name, target(&action.key)),
            exit,
            not_sent: true,
        });
    }
    let body = action.body.to_body();
    for w in &action.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    if args.dry_run {
        return Ok(Done {
            doc: document(&action, "dry-run", None),
            line: format!("would send to the queue: {body}"),
            exit: Exit::Ok,
            not_sent: false,
        });
    }
    if let Some(what) = &action.destructive
        && !args.yes
    {
        if !ctx.interactive {
            let _ = writeln!(
                err,
                "error: {what}: pass --yes to confirm (stdin is not a terminal, so nobody can be asked)"
            );
            return Err(Exit::Usage);
        }
        let _ = write!(err, "{what}. Type yes to go on: ");
        let _ = err.flush();
        let mut line = String::new();
        let _ = BufReader::new(&mut ctx.stdin).read_line(&mut line);
        if line.trim() != "yes" {
            let _ = writeln!(err, "not confirmed: nothing sent");
            return Err(Exit::Precondition);
        }
    }
    let (sqs, url) = queue(global, ctx, err).await?;
    if let Err(e) = sqs
        .send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
    {
        let _ = writeln!(
            err,
            "error: sending to {url}: {}",
            aws_sdk_sqs::error::DisplayErrorContext(&e)
        );
        return Err(Exit::Failure);
    }
    let _ = writeln!(
        err,
        "sent {} as request {}; waiting for the records",
        action.name, action.body.request
    );
    let note = if args.wait_secs == 0 {
        None
    } else {
        let polls = (args.wait_secs * 1000).div_ceil(args.poll_ms.max(1));
        let mut found = None;
        for _ in 0..polls {
            match s.load(std::slice::from_ref(&action.key)).await {
                Ok(l) => {
                    found = note_in(&l.world, &action.key, &action.body.request);
                    if found.is_some() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = writeln!(err, "warning: reading {table}: {e}; trying again");
                }
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms.max(1))).await;
        }
        found
    };
    let (state, exit) = match &note {
        None if args.wait_secs == 0 => ("sent", Exit::Ok),
        None => {
            let _ = writeln!(
                err,
                "error: no result after {} s: the message is in the queue (look at `turnstile dlq list` and the queue function's logs), and `turnstile show` will show the note once it is handled",
                args.wait_secs
            );
            ("pending", Exit::Failure)
        }
        Some(n) => match &n.outcome {
            NoteOutcome::Applied => ("applied", Exit::Ok),
            NoteOutcome::Refused(why) => {
                let _ = writeln!(err, "refused: {why}");
                ("refused", Exit::Precondition)
            }
        },
    };
    let line = match &note {
        Some(n) => format!(
            "{} {}: {} by {} at {} ({})",
            action.name,
            target(&action.key),
            state,
            n.actor,
            at(n.at),
            n.reason
        ),
        None => format!("{} {}: {state}", action.name, target(&action.key)),
    };
    Ok(Done {
        doc: document(&action, state, note.as_ref()),
        line,
        exit,
        not_sent: false,
    })
}

fn target(key: &Key) -> String {
    match key {
        Key::Instance(i) => i.as_str().to_owned(),
        Key::Group(g) => format!("{}/{}", g.application, g.deployment_group),
    }
}

/// The note `request` left in the record of `key`.
fn note_in(world: &turnstile_core::World, key: &Key, request: &str) -> Option<OperatorNote> {
    let notes = match key {
        Key::Instance(i) => &world.instance(i)?.operator,
        Key::Group(g) => &world.group(g)?.operator,
    };
    notes.iter().rev().find(|n| n.request == request).cloned()
}

/// The `turnstile.action/v1` document.
fn document(action: &Action, state: &str, note: Option<&OperatorNote>) -> Value {
    let refused = note.and_then(|n| match &n.outcome {
        NoteOutcome::Refused(why) => Some(why.clone()),
        NoteOutcome::Applied => None,
    });
    json!({
        "schema": SCHEMA,
        "action": action.name,
        "target": target(&action.key),
        "request": action.body.request,
        "reason": action.body.reason,
        "state": state,
        "message": serde_json::to_value(&action.body).unwrap_or(Value::Null),
        "actor": note.map(|n| n.actor.clone()),
        "decidedAt": note.map(|n| at(n.at)),
        "refused": refused,
        "warnings": action.warnings,
    })
}

/// The current time as the core counts it (for the request id).
pub fn now(ctx: &Context) -> Millis {
    output::millis(ctx.now)
}
