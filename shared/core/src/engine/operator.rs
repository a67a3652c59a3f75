//! Operator actions: retry or abandon a held instance, reset a group's breaker. Each is noted
//! in the record it acts on, applied or refused with the reason, with the actor and the
//! request id the command line waits for ([`crate::OperatorNote`]).

use super::*;
use crate::plan::Gate;

impl Cx<'_> {
    pub(super) fn on_operator(&mut self, id: &InstanceId, action: OperatorAction, req: &Request) {
        let Some(inst) = self.inst(id) else {
            self.ignore(format!("no pipeline for {id}"));
            return;
        };
        let refused = match (action, inst.phase.clone()) {
            (_, Phase::Finished { .. }) | (_, Phase::Completing { .. }) => {
                Some(format!("{id} is already finishing"))
            }
            (
                OperatorAction::Retry,
                Phase::Held {
                    step: Some(step), ..
                },
            ) => {
                if let Some(r) = self.inst_mut(id).and_then(|i| i.steps.get_mut(step)) {
                    r.attempts = 0;
                }
                self.start_attempt(id, step, Admit::Now);
                None
            }
            (OperatorAction::Retry, Phase::Held { step: None, .. }) => {
                self.verify(id);
                None
            }
            (OperatorAction::Retry, _) => Some(format!("{id} is not held")),
            (
                OperatorAction::SkipFailedStep,
                Phase::Held {
                    step: Some(step), ..
                },
            ) if inst.steps.get(step).is_some_and(|r| r.attempts == 0) => Some(format!(
                "{id} is held before step {step} ever ran (it never became ready); `retry` starts it"
            )),
            (
                OperatorAction::SkipFailedStep,
                Phase::Held {
                    step: Some(step), ..
                },
            ) => {
                self.skip_step(id, step, req);
                None
            }
            (OperatorAction::SkipFailedStep, _) => {
                Some(format!("{id} is not held at a failed step"))
            }
            (OperatorAction::Abandon, _) => {
                self.release(id);
                self.complete(
                    id,
                    LifecycleResult::Abandon,
                    format!("abandoned by an operator ({}: {})", req.actor, req.reason),
                );
                None
            }
        };
        if let Some(why) = &refused {
            self.ignore(why.clone());
        }
        let note = self.note(action.name(), req, refused);
        if let Some(inst) = self.inst_mut(id) {
            push_note(&mut inst.operator, note);
        }
    }

    /// The override: the held step is marked skipped with the operator's note, and the pipeline
    /// goes on with the next step not done (or the final check, which does not look for the
    /// skipped step's revision). The group's breaker is left as it is: the step did not succeed.
    fn skip_step(&mut self, id: &InstanceId, step: usize, req: &Request) {
        let note = self.note(OperatorAction::SkipFailedStep.name(), req, None);
        let Some(inst) = self.inst_mut(id) else {
            return;
        };
        if let Some(r) = inst.steps.get_mut(step) {
            r.overridden = Some(note);
        }
        match inst.steps.iter().position(|r| !r.is_done()) {
            Some(n) => self.start_attempt(id, n, Admit::Now),
            None => self.verify(id),
        }
    }

    /// An operator reset the group's repeated-failure breaker.
    pub(super) fn on_reset_breaker(&mut self, key: &GroupKey, req: &Request) {
        let note = self.note("reset-breaker", req, None);
        match self.group_mut(key) {
            Some(g) => {
                g.breaker = Breaker::default();
                push_note(&mut g.operator, note);
            }
            None => self.ignore(format!("no record for group {key}")),
        }
    }

    /// An operator paused or resumed the group's admissions. A pause of a group with no record
    /// creates one (its gate is set by the first instance that joins); a resume admits what
    /// waits at once.
    pub(super) fn on_pause(&mut self, key: &GroupKey, paused: bool, req: &Request) {
        let action = if paused { "pause" } else { "resume" };
        let refused = match (self.group(key).and_then(|g| g.paused.as_ref()), paused) {
            (Some(_), true) => Some(format!("{key} is already paused")),
            (None, false) => Some(format!("{key} is not paused")),
            _ => None,
        };
        let note = self.note(action, req, refused.clone());
        if let Some(why) = &refused {
            self.ignore(why.clone());
        }
        if !paused && self.group(key).is_none() {
            return; // nothing to resume, and no record to note it in
        }
        let g = self
            .w
            .groups
            .entry(key.clone())
            .or_insert(None)
            .get_or_insert_with(|| {
                Group::new(
                    key.clone(),
                    Gate {
                        key: String::new(),
                        value: String::new(),
                    },
                )
            });
        if refused.is_none() {
            g.paused = paused.then(|| note.clone());
        }
        push_note(&mut g.operator, note);
        self.touched.insert(Key::Group(key.clone()));
        if !paused {
            self.try_admit(key);
        }
    }

    fn note(&self, action: &str, req: &Request, refused: Option<String>) -> OperatorNote {
        OperatorNote {
            request: req.id.clone(),
            action: action.to_owned(),
            actor: req.actor.clone(),
            reason: req.reason.clone(),
            at: self.now,
            outcome: refused.map_or(NoteOutcome::Applied, NoteOutcome::Refused),
        }
    }
}
