//! Auto Scaling: launching instances into lifecycle hooks, completing and heartbeating
//! lifecycle actions, applying their results, and termination.

use std::collections::BTreeMap;

use crate::{
    Action, Agent, ApiError, Cloud, Fact, GroupKey, Hook, HookResult, Instance, InstanceState,
    LifecycleCall, LifecycleOperation, Ms, TargetStatus, Transition,
};

impl Cloud {
    /// Scale out by `n`: each new instance waits in `Pending:Wait` for every launch hook, and
    /// each hook publishes its own event with its own token [aws-behaviour §1.1 "One event per
    /// (instance, hook)"; §2 States].
    pub fn scale_out(&mut self, asg: &str, n: usize) -> Vec<String> {
        let Some(group) = self.asgs.get(asg).cloned() else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = format!("i-{:017x}", self.next());
            let mut inst = Instance {
                id: id.clone(),
                asg: asg.to_owned(),
                state: InstanceState::InService,
                // Tags with PropagateAtLaunch are on the instance from its launch, before any
                // hook runs [aws-behaviour §2 Auto Scaling group tags].
                tags: self.propagated_tags(asg).into_iter().collect(),
                actions: Vec::new(),
                installed: BTreeMap::new(),
                launched_at: self.now,
                in_service_at: None,
                terminated_at: None,
                agent: Agent::default(),
            };
            let launch_hooks: Vec<Hook> = group
                .hooks
                .iter()
                .filter(|h| h.transition == Transition::Launching)
                .cloned()
                .collect();
            if !launch_hooks.is_empty() {
                inst.state = InstanceState::PendingWait;
            }
            self.facts.push(Fact::Launched {
                instance: id.clone(),
                at: self.now,
            });
            for h in launch_hooks {
                let token = self.uuid();
                inst.actions
                    .push(self.new_action(asg, &id, &h, token.clone()));
                self.publish_lifecycle(&inst, &h, &token);
            }
            if inst.state == InstanceState::InService {
                inst.in_service_at = Some(self.now);
            }
            let natives: Vec<(String, String, GroupKey)> = inst
                .actions
                .iter()
                .filter_map(|a| {
                    self.native_hooks
                        .get(&(asg.to_owned(), a.hook.clone()))
                        .map(|g| (a.hook.clone(), a.token.clone(), g.clone()))
                })
                .collect();
            self.instances.insert(id.clone(), inst);
            self.live.insert(id.clone());
            for (hook, token, group) in natives {
                self.native_launch(&id, asg, &hook, &token, &group);
            }
            ids.push(id);
        }
        ids
    }

    /// A new action of hook `h` on instance `id`; another tool that owns the hook is told to
    /// complete it in its own time.
    fn new_action(&mut self, asg: &str, id: &str, h: &Hook, token: String) -> Action {
        let owner = self
            .hook_owners
            .get(&(asg.to_owned(), h.name.clone()))
            .copied();
        if let Some(owner) = owner {
            self.owner_completions.push((
                self.now + owner.after_ms,
                id.to_owned(),
                token.clone(),
                owner.result,
            ));
        }
        Action {
            hook: h.name.clone(),
            token,
            transition: h.transition,
            // An owner heartbeats its action until it completes it: only the global timeout
            // can overtake it.
            heartbeat_deadline: match owner {
                Some(_) => self.now + h.global_ms(),
                None => self.now + h.heartbeat_secs * 1000,
            },
            global_deadline: self.now + h.global_ms(),
            heartbeat_ms: h.heartbeat_secs * 1000,
            default_result: h.default_result,
        }
    }

    fn find_action(
        &self,
        asg: &str,
        hook: &str,
        token: Option<&str>,
        instance: Option<&str>,
    ) -> Option<(String, usize)> {
        let pending = |i: &Instance| {
            if i.asg != asg {
                return None;
            }
            i.actions
                .iter()
                .position(|a| a.hook == hook && token.is_none_or(|t| t == a.token))
                .map(|p| (i.id.clone(), p))
        };
        match instance {
            Some(id) => self.instances.get(id).and_then(pending),
            None => self.live_instances().find_map(pending),
        }
    }

    fn no_action(token: Option<&str>, instance: Option<&str>) -> ApiError {
        ApiError::NoActiveAction(match (token, instance) {
            (Some(t), _) => format!("No active Lifecycle Action found with token {t}"),
            (None, Some(i)) => format!("No active Lifecycle Action found with instance ID {i}"),
            (None, None) => "No active Lifecycle Action found".into(),
        })
    }

    /// CompleteLifecycleAction by token or instance id [aws-behaviour §2 CompleteLifecycleAction];
    /// a stale or finished action is `ValidationError` [aws-behaviour §2 Stale token / already completed].
    pub fn complete_lifecycle_action(
        &mut self,
        asg: &str,
        hook: &str,
        token: Option<&str>,
        instance: Option<&str>,
        result: HookResult,
    ) -> Result<(), ApiError> {
        self.count("CompleteLifecycleAction");
        let found = self.find_action(asg, hook, token, instance);
        self.record_call(
            LifecycleOperation::Complete(result),
            (asg, hook, token, instance),
            found.is_some(),
        );
        let (id, pos) = found.ok_or_else(|| Self::no_action(token, instance))?;
        self.finish_action(&id, pos, result);
        Ok(())
    }

    fn record_call(
        &mut self,
        operation: LifecycleOperation,
        (asg, hook, token, instance): (&str, &str, Option<&str>, Option<&str>),
        matched: bool,
    ) {
        self.lifecycle_calls.push(LifecycleCall {
            operation,
            asg: asg.to_owned(),
            hook: hook.to_owned(),
            token: token.map(str::to_owned),
            instance: instance.map(str::to_owned),
            at: self.now,
            matched,
        });
    }

    /// Completes the action at `pos` of instance `id` and applies the result once the
    /// transition has no action left.
    fn finish_action(&mut self, id: &str, pos: usize, result: HookResult) {
        let at = self.now;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        if pos >= inst.actions.len() {
            return;
        }
        let action = inst.actions.remove(pos);
        self.facts.push(Fact::Completed {
            instance: id.to_owned(),
            hook: action.hook.clone(),
            token: action.token.clone(),
            result,
            at,
        });
        self.apply_result(id, action.transition, result);
    }

    /// Another tool completes its own hook's action, if it is still pending.
    pub(crate) fn owner_complete(&mut self, id: &str, token: &str, result: HookResult) {
        let pos = self
            .instances
            .get(id)
            .filter(|i| i.state != InstanceState::Terminated)
            .and_then(|i| i.actions.iter().position(|a| a.token == token));
        if let Some(pos) = pos {
            self.finish_action(id, pos, result);
        }
    }

    /// Another tool's completions that fall due by `t`.
    pub(crate) fn next_owner_completion(&self) -> Option<Ms> {
        self.owner_completions.iter().map(|(t, ..)| *t).min()
    }

    pub(crate) fn run_owner_completions(&mut self) {
        let now = self.now;
        let mut due: Vec<(Ms, String, String, HookResult)> = Vec::new();
        self.owner_completions.retain(|c| {
            let is_due = c.0 <= now;
            if is_due {
                due.push(c.clone());
            }
            !is_due
        });
        due.sort_by_key(|c| c.0);
        for (_, id, token, result) in due {
            self.owner_complete(&id, &token, result);
        }
    }

    /// RecordLifecycleActionHeartbeat: restarts the heartbeat timer, never past the global
    /// timeout [aws-behaviour §2 RecordLifecycleActionHeartbeat].
    pub fn record_heartbeat(
        &mut self,
        asg: &str,
        hook: &str,
        token: Option<&str>,
        instance: Option<&str>,
    ) -> Result<(), ApiError> {
        self.count("RecordLifecycleActionHeartbeat");
        let found = self.find_action(asg, hook, token, instance);
        self.record_call(
            LifecycleOperation::Heartbeat,
            (asg, hook, token, instance),
            found.is_some(),
        );
        let (id, pos) = found.ok_or_else(|| Self::no_action(token, instance))?;
        let now = self.now;
        if let Some(a) = self
            .instances
            .get_mut(&id)
            .and_then(|i| i.actions.get_mut(pos))
        {
            a.heartbeat_deadline = (now + a.heartbeat_ms).min(a.global_deadline);
        }
        Ok(())
    }

    /// DescribeAutoScalingGroups: each named group (unknown names are left out, as AWS does)
    /// with its instances and their lifecycle states, in instance order
    /// [aws-behaviour §2 DescribeAutoScalingGroups].
    pub fn describe_groups(
        &mut self,
        names: &[String],
    ) -> Vec<(String, Vec<(String, InstanceState)>)> {
        self.count("DescribeAutoScalingGroups");
        names
            .iter()
            .filter(|n| self.asgs.contains_key(n.as_str()))
            .map(|n| {
                let members = self
                    .instances
                    .values()
                    .filter(|i| &i.asg == n && i.state != InstanceState::Terminated)
                    .map(|i| (i.id.clone(), i.state))
                    .collect();
                (n.clone(), members)
            })
            .collect()
    }

    /// DescribeLifecycleHooks for every hook of the group (`None`: no such group).
    pub fn describe_hooks(&mut self, asg: &str) -> Option<Vec<Hook>> {
        self.count("DescribeLifecycleHooks");
        self.asgs.get(asg).map(|g| g.hooks.clone())
    }

    /// DescribeLifecycleHooks for one hook.
    pub fn describe_hook(&mut self, asg: &str, hook: &str) -> Option<Hook> {
        self.count("DescribeLifecycleHooks");
        self.asgs
            .get(asg)
            .and_then(|g| g.hooks.iter().find(|h| h.name == hook).cloned())
    }

    /// Applies a hook result once no action of that transition remains.
    pub(crate) fn apply_result(&mut self, id: &str, transition: Transition, result: HookResult) {
        let now = self.now;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        let remaining = inst.actions.iter().any(|a| a.transition == transition);
        match (transition, result) {
            // Launch: any ABANDON terminates (and replaces) the instance [aws-behaviour §2 LifecycleActionResult].
            (Transition::Launching, HookResult::Abandon) => {
                inst.actions.clear();
                let asg = inst.asg.clone();
                self.terminate_now(id);
                if let Some(delay) = self.asgs.get(&asg).and_then(|g| g.replace_after_ms) {
                    self.replacements.push((now + delay, asg));
                }
            }
            (Transition::Launching, HookResult::Continue)
                if !remaining && inst.state == InstanceState::PendingWait =>
            {
                inst.state = InstanceState::InService;
                inst.in_service_at = Some(now);
                self.facts.push(Fact::InService {
                    instance: id.to_owned(),
                    at: now,
                });
            }
            // Terminate: both results terminate [aws-behaviour §2 LifecycleActionResult].
            (Transition::Terminating, HookResult::Abandon) => {
                inst.actions.clear();
                self.terminate_now(id);
            }
            (Transition::Terminating, HookResult::Continue) if !remaining => self.terminate_now(id),
            _ => {}
        }
    }

    /// Terminates an instance (scale-in or a user's request). With terminate hooks it waits in
    /// `Terminating:Wait` first; a pending launch action disappears [aws-behaviour §2 States].
    pub fn terminate(&mut self, id: &str) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        if matches!(
            inst.state,
            InstanceState::Terminated | InstanceState::TerminatingWait
        ) {
            return;
        }
        let hooks: Vec<Hook> = self
            .asgs
            .get(&inst.asg)
            .map(|g| {
                g.hooks
                    .iter()
                    .filter(|h| h.transition == Transition::Terminating)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if hooks.is_empty() {
            self.terminate_now(id);
            return;
        }
        let mut actions = Vec::new();
        let snapshot = inst.clone();
        for h in &hooks {
            let token = self.uuid();
            actions.push(self.new_action(&snapshot.asg, id, h, token.clone()));
            self.publish_lifecycle(&snapshot, h, &token);
        }
        if let Some(inst) = self.instances.get_mut(id) {
            inst.state = InstanceState::TerminatingWait;
            inst.actions = actions;
        }
    }

    pub(crate) fn terminate_now(&mut self, id: &str) {
        let now = self.now;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        if inst.state == InstanceState::Terminated {
            return;
        }
        inst.state = InstanceState::Terminated;
        inst.terminated_at = Some(now);
        self.live.remove(id);
        inst.actions.clear();
        inst.agent = Agent::default();
        self.facts.push(Fact::Terminated {
            instance: id.to_owned(),
            at: now,
        });
        // Its targets in running deployments can no longer succeed.
        let deps: Vec<String> = self
            .active_deployments()
            .filter(|d| d.is_target_in_flight(id))
            .map(|d| d.id.clone())
            .collect();
        for d in deps {
            self.finish_target(&d, id, TargetStatus::Failed);
        }
    }
}
