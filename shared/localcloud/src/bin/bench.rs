//! `make bench`: the four contenders side by side on bursts of 1, 10, 100 and 1,000 instances
//! (see `turnstile_localcloud::bench`), a staggered scale-out and a slow-booting fleet without
//! and with `readiness`, then the core's CPU time per decision, release binary
//! sizes, and the peak memory of the queue handler on a batch of ten messages.
//!
//! `bench [--bursts 1,10,100] [--seed N] [--out DIR] [--native-max N] [--max-batch N]
//! [--only NAME] [--no-fleets]`; `bench --batch-child FILE` is the child process whose memory is measured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use turnstile_localcloud::bench::{self, BURSTS, CSV_HEADER, Contender, Row};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// What to run, from the command line.
struct Options {
    bursts: Vec<usize>,
    seed: u64,
    /// Bursts above this leave out CodeDeploy's native hooks.
    native_max: usize,
    out: PathBuf,
    max_batch: Option<u32>,
    only: Option<String>,
    /// The staggered and slow-boot tables (`--no-fleets` leaves them out).
    fleets: bool,
}

fn options() -> Result<Options, String> {
    let bursts: Vec<usize> = match arg("--bursts") {
        Some(s) => s
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--bursts {s}: {e}"))?,
        None => BURSTS.to_vec(),
    };
    Ok(Options {
        bursts,
        seed: arg("--seed").and_then(|s| s.parse().ok()).unwrap_or(1),
        // CodeDeploy's native hooks relaunch instances in a loop; modelling that at 1,000
        // instances (some 18,000 relaunches) takes the model longer than everything else
        // together, so a quick run may leave it out with `--native-max 100`.
        native_max: arg("--native-max")
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX),
        out: PathBuf::from(arg("--out").unwrap_or_else(|| "target/bench".into())),
        // The plan's maxBatch for turnstile (default: the plan's default).
        max_batch: arg("--max-batch").and_then(|s| s.parse().ok()),
        // Only the contenders whose names start with this (e.g. `--only turnstile`).
        only: arg("--only"),
        fleets: !std::env::args().any(|a| a == "--no-fleets"),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(file) = arg("--batch-child") {
        return match turnstile_localcloud::batch::child(&file).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench child: {e}");
                ExitCode::from(3)
            }
        };
    }
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "turnstile bench: {} deployment groups, {}-{} s per deployment (uniform), seed {}",
        bench::GROUPS,
        bench::DURATION_SECS[0],
        bench::DURATION_SECS[1],
        o.seed
    );
    let rows = contenders(&o).await;
    println!("\n{}", bench::table(&rows));
    let fleets = if o.fleets {
        fleets(o.seed).await
    } else {
        String::new()
    };
    let violations = figures(&rows).await + fleet_violations(&fleets);
    if let Err(e) = write_results(&o.out, &rows, &fleets) {
        eprintln!("bench: {e}");
        return ExitCode::from(3);
    }
    if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every contender on every burst, with a progress line each.
async fn contenders(o: &Options) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for n in &o.bursts {
        for c in Contender::ALL {
            if o.only
                .as_deref()
                .is_some_and(|only| !c.name().starts_with(only))
            {
                continue;
            }
            if c == Contender::Native && *n > o.native_max {
                eprintln!(
                    "  {n:>5} x {:<30} skipped (--native-max {})",
                    c.name(),
                    o.native_max
                );
                continue;
            }
            let r = bench::run_with(c, *n, o.seed, o.max_batch).await;
            eprintln!(
                "  {:>5} x {:<30} makespan {:>6.0} s, {:>3.0} % complete ({:.1} s wall)",
                n,
                c.name(),
                r.makespan_s,
                r.complete_share * 100.0,
                r.wall_s
            );
            rows.push(r);
        }
    }
    rows
}

/// The figures below the table: core CPU per decision, the critical path, invariant
/// violations (returned), binary sizes and the queue handler's peak memory.
async fn figures(rows: &[Row]) -> usize {
    let core: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.core_us_per_decision
                .map(|us| format!("{} x {}: {us:.1} µs", r.instances, r.contender))
        })
        .collect();
    println!(
        "core CPU per decision (Engine::decide, wall time of a CPU-bound call): {}",
        core.join("; ")
    );
    let path = bench::critical_path().await;
    let trips = bench::trips(&path);
    println!(
        "critical path from step 1's target success to step 2's CreateDeployment: {trips} sequential calls: {}",
        path.join(" → ")
    );
    let violations: usize = rows.iter().map(|r| r.violations).sum();
    println!("invariant violations in turnstile's runs: {violations}");
    for f in ["turnstile-queue", "turnstile-timer"] {
        let p = PathBuf::from("target/release").join(f);
        match std::fs::metadata(&p) {
            Ok(m) => println!(
                "release binary {f} (host, stripped, LTO): {:.1} MB",
                m.len() as f64 / 1e6
            ),
            Err(_) => println!("release binary {f}: not built (`cargo build --release -p {f}`)"),
        }
        let z = PathBuf::from("target/lambda").join(f).join("bootstrap.zip");
        if let Ok(m) = std::fs::metadata(&z) {
            println!(
                "lambda zip {f} (arm64, `make build`): {:.1} MB",
                m.len() as f64 / 1e6
            );
        }
    }
    match turnstile_localcloud::batch::measure().await {
        Ok(kb) => println!(
            "peak memory of the queue handler on a batch of ten launch events (real SDK clients against the local cloud): {:.1} MB",
            kb as f64 / 1024.0
        ),
        Err(e) => println!("peak memory: not measured ({e})"),
    }
    violations
}

/// The staggered scale-out and the slow-boot fleet, printed as tables (returned as Markdown,
/// with a last line counting invariant violations).
async fn fleets(seed: u64) -> String {
    let (per_wave, every, waves) = bench::STAGGER;
    let staggered = bench::staggered(seed).await;
    let [lo, hi] = bench::SLOW_BOOT_SECS;
    let slow = bench::slow_boot(seed).await;
    let violations: usize = staggered.iter().chain(&slow).map(|r| r.violations).sum();
    let text = format!(
        "staggered scale-out: {per_wave} instances every {every} s, {waves} waves, {} deployment groups, {}-{} s per deployment; the floor is an instance's own deployments, the wave lockstep bound its wave moved through each group in one deployment with no overhead\n\n{}\nslow-boot fleet: {} instances launched together, bootstrap {lo}-{hi} s; CodeDeploy fails a deployment whose first lifecycle event cannot start within 5 minutes, and an agent baked into the AMI runs before the bootstrap is done (its scripts fail)\n\n{}\nfleet invariant violations: {violations}\n",
        bench::GROUPS,
        bench::DURATION_SECS[0],
        bench::DURATION_SECS[1],
        bench::staggered_table(&staggered),
        bench::SLOW_BOOT_INSTANCES,
        bench::slow_boot_table(&slow),
    );
    println!("\n{text}");
    text
}

fn fleet_violations(text: &str) -> usize {
    text.lines()
        .find_map(|l| l.strip_prefix("fleet invariant violations: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The table as CSV, the makespan chart as SVG and the fleet tables as Markdown, in `out`.
fn write_results(out: &Path, rows: &[Row], fleets: &str) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in rows {
        csv.push_str(&bench::csv_line(r));
        csv.push('\n');
    }
    std::fs::write(out.join("results.csv"), csv)
        .and_then(|()| std::fs::write(out.join("makespan.svg"), bench::svg(rows)))
        .and_then(|()| std::fs::write(out.join("fleets.md"), fleets))
        .map_err(|e| format!("writing results: {e}"))?;
    println!(
        "wrote {} and {}",
        out.join("results.csv").display(),
        out.join("makespan.svg").display()
    );
    Ok(())
}
