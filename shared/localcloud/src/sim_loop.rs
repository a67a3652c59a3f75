//! Simulated time, once for every mode. Time stands still while the mode's actors work and
//! jumps to the next thing that can happen (a deployment finishing, a timeout, a scripted
//! event, whatever the actors wait for) once nothing is left to do now; with
//! `clock_scale > 0` each jump also takes `jump / clock_scale` of wall time.

use std::time::Duration;

use turnstile_model::{Cloud, InstanceState, Ms};

use crate::checks::Checker;
use crate::scenario::{Action, Scenario, apply};

/// What the actors' turn at one instant left behind.
pub(crate) enum Turn {
    /// Something happened that may cause more at this instant: go round again before time
    /// moves, checking the invariants first if `check`.
    Again { check: bool },
    /// Nothing more to do at this instant.
    Done,
}

/// Whoever acts on the model in one mode besides the scenario's script: nobody (native
/// hooks), the instances' user-data scripts, or the orchestrator's functions and queue.
pub(crate) trait Actors {
    type Error;

    /// Runs `f` on the model.
    fn with_cloud<R>(&mut self, f: impl FnOnce(&mut Cloud) -> R) -> R;

    /// Applies one scripted action; by default to the model.
    async fn apply(&mut self, asg: &str, action: &Action) -> Result<(), Self::Error> {
        self.with_cloud(|c| apply(c, asg, action));
        Ok(())
    }

    /// Does whatever is due at `now`.
    async fn act(&mut self, now: Ms) -> Result<Turn, Self::Error>;

    /// The earliest time the actors wait for, besides the model's own events.
    fn wakes_at(&self) -> Option<Ms>;

    /// Nothing of the actors' own is left to happen.
    fn idle(&self) -> bool;
}

/// Runs `scenario` with `actors` until the horizon, or until the script is done and nothing is
/// left to happen, checking the invariants with `checker` on the way.
pub(crate) async fn drive<A: Actors>(
    scenario: &Scenario,
    actors: &mut A,
    checker: &mut Checker,
) -> Result<(), A::Error> {
    let asg = scenario.fleet.auto_scaling_group.as_str();
    let script = scenario.script();
    let horizon = scenario.horizon_ms();
    let mut next = 0;
    loop {
        let now = actors.with_cloud(|c| c.now);
        while let Some((_, a)) = script.get(next).filter(|(t, _)| *t <= now) {
            actors.apply(asg, a).await?;
            next += 1;
        }
        if let Turn::Again { check } = actors.act(now).await? {
            if check {
                actors.with_cloud(|c| checker.check(c));
            }
            continue;
        }
        actors.with_cloud(|c| checker.check(c));
        let scripted = script.get(next).map(|(t, _)| *t);
        let (idle, wakes) = (actors.idle(), actors.wakes_at());
        let at = actors.with_cloud(|c| {
            let finished = now >= horizon || (scripted.is_none() && settled(c) && idle);
            (!finished).then(|| next_stop(c, &[scripted, wakes], horizon))
        });
        let Some(at) = at else {
            return Ok(());
        };
        pace(scenario, now, at);
        actors.with_cloud(|c| c.advance_to(at));
    }
}

/// Nothing is left to happen in the model: no instance waiting on a hook, no deployment in
/// progress, nothing scheduled (a pending replacement launch included).
pub(crate) fn settled(cloud: &Cloud) -> bool {
    cloud.instances.values().all(|i| {
        !matches!(
            i.state,
            InstanceState::PendingWait | InstanceState::TerminatingWait
        )
    }) && cloud.active_deployments().next().is_none()
        && cloud.next_due().is_none()
}

/// Where simulated time jumps next: the model's next event, the earliest of `others`, or the
/// horizon, whichever comes first, and always forward.
pub(crate) fn next_stop(cloud: &Cloud, others: &[Option<Ms>], horizon: Ms) -> Ms {
    others
        .iter()
        .copied()
        .chain([cloud.next_due(), Some(horizon)])
        .flatten()
        .min()
        .unwrap_or(horizon)
        .max(cloud.now + 1)
}

/// Takes `(at - now) / clock_scale` of wall time for a jump from `now` to `at`, at most 10 s.
pub(crate) fn pace(scenario: &Scenario, now: Ms, at: Ms) {
    if scenario.clock_scale > 0.0 && at > now {
        let real = (at - now) as f64 / scenario.clock_scale;
        std::thread::sleep(Duration::from_millis(real.min(10_000.0) as u64));
    }
}
