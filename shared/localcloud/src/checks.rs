//! The design brief's invariants, checked on the simulator's record while a run goes and at its
//! end. In the native mode the same observations are counted rather than reported: breaking
//! them is what CodeDeploy's own hooks do, and what the "before" picture shows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use turnstile_model::{Cloud, Creator, Fact, HookResult, InstanceState, Transition};

use crate::scenario::{LAUNCH_HOOK, Mode, Scenario};

pub struct Checker {
    mode: Mode,
    steps: Vec<(String, String)>,
    gates: BTreeSet<String>,
    launch_hook: String,
    /// Whether a launch action that ran out of time is a violation here (5, 7). The simulation
    /// driver checks those itself, against the orchestrator's record (a held instance may run
    /// into its global timeout).
    pub timeouts: bool,
    facts_seen: usize,
    /// Plan step indices in the order each was first installed, with when, per instance.
    order: BTreeMap<String, Vec<(usize, u64)>>,
    /// When someone other than the orchestrator deployed, per plan step: a step
    /// whose group moved on is rightly installed again after later steps (the final check).
    moved: BTreeMap<usize, Vec<u64>>,
    pub violations: Vec<String>,
    pub checks: u64,
    /// Instances that had two deployments in flight at once.
    pub collided: BTreeSet<String>,
}

impl Checker {
    pub fn new(scenario: &Scenario, mode: Mode) -> Self {
        let gates = scenario
            .groups
            .iter()
            .map(|g| Scenario::gate_tag(&g.application))
            .collect();
        Self::for_plan(scenario.steps(), gates, LAUNCH_HOOK, mode)
    }

    /// A checker for a plan's deployment groups (in plan order), their gate tag keys and the
    /// name of the launch hook whose actions the orchestrator completes.
    pub fn for_plan(
        steps: Vec<(String, String)>,
        gates: BTreeSet<String>,
        launch_hook: &str,
        mode: Mode,
    ) -> Self {
        Self {
            mode,
            steps,
            gates,
            launch_hook: launch_hook.to_owned(),
            timeouts: true,
            facts_seen: 0,
            order: BTreeMap::new(),
            moved: BTreeMap::new(),
            violations: Vec::new(),
            checks: 0,
            collided: BTreeSet::new(),
        }
    }

    fn violation(&mut self, v: String) {
        if self.mode == Mode::Orchestrator && !self.violations.contains(&v) {
            tracing::error!(violation = %v, "invariant violated");
            self.violations.push(v);
        }
    }

    /// Checks what holds at every moment and what the newest facts say.
    pub fn check(&mut self, cloud: &Cloud) {
        self.checks += 1;
        // 1: an instance never has two deployments in flight at once (one pass over the
        // active deployments, so large runs stay linear).
        let mut on: HashMap<&str, Vec<&str>> = HashMap::new();
        for d in cloud.active_deployments() {
            for (i, t) in &d.targets {
                if !t.status.is_done() {
                    on.entry(i.as_str()).or_default().push(d.id.as_str());
                }
            }
        }
        let mut found = Vec::new();
        for (i, ds) in on {
            // Counted once per instance; described only where it is a violation.
            let known = self.mode != Mode::Orchestrator && self.collided.contains(i);
            if ds.len() < 2 || known {
                continue;
            }
            let waiting = cloud
                .instances
                .get(i)
                .is_some_and(|x| x.state == InstanceState::PendingWait);
            if waiting {
                found.push((
                    i.to_owned(),
                    format!("invariant 1: {i} has {ds:?} in flight"),
                ));
            }
        }
        found.sort();
        for (i, v) in found {
            self.collided.insert(i);
            self.violation(v);
        }
        let new = cloud
            .facts
            .get(self.facts_seen..)
            .unwrap_or_default()
            .to_vec();
        self.facts_seen = cloud.facts.len();
        for f in new {
            match f {
                Fact::Installed {
                    instance,
                    group,
                    at,
                    ..
                } => {
                    if let Some(k) = self.steps.iter().position(|s| *s == group) {
                        let seen = self.order.entry(instance).or_default();
                        if !seen.iter().any(|(s, _)| *s == k) {
                            seen.push((k, at));
                        }
                    }
                }
                // Someone else's deployment: not created by CodeDeploy's own hooks, and without
                // the orchestrator's intent marker (API deployments all say creator `user`).
                Fact::DeploymentCreated {
                    deployment,
                    group,
                    creator: Creator::User,
                    at,
                    ..
                } => {
                    let ours = cloud.deployments.get(&deployment).is_some_and(|d| {
                        d.description.contains(turnstile_aws::ports::INTENT_MARKER)
                    });
                    if let Some(k) = self.steps.iter().position(|s| *s == group)
                        && !ours
                    {
                        self.moved.entry(k).or_default().push(at);
                    }
                }
                // 4 and 6: in service only with every step, in plan order, at the current revision.
                Fact::InService { instance, .. } => {
                    let Some(inst) = cloud.instances.get(&instance) else {
                        continue;
                    };
                    let mut wrong = Vec::new();
                    for g in &self.steps {
                        let current = cloud.groups.get(g).and_then(|x| x.target_revision.clone());
                        if current.is_some() && inst.installed.get(g) != current.as_ref() {
                            wrong.push(format!(
                                "{}/{} has {:?}, current {:?}",
                                g.0,
                                g.1,
                                inst.installed.get(g),
                                current
                            ));
                        }
                    }
                    if !wrong.is_empty() {
                        self.violation(format!(
                            "invariant 6: {instance} went InService with {}",
                            wrong.join("; ")
                        ));
                    }
                    // A step first installed after a later one is out of order, unless its
                    // group was deployed by someone else before (the step had nothing to
                    // install, or its revision moved on, and the final check ran it again).
                    let order = self.order.get(&instance).cloned().unwrap_or_default();
                    let moved = |k: usize, at: u64| {
                        self.moved
                            .get(&k)
                            .is_some_and(|ts| ts.iter().any(|t| *t <= at))
                    };
                    let out_of_order = order.iter().enumerate().any(|(i, (k, at))| {
                        order.iter().take(i).any(|(j, _)| j > k) && !moved(*k, *at)
                    });
                    if out_of_order {
                        let steps: Vec<usize> = order.iter().map(|(k, _)| *k).collect();
                        self.violation(format!(
                            "invariant 4: {instance} installed plan steps in the order {steps:?}"
                        ));
                    }
                }
                // 5 and 7: an action the orchestrator works on never runs out of time (the
                // global timeout of a held instance excepted).
                Fact::TimedOut {
                    instance,
                    hook,
                    transition: Transition::Launching,
                    global,
                    result,
                    ..
                } if self.timeouts && hook == self.launch_hook => {
                    let what = if global {
                        "5 (global timeout)"
                    } else {
                        "7 (heartbeat missed)"
                    };
                    self.violation(format!(
                        "invariant {what}: launch action of {instance} timed out with {result:?}"
                    ));
                }
                Fact::Completed {
                    instance,
                    hook,
                    result: HookResult::Continue,
                    ..
                } if hook == self.launch_hook => {
                    // 3: CONTINUE only once every step succeeded on the instance.
                    let Some(inst) = cloud.instances.get(&instance) else {
                        continue;
                    };
                    let missing: Vec<String> = self
                        .steps
                        .iter()
                        .filter(|g| {
                            cloud
                                .groups
                                .get(*g)
                                .is_some_and(|x| x.target_revision.is_some())
                                && !inst.installed.contains_key(*g)
                        })
                        .map(|g| format!("{}/{}", g.0, g.1))
                        .collect();
                    if !missing.is_empty() {
                        self.violation(format!(
                            "invariant 3: CONTINUE for {instance} without {}",
                            missing.join(", ")
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    /// End-of-run checks: nobody is left waiting (5) unless held, and instances in service
    /// carry every gate.
    pub fn finish(&mut self, cloud: &Cloud, held: &BTreeSet<String>) {
        self.check(cloud);
        for i in cloud.instances.values() {
            if i.state == InstanceState::PendingWait && !held.contains(&i.id) {
                self.violation(format!(
                    "invariant 5: {} still waits in Pending:Wait at the end",
                    i.id
                ));
            }
            // 3.1 of the brief: an instance goes in service with all its gates open, so later
            // deployments of every group reach it.
            let launched_by_us = i.in_service_at.is_some()
                && cloud.facts.iter().any(|f| matches!(f, Fact::Completed { instance, hook, result: HookResult::Continue, .. } if *instance == i.id && *hook == self.launch_hook));
            if i.state == InstanceState::InService && launched_by_us {
                let closed: Vec<&String> = self
                    .gates
                    .iter()
                    .filter(|g| i.tags.get(*g).map(String::as_str) != Some("open"))
                    .collect();
                if !closed.is_empty() {
                    self.violation(format!(
                        "gates: {} is in service with gates {closed:?} closed",
                        i.id
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use turnstile_model::Creator;

    const TWO_GROUPS: &str = "name = \"t\"\nseed = 1\n[fleet]\nauto_scaling_group = \"fleet\"\n[[groups]]\napplication = \"a0\"\ndeployment_group = \"g0\"\nduration_secs = [60, 60]\n[[groups]]\napplication = \"a1\"\ndeployment_group = \"g1\"\nduration_secs = [60, 60]\n";

    /// One instance in Pending:Wait that installs step 1, then step 0, then goes in service;
    /// `between` runs after step 1 is installed.
    fn out_of_order(between: impl FnOnce(&mut Cloud)) -> Vec<String> {
        let s = Scenario::parse("t", TWO_GROUPS).unwrap();
        let mut cloud = s.cloud(Mode::Orchestrator);
        let mut checker = Checker::new(&s, Mode::Orchestrator);
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
            let desc = format!(
                "{}1-0 (launch deployment)",
                turnstile_aws::ports::INTENT_MARKER
            );
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
