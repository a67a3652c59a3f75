//! # turnstile-cli
//!
//! The operator's command line, `turnstile`. Every command lives in its own file under
//! [`cmd`]; this file only defines the arguments and dispatches. [`run`] is the whole program
//! with its outside world passed in ([`Context`]: the clock, the environment, stdin, a
//! DynamoDB client), so tests call it in-process exactly as the binary does.

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod cmd;
pub mod describe;
pub mod output;

/// Exit codes of every command (stated in the top-level `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// It could not: an AWS call failed, a record could not be read, a file could not be read.
    Failure = 1,
    /// The command line was wrong (clap's own errors, and a missing `--table` / `--asg`).
    Usage = 2,
    /// A check ran and found problems (`plan check`).
    Problems = 3,
    /// What was asked for does not exist (`show` of an instance without a record).
    NotFound = 4,
    /// Something the command needs is not there: no AWS region, the table does not exist.
    Precondition = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

const ABOUT: &str =
    "Operate turnstile, the Auto Scaling lifecycle-hook orchestrator for CodeDeploy";

const LONG_ABOUT: &str =
    "Operate turnstile, the Auto Scaling lifecycle-hook orchestrator for CodeDeploy.

Data goes to stdout (a table, or one versioned JSON document with --output json); progress, \
warnings and errors go to stderr. Colour is used only when stdout is a terminal and NO_COLOR \
is unset.";

const AFTER_HELP: &str = "EXIT CODES:
  0  ok
  1  failure (an AWS call failed, a record or a file could not be read)
  2  usage (a bad command line; also a missing --table or --asg)
  3  a check found problems (plan check, doctor)
  4  not found (show: no record for the instance; doctor: no such Auto Scaling group)
  5  precondition not met (no AWS region configured, the table does not exist)

ENVIRONMENT:
  TURNSTILE_TABLE             the DynamoDB table (instead of --table)
  TURNSTILE_QUEUE_URL         the SQS queue actions are sent to (instead of --queue-url)
  TURNSTILE_DLQ_URL           the dead-letter queue `dlq` reads (instead of --dlq-url)
  TURNSTILE_MANAGED_GROUPS    comma-separated Auto Scaling groups `status` lists when no --asg is given
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, ...
                              the AWS SDK's standard configuration chain (aws-config)
  NO_COLOR                    never colour the tables";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "turnstile",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Output format: aligned table lines, or one versioned JSON document.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// AWS named profile (default: the SDK's chain, e.g. AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region (default: the SDK's chain, e.g. AWS_REGION or the profile's region).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// turnstile's DynamoDB table (the stack's table output).
    #[arg(long, global = true, env = "TURNSTILE_TABLE", value_name = "TABLE")]
    pub table: Option<String>,
    /// turnstile's SQS queue, where actions are sent (the stack's queue URL output).
    #[arg(long, global = true, env = "TURNSTILE_QUEUE_URL", value_name = "URL")]
    pub queue_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with deployment plans (the launch hook's notification metadata).
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Every pipeline in flight and the deployment groups they use (read-only).
    #[command(after_help = cmd::status::AFTER_HELP)]
    Status(cmd::status::StatusArgs),
    /// One instance's pipeline in detail, step by step (read-only).
    #[command(after_help = cmd::show::AFTER_HELP)]
    Show(cmd::show::ShowArgs),
    /// Run a held pipeline's step again with fresh attempts.
    #[command(after_help = cmd::retry::AFTER_HELP)]
    Retry(cmd::retry::RetryArgs),
    /// Complete a pipeline's lifecycle action with ABANDON now.
    #[command(after_help = cmd::abandon::AFTER_HELP)]
    Abandon(cmd::abandon::AbandonArgs),
    /// The override: a held pipeline goes on WITHOUT the step that failed.
    #[command(name = "skip-failed-step", after_help = cmd::skip::AFTER_HELP)]
    SkipFailedStep(cmd::skip::SkipArgs),
    /// A deployment group's repeated-failure breaker.
    #[command(subcommand)]
    Breaker(cmd::breaker::BreakerCommand),
    /// Stop creating deployments for a deployment group (new instances wait, with heartbeats).
    #[command(after_help = cmd::pause::PAUSE_HELP)]
    Pause(cmd::pause::PauseArgs),
    /// The messages the queue function could not handle: list them with why, send them back.
    #[command(subcommand)]
    Dlq(cmd::dlq::DlqCommand),
    /// Create deployments for a paused deployment group again.
    #[command(after_help = cmd::pause::RESUME_HELP)]
    Resume(cmd::pause::PauseArgs),
    /// Check one Auto Scaling group's set-up against the account: hooks, plan, deployment
    /// groups, gate tags (read-only).
    #[command(after_help = cmd::doctor::AFTER_HELP)]
    Doctor(cmd::doctor::DoctorArgs),
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a plan offline: every problem with its field, and whether its step timeouts fit
    /// the hook's global timeout.
    #[command(after_help = cmd::plan_check::AFTER_HELP)]
    Check(cmd::plan_check::PlanCheckArgs),
}

/// What the program gets from the outside world. The binary fills it from the process
/// ([`Context::from_process`]); tests fill it themselves.
pub struct Context {
    /// The current time: the system clock in the binary, fixed in tests.
    pub now: DateTime<Utc>,
    /// `TURNSTILE_MANAGED_GROUPS`, as set.
    pub managed_groups: Option<String>,
    /// Whether tables may use colour (stdout is a terminal and NO_COLOR is unset).
    pub color: bool,
    /// Read for `plan check -`.
    pub stdin: Box<dyn Read + Send>,
    /// A DynamoDB client to use instead of one built from the SDK's configuration chain.
    pub dynamo: Option<aws_sdk_dynamodb::Client>,
    /// An SQS client to use instead of one built from the SDK's configuration chain.
    pub sqs: Option<aws_sdk_sqs::Client>,
    /// An Auto Scaling client to use instead of one built from the SDK's configuration chain.
    pub autoscaling: Option<aws_sdk_autoscaling::Client>,
    /// Whether stdin is a terminal, so a destructive action can ask for confirmation.
    pub interactive: bool,
}

impl Context {
    pub fn from_process() -> Self {
        use std::io::IsTerminal;
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            now: Utc::now(),
            managed_groups: std::env::var("TURNSTILE_MANAGED_GROUPS").ok(),
            color: std::io::stdout().is_terminal() && !no_color,
            stdin: Box::new(std::io::stdin()),
            dynamo: None,
            sqs: None,
            autoscaling: None,
            interactive: std::io::stdin().is_terminal(),
        }
    }
}

/// Parses `args` (the program name first) and runs the command. Help and version go to
/// `out` with exit 0; usage errors to `err` with exit 2, as clap itself would.
pub async fn run_args<I, T>(args: I, ctx: Context, out: &mut dyn Write, err: &mut dyn Write) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli, ctx, out, err).await,
        Err(e) => {
            let text = if ctx.color {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            if e.use_stderr() {
                let _ = write!(err, "{text}");
                Exit::Usage
            } else {
                let _ = write!(out, "{text}");
                Exit::Ok
            }
        }
    }
}

/// Runs a parsed command line: dispatch only.
pub async fn run(cli: Cli, ctx: Context, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    match cli.command {
        Command::Plan(PlanCommand::Check(args)) => {
            cmd::plan_check::run(&cli.global, &args, ctx, out, err)
        }
        Command::Status(args) => cmd::status::run(&cli.global, &args, ctx, out, err).await,
        Command::Show(args) => cmd::show::run(&cli.global, &args, ctx, out, err).await,
        Command::Retry(args) => cmd::retry::run(&cli.global, &args, ctx, out, err).await,
        Command::Abandon(args) => cmd::abandon::run(&cli.global, &args, ctx, out, err).await,
        Command::SkipFailedStep(args) => cmd::skip::run(&cli.global, &args, ctx, out, err).await,
        Command::Breaker(c) => cmd::breaker::run(&cli.global, &c, ctx, out, err).await,
        Command::Dlq(c) => cmd::dlq::run(&cli.global, &c, ctx, out, err).await,
        Command::Pause(args) => cmd::pause::run(&cli.global, &args, true, ctx, out, err).await,
        Command::Resume(args) => cmd::pause::run(&cli.global, &args, false, ctx, out, err).await,
        Command::Doctor(args) => cmd::doctor::run(&cli.global, &args, ctx, out, err).await,
    }
}
