//! `decide(world, input, now) -> decision`: the whole orchestration logic, with no I/O.
//!
//! The rules (docs/design.md "Rules"), each implemented in one place:
//! - **one deployment at a time per instance, in plan order**: an instance joins the waiting
//!   list of exactly one group (its current step) and carries only that group's gate, and
//!   only until its deployment exists (the **seal**: CodeDeploy fixes in-place targets at
//!   creation, so the gate is closed behind them and the instance needs no leave check);
//! - **one active deployment per group, batched**: a free group admits every waiting instance
//!   (up to `maxBatch`) into one deployment, after a short batch window; a busy group is waited
//!   on, never fought;
//! - **per-instance advance**: an instance moves on as soon as its own target finished;
//! - **heartbeats** well before half the heartbeat timeout, never planning past the global
//!   timeout (fail early when the remaining plan cannot fit);
//! - **retries** with exponential back-off, then the step's on-failure policy;
//! - **CONTINUE only when every step succeeded**, after a final revision check that re-runs
//!   any step whose group moved on, and only after every gate is open;
//! - **termination and "action gone"** end the pipeline, stop a deployment that serves only that
//!   instance and release what it held;
//! - the **repeated-failure breaker** holds instead of feeding an abandon/relaunch loop;
//! - **dedupe** on lifecycle token and event id; every other input is idempotent by state.
//!
//! This module holds the [`Engine`], the records a decision reads ([`World`]), what it returns
//! ([`Decision`], [`Missing`]) and the private decision context `Cx`, whose `Cx::handle`
//! only dispatches each input to one `on_*` rule. The rules live in one file per family, each
//! adding an `impl Cx<'_>` block:
//! - `lifecycle.rs`: launch, termination, completion, action gone, ending a pipeline;
//! - `admission.rs`: joining a group's waiting list, admitting a batch;
//! - `pipeline.rs`: picking up a step's result, leaving, success, failure, hold, completion;
//! - `verify.rs`: the final revision check and the probe of a re-sent CONTINUE;
//! - `codedeploy.rs`: deployment and target inputs, creation outcomes, the seal;
//! - `timer.rs`: ticks, housekeeping (heartbeats, deadline guard) and wake times;
//! - `readiness.rs`: waiting for the instance to tag itself ready before the first step;
//! - `operator.rs`: operator actions and the breaker reset.
//!
//! Logic that touches only one record lives on the record (`crate::state`); `Cx` delegates.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::*;
use crate::io::*;
use crate::plan::{OnFailure, Plan, PlanError, WarmPoolPolicy};
use crate::state::*;

pub use crate::config::Config;

mod admission;
mod codedeploy;
mod lifecycle;
mod operator;
mod pipeline;
mod readiness;
mod timer;
mod verify;

/// Below this heartbeat timeout the periodic sweep (every 60 s, EventBridge's finest schedule)
/// cannot cover a lost timer message: 0.4 × timeout + 60 s must stay under the timeout.
pub const MIN_ROBUST_HEARTBEAT_SECS: u64 = 120;

/// The records a decision may read, as loaded by the runner. `None` means "loaded, absent".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub instances: BTreeMap<InstanceId, Option<Instance>>,
    pub groups: BTreeMap<GroupKey, Option<Group>>,
}

impl World {
    pub fn instance(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.get(id).and_then(Option::as_ref)
    }
    pub fn group(&self, key: &GroupKey) -> Option<&Group> {
        self.groups.get(key).and_then(Option::as_ref)
    }

    /// Records the keys as loaded and absent (a store that has none of them).
    pub fn insert_absent(&mut self, keys: impl IntoIterator<Item = Key>) {
        for k in keys {
            match k {
                Key::Instance(i) => {
                    self.instances.entry(i).or_insert(None);
                }
                Key::Group(g) => {
                    self.groups.entry(g).or_insert(None);
                }
            }
        }
    }
}

/// What a decision changed and what must happen next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub commands: Vec<Command>,
    /// Records whose content changed (the runner writes exactly these, conditionally).
    pub changed: BTreeSet<Key>,
    /// Why nothing happened, for the log, when the input was a duplicate or stale.
    pub ignored: Option<String>,
}

/// The decision needs records the runner has not loaded yet; load them and decide again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("records not loaded: {0:?}")]
pub struct Missing(pub Vec<Key>);

#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub config: Config,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// The records `input` is about, which the runner loads first: its instance and the
    /// groups it names. The groups an instance's decision reads besides (its current step's,
    /// every step's for the final check) are asked for by the decision itself ([`Missing`]),
    /// so one that reads none, a heartbeat, loads none.
    pub fn keys_for(&self, _world: &World, input: &Input) -> Vec<Key> {
        if self.foreign_launch(input).is_some() {
            return Vec::new();
        }
        Self::records_of(input)
    }

    /// The records `input` is about (its instance, its group), without the plan's groups:
    /// the ones the timer would look at to follow up on it.
    pub fn records_of(input: &Input) -> Vec<Key> {
        let (instances, groups) = primary_keys(input);
        instances
            .into_iter()
            .map(Key::Instance)
            .chain(groups.into_iter().map(Key::Group))
            .collect()
    }

    /// Decides what `input` means at `now`, updating `world` in place.
    pub fn decide(
        &self,
        world: &mut World,
        input: &Input,
        now: Millis,
    ) -> Result<Decision, Missing> {
        let missing: Vec<Key> = self
            .keys_for(world, input)
            .into_iter()
            .filter(|k| match k {
                Key::Instance(i) => !world.instances.contains_key(i),
                Key::Group(g) => !world.groups.contains_key(g),
            })
            .collect();
        if !missing.is_empty() {
            return Err(Missing(missing));
        }
        if let Some(why) = self.foreign_launch(input) {
            return Ok(Decision {
                ignored: Some(why),
                ..Decision::default()
            });
        }
        let before = world.clone();
        let (instances, groups) = primary_keys(input);
        let mut touched: BTreeSet<Key> = instances.into_iter().map(Key::Instance).collect();
        touched.extend(groups.into_iter().map(Key::Group));
        let mut cx = Cx {
            cfg: &self.config,
            w: world,
            now,
            out: Vec::new(),
            ignored: None,
            touched,
            unloaded: Default::default(),
        };
        cx.handle(input);
        cx.finish(&before)
    }
}

fn primary_keys(input: &Input) -> (Vec<InstanceId>, Vec<GroupKey>) {
    match input {
        Input::Launch { event, plan, .. } => (
            vec![event.action.instance.clone()],
            plan.as_ref()
                .map(|p| p.steps.iter().map(|s| s.group.clone()).collect())
                .unwrap_or_default(),
        ),
        Input::Adopt { action, plan, .. } => (
            vec![action.instance.clone()],
            plan.as_ref()
                .map(|p| p.steps.iter().map(|s| s.group.clone()).collect())
                .unwrap_or_default(),
        ),
        Input::Terminate { event } => (vec![event.action.instance.clone()], vec![]),
        Input::DeploymentEvent { group, .. }
        | Input::DeploymentPolled { group, .. }
        | Input::CreateAttempted { group, .. }
        | Input::GateSealed { group, .. }
        | Input::OverflowWoken { group, .. }
        | Input::ResetBreaker { group, .. }
        | Input::Pause { group, .. } => (vec![], vec![group.clone()]),
        Input::TargetEvent {
            group, instance, ..
        } => (vec![instance.clone()], vec![group.clone()]),
        Input::RevisionsChecked { instance, .. }
        | Input::LeaveChecked { instance, .. }
        | Input::HeartbeatRecorded { instance, .. }
        | Input::ActionCompleted { instance, .. }
        | Input::ActionGone { instance, .. }
        | Input::Operator { instance, .. }
        | Input::InstanceTagged { instance, .. } => (vec![instance.clone()], vec![]),
        Input::Tick(Key::Instance(i)) => (vec![i.clone()], vec![]),
        Input::Tick(Key::Group(g)) => (vec![], vec![g.clone()]),
    }
}

/// When a group may admit an instance that just joined its waiting list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// At once (a re-run, an operator retry, the last of a batch).
    Now,
    /// After the batch window, so that instances launched together share a deployment.
    Window,
    /// After the batch-follow window, unless the batch-mates catch up sooner.
    Follow,
}

/// One decision in progress: the records, the commands so far, and what to reschedule.
struct Cx<'a> {
    cfg: &'a Config,
    w: &'a mut World,
    now: Millis,
    out: Vec<Command>,
    ignored: Option<String>,
    /// Instances and groups whose timers must be recomputed.
    touched: BTreeSet<Key>,
    /// Groups the decision looked at that were not loaded: it is decided again once they are
    /// ([`Missing`]). An instance's decision loads only the groups it reads, so a heartbeat
    /// does not read a group record that may list 1,500 instances.
    unloaded: std::cell::RefCell<BTreeSet<GroupKey>>,
}

impl Cx<'_> {
    /// Dispatches `input` to the one rule that handles it.
    fn handle(&mut self, input: &Input) {
        match input {
            Input::Launch {
                event,
                plan,
                timeouts,
            } => self.on_launch(event, plan, *timeouts),
            Input::Terminate { event } => self.on_terminate(event),
            Input::Adopt {
                action,
                place,
                plan,
                timeouts,
                at,
            } => self.on_adopt(action, *place, plan, *timeouts, *at),
            Input::DeploymentEvent {
                event_id,
                group,
                deployment,
                state,
            } => self.on_deployment_event(event_id.as_ref(), group, deployment, *state),
            Input::DeploymentPolled {
                group,
                deployment,
                state,
                targets,
            } => self.on_deployment(group, deployment, *state, targets),
            Input::TargetEvent {
                event_id,
                group,
                deployment,
                instance,
                state,
            } => self.on_target(event_id.as_ref(), group, deployment, instance, *state),
            Input::CreateAttempted {
                group,
                intent,
                outcome,
            } => self.on_create_outcome(group, intent, outcome),
            Input::GateSealed {
                group,
                deployment,
                state,
            } => self.on_gate_sealed(group, deployment, *state),
            Input::RevisionsChecked {
                instance,
                current,
                asked_at,
            } => self.on_revisions(instance, current, *asked_at),
            Input::LeaveChecked {
                instance,
                group,
                found,
            } => self.on_leave_checked(instance, group, found),
            Input::HeartbeatRecorded {
                instance,
                token,
                at,
            } => self.on_heartbeat_recorded(instance, token, *at),
            Input::ActionCompleted { instance, token } => self.on_completed(instance, token),
            Input::ActionGone { instance, token } => self.on_gone(instance, token),
            Input::Tick(Key::Instance(i)) => self.on_instance_tick(i),
            Input::Tick(Key::Group(g)) => self.on_group_tick(g),
            Input::Operator {
                instance,
                action,
                request,
            } => self.on_operator(instance, *action, request),
            Input::ResetBreaker { group, request } => self.on_reset_breaker(group, request),
            Input::Pause {
                group,
                paused,
                request,
            } => self.on_pause(group, *paused, request),
            Input::OverflowWoken { group, woken, room } => {
                self.on_overflow_woken(group, *woken, *room)
            }
            Input::InstanceTagged { instance, tags, at } => self.on_tagged(instance, tags, *at),
        }
    }

    // ---- record access ----------------------------------------------------------------------

    fn inst(&self, id: &InstanceId) -> Option<&Instance> {
        self.w.instance(id)
    }

    fn inst_mut(&mut self, id: &InstanceId) -> Option<&mut Instance> {
        self.touched.insert(Key::Instance(id.clone()));
        self.w.instances.get_mut(id).and_then(Option::as_mut)
    }

    /// A group record, noting it as needed when it is not loaded.
    fn group(&self, key: &GroupKey) -> Option<&Group> {
        let loaded = self.w.groups.get(key);
        if loaded.is_none() {
            self.unloaded.borrow_mut().insert(key.clone());
        }
        loaded.and_then(Option::as_ref)
    }

    /// Whether `key` is loaded, without asking for it.
    fn has_loaded(&self, key: &GroupKey) -> bool {
        self.w.groups.contains_key(key)
    }

    fn group_mut(&mut self, key: &GroupKey) -> Option<&mut Group> {
        if !self.w.groups.contains_key(key) {
            self.unloaded.get_mut().insert(key.clone());
        }
        self.touched.insert(Key::Group(key.clone()));
        self.w.groups.get_mut(key).and_then(Option::as_mut)
    }

    fn ignore(&mut self, why: impl Into<String>) {
        self.ignored = Some(why.into());
    }

    // ---- dedupe -----------------------------------------------------------------------------

    /// Dedupe on event id for instance-keyed inputs. Returns true for a duplicate.
    fn instance_seen(&mut self, id: &InstanceId, event: Option<&EventId>) -> bool {
        let cap = self.cfg.seen_capacity;
        let duplicate = match (self.w.instances.get_mut(id).and_then(Option::as_mut), event) {
            (Some(inst), Some(e)) => inst.seen.seen_before(e, cap),
            _ => false,
        };
        self.note_duplicate(duplicate, event)
    }

    /// Dedupe on event id for group-keyed inputs. Returns true for a duplicate.
    fn group_seen(&mut self, key: &GroupKey, event: Option<&EventId>) -> bool {
        let cap = self.cfg.seen_capacity;
        let duplicate = match (self.w.groups.get_mut(key).and_then(Option::as_mut), event) {
            (Some(g), Some(e)) => g.seen.seen_before(e, cap),
            _ => false,
        };
        self.note_duplicate(duplicate, event)
    }

    fn note_duplicate(&mut self, duplicate: bool, event: Option<&EventId>) -> bool {
        if let (true, Some(e)) = (duplicate, event) {
            self.ignore(format!("duplicate event {e}"));
        }
        duplicate
    }

    // ---- metrics and alerts -----------------------------------------------------------------

    fn metric(
        &mut self,
        name: MetricName,
        value: f64,
        unit: MetricUnit,
        asg: Option<String>,
        group: Option<GroupKey>,
    ) {
        self.out.push(Command::Metric(Metric {
            name,
            value,
            unit,
            asg,
            group,
        }));
    }

    fn alert(
        &mut self,
        kind: AlertKind,
        instance: Option<&InstanceId>,
        group: Option<&GroupKey>,
        message: String,
    ) {
        let now = self.now;
        if let Some(inst) = instance.and_then(|i| self.inst_mut(i)) {
            inst.note_alert(AlertNote {
                at: now,
                kind,
                message: message.clone(),
            });
        }
        self.out.push(Command::Alert(Alert {
            kind,
            instance: instance.cloned(),
            group: group.cloned(),
            message,
        }));
    }

    // ---- what the group records say (the logic lives on `Group`) ----------------------------

    /// Where `id` stands in `key`, without changing anything.
    fn standing(&self, id: &InstanceId, key: &GroupKey) -> Standing {
        self.group(key).map_or(Standing::Absent, |g| g.standing(id))
    }

    /// Removes `id` from every list of `key` and returns whether a deployment it was the last
    /// pending member of must be stopped.
    fn leave_group(&mut self, id: &InstanceId, key: &GroupKey) -> Option<DeploymentId> {
        self.group_mut(key)?.remove(id)
    }

    /// Whether batch-mates of `id` in `key` have yet to move on ([`Group::mates_to_come`]).
    fn mates_to_come(&self, id: &InstanceId, key: &GroupKey) -> bool {
        self.group(key).is_some_and(|g| g.mates_to_come(id))
    }

    // ---- the decision -----------------------------------------------------------------------

    /// Heartbeats, the global deadline, and timers for every record the input touched.
    fn finish(mut self, before: &World) -> Result<Decision, Missing> {
        let touched: Vec<Key> = self.touched.iter().cloned().collect();
        for key in &touched {
            if let Key::Instance(id) = key {
                self.housekeep(id);
            }
        }
        // Before the timers: a wake sets when the group may wake its overflow next.
        self.wake_overflowed(before);
        for key in self.touched.clone() {
            self.schedule(&key);
        }
        let unloaded = self.unloaded.take();
        if !unloaded.is_empty() {
            // Decided on records it did not have: undone, to be decided again with them.
            *self.w = before.clone();
            return Err(Missing(unloaded.into_iter().map(Key::Group).collect()));
        }
        // Drop group records with nothing left in them.
        let idle: Vec<GroupKey> = self
            .w
            .groups
            .iter()
            .filter(|(_, g)| g.as_ref().is_some_and(Group::is_idle))
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.w.groups.insert(k, None);
        }
        // Several rules may ask to stop the same deployment in one decision: once is enough.
        let mut stopped = BTreeSet::new();
        self.out.retain(|c| match c {
            Command::StopDeployment { deployment, .. } => stopped.insert(deployment.clone()),
            _ => true,
        });
        let mut changed = BTreeSet::new();
        for (id, rec) in &self.w.instances {
            if before.instances.get(id) != Some(rec) {
                changed.insert(Key::Instance(id.clone()));
            }
        }
        for (key, rec) in &self.w.groups {
            let was = before.groups.get(key);
            if was != Some(rec) && !(was.is_none() && rec.is_none()) {
                changed.insert(Key::Group(key.clone()));
            }
        }
        Ok(Decision {
            commands: self.out,
            changed,
            ignored: self.ignored,
        })
    }
}
