//! Operator actions: retry or abandon a held instance, reset a group's breaker.

use super::*;

impl Cx<'_> {
    pub(super) fn on_operator(&mut self, id: &InstanceId, action: OperatorAction) {
        let Some(inst) = self.inst(id) else {
            self.ignore(format!("no pipeline for {id}"));
            return;
        };
        match (action, inst.phase.clone()) {
            (_, Phase::Finished { .. }) | (_, Phase::Completing { .. }) => {
                self.ignore(format!("{id} is already finishing"));
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
            }
            (OperatorAction::Retry, Phase::Held { step: None, .. }) => self.verify(id),
            (OperatorAction::Retry, _) => self.ignore(format!("{id} is not held")),
            (OperatorAction::Abandon, _) => {
                self.release(id);
                self.complete(
                    id,
                    LifecycleResult::Abandon,
                    "abandoned by an operator".into(),
                );
            }
        }
    }

    /// An operator reset the group's repeated-failure breaker.
    pub(super) fn on_reset_breaker(&mut self, key: &GroupKey) {
        if let Some(g) = self.group_mut(key) {
            g.breaker = Breaker::default();
        }
    }
}
