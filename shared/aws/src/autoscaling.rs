//! The Auto Scaling adapter: complete / heartbeat lifecycle actions, describe hooks.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_autoscaling::Client;
use turnstile_core::{ActionRef, HookTimeouts, LifecycleResult, Millis};

use crate::error::port_error;
use crate::ports::{Clock, HookInfo, Lifecycle, PortError, SystemClock};

/// How long a described hook is trusted (its timeouts rarely change).
const HOOK_CACHE_MS: u64 = 300_000;

pub struct AutoScaling<C: Clock = SystemClock> {
    client: Client,
    clock: C,
    hooks: Mutex<HashMap<(String, String), (HookInfo, Millis)>>,
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
        }
    }
}

impl<C: Clock> Lifecycle for AutoScaling<C> {
    async fn complete(&self, action: &ActionRef, result: LifecycleResult) -> Result<(), PortError> {
        let result = match result {
            LifecycleResult::Continue => "CONTINUE",
            LifecycleResult::Abandon => "ABANDON",
        };
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.asg)
            .lifecycle_hook_name(&action.hook)
            .lifecycle_action_token(action.token.as_str())
            .lifecycle_action_result(result)
            .send()
            .await
            .map_err(|e| port_error("CompleteLifecycleAction", e))?;
        Ok(())
    }

    async fn heartbeat(&self, action: &ActionRef) -> Result<(), PortError> {
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.asg)
            .lifecycle_hook_name(&action.hook)
            .lifecycle_action_token(action.token.as_str())
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
        // HeartbeatTimeout defaults to 3600 s; GlobalTimeout is min(100 × heartbeat, 48 h).
        let heartbeat = found
            .heartbeat_timeout()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(3600);
        let mut timeouts = HookTimeouts::from_heartbeat(heartbeat);
        if let Some(g) = found.global_timeout().and_then(|v| u64::try_from(v).ok()) {
            timeouts.global_secs = g;
        }
        let info = HookInfo {
            timeouts,
            metadata: found.notification_metadata().map(str::to_owned),
        };
        if let Ok(mut c) = self.hooks.lock() {
            c.insert(key, (info.clone(), now));
        }
        Ok(info)
    }
}
