//! **Native**: the fleet with CodeDeploy's own per-group launch hooks, as most teams run
//! today. CodeDeploy and Auto Scaling talk to each other inside the model; nothing of ours
//! runs.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Instant;

use turnstile_model::{Cloud, Ms};

use crate::checks;
use crate::record::{Activity, RunRecord};
use crate::scenario::{Mode, Scenario};
use crate::sim_loop::{Actors, Turn, drive};

/// The model alone: nobody of ours acts on it.
struct Alone(Cloud);

impl Actors for Alone {
    type Error = Infallible;

    fn with_cloud<R>(&mut self, f: impl FnOnce(&mut Cloud) -> R) -> R {
        f(&mut self.0)
    }

    async fn act(&mut self, _: Ms) -> Result<Turn, Infallible> {
        let _ = self.0.drain(); // nobody of ours listens in this mode
        Ok(Turn::Done)
    }

    fn wakes_at(&self) -> Option<Ms> {
        None
    }

    fn idle(&self) -> bool {
        true
    }
}

pub async fn run(scenario: &Scenario) -> RunRecord {
    let started = Instant::now();
    let mut model = Alone(scenario.cloud(Mode::Native));
    let mut checker = checks::for_scenario(scenario, Mode::Native);
    let Ok(()) = drive(scenario, &mut model, &mut checker).await;
    RunRecord {
        mode: Mode::Native,
        violations: checker.violations.clone(),
        checks: checker.checks,
        collided: checker.collided.clone(),
        cloud: model.0,
        activity: Activity::default(),
        held: BTreeSet::new(),
        wall: started.elapsed(),
    }
}
