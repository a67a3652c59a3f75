//! The simulator's HTTP front: one local endpoint that speaks the wire protocols the AWS SDK
//! clients use, so the real adapters run unchanged with `AWS_ENDPOINT_URL_*` (or an explicit
//! endpoint) pointed at it:
//!
//! - Auto Scaling and EC2: the Query protocol (form-encoded `Action=…&Version=…` request, XML
//!   response, XML error document) — [`query`];
//! - CodeDeploy: JSON 1.1 (`X-Amz-Target: CodeDeploy_20141006.<Operation>`, `__type` errors) —
//!   [`codedeploy`].
//!
//! Behind it is [`turnstile_model::Cloud`], the deterministic model of what docs/aws-behaviour.md documents.

pub mod codedeploy;
pub mod query;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use turnstile_model::{Cloud, Rng};

/// Faults the simulator injects on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WireFaults {
    /// Probability that a call is refused with the service's throttling error (which the SDK
    /// retries with backoff, and the runner treats as transient).
    pub throttle: f64,
}

/// The model and what the front counts.
pub struct Simulator {
    cloud: Mutex<Cloud>,
    rng: Mutex<Rng>,
    pub faults: WireFaults,
    requests: AtomicU64,
    throttled: AtomicU64,
}

impl Simulator {
    pub fn new(cloud: Cloud, faults: WireFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            cloud: Mutex::new(cloud),
            rng: Mutex::new(Rng::new(seed ^ 0x5eed_f00d)),
            faults,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        })
    }

    /// The model, locked. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters more than the panic itself, so a poisoned lock is taken over.
    pub fn cloud(&self) -> MutexGuard<'_, Cloud> {
        self.cloud.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests served and requests refused with a throttling error.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        )
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    fn throttle(&self) -> bool {
        if self.faults.throttle <= 0.0 {
            return false;
        }
        let hit = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .chance(self.faults.throttle);
        if hit {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

/// A served response: status, content type and body.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

/// The running front; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `sim` on a free local port.
///
/// The port comes from the harness (`free_port`), not from binding port 0: a port the harness
/// has handed to a service that is still starting (moto takes seconds to bind) is free to the
/// OS, and a server bound to it answered that service's clients instead (seen in CI: an SQS
/// client of moto talked to this simulator).
pub async fn serve(sim: Arc<Simulator>) -> std::io::Result<Server> {
    let listener = loop {
        let port = turnstile_harness::free_port()?;
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            // Taken meanwhile by something outside this process: another port.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    };
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sim = sim.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let sim = sim.clone();
                    async move { Ok::<_, Infallible>(handle(&sim, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "simulator connection ended");
                }
            });
        }
    });
    Ok(Server { addr, task })
}

async fn handle(sim: &Simulator, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return respond(Reply {
                status: StatusCode::BAD_REQUEST,
                content_type: "text/plain",
                body: format!("cannot read the request body: {e}"),
            });
        }
    };
    let request_id = sim.request_id();
    let reply = match target {
        Some(t) => codedeploy::handle(sim, &t, &body, &request_id),
        None => query::handle(sim, &body, &request_id),
    };
    let mut response = respond(reply);
    if let Ok(v) = request_id.parse() {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = reply.status;
    if let Ok(v) = reply.content_type.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
