//! A loopback HTTP proxy between paymig and the emulator, for the fault
//! campaign (tests) and the latency layer (`scripts/bench`).
//!
//! Faults are seeded and deterministic: whether a request fails, and how,
//! is a hash of the seed, the request's content (method, path, query, body)
//! and how many identical requests came before it — so the same run meets
//! the same faults whatever the scheduling. Kinds: HTTP 500, HTTP 503,
//! the service's own throttling error (by protocol), a connection reset,
//! and a response slower than the client's attempt timeout. Faults are
//! injected before the request reaches the emulator: like a lost packet on
//! the way in, never a lost acknowledgement of a change that was made.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    Http500,
    Http503,
    Throttle,
    Reset,
    Slow,
    /// `ExpiredToken` (HTTP 403), as for credentials past their expiry.
    ExpiredToken,
}

pub const ALL_FAULTS: [Fault; 5] = [Fault::Http500, Fault::Http503, Fault::Throttle, Fault::Reset, Fault::Slow];

/// What the proxy does.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub upstream: String,
    /// Share of requests that fail, 0.0..=1.0.
    pub fault_rate: f64,
    pub seed: u64,
    /// Only requests to this service (SigV4 name: `dynamodb`, `s3`…) fail.
    pub only_service: Option<String>,
    /// Only mutating operations fail (reads always answer).
    pub writes_only: bool,
    pub kinds: Vec<Fault>,
    /// How long a `Slow` fault waits before answering.
    pub slow: Duration,
    /// Added to every forwarded request.
    pub latency: Duration,
    /// Requests for these services (SigV4 name) go to their own upstream
    /// instead of `upstream` (the benchmark's emulator, one process per
    /// group of services).
    pub routes: Vec<(String, String)>,
    /// AWS behaviour mode (`support::behaviour`): states, refusals and
    /// limits moto does not model.
    pub behaviour: Option<Arc<crate::support::behaviour::AwsBehaviour>>,
    /// IAM enforcement (`support::enforce`): each request authorized
    /// against its caller's policies before anything else.
    pub enforcer: Option<Arc<crate::support::enforce::Enforcer>>,
    /// The client's attempt timeout, when the test set one: a forwarded
    /// request answered later than this was given up on by the client (and
    /// retried), so it counts as unplanned.
    pub client_timeout: Option<Duration>,
}

impl ProxyConfig {
    pub fn new(upstream: &str) -> Self {
        ProxyConfig {
            upstream: upstream.trim_end_matches('/').to_owned(),
            fault_rate: 0.0,
            seed: 0,
            only_service: None,
            writes_only: false,
            kinds: ALL_FAULTS.to_vec(),
            slow: Duration::from_secs(4),
            latency: Duration::ZERO,
            routes: Vec::new(),
            behaviour: None,
            enforcer: None,
            client_timeout: None,
        }
    }
}

/// One forwarded call, for the benchmark's critical-path computation.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub service: String,
    pub operation: String,
    pub start: Duration,
    pub end: Duration,
}

/// What went through the proxy.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    /// SSM GetParameter(s)/GetParametersByPath requests asking for decryption.
    pub decrypting_ssm_reads: AtomicU64,
    pub faults: Mutex<BTreeMap<(String, Fault), u64>>,
    seen: Mutex<HashMap<u64, u64>>,
    pub calls: Mutex<Vec<CallRecord>>,
    /// Forwarded requests that failed without an injected fault: the client
    /// gave up waiting (its attempt timeout, on a loaded machine), the
    /// upstream connection failed, or the emulator answered 5xx. Each costs
    /// the client a retry just as an injected fault does.
    pub unplanned: AtomicU64,
}

/// Counts a forwarded request as unplanned unless it is finished normally.
struct Unfinished<'a>(&'a AtomicU64, bool);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ProxyStats {
    /// Faults injected, in total.
    pub fn injected(&self) -> u64 {
        self.faults.lock().unwrap().values().sum()
    }

    /// Faults injected per kind.
    pub fn by_kind(&self) -> BTreeMap<Fault, u64> {
        let mut m = BTreeMap::new();
        for ((_, k), n) in self.faults.lock().unwrap().iter() {
            *m.entry(*k).or_default() += n;
        }
        m
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub endpoint: String,
    pub stats: Arc<ProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Proxy {
    pub fn start(cfg: ProxyConfig) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        std_listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = std_listener.local_addr().unwrap();
        let stats = Arc::new(ProxyStats::default());
        if let Some(b) = &cfg.behaviour {
            b.set_endpoint(format!("http://{addr}"));
        }
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            cfg,
            stats: stats.clone(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            epoch: Instant::now(),
        });
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let svc = hyper::service::service_fn(move |req| {
                                    let shared = shared.clone();
                                    async move { shared.handle(req).await }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        Proxy { endpoint: format!("http://{addr}"), stats, stop: Some(stop_tx), thread: Some(thread) }
    }
}

struct Shared {
    cfg: ProxyConfig,
    stats: Arc<ProxyStats>,
    client: Client<HttpConnector, Full<Bytes>>,
    epoch: Instant,
}

/// The SigV4 service name from the Authorization header's credential scope.
fn service_of<B>(req: &Request<B>) -> String {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// The operation, as far as the wire shows it.
fn operation_of<B>(req: &Request<B>, body: &[u8]) -> String {
    if let Some(t) = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let query = req.uri().query().unwrap_or("");
    for part in query.split('&').chain(text.split('&')) {
        if let Some(a) = part.strip_prefix("Action=") {
            return a.to_owned();
        }
    }
    format!("{} {}", req.method(), req.uri().path())
}

fn throttle_response(service: &str, json: bool) -> Response<Full<Bytes>> {
    let (status, ctype, body): (u16, &str, String) = if json {
        (400, "application/x-amz-json-1.1", r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into())
    } else {
        match service {
            "s3" => (
                503,
                "application/xml",
                "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".into(),
            ),
            "ec2" => (
                503,
                "text/xml",
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault</RequestID></Response>".into(),
            ),
            "lambda" => (429, "application/json", r#"{"Type":"User","message":"Rate exceeded"}"#.into()),
            _ => (
                400,
                "text/xml",
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>".into(),
            ),
        }
    };
    let mut r = Response::builder().status(status).header("content-type", ctype);
    if service == "lambda" {
        r = r.header("x-amzn-errortype", "TooManyRequestsException");
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

fn status_response(status: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")))
        .unwrap()
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let received = std::time::Instant::now();
        let service = service_of(&req);
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        let req = Request::from_parts(parts, body);
        if let Some(resp) = self.cfg.enforcer.as_ref().and_then(|e| e.check(&service, &req)) {
            return Ok(resp);
        }
        if let Some(resp) = self.cfg.behaviour.as_ref().and_then(|b| b.serve(&req)) {
            return Ok(resp);
        }
        let json = req.headers().contains_key("x-amz-target");
        if service == "ssm" && operation_of(&req, req.body()).starts_with("GetParameter") {
            let asked: serde_json::Value = serde_json::from_slice(req.body()).unwrap_or_default();
            if asked["WithDecryption"] == true {
                self.stats.decrypting_ssm_reads.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(f) = self.fault_for(&service, &req) {
            *self.stats.faults.lock().unwrap().entry((service.clone(), f)).or_default() += 1;
            return match f {
                Fault::Http500 => Ok(status_response(500)),
                Fault::Http503 => Ok(status_response(503)),
                Fault::Throttle => Ok(throttle_response(&service, json)),
                Fault::Reset => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
                Fault::ExpiredToken => Ok(Response::builder()
                    .status(403)
                    .header("content-type", "text/xml")
                    .body(Full::new(Bytes::from_static(
                        b"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error><RequestId>fault</RequestId></ErrorResponse>",
                    )))
                    .unwrap()),
                Fault::Slow => {
                    tokio::time::sleep(self.cfg.slow).await;
                    Ok(status_response(503))
                }
            };
        }
        let mut unfinished = Unfinished(&self.stats.unplanned, false);
        if !self.cfg.latency.is_zero() {
            tokio::time::sleep(self.cfg.latency).await;
        }
        let start = self.epoch.elapsed();
        let operation = operation_of(&req, req.body());
        if let Some(resp) = self.cfg.behaviour.as_ref().and_then(|b| b.before(&service, &operation, &req)) {
            unfinished.1 = true;
            return Ok(resp);
        }
        let asked = (self.cfg.behaviour.is_some() || self.cfg.enforcer.is_some()).then(|| {
            let mut r = Request::builder().method(req.method()).uri(req.uri().clone());
            for (k, v) in req.headers() {
                r = r.header(k, v);
            }
            r.body(req.body().clone()).expect("a copy of the request")
        });
        let (parts, body) = req.into_parts();
        let upstream = self.cfg.routes.iter().find(|(s, _)| *s == service).map_or(&self.cfg.upstream, |(_, u)| u);
        let uri = format!("{upstream}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        let mut up = Request::builder().method(parts.method).uri(uri);
        for (k, v) in parts.headers.iter() {
            up = up.header(k, v);
        }
        let up = up.body(Full::new(body)).map_err(std::io::Error::other)?;
        let resp = self.client.request(up).await.map_err(std::io::Error::other)?;
        let (mut parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        parts.headers.remove("transfer-encoding");
        parts.headers.remove("content-length");
        let bytes = match (&self.cfg.behaviour, &asked) {
            (Some(b), Some(asked)) => b.after(&service, &operation, asked, parts.status.as_u16(), bytes),
            _ => bytes,
        };
        if let (Some(e), Some(asked)) = (&self.cfg.enforcer, &asked) {
            e.observe(&service, asked, parts.status.as_u16(), &bytes);
        }
        self.stats.calls.lock().unwrap().push(CallRecord { service, operation, start, end: self.epoch.elapsed() });
        let late = self.cfg.client_timeout.is_some_and(|t| received.elapsed() >= t);
        unfinished.1 = parts.status.as_u16() < 500 && !late;
        Ok(Response::from_parts(parts, Full::new(bytes)))
    }

    /// The fault this request meets, if any.
    fn fault_for(&self, service: &str, req: &Request<Bytes>) -> Option<Fault> {
        if self.cfg.fault_rate <= 0.0 || self.cfg.kinds.is_empty() {
            return None;
        }
        if self.cfg.only_service.as_deref().is_some_and(|s| s != service) {
            return None;
        }
        if self.cfg.writes_only && paymig::testing::is_read_operation(&operation_of(req, req.body())) {
            return None;
        }
        let mut h = DefaultHasher::new();
        req.method().as_str().hash(&mut h);
        req.uri().path().hash(&mut h);
        req.uri().query().hash(&mut h);
        req.body().hash(&mut h);
        let content = h.finish();
        let nth = {
            let mut seen = self.stats.seen.lock().unwrap();
            let n = seen.entry(content).or_default();
            *n += 1;
            *n
        };
        let mut h = DefaultHasher::new();
        (self.cfg.seed, content, nth).hash(&mut h);
        let draw = h.finish();
        let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
        (unit < self.cfg.fault_rate).then(|| self.cfg.kinds[(draw % self.cfg.kinds.len() as u64) as usize])
    }
}
