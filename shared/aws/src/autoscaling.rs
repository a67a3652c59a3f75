//! The Auto Scaling adapter: complete / heartbeat lifecycle actions (by token, or by instance
//! id for an adopted action), describe hooks, list the instances waiting in a launch wait state.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{LifecycleHook, LifecycleState};
use turnstile_core::{ActionRef, HookTimeouts, InstanceId, LifecycleResult, Millis, Place};

use crate::error::port_error;
use crate::ports::{Clock, HookInfo, LaunchHooks, Lifecycle, PortError, SystemClock, Waiting};

/// The AWS operations the runner makes through this adapter, in both functions (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the template does not allow what the caller needs.
pub const AWS_CALLS: &[&str] = &[
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "autoscaling:DescribeLifecycleHooks",
];

/// The AWS operations of [`Lifecycle::waiting`], which only the timer's adoption sweep calls
/// (`adopt.rs`); checked as [`AWS_CALLS`] is.
pub const ADOPTION_AWS_CALLS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeWarmPool",
];

/// How long a described hook is trusted (its timeouts rarely change).
const HOOK_CACHE_MS: u64 = 300_000;
/// Group names per DescribeAutoScalingGroups call: the default limit on names, which is also
/// the default page size [aws-behaviour §2 DescribeAutoScalingGroups].
const GROUPS_PER_DESCRIBE: usize = 50;
const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

pub struct AutoScaling<C: Clock = SystemClock> {
    client: Client,
    clock: C,
    hooks: Mutex<HashMap<(String, String), (HookInfo, Millis)>>,
    /// Each group's launch hook names, with when they were described.
    launch_hooks: Mutex<HashMap<String, (LaunchHooks, Millis)>>,
}

impl AutoScaling {
    pub fn new(client: Client) -> Self {
        Self::with_clock(client, SystemClock)
    }
}

impl<C: Clock> AutoScaling<C> {
    pub fn with_clock(client: Client, clock: C) -> Self {
        Self {
            client,
            clock,
            hooks: Mutex::new(HashMap::new()),
            launch_hooks: Mutex::new(HashMap::new()),
        }
    }
}

impl<C: Clock> Lifecycle for AutoScaling<C> {
    async fn complete(&self, action: &ActionRef, result: LifecycleResult) -> Result<(), PortError> {
        let result = match result {
            LifecycleResult::Continue => "CONTINUE",
            LifecycleResult::Abandon => "ABANDON",
        };
        // Without a token (an adopted action) the instance id names the action; both calls
        // accept either [aws-behaviour §2 CompleteLifecycleAction].
        let (token, instance) = action.address();
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.asg)
            .lifecycle_hook_name(&action.hook)
            .set_lifecycle_action_token(token.map(str::to_owned))
            .set_instance_id(instance.map(str::to_owned))
            .lifecycle_action_result(result)
            .send()
            .await
            .map_err(|e| port_error("CompleteLifecycleAction", e))?;
        Ok(())
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<(), PortError> {
        let (token, instance) = action.address();
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.asg)
            .lifecycle_hook_name(&action.hook)
            .set_lifecycle_action_token(token.map(str::to_owned))
            .set_instance_id(instance.map(str::to_owned))
            .send()
            .await
            .map_err(|e| port_error("RecordLifecycleActionHeartbeat", e))?;
        Ok(())
    }

    async fn hook(&self, asg: &str, hook: &str) -> Result<HookInfo, PortError> {
        let now = self.clock.now();
        let key = (asg.to_owned(), hook.to_owned());
        if let Some((info, at)) = self.hooks.lock().ok().and_then(|c| c.get(&key).cloned())
            && now.since(at) < HOOK_CACHE_MS
        {
            return Ok(info);
        }
        let resp = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(asg)
            .lifecycle_hook_names(hook)
            .send()
            .await
            .map_err(|e| port_error("DescribeLifecycleHooks", e))?;
        let found = resp
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_hook_name() == Some(hook))
            .ok_or_else(|| PortError::Permanent {
                op: "DescribeLifecycleHooks",
                source: format!("no lifecycle hook {hook} on {asg}").into(),
            })?;
        let info = hook_info(found);
        if let Ok(mut c) = self.hooks.lock() {
            c.insert(key, (info.clone(), now));
        }
        Ok(info)
    }

    async fn launch_hooks(&self, asg: &str) -> Result<LaunchHooks, PortError> {
        let now = self.clock.now();
        if let Some((names, at)) = self
            .launch_hooks
            .lock()
            .ok()
            .and_then(|c| c.get(asg).cloned())
            && now.since(at) < HOOK_CACHE_MS
        {
            return Ok(names);
        }
        let resp = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(asg)
            .send()
            .await
            .map_err(|e| port_error("DescribeLifecycleHooks", e))?;
        let mut names = Vec::new();
        for h in resp.lifecycle_hooks() {
            let Some(name) = h.lifecycle_hook_name() else {
                continue;
            };
            if h.lifecycle_transition() != Some(LAUNCHING) {
                continue;
            }
            let info = hook_info(h);
            // The full description came with the list: later `hook` calls read it from here.
            if let Ok(mut c) = self.hooks.lock() {
                c.insert((asg.to_owned(), name.to_owned()), (info.clone(), now));
            }
            names.push((name.to_owned(), info));
        }
        if let Ok(mut c) = self.launch_hooks.lock() {
            c.insert(asg.to_owned(), (names.clone(), now));
        }
        Ok(names)
    }

    async fn waiting(&self, asgs: &[String]) -> Result<Vec<Waiting>, PortError> {
        let mut waiting = Vec::new();
        let mut warm_pooled = Vec::new();
        for names in asgs.chunks(GROUPS_PER_DESCRIBE) {
            let mut next: Option<String> = None;
            loop {
                let page = self
                    .client
                    .describe_auto_scaling_groups()
                    .set_auto_scaling_group_names(Some(names.to_vec()))
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| port_error("DescribeAutoScalingGroups", e))?;
                for g in page.auto_scaling_groups() {
                    let asg = g.auto_scaling_group_name().unwrap_or_default();
                    for i in g.instances() {
                        if let (Some(id), Some(LifecycleState::PendingWait)) =
                            (i.instance_id(), i.lifecycle_state())
                        {
                            waiting.push(Waiting {
                                asg: asg.to_owned(),
                                instance: InstanceId::from(id),
                                place: Place::AutoScalingGroup,
                            });
                        }
                    }
                    // Warm-pool instances are listed only by DescribeWarmPool, so only groups
                    // that have a warm pool cost a second call.
                    if g.warm_pool_configuration().is_some() {
                        warm_pooled.push(asg.to_owned());
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        for asg in warm_pooled {
            waiting.extend(self.warm_pool_waiting(&asg).await?);
        }
        Ok(waiting)
    }
}

impl<C: Clock> AutoScaling<C> {
    /// The group's warm-pool instances waiting to enter the warm pool (`Warmed:Pending:Wait`).
    async fn warm_pool_waiting(&self, asg: &str) -> Result<Vec<Waiting>, PortError> {
        let mut waiting = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_warm_pool()
                .auto_scaling_group_name(asg)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| port_error("DescribeWarmPool", e))?;
            for i in page.instances() {
                if let (Some(id), Some(LifecycleState::WarmedPendingWait)) =
                    (i.instance_id(), i.lifecycle_state())
                {
                    waiting.push(Waiting {
                        asg: asg.to_owned(),
                        instance: InstanceId::from(id),
                        place: Place::WarmPool,
                    });
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(waiting),
            }
        }
    }
}

/// A hook's timeouts and metadata as described. HeartbeatTimeout defaults to 3600 s;
/// GlobalTimeout is min(100 × heartbeat, 48 h) [aws-behaviour §2 HeartbeatTimeout].
fn hook_info(h: &LifecycleHook) -> HookInfo {
    let heartbeat = h
        .heartbeat_timeout()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(3600);
    let mut timeouts = HookTimeouts::from_heartbeat(heartbeat);
    if let Some(g) = h.global_timeout().and_then(|v| u64::try_from(v).ok()) {
        timeouts.global_secs = g;
    }
    HookInfo {
        timeouts,
        metadata: h.notification_metadata().map(str::to_owned),
    }
}
