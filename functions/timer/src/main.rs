//! The timer function, invoked every minute: heartbeats, reconciliation and the replay of
//! interrupted decisions, for everything the `due` index says is due.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use turnstile_aws::config::Config;
use turnstile_aws::ports::{Clock, SystemClock};
use turnstile_aws::{bootstrap, handler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    bootstrap::init_logging();
    let config = Config::from_env().inspect_err(|e| tracing::error!("{e}"))?;
    let runner = bootstrap::runner(&config).await;
    if config.managed_groups.is_empty() {
        tracing::warn!(
            "TURNSTILE_MANAGED_GROUPS is not set: a launch whose event is lost will not be adopted"
        );
    }
    run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let (runner, limit, managed) = (&runner, config.sweep_limit, &config.managed_groups);
        async move {
            let s = handler::sweep(runner, SystemClock.now(), limit, managed).await?;
            let (a, r) = (&s.adoption, &s.readiness);
            tracing::info!(
                due = s.due,
                ticked = s.ticked,
                failed = s.failed,
                booting = r.waiting,
                ready = r.ready,
                readiness_failed = r.failed,
                waiting = a.waiting,
                adopted = a.adopted,
                adoption_failed = a.failed,
                "sweep"
            );
            Ok::<serde_json::Value, Error>(serde_json::json!({
                "due": s.due, "ticked": s.ticked, "failed": s.failed,
                "booting": r.waiting, "ready": r.ready, "readinessFailed": r.failed,
                "waiting": a.waiting, "unknown": a.unknown, "adopted": a.adopted,
                "notOurs": a.not_ours, "adoptionFailed": a.failed,
            }))
        }
    }))
    .await
}
