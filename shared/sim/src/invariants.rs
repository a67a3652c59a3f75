//! The invariants (docs/design.md "Invariants"), checked in one place for every way the orchestrator is
//! run against the model: the simulator (the core in process), the deterministic simulation of
//! the real runner (`turnstile_localcloud::direct`) and the local cloud's scenarios.
//!
//! - Against the model alone ([`Invariants::check`], [`Invariants::finish`]): what the
//!   model's facts show, whoever drives it. In the native mode the same observations are
//!   counted rather than reported: breaking them is what CodeDeploy's own hooks do, and what
//!   the "before" picture shows.
//! - Against the orchestrator's records as well: a held instance may run into its global
//!   timeout, and a step may be re-run after a final revision check found it stale. The
//!   simulator reads the records in process; the runner's drivers read its store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use turnstile_core::{
    ActionRef, Alert, AlertKind, DeploymentId, GroupKey, InstanceId, IntentId, LifecycleResult,
    Phase, World,
};
use turnstile_model::{Cloud, Creator, Fact, HookResult, InstanceState, Ms, Transition};

/// How long a wrong gate may stay open: a gate change lost with a dying invocation is re-sent
/// by the core after 30 s, found by the sweep within 60 s, delivered after a visibility timeout.
pub const GATE_GRACE_MS: Ms = 150_000;

/// The invariant checker: what it was told about the plan, and what it remembers of the run.
pub struct Invariants {
    /// Whether broken invariants are violations (the orchestrator's runs) or only counted
    /// (CodeDeploy's own hooks, the "before" picture).
    reporting: bool,
    steps: Vec<(String, String)>,
    gates: BTreeSet<String>,
    launch_hook: String,
    /// Whether a launch action that ran out of time is a violation in [`Invariants::check`]
    /// (5, 7). Drivers that read the orchestrator's records turn it off and judge timeouts
    /// against them instead (a held instance may run into its global timeout).
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
    /// The terminate hooks the orchestrator completes (other tools' hooks are theirs to
    /// complete or let time out).
    pub terminate_hooks: turnstile_core::HookNames,
    /// How many facts the checks against the orchestrator's records have read.
    records_seen: usize,
    /// Since when each (instance, gate) has been wrongly open.
    wrong_gates: BTreeMap<(String, String), Ms>,
    /// When the orchestrator ran a final revision check, per instance (re-runs may follow).
    verified: BTreeMap<String, Vec<Ms>>,
    /// Since when each instance has been released: completing with CONTINUE, every gate of
    /// its plan open (see [`Invariants::track_release`]).
    released: BTreeMap<String, Ms>,
    /// (instance, deployment): deployments created while the instance was released.
    excused: BTreeSet<(String, String)>,
}

impl Invariants {
    /// A checker for a plan's deployment groups (in plan order), their gate tag keys and the
    /// name of the launch hook whose actions the orchestrator completes.
    pub fn for_plan(
        steps: Vec<(String, String)>,
        gates: BTreeSet<String>,
        launch_hook: &str,
        reporting: bool,
    ) -> Self {
        Self {
            reporting,
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
            terminate_hooks: turnstile_core::OwnedHooks::default().terminate,
            records_seen: 0,
            wrong_gates: BTreeMap::new(),
            verified: BTreeMap::new(),
            released: BTreeMap::new(),
            excused: BTreeSet::new(),
        }
    }

    /// A reporting checker for a plan in a model: the gates are the plan groups' tag keys and
    /// the launch hook is the fleet's hook on launching.
    pub fn for_cloud(cloud: &Cloud, steps: Vec<(String, String)>) -> Self {
        let gates = steps
            .iter()
            .filter_map(|g| cloud.groups.get(g))
            .flat_map(|g| g.tag_set.iter().flatten().map(|(k, _)| k.clone()))
            .collect();
        let launch_hook = cloud
            .asgs
            .values()
            .flat_map(|a| &a.hooks)
            .find(|h| h.transition == Transition::Launching)
            .map(|h| h.name.clone())
            .unwrap_or_default();
        Self::for_plan(steps, gates, &launch_hook, true)
    }

    fn violation(&mut self, v: String) {
        if self.reporting && !self.violations.contains(&v) {
            tracing::error!(violation = %v, "invariant violated");
            self.violations.push(v);
        }
    }

    /// Checks what holds at every moment and what the newest facts say.
    pub fn check(&mut self, cloud: &Cloud) {
        self.checks += 1;
        self.two_in_flight(cloud);
        let new = cloud
            .facts
            .get(self.facts_seen..)
            .unwrap_or_default()
            .to_vec();
        self.facts_seen = cloud.facts.len();
        for f in new {
            self.on_fact(cloud, f);
        }
    }

    /// 1: an instance never has two deployments in flight at once (one pass over the active
    /// deployments, so large runs stay linear).
    fn two_in_flight(&mut self, cloud: &Cloud) {
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
            let known = !self.reporting && self.collided.contains(i);
            if ds.len() < 2 || known {
                continue;
            }
            let released = ds
                .iter()
                .all(|d| self.excused.contains(&(i.to_owned(), (*d).to_owned())));
            if released {
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
    }

    /// What one new fact of the model shows.
    fn on_fact(&mut self, cloud: &Cloud, f: Fact) {
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
            // A launch deployment with the plan's config override never deploys to a serving
            // instance (docs/design.md "Launch deployments and outdated in-service instances").
            Fact::DeploymentCreated {
                ref deployment,
                config_override: true,
                ref serving_targets,
                ..
            } if !serving_targets.is_empty()
                && cloud
                    .deployments
                    .get(deployment)
                    .is_some_and(|d| IntentId::from_description(&d.description).is_some()) =>
            {
                self.violation(format!(
                    "launch override on serving instances: {deployment} deploys to {}",
                    serving_targets.join(", ")
                ));
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
                let ours = cloud
                    .deployments
                    .get(&deployment)
                    .is_some_and(|d| IntentId::from_description(&d.description).is_some());
                if let Some(k) = self.steps.iter().position(|s| *s == group)
                    && !ours
                {
                    self.moved.entry(k).or_default().push(at);
                }
            }
            // 4 and 6: in service only with every step, in plan order, at the current revision.
            Fact::InService { instance, .. } => self.in_service(cloud, &instance),
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
                // 3: CONTINUE only once every step succeeded on the instance. A CONTINUE
                // that took it into the warm pool (stopped there) puts nothing in service: a
                // plan may deploy on the exit only.
                let Some(inst) = cloud.instances.get(&instance) else {
                    return;
                };
                if inst.state.is_warm() {
                    return;
                }
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

    /// 4 and 6 when an instance goes in service: every step at its group's current revision,
    /// installed in plan order.
    fn in_service(&mut self, cloud: &Cloud, instance: &str) {
        let Some(inst) = cloud.instances.get(instance) else {
            return;
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
        let order = self.order.get(instance).cloned().unwrap_or_default();
        let moved = |k: usize, at: u64| {
            self.moved
                .get(&k)
                .is_some_and(|ts| ts.iter().any(|t| *t <= at))
        };
        let out_of_order = order
            .iter()
            .enumerate()
            .any(|(i, (k, at))| order.iter().take(i).any(|(j, _)| j > k) && !moved(*k, *at));
        if out_of_order {
            let steps: Vec<usize> = order.iter().map(|(k, _)| *k).collect();
            self.violation(format!(
                "invariant 4: {instance} installed plan steps in the order {steps:?}"
            ));
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

/// Checks against the records of the runner's store (the deterministic simulation).
impl Invariants {
    /// What holds at every moment, given the orchestrator's records at `now`: gate hygiene,
    /// no launch action timed out while the orchestrator worked on it (5, 7), and everything
    /// [`Invariants::check`] finds in the model.
    pub fn check_with_records(&mut self, cloud: &Cloud, world: &World, now: Ms) {
        let mut found = self.gate_hygiene(cloud, world, now);
        found.extend(self.launch_timeouts(cloud, world));
        for v in found {
            self.violation(v);
        }
        self.track_release(cloud, world, now);
        self.check(cloud);
    }

    /// Invariant 1 is the orchestrator's promise about instances it deploys to. To complete an
    /// action with CONTINUE it opens every gate first and then sends the CONTINUE: from then on
    /// the instance is released, and any deployment created reaches it as it reaches every
    /// instance in service. If the CONTINUE does not land (throttled, or the invocation died
    /// between the two calls) the instance stays in `Pending:Wait` with every gate open until
    /// the core's probe takes it back (closes the gates, and the final check waits for every
    /// deployment that reached it before the orchestrator deploys again). No order of the two
    /// calls closes that window: CONTINUE first would put the instance in service without its
    /// gates, so a user's deployment could miss it. Deployments created while an instance is
    /// released are therefore excused from invariant 1 on that instance; an overlap with any
    /// other deployment is still a violation. (docs/design.md, "The CONTINUE exposure".)
    fn track_release(&mut self, cloud: &Cloud, world: &World, now: Ms) {
        let mut still = BTreeSet::new();
        for i in cloud
            .instances
            .values()
            .filter(|i| i.state == InstanceState::PendingWait)
        {
            let Some(rec) = world.instance(&i.id.as_str().into()) else {
                continue;
            };
            let completing = matches!(
                rec.phase,
                Phase::Completing {
                    result: LifecycleResult::Continue,
                    ..
                }
            );
            let open = rec
                .plan
                .steps
                .iter()
                .all(|s| i.tags.get(&s.gate.key) == Some(&s.gate.value));
            if !(completing && open) {
                continue;
            }
            still.insert(i.id.clone());
            let since = *self.released.entry(i.id.clone()).or_insert(now);
            for d in cloud.active_deployments() {
                if d.created_at >= since && d.targets.contains_key(&i.id) {
                    self.excused.insert((i.id.clone(), d.id.clone()));
                }
            }
        }
        self.released.retain(|i, _| still.contains(i));
    }

    /// Gate hygiene: an instance on step k carries at most gate k, a verifying one none
    /// (eventually: a lost gate change is re-sent, see [`GATE_GRACE_MS`]).
    fn gate_hygiene(&mut self, cloud: &Cloud, world: &World, now: Ms) -> Vec<String> {
        let mut found = Vec::new();
        let mut wrong: BTreeSet<(String, String)> = BTreeSet::new();
        for i in cloud
            .instances
            .values()
            .filter(|i| i.state == InstanceState::PendingWait)
        {
            let Some(rec) = world.instance(&i.id.as_str().into()) else {
                continue;
            };
            let allowed: Option<BTreeSet<String>> = match &rec.phase {
                Phase::Running { step, .. } => rec
                    .plan
                    .steps
                    .get(*step)
                    .map(|s| BTreeSet::from([s.gate.key.clone()])),
                Phase::Verifying { .. } => Some(BTreeSet::new()),
                _ => None,
            };
            let Some(allowed) = allowed else {
                continue;
            };
            let gates: BTreeSet<String> =
                rec.plan.steps.iter().map(|s| s.gate.key.clone()).collect();
            for g in i
                .tags
                .keys()
                .filter(|k| gates.contains(*k) && !allowed.contains(*k))
            {
                wrong.insert((i.id.clone(), g.clone()));
                let since = *self
                    .wrong_gates
                    .entry((i.id.clone(), g.clone()))
                    .or_insert(now);
                if now.saturating_sub(since) > GATE_GRACE_MS {
                    found.push(format!(
                        "gate hygiene: {} in {:?} has carried {g} for {} s",
                        i.id,
                        rec.phase,
                        (now - since) / 1000
                    ));
                }
            }
        }
        self.wrong_gates.retain(|k, _| wrong.contains(k));
        found
    }

    /// 5, 7: an action the orchestrator works on never runs out of time, except a held
    /// instance at its global timeout.
    fn launch_timeouts(&mut self, cloud: &Cloud, world: &World) -> Vec<String> {
        let mut found = Vec::new();
        for f in cloud.facts.get(self.records_seen..).unwrap_or_default() {
            if let Fact::TimedOut {
                instance,
                token,
                transition: Transition::Launching,
                global,
                ..
            } = f
            {
                let rec = world
                    .instance(&instance.as_str().into())
                    .filter(|r| r.action.token.as_ref().is_none_or(|t| &t.0 == token));
                let ok = rec.is_some_and(|r| matches!(r.phase, Phase::Held { .. }) && *global);
                if !ok {
                    found.push(format!("invariant 5/7: launch action of {instance} timed out (global: {global}) in {:?}", rec.map(|r| &r.phase)));
                }
            }
        }
        self.records_seen = cloud.facts.len();
        found
    }
}

/// Checks against the records the simulator keeps in process: each answers what it found, for
/// the simulator to report (and trace) once.
impl Invariants {
    /// Invariant 1: an instance in its pipeline never has two deployments in flight.
    /// (Invariant 2 holds in the model by construction, DeploymentLimitExceeded; the
    /// orchestrator fighting its own deployment is caught where CreateDeployment runs,
    /// [`Invariants::own_deployment_busy`].)
    pub fn in_flight(cloud: &Cloud) -> Vec<String> {
        let mut found = Vec::new();
        for inst in cloud.instances.values() {
            if inst.state != InstanceState::PendingWait {
                continue;
            }
            let on = cloud.in_flight_on(&inst.id);
            if on.len() > 1 {
                found.push(format!(
                    "invariant 1: {} has deployments {on:?} in flight",
                    inst.id
                ));
            }
        }
        found
    }

    /// Invariant 2: the orchestrator never creates a deployment while its own is active in the
    /// group (CreateDeployment answered `Busy` naming a deployment of turnstile's).
    pub fn own_deployment_busy(
        cloud: &Cloud,
        group: &GroupKey,
        intent: &IntentId,
        active: &DeploymentId,
    ) -> Option<String> {
        let d = cloud
            .deployments
            .get(active.as_str())
            .map(|d| &d.description)
            .filter(|d| IntentId::from_description(d).is_some())?;
        Some(format!(
            "invariant 2: CreateDeployment for {group} ({intent}) while the orchestrator's own {active} ({d}) was active"
        ))
    }

    /// Notes a final revision check of the instance at `at`: a step installed again after it
    /// is a re-run, not out of order (invariant 4).
    pub fn revisions_checked(&mut self, instance: &InstanceId, at: Ms) {
        self.verified
            .entry(instance.0.clone())
            .or_default()
            .push(at);
    }

    /// Invariants 3, 4 and 6 at the moment the orchestrator answers CONTINUE for a launch:
    /// every plan step installed at its group's current revision, in plan order.
    pub fn on_continue(&self, cloud: &Cloud, world: &World, action: &ActionRef) -> Vec<String> {
        let mut found = Vec::new();
        let Some(rec) = world.instance(&action.instance) else {
            return found;
        };
        if rec.action.token != action.token {
            return found; // a terminate action
        }
        let Some(inst) = cloud.instances.get(&action.instance.0) else {
            return found;
        };
        for s in &rec.plan.steps {
            let k = (
                s.group.application.clone(),
                s.group.deployment_group.clone(),
            );
            let installed = inst.installed.get(&k);
            let current = cloud
                .groups
                .get(&k)
                .and_then(|g| g.target_revision.as_ref());
            if installed != current {
                found.push(format!(
                    "invariant 3/6: CONTINUE for {} but {} has {:?} installed while the group's revision is {:?}",
                    action.instance, s.group, installed, current
                ));
            }
        }
        // Invariant 4: installs follow plan order; going back to an earlier group is only a
        // re-run after a final revision check found it stale.
        let checks = self
            .verified
            .get(&action.instance.0)
            .cloned()
            .unwrap_or_default();
        let mut last: Option<(usize, Ms)> = None;
        for f in &cloud.facts {
            let Fact::Installed {
                instance,
                group,
                at,
                ..
            } = f
            else {
                continue;
            };
            if instance != &action.instance.0 {
                continue;
            }
            let Some(i) = rec.plan.steps.iter().position(|s| {
                s.group.application == group.0 && s.group.deployment_group == group.1
            }) else {
                continue;
            };
            if let Some((prev, prev_at)) = last
                && i < prev
                && !checks.iter().any(|c| *c >= prev_at && c <= at)
            {
                found.push(format!(
                    "invariant 4: {} received step {} after step {} without a final check between",
                    action.instance,
                    i + 1,
                    prev + 1
                ));
            }
            last = Some((i, *at));
        }
        found
    }

    /// Invariants that follow from what the model recorded: an action of a hook the
    /// orchestrator owns never runs out of time while it is working on it (5, 7). An action nobody heard of is
    /// acceptable only when `lifecycle_may_be_lost` (lifecycle events are being dropped).
    pub fn timeouts(
        &mut self,
        cloud: &Cloud,
        world: &World,
        lifecycle_may_be_lost: bool,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let new: Vec<Fact> = cloud
            .facts
            .get(self.records_seen..)
            .unwrap_or_default()
            .to_vec();
        self.records_seen = cloud.facts.len();
        for f in new {
            let Fact::TimedOut {
                instance,
                hook,
                token,
                transition,
                global,
                ..
            } = f
            else {
                continue;
            };
            let owned = match transition {
                Transition::Launching => hook == self.launch_hook,
                Transition::Terminating => self.terminate_hooks.matches(&hook),
            };
            if !owned {
                continue; // another tool's hook: its owner's to complete, or to let time out
            }
            let rec = world
                .instance(&InstanceId(instance.clone()))
                .filter(|r| r.action.token.as_ref().is_none_or(|t| t.0 == token));
            let verdict = match (transition, rec) {
                // Nobody heard of it: acceptable only when lifecycle events may be lost.
                (_, None) if lifecycle_may_be_lost => None,
                (Transition::Terminating, None) => {
                    Some("5: a terminate action timed out".to_owned())
                }
                (Transition::Launching, None) => {
                    Some("5: a launch action timed out unrecorded".to_owned())
                }
                (_, Some(rec)) => match &rec.phase {
                    Phase::Held { .. } if global => None,
                    Phase::Finished {
                        outcome: turnstile_core::Outcome::Rejected,
                        ..
                    } => None,
                    phase if global => Some(format!("5 (global timeout) in phase {phase:?}")),
                    phase => Some(format!("7 (heartbeat missed) in phase {phase:?}")),
                },
            };
            if let Some(v) = verdict {
                found.push(format!("invariant {v}: lifecycle action of {instance}"));
            }
        }
        found
    }

    /// Checks at the end of a run: every instance past its global timeout reached a terminal
    /// state (younger ones may legitimately still be working when the horizon cuts the run),
    /// and every held instance raised its alert (5).
    pub fn at_end(cloud: &Cloud, world: &World, alerts: &[Alert]) -> Vec<String> {
        let now = cloud.now;
        let mut found = Vec::new();
        for inst in cloud.instances.values() {
            let expired = inst.actions.iter().any(|a| a.global_deadline <= now);
            if inst.state == InstanceState::PendingWait && expired {
                let rec = world.instance(&InstanceId(inst.id.clone()));
                let held = rec.is_some_and(|r| matches!(r.phase, Phase::Held { .. }));
                if !held {
                    found.push(format!(
                        "invariant 5: {} still waits at the end (record: {:?})",
                        inst.id,
                        rec.map(|r| &r.phase)
                    ));
                }
            }
        }
        let held_without_alert: Vec<String> = world
            .instances
            .values()
            .flatten()
            .filter(|r| matches!(r.phase, Phase::Held { .. }))
            .filter(|r| {
                !alerts.iter().any(|a| {
                    a.kind == AlertKind::InstanceHeld && a.instance.as_ref() == Some(&r.id)
                })
            })
            .map(|r| r.id.0.clone())
            .collect();
        found.extend(
            held_without_alert
                .into_iter()
                .map(|id| format!("invariant 5: {id} held without an alert")),
        );
        found
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use turnstile_core::{
        HookTimeouts, Instance, LifecycleResult, Millis, Plan, Seen, StepRecord, StepWait,
    };
    use turnstile_model::{Asg, DeployConfig, DeploymentGroup, Hook, Profile};

    const STEPS: usize = 2;

    /// A pending instance carrying every gate of a two-step plan, and its record in `phase`.
    fn world(phase: Phase) -> (Cloud, World, String) {
        let mut cloud = Cloud::new(1);
        cloud.add_asg(Asg {
            name: "fleet".into(),
            hooks: vec![Hook {
                name: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
                transition: Transition::Launching,
                heartbeat_secs: 300,
                default_result: HookResult::Abandon,
                metadata: None,
            }],
            replace_after_ms: None,
        });
        for i in 0..STEPS {
            cloud.add_group(DeploymentGroup {
                app: format!("app{i}"),
                name: format!("dg{i}"),
                tag_set: vec![vec![(format!("gate-{i}"), "open".into())]],
                target_revision: Some(format!("rev-{i}")),
                config: DeployConfig::AllAtOnce,
                profile: Profile {
                    min_ms: 60_000,
                    max_ms: 60_000,
                    fail_prob: 0.0,
                },
            });
        }
        cloud.now = 1_000_000;
        let id = cloud.scale_out("fleet", 1).remove(0);
        let gates: Vec<(String, String)> = (0..STEPS)
            .map(|i| (format!("gate-{i}"), "open".into()))
            .collect();
        let tags: Vec<(&str, &str)> = gates
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        cloud.create_tags(std::slice::from_ref(&id), &tags);
        let steps: Vec<String> = (0..STEPS)
            .map(|i| {
                format!(
                    r#"{{"application":"app{i}","deploymentGroup":"dg{i}","gateTag":"gate-{i}"}}"#
                )
            })
            .collect();
        let plan = Plan::parse(&format!(r#"{{"version":1,"steps":[{}]}}"#, steps.join(",")))
            .expect("a valid plan");
        let action = ActionRef {
            asg: "fleet".into(),
            hook: turnstile_core::DEFAULT_LAUNCH_HOOK.into(),
            token: Some("t".into()),
            instance: id.as_str().into(),
        };
        let record = Instance {
            id: action.instance.clone(),
            action,
            plan,
            timeouts: HookTimeouts::from_heartbeat(300),
            started_at: Millis(cloud.now),
            global_deadline: Millis(cloud.now + 30_000_000),
            last_heartbeat: Millis(cloud.now),
            heartbeat_sent: None,
            steps: vec![StepRecord::default(); STEPS],
            phase,
            seen: Seen::default(),
            wake_at: None,
            destination: None,
            adopted_at: None,
            operator: Vec::new(),
            heartbeats: 0,
            alerts: Vec::new(),
            ready_at: None,
        };
        let mut w = World::default();
        w.instances.insert(record.id.clone(), Some(record));
        (cloud, w, id)
    }

    fn checker(cloud: &Cloud) -> Invariants {
        let steps = (0..STEPS)
            .map(|i| (format!("app{i}"), format!("dg{i}")))
            .collect();
        let mut c = Invariants::for_cloud(cloud, steps);
        c.timeouts = false;
        c
    }

    /// Two users' deployments on two groups, a few seconds apart, both reaching the instance.
    fn two_user_deployments(cloud: &mut Cloud, c: &mut Invariants, w: &World) {
        for i in 0..STEPS {
            let key = (format!("app{i}"), format!("dg{i}"));
            cloud
                .create_deployment(&key, Some("rev-user"), None, false, "user", Creator::User)
                .expect("the group is free");
            let now = cloud.now;
            c.check_with_records(cloud, w, now);
            cloud.now += 5_000;
        }
    }

    #[test]
    fn deployments_created_while_an_instance_is_released_for_continue_are_excused() {
        // Stress mode, seeds 2472, 6245, 8136 and 11241: the CONTINUE after every gate opened
        // did not land, and two users' deployments reached the instance before the probe took
        // it back. They would have reached it in service too.
        let (mut cloud, w, id) = world(Phase::Completing {
            result: LifecycleResult::Continue,
            reason: "every step succeeded".into(),
            since: Millis(1_000_000),
            probing: false,
            opened_at: Some(Millis(1_000_000)),
        });
        let mut c = checker(&cloud);
        let now = cloud.now;
        c.check_with_records(&cloud, &w, now);
        two_user_deployments(&mut cloud, &mut c, &w);
        assert_eq!(cloud.in_flight_on(&id).len(), 2);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // Taken back (gates closed, the final check waits for them): still excused.
        let mut w = w;
        if let Some(Some(rec)) = w.instances.values_mut().next() {
            rec.phase = Phase::Verifying {
                since: Millis(cloud.now),
                waiting_for: None,
                look_back: Some(Millis(1_000_000)),
            };
        }
        let now = cloud.now;
        c.check_with_records(&cloud, &w, now);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
    }

    #[test]
    fn two_deployments_on_an_instance_still_in_its_pipeline_are_a_violation() {
        let (mut cloud, w, id) = world(Phase::Running {
            step: 1,
            wait: StepWait::Queued {
                since: Millis(1_000_000),
            },
        });
        let mut c = checker(&cloud);
        two_user_deployments(&mut cloud, &mut c, &w);
        assert!(
            c.violations
                .iter()
                .any(|v| v.starts_with(&format!("invariant 1: {id}"))),
            "{:?}",
            c.violations
        );
    }
}
