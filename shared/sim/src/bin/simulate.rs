//! Runs a scenario in the in-process simulation (real core and parser, modelled AWS) and
//! prints a timeline and a summary. Exits non-zero if any invariant was violated.
//!
//! `simulate [--instances N] [--groups M] [--seed S] [--faults]`

use std::process::ExitCode;

use turnstile_model::DeployConfig;
use turnstile_sim::scenario::report;
use turnstile_sim::timeline::{percentile, render, time_to_in_service};
use turnstile_sim::{Faults, Scenario, Script, StepSpec};

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| -> Result<(u64, u64, u64), String> {
        Ok((
            arg(&args, "--instances", 10)?,
            arg(&args, "--groups", 3)?,
            arg(&args, "--seed", 42)?,
        ))
    })();
    let (instances, groups, seed) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "simulate: {e}\nusage: simulate [--instances N] [--groups M] [--seed S] [--faults]"
            );
            return ExitCode::from(2);
        }
    };
    let faults = if args.iter().any(|a| a == "--faults") {
        Faults {
            duplicate: 0.2,
            drop_codedeploy: 0.2,
            drop_lifecycle: 0.0,
            drop_wakeup: 0.1,
            max_delay_ms: 5_000,
        }
    } else {
        Faults::NONE
    };
    let s = Scenario {
        seed,
        steps: (0..groups)
            .map(|_| StepSpec {
                retries: 2,
                timeout_secs: 1800,
                hold_on_failure: false,
                config: DeployConfig::AllAtOnce,
                min_ms: 40_000,
                max_ms: 90_000,
                fail_prob: 0.05,
                has_revision: true,
            })
            .collect(),
        heartbeat_secs: 300,
        batch_window_secs: 2,
        breaker_threshold: 3,
        terminate_hook: true,
        replace_after_ms: Some(30_000),
        script: vec![(0, Script::Launch(instances as usize))],
        faults,
    };
    let mut sim = s.build();
    sim.run(s.horizon_ms());
    sim.finish();
    let r = report(&sim, s.steps.len());
    let steps: Vec<(String, String)> = (0..s.steps.len())
        .map(|i| (format!("app{i}"), format!("dg{i}")))
        .collect();
    println!(
        "In-process simulation: {instances} instances launched together, {groups} deployment groups, seed {seed}"
    );
    println!(
        "(real core and event parser; AWS modelled in memory; one deployment config: AllAtOnce, 40–90 s per instance, 5% failures)\n"
    );
    print!("{}", render(&sim.cloud, &steps));
    let tti = time_to_in_service(&sim.cloud);
    let fmt =
        |v: Option<u64>| v.map_or("-".to_owned(), |ms| format!("{:.0} s", ms as f64 / 1000.0));
    println!("\nsummary");
    println!("  instances launched       {}", r.launched);
    println!("  InService                {}", r.in_service);
    println!("  abandoned (replaced)     {}", r.abandoned);
    println!("  held with an alert       {}", r.held);
    println!("  time to InService p50    {}", fmt(percentile(&tti, 50)));
    println!("  time to InService p99    {}", fmt(percentile(&tti, 99)));
    println!("  deployments per group    {:?}", r.deployments_per_group);
    println!(
        "  AWS calls                {}",
        sim.cloud.calls.values().sum::<u64>()
    );
    println!("  core inputs decided      {}", r.inputs);
    println!("  invariant violations     {}", r.violations.len());
    for v in &r.violations {
        println!("    {v}");
    }
    if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
