//! The invariant checker for a scenario: the one in `turnstile_sim::invariants`, for the
//! scenario's plan, gates and launch hook. In the native mode the same observations are
//! counted rather than reported: breaking them is what CodeDeploy's own hooks do, and what the
//! "before" picture shows.

pub use turnstile_sim::invariants::Invariants as Checker;

use crate::scenario::{LAUNCH_HOOK, Mode, Scenario};

/// The checker for a scenario run in `mode` (only the orchestrator's runs report violations).
pub fn for_scenario(scenario: &Scenario, mode: Mode) -> Checker {
    let gates = scenario
        .groups
        .iter()
        .map(|g| Scenario::gate_tag(&g.application))
        .collect();
    Checker::for_plan(
        scenario.steps(),
        gates,
        LAUNCH_HOOK,
        mode == Mode::Orchestrator,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use turnstile_core::IntentId;
    use turnstile_model::{Cloud, Creator, Fact};

    const TWO_GROUPS: &str = "name = \"t\"\nseed = 1\n[fleet]\nauto_scaling_group = \"fleet\"\n[[groups]]\napplication = \"a0\"\ndeployment_group = \"g0\"\nduration_secs = [60, 60]\n[[groups]]\napplication = \"a1\"\ndeployment_group = \"g1\"\nduration_secs = [60, 60]\n";

    /// One instance in Pending:Wait that installs step 1, then step 0, then goes in service;
    /// `between` runs after step 1 is installed.
    fn out_of_order(between: impl FnOnce(&mut Cloud)) -> Vec<String> {
        let s = Scenario::parse("t", TWO_GROUPS).unwrap();
        let mut cloud = s.cloud(Mode::Orchestrator);
        let mut checker = for_scenario(&s, Mode::Orchestrator);
        let id = cloud.scale_out("fleet", 1).remove(0);
        let installed = |cloud: &mut Cloud, g: usize| {
            let at = cloud.now;
            cloud.facts.push(Fact::Installed {
                instance: id.clone(),
                group: s.steps()[g].clone(),
                revision: "r".into(),
                deployment: "d".into(),
                at,
            });
            cloud.now += 1000;
        };
        installed(&mut cloud, 1);
        between(&mut cloud);
        installed(&mut cloud, 0);
        cloud.facts.push(Fact::InService {
            instance: id.clone(),
            at: cloud.now,
        });
        checker.check(&cloud);
        checker
            .violations
            .into_iter()
            .filter(|v| v.starts_with("invariant 4"))
            .collect()
    }

    #[test]
    fn steps_out_of_plan_order_are_a_violation() {
        assert_eq!(out_of_order(|_| {}).len(), 1);
    }

    #[test]
    fn the_orchestrators_own_deployment_does_not_excuse_the_order() {
        let v = out_of_order(|c| {
            let k = ("a0".to_owned(), "g0".to_owned());
            let desc = format!("{}1-0 (launch deployment)", IntentId::MARKER);
            c.create_deployment(&k, None, None, true, &desc, Creator::User)
                .unwrap();
        });
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn a_step_re_run_after_someone_else_deployed_its_group_is_not() {
        let v = out_of_order(|c| {
            let k = ("a0".to_owned(), "g0".to_owned());
            c.create_deployment(&k, Some("rev-new"), None, false, "a user's", Creator::User)
                .unwrap();
        });
        assert!(v.is_empty(), "{v:?}");
    }
}
