//! `turnstile dlq list` and `turnstile dlq redrive`: the messages the queue function could not
//! handle, each with why (the parse error and its field, read again from the body here), and
//! sending them back to the queue once the cause is fixed.
//!
//! `list` receives with a short visibility timeout (so that paging never returns one message
//! twice), deletes nothing, and makes every message it saw visible again when it is done. `redrive` sends a
//! message's body to turnstile's queue and then deletes it from the dead-letter queue: a crash in
//! between leaves a copy in both, which the queue function's deduplication absorbs.

use std::collections::BTreeMap;
use std::io::Write;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{queue_client, written};
use crate::output::{Cell, Style, Table, at, write_json};
use crate::{Context, Exit, Format, Global};

/// The AWS operations of `dlq list` and `dlq redrive` (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the operator policies do not allow them.
pub const AWS_CALLS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibilityBatch",
    "sqs:SendMessage",
    "sqs:DeleteMessage",
];

pub const LIST_SCHEMA: &str = "turnstile.dlq/v1";
pub const REDRIVE_SCHEMA: &str = "turnstile.dlq-redrive/v1";

/// Seconds a received message stays hidden while the command pages through the queue (so it
/// never sees one message twice); it is made visible again when the command is done, or after
/// this long if that fails.
const LIST_VISIBILITY_SECS: i32 = 30;

pub const AFTER_HELP: &str = "EXIT CODES:
  0  ok
  1  an SQS call failed
  2  usage, or no --dlq-url (and for redrive no --queue-url)
  4  redrive --id: no such message in the dead-letter queue
  5  no AWS region";

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every message in the dead-letter queue, with why it failed (read-only: nothing is
    /// deleted; each is hidden from other readers for 30 s).
    #[command(after_help = AFTER_HELP)]
    List(ListArgs),
    /// Send dead-lettered messages back to turnstile's queue (all, or those of --id).
    #[command(after_help = AFTER_HELP)]
    Redrive(RedriveArgs),
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// turnstile's dead-letter queue (the stack's DeadLetterQueueUrl output).
    #[arg(long, env = "TURNSTILE_DLQ_URL", value_name = "URL")]
    pub dlq_url: Option<String>,
    /// At most this many messages.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max: usize,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dlq: DlqArgs,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub dlq: DlqArgs,
    /// Only these message ids (repeat the flag); default: every message.
    #[arg(long = "id", value_name = "MESSAGE_ID")]
    pub ids: Vec<String>,
    /// Print what would be sent back, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One dead-lettered message and why it failed.
#[derive(Debug, Clone)]
pub struct Dead {
    pub id: String,
    pub receipt: String,
    pub body: String,
    pub sent_at: Option<u64>,
    pub receives: Option<u64>,
    /// The parse error, with its field: `None` if the body parses (it failed while being
    /// handled, for a reason the queue function's logs give).
    pub why: Option<(Option<String>, String)>,
}

pub async fn run(
    global: &Global,
    command: &DlqCommand,
    ctx: Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let args = match command {
        DlqCommand::List(a) => &a.dlq,
        DlqCommand::Redrive(a) => &a.dlq,
    };
    let Some(dlq) = args.dlq_url.clone().filter(|u| !u.trim().is_empty()) else {
        let _ = writeln!(
            err,
            "error: no dead-letter queue: pass --dlq-url URL or set TURNSTILE_DLQ_URL (the stack's DeadLetterQueueUrl)"
        );
        return Exit::Usage;
    };
    let sqs = match queue_client(global, &ctx, err).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let dead = match receive(&sqs, &dlq, args.max).await {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(err, "error: reading {dlq}: {e}");
            return Exit::Failure;
        }
    };
    let (exit, kept) = match command {
        DlqCommand::List(_) => {
            let r = match global.output {
                Format::Json => write_json(out, &list_document(&dlq, &dead)),
                Format::Table => list_table(&dead, ctx.color, out),
            };
            (written(r, err), dead)
        }
        DlqCommand::Redrive(a) => redrive(global, a, &sqs, &dlq, dead, out, err).await,
    };
    release(&sqs, &dlq, &kept, err).await;
    exit
}

/// Makes the messages this command received but did not move visible again at once, so the
/// next reader (an alarm, another `list`) sees the queue as it was.
async fn release(sqs: &aws_sdk_sqs::Client, url: &str, kept: &[Dead], err: &mut dyn Write) {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
    for chunk in kept.chunks(10) {
        let entries: Vec<Entry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(n, d)| {
                Entry::builder()
                    .id(format!("m{n}"))
                    .receipt_handle(&d.receipt)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        let sent = sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await;
        if let Err(e) = sent {
            let _ = writeln!(
                err,
                "warning: could not make the listed messages visible again ({}); they are back within {LIST_VISIBILITY_SECS} s",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            );
        }
    }
}

/// Receives up to `max` distinct messages, hiding each for [`LIST_VISIBILITY_SECS`].
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: usize,
) -> Result<Vec<Dead>, String> {
    let mut seen: BTreeMap<String, Dead> = BTreeMap::new();
    while seen.len() < max {
        let batch = i32::try_from((max - seen.len()).min(10)).unwrap_or(10);
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(batch)
            .visibility_timeout(LIST_VISIBILITY_SECS)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let before = seen.len();
        for m in messages {
            let d = dead(&m);
            seen.entry(d.id.clone()).or_insert(d);
        }
        if seen.len() == before {
            break;
        }
    }
    Ok(seen.into_values().collect())
}

fn dead(m: &Message) -> Dead {
    let attr = |name: MessageSystemAttributeName| {
        m.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let body = m.body().unwrap_or_default().to_owned();
    let why = match turnstile_events::parse(&body) {
        Ok(_) => None,
        Err(e) => Some((e.field().map(str::to_owned), e.to_string())),
    };
    Dead {
        id: m.message_id().unwrap_or_default().to_owned(),
        receipt: m.receipt_handle().unwrap_or_default().to_owned(),
        body,
        sent_at: attr(MessageSystemAttributeName::SentTimestamp),
        receives: attr(MessageSystemAttributeName::ApproximateReceiveCount),
        why,
    }
}

fn why_text(d: &Dead) -> String {
    match &d.why {
        Some((_, e)) => e.clone(),
        None => "parses: it failed while being handled (see the queue function's logs for this message id)".into(),
    }
}

fn list_document(url: &str, dead: &[Dead]) -> Value {
    json!({
        "schema": LIST_SCHEMA,
        "deadLetterQueue": url,
        "messages": dead.iter().map(|d| json!({
            "messageId": d.id,
            "sentAt": d.sent_at.map(|t| at(turnstile_core::Millis(t))),
            "receiveCount": d.receives,
            "parses": d.why.is_none(),
            "field": d.why.as_ref().and_then(|(f, _)| f.clone()),
            "why": why_text(d),
            "body": d.body,
        })).collect::<Vec<_>>(),
    })
}

fn list_table(dead: &[Dead], color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if dead.is_empty() {
        return writeln!(out, "the dead-letter queue is empty");
    }
    let mut t = Table::new(&["MESSAGE", "SENT", "RECEIVES", "FIELD", "WHY"]);
    for d in dead {
        t.row(vec![
            d.id.clone().into(),
            d.sent_at
                .map_or("-".into(), |s| at(turnstile_core::Millis(s)))
                .into(),
            d.receives.map_or("-".into(), |r| r.to_string()).into(),
            d.why
                .as_ref()
                .and_then(|(f, _)| f.clone())
                .unwrap_or("-".into())
                .into(),
            Cell::styled(why_text(d), Style::Plain),
        ]);
    }
    t.write(out, color)
}

async fn redrive(
    global: &Global,
    args: &RedriveArgs,
    sqs: &aws_sdk_sqs::Client,
    dlq: &str,
    dead: Vec<Dead>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> (Exit, Vec<Dead>) {
    let (chosen, mut kept): (Vec<Dead>, Vec<Dead>) = if args.ids.is_empty() {
        (dead, Vec::new())
    } else {
        let missing: Vec<&String> = args
            .ids
            .iter()
            .filter(|id| !dead.iter().any(|d| &d.id == *id))
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                err,
                "error: not in the dead-letter queue (or hidden by another reader for up to {LIST_VISIBILITY_SECS} s): {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return (Exit::NotFound, dead);
        }
        dead.into_iter().partition(|d| args.ids.contains(&d.id))
    };
    let Some(url) = global.queue_url.clone().filter(|u| !u.trim().is_empty()) else {
        let _ = writeln!(
            err,
            "error: no queue: pass --queue-url URL or set TURNSTILE_QUEUE_URL (where redriven messages go)"
        );
        kept.extend(chosen);
        return (Exit::Usage, kept);
    };
    let mut moved = Vec::new();
    for d in &chosen {
        if d.why.is_some() {
            let _ = writeln!(
                err,
                "warning: {} does not parse ({}); it will fail again",
                d.id,
                why_text(d)
            );
        }
        if args.dry_run {
            kept.push(d.clone());
            continue;
        }
        if let Err(e) = sqs
            .send_message()
            .queue_url(&url)
            .message_body(&d.body)
            .send()
            .await
        {
            let _ = writeln!(
                err,
                "error: sending {} to {url}: {}",
                d.id,
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            );
            kept.extend(chosen.iter().filter(|c| !moved.contains(&c.id)).cloned());
            return (Exit::Failure, kept);
        }
        if let Err(e) = sqs
            .delete_message()
            .queue_url(dlq)
            .receipt_handle(&d.receipt)
            .send()
            .await
        {
            let _ = writeln!(
                err,
                "warning: {} was sent back but not deleted from the dead-letter queue ({}); the copy is harmless: the queue function deduplicates",
                d.id,
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            );
        }
        moved.push(d.id.clone());
    }
    let r = match global.output {
        Format::Json => write_json(
            out,
            &json!({
                "schema": REDRIVE_SCHEMA,
                "dryRun": args.dry_run,
                "messages": chosen.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
                "redriven": moved,
            }),
        ),
        Format::Table if args.dry_run => writeln!(
            out,
            "would send {} message(s) back: {}",
            chosen.len(),
            chosen
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Format::Table => writeln!(out, "sent {} message(s) back to the queue", moved.len()),
    };
    (written(r, err), kept)
}
