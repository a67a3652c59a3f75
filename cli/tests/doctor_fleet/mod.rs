//! Test support for `turnstile doctor`: a fleet built in the AWS model, served by the local
//! cloud's wire simulator on a free port, and the real `turnstile` binary pointed at it with
//! `AWS_ENDPOINT_URL` (the SDK's own chain, as an operator would run it).
#![allow(dead_code)]

use turnstile_cli::Exit;
use turnstile_localcloud::wire::{self, Server, Simulator, WireFaults};
use turnstile_model::{
    Asg, Cloud, DeployConfig, DeploymentGroup, Hook, HookResult, Profile, Transition,
};

pub const ASG: &str = "shared-fleet";
pub const WEB_GATE: &str = "turnstile:gate:web";
pub const API_GATE: &str = "turnstile:gate:api";

/// The plan of the correct fleet: two steps, default options.
pub fn plan() -> String {
    format!(
        r#"{{"version":1,"steps":[{{"application":"web","deploymentGroup":"web-dg","gateTag":"{WEB_GATE}"}},{{"application":"api","deploymentGroup":"api-dg","gateTag":"{API_GATE}"}}]}}"#
    )
}

pub fn hook(name: &str, heartbeat_secs: u64, metadata: Option<String>) -> Hook {
    Hook {
        name: name.into(),
        transition: Transition::Launching,
        heartbeat_secs,
        default_result: HookResult::Abandon,
        metadata,
    }
}

pub fn group(app: &str, name: &str, gate: &str) -> DeploymentGroup {
    DeploymentGroup {
        app: app.into(),
        name: name.into(),
        tag_set: vec![
            vec![("Name".into(), ASG.into())],
            vec![(gate.into(), "open".into())],
        ],
        target_revision: Some(format!("{app}-v1")),
        config: DeployConfig::OneAtATime,
        profile: Profile {
            min_ms: 60_000,
            max_ms: 60_000,
            fail_prob: 0.0,
        },
    }
}

/// A correctly set-up fleet: turnstile's launch hook with a valid plan that fits, no
/// CodeDeploy hook, no propagated gate, both deployment groups detached with the gate as a tag
/// group of its own, a target revision and an existing config, and two in-service instances
/// carrying both gates. Returns the cloud and the instances' ids.
pub fn healthy() -> (Cloud, Vec<String>) {
    let mut c = Cloud::new(3);
    c.add_asg(Asg {
        name: ASG.into(),
        hooks: Vec::new(),
        replace_after_ms: None,
    });
    c.tag_asg(ASG, "Name", ASG, true);
    // Launched before the hook exists, so they are in service.
    let ids = c.scale_out(ASG, 2);
    c.create_tags(&ids, &[(WEB_GATE, "open"), (API_GATE, "open")]);
    if let Some(a) = c.asgs.get_mut(ASG) {
        a.hooks
            .push(hook(turnstile_core::DEFAULT_LAUNCH_HOOK, 600, Some(plan())));
    }
    c.add_group(group("web", "web-dg", WEB_GATE));
    c.add_group(group("api", "api-dg", API_GATE));
    (c, ids)
}

/// What one run of the binary printed.
pub struct Ran {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.out))
    }

    pub fn exit(&self, e: Exit) -> bool {
        self.code == i32::from(e.code())
    }

    /// The findings of a JSON run with this check and severity.
    pub fn findings(&self, check: &str, severity: &str) -> Vec<serde_json::Value> {
        self.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check && f["severity"] == severity)
            .cloned()
            .collect()
    }
}

/// The simulator serving `cloud`, stopped when dropped.
pub struct Doctor {
    _server: Server,
    endpoint: String,
}

impl Doctor {
    pub async fn start(cloud: Cloud) -> Self {
        let sim = Simulator::new(cloud, WireFaults::default(), 1);
        let server = wire::serve(sim).await.unwrap();
        Self {
            endpoint: server.endpoint(),
            _server: server,
        }
    }

    /// Runs `turnstile ARGS...` against the simulator, with nothing of the caller's AWS
    /// configuration in its environment.
    pub async fn run(&self, args: &[&str]) -> Ran {
        run_binary(args, Some(&self.endpoint)).await
    }
}

pub async fn run_binary(args: &[&str], endpoint: Option<&str>) -> Ran {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"));
    cmd.args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("AWS_CONFIG_FILE", "/nonexistent/turnstile-test-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/turnstile-test-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local");
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e)
            .env("AWS_REGION", "us-east-1");
    }
    let out = cmd.output().await.unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}
