//! Runs a scenario on the local cloud and prints each run's timeline and summary.
//!
//! `localcloud [--mode native|orchestrator|both] SCENARIO.toml`
//!
//! Exits 1 if an invariant was violated in the orchestrator's run, 2 on bad usage or a bad
//! scenario, 3 if the local cloud could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use turnstile_localcloud::report::{Summary, render_run};
use turnstile_localcloud::{Mode, Scenario, Stack, run};

const USAGE: &str = "usage: localcloud [--mode native|orchestrator|both] SCENARIO.toml";

fn parse_args() -> Result<(Vec<Mode>, PathBuf), String> {
    let mut modes = vec![Mode::Native, Mode::Orchestrator];
    let mut path = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => {
                modes = match args.next().as_deref() {
                    Some("native") => vec![Mode::Native],
                    Some("orchestrator") => vec![Mode::Orchestrator],
                    Some("both") => vec![Mode::Native, Mode::Orchestrator],
                    other => return Err(format!("--mode: unknown value {other:?}")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            _ if path.is_none() => path = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument `{a}`")),
        }
    }
    Ok((modes, path.ok_or("no scenario file given")?))
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCALCLOUD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let (modes, path) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("localcloud: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let scenario = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("localcloud: {e}");
            return ExitCode::from(2);
        }
    };
    let stack = if modes.contains(&Mode::Orchestrator) {
        eprintln!("starting DynamoDB Local and moto server ...");
        match Stack::start() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("localcloud: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        None
    };
    if !scenario.description.is_empty() {
        println!("{}\n", scenario.description.trim());
    }
    let mut violated = false;
    for mode in modes {
        let record = match run(stack.as_ref(), &scenario, mode).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("localcloud: {e}");
                return ExitCode::from(3);
            }
        };
        let summary = Summary::of(&record, &scenario);
        println!("{}", render_run(&record, &scenario, &summary));
        violated |= !record.violations.is_empty();
    }
    if violated {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
