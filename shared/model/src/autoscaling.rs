//! Auto Scaling: launching instances into lifecycle hooks, completing and heartbeating
//! lifecycle actions, applying their results, and termination.

use std::collections::BTreeMap;

use crate::{
    Action, Agent, AgentStart, ApiError, Asg, Boot, Cloud, Fact, GroupKey, Hook, HookResult,
    Instance, InstanceState, LifecycleCall, LifecycleOperation, Ms, Place, Power, Progress,
    TargetStatus, Transition,
};

/// The group's launch hooks, in order.
fn launch_hooks(group: &Asg) -> Vec<Hook> {
    group
        .hooks
        .iter()
        .filter(|h| h.transition == Transition::Launching)
        .cloned()
        .collect()
}

impl Cloud {
    /// Scale out by `n`: each new instance waits in `Pending:Wait` for every launch hook, and
    /// each hook publishes its own event with its own token [aws-behaviour §1.1 "One event per
    /// (instance, hook)"; §2 States]. A group with a warm pool takes its stopped instances
    /// first, oldest first, and launches new ones for the rest [aws-behaviour §2 Warm pools].
    pub fn scale_out(&mut self, asg: &str, n: usize) -> Vec<String> {
        let Some(group) = self.asgs.get(asg).cloned() else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        if self.warm_pools.contains_key(asg) {
            let stopped: Vec<String> = self
                .live_instances()
                .filter(|i| i.asg == asg && i.state == InstanceState::WarmedStopped)
                .map(|i| i.id.clone())
                .take(n)
                .collect();
            for id in stopped {
                self.leave_pool(&id, &group);
                ids.push(id);
            }
        }
        while ids.len() < n {
            ids.push(self.launch(&group, false));
        }
        ids
    }

    /// Launches `n` new instances into the group's warm pool: each waits in
    /// `Warmed:Pending:Wait` for every launch hook (events `EC2` → `WarmPool`, new tokens),
    /// then stops in `Warmed:Stopped` once every action is completed with CONTINUE
    /// [aws-behaviour §2 Warm pools]. A group without a warm pool gets none.
    pub fn fill_warm_pool(&mut self, asg: &str, n: usize) -> Vec<String> {
        let Some(group) = self.asgs.get(asg).cloned() else {
            return Vec::new();
        };
        if !self.warm_pools.contains_key(asg) {
            return Vec::new();
        }
        (0..n).map(|_| self.launch(&group, true)).collect()
    }

    /// A new EC2 instance of `group`, into the group or into its warm pool.
    fn launch(&mut self, group: &Asg, warm: bool) -> String {
        let asg = group.name.as_str();
        let id = format!("i-{:017x}", self.next());
        let (boot, agent_up) = self.new_boot(asg);
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
            agent: Agent {
                up: agent_up,
                ..Agent::default()
            },
            boot,
            tag_version: 0,
        };
        let launch_hooks: Vec<Hook> = launch_hooks(group);
        let (waiting, route) = if warm {
            (
                InstanceState::WarmedPendingWait,
                (Place::Ec2, Place::WarmPool),
            )
        } else {
            (
                InstanceState::PendingWait,
                (Place::Ec2, Place::AutoScalingGroup),
            )
        };
        if !launch_hooks.is_empty() {
            inst.state = waiting;
        }
        self.facts.push(Fact::Launched {
            instance: id.clone(),
            at: self.now,
        });
        if warm {
            self.facts.push(Fact::EnteredWarmPool {
                instance: id.clone(),
                at: self.now,
            });
        }
        for h in launch_hooks {
            let token = self.uuid();
            inst.actions
                .push(self.new_action(asg, &id, &h, token.clone(), route.1));
            self.publish_lifecycle(&inst, &h, &token, route);
        }
        let in_service = inst.state == InstanceState::InService;
        if in_service && !warm {
            inst.in_service_at = Some(self.now);
        }
        self.instances.insert(id.clone(), inst);
        self.live.insert(id.clone());
        if in_service && warm {
            // No launch hook: it stops as soon as it has launched into the pool.
            self.stop_in_pool(&id);
        }
        self.native_launches(&id, asg);
        id
    }

    /// The power and bootstrap state of a new instance of `asg`, and whether its agent runs
    /// from launch: it draws its bootstrap duration, and whether it never finishes, from the
    /// group's bootstrap spec [aws-behaviour §3.6 Bootstrap and the agent].
    fn new_boot(&mut self, asg: &str) -> (Boot, bool) {
        let Some(spec) = self.bootstraps.get(asg).cloned() else {
            return (Boot::default(), true);
        };
        let never = self.rng.chance(spec.never_prob);
        let took = self.rng.range(spec.min_ms, spec.max_ms);
        let boot = Boot {
            power: Power::Running,
            bootstrap: Some(Progress {
                left: (!never).then_some(took),
                since: Some(self.now),
                done_at: None,
            }),
            agent_start: spec.agent,
        };
        (boot, spec.agent == AgentStart::AtBoot)
    }

    /// CodeDeploy's own launch hooks among the instance's open launch actions start their
    /// deployments [aws-behaviour §3.6 Flow].
    fn native_launches(&mut self, id: &str, asg: &str) {
        let natives: Vec<(String, String, GroupKey)> = self
            .instances
            .get(id)
            .into_iter()
            .flat_map(|i| i.actions.iter())
            .filter(|a| a.transition == Transition::Launching)
            .filter_map(|a| {
                self.native_hooks
                    .get(&(asg.to_owned(), a.hook.clone()))
                    .map(|g| (a.hook.clone(), a.token.clone(), g.clone()))
            })
            .collect();
        for (hook, token, group) in natives {
            self.native_launch(id, asg, &hook, &token, &group);
        }
    }

    /// A stopped pool instance leaves the warm pool for the group: it waits in `Pending:Wait`
    /// again with a new action and token per launch hook (events `WarmPool` →
    /// `AutoScalingGroup`) and boots again: after the pool's restart time its bootstrap
    /// resumes and its agent can start [aws-behaviour §2 Warm pools].
    fn leave_pool(&mut self, id: &str, group: &Asg) {
        let now = self.now;
        let restart = self.warm_pools.get(&group.name).map_or(0, |w| w.restart_ms);
        let hooks = launch_hooks(group);
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        inst.boot.power = Power::Booting(now + restart);
        inst.state = if hooks.is_empty() {
            inst.in_service_at = Some(now);
            InstanceState::InService
        } else {
            InstanceState::PendingWait
        };
        let in_service = inst.state == InstanceState::InService;
        let snapshot = inst.clone();
        self.facts.push(Fact::LeftWarmPool {
            instance: id.to_owned(),
            at: now,
        });
        let route = (Place::WarmPool, Place::AutoScalingGroup);
        let mut actions = Vec::new();
        for h in &hooks {
            let token = self.uuid();
            actions.push(self.new_action(&group.name, id, h, token.clone(), route.1));
            self.publish_lifecycle(&snapshot, h, &token, route);
        }
        if let Some(inst) = self.instances.get_mut(id) {
            inst.actions = actions;
        }
        if in_service {
            self.facts.push(Fact::InService {
                instance: id.to_owned(),
                at: now,
            });
        }
        self.native_launches(id, &group.name);
    }

    /// The instance stops in the warm pool (`Warmed:Stopped`): its agent stops, failing the
    /// deployment it runs and those waiting for it, and an unfinished bootstrap pauses
    /// [aws-behaviour §2 Warm pools].
    pub(crate) fn stop_in_pool(&mut self, id: &str) {
        let now = self.now;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        inst.state = InstanceState::WarmedStopped;
        inst.actions.clear();
        inst.boot.power = Power::Stopped;
        if let Some(p) = inst.boot.bootstrap.as_mut()
            && p.done_at.is_none()
        {
            if let (Some(left), Some(since)) = (p.left, p.since) {
                p.left = Some(left.saturating_sub(now.saturating_sub(since)));
            }
            p.since = None;
        }
        inst.agent.up = false;
        let mut lost: Vec<String> = inst
            .agent
            .running
            .take()
            .map(|r| r.deployment)
            .into_iter()
            .collect();
        lost.extend(inst.agent.queue.drain(..).map(|(d, _)| d));
        self.facts.push(Fact::Stopped {
            instance: id.to_owned(),
            at: now,
        });
        for dep in lost {
            if self
                .deployments
                .get(&dep)
                .is_some_and(|d| d.is_target_in_flight(id))
            {
                self.finish_target(&dep, id, TargetStatus::Failed);
            }
        }
    }

    /// DescribeWarmPool: the group's warm pool instances with their lifecycle states, in
    /// instance order (`None`: no such group; a group without a warm pool has none)
    /// [aws-behaviour §2 DescribeAutoScalingGroups and DescribeWarmPool].
    pub fn describe_warm_pool(&mut self, asg: &str) -> Option<Vec<(String, InstanceState)>> {
        self.count("DescribeWarmPool");
        if !self.asgs.contains_key(asg) {
            return None;
        }
        Some(
            self.live_instances()
                .filter(|i| i.asg == asg && i.state.is_warm())
                .map(|i| (i.id.clone(), i.state))
                .collect(),
        )
    }

    /// A new action of hook `h` on instance `id`; another tool that owns the hook is told to
    /// complete it in its own time.
    fn new_action(
        &mut self,
        asg: &str,
        id: &str,
        h: &Hook,
        token: String,
        destination: Place,
    ) -> Action {
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
            destination,
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
                    // Warm pool instances are DescribeWarmPool's.
                    .filter(|i| {
                        &i.asg == n && i.state != InstanceState::Terminated && !i.state.is_warm()
                    })
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
        let state = inst.state;
        match (transition, result) {
            // Launch: any ABANDON terminates the instance [aws-behaviour §2 LifecycleActionResult];
            // one launched into the group is replaced (the model keeps no pool size, so one
            // that was entering the warm pool is not).
            (Transition::Launching, HookResult::Abandon) => {
                inst.actions.clear();
                let asg = inst.asg.clone();
                self.terminate_now(id);
                if let Some(delay) = self.asgs.get(&asg).and_then(|g| g.replace_after_ms)
                    && state != InstanceState::WarmedPendingWait
                {
                    self.replacements.push((now + delay, asg));
                }
            }
            (Transition::Launching, HookResult::Continue)
                if !remaining && state == InstanceState::PendingWait =>
            {
                inst.state = InstanceState::InService;
                inst.in_service_at = Some(now);
                self.facts.push(Fact::InService {
                    instance: id.to_owned(),
                    at: now,
                });
            }
            // Into the warm pool: stopped once every launch hook let it through
            // [aws-behaviour §2 Warm pools].
            (Transition::Launching, HookResult::Continue)
                if !remaining && state == InstanceState::WarmedPendingWait =>
            {
                self.stop_in_pool(id);
            }
            // Back to the warm pool on scale-in: either result goes on to the pool, ABANDON
            // skipping the other terminate hooks, as a terminate does.
            (Transition::Terminating, r)
                if state == InstanceState::WarmedPendingWait
                    && (r == HookResult::Abandon || !remaining) =>
            {
                self.stop_in_pool(id);
            }
            (Transition::Terminating, _) if state == InstanceState::WarmedPendingWait => {}
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
    /// With a warm pool that reuses instances on scale-in, an in-service instance goes back to
    /// the pool instead: held in `Warmed:Pending:Wait` by the terminate hooks (events
    /// `AutoScalingGroup` → `WarmPool`), then stopped. A pool instance is terminated out of the
    /// pool (`Warmed:Terminating:Wait`, events `WarmPool` → `EC2`) [aws-behaviour §2 Warm pools].
    pub fn terminate(&mut self, id: &str) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        if matches!(
            inst.state,
            InstanceState::Terminated
                | InstanceState::TerminatingWait
                | InstanceState::WarmedTerminatingWait
        ) {
            return;
        }
        let reuse = inst.state == InstanceState::InService
            && self
                .warm_pools
                .get(&inst.asg)
                .is_some_and(|w| w.reuse_on_scale_in);
        let (waiting, route) = if reuse {
            (
                InstanceState::WarmedPendingWait,
                (Place::AutoScalingGroup, Place::WarmPool),
            )
        } else if inst.state.is_warm() {
            (
                InstanceState::WarmedTerminatingWait,
                (Place::WarmPool, Place::Ec2),
            )
        } else {
            (
                InstanceState::TerminatingWait,
                (Place::AutoScalingGroup, Place::Ec2),
            )
        };
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
        if reuse {
            self.facts.push(Fact::ReturningToWarmPool {
                instance: id.to_owned(),
                at: self.now,
            });
        }
        if hooks.is_empty() {
            if reuse {
                self.stop_in_pool(id);
            } else {
                self.terminate_now(id);
            }
            return;
        }
        let mut actions = Vec::new();
        let snapshot = inst.clone();
        for h in &hooks {
            let token = self.uuid();
            actions.push(self.new_action(&snapshot.asg, id, h, token.clone(), route.1));
            self.publish_lifecycle(&snapshot, h, &token, route);
        }
        if let Some(inst) = self.instances.get_mut(id) {
            inst.state = waiting;
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
