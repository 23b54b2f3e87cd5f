//! A fault-injecting proxy, for tests: it stands between the engine and one service of
//! the local stack, on 127.0.0.1, and breaks a share of what passes through.
//!
//! - In front of the AWS endpoint (moto) it speaks HTTP/1.1, one request per
//!   connection: for a chosen request it answers `503 SlowDown` (S3) or
//!   `400 Throttling` (the query APIs: IAM, ElastiCache, STS; the JSON APIs: Secrets
//!   Manager, KMS) or `500 InternalError`, each with the error body that API sends;
//!   or waits 2–5 s before forwarding; or closes the connection before the request
//!   reaches the server; or forwards the request and closes the connection once the
//!   server has answered, so that the server acted and the client never learns it (a
//!   lost answer).
//! - In front of PostgreSQL and Redis it works on TCP: a chosen connection is reset
//!   (RST), closed (FIN) or stalled for 2–5 s at a random point of the server's
//!   answers, so that the server may have done what the client asked.
//!
//! Besides the random faults, a test can script one: the first request (or, on TCP,
//! the first bytes from the client) that contains a given text gets a given fault.
//!
//! The rate is the share of requests (HTTP) or connections (TCP) that get a fault; the
//! kind is drawn evenly from those the protocol has. Draws come from a seeded generator,
//! so a failing trial can be told by its seed. The proxy runs on a thread and runtime
//! of its own (a test's runtime may be blocked waiting for a child process) and stops
//! when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to a request or a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// S3: `503 SlowDown`.
    SlowDown,
    /// Any HTTP API: `500 InternalError` (S3) or `InternalFailure` (query APIs).
    InternalError,
    /// IAM, ElastiCache, STS: `400 Throttling`.
    Throttling,
    /// HTTP: 2–5 s before the request is forwarded.
    Delay,
    /// HTTP: the connection is closed before the request reaches the server.
    DropBefore,
    /// HTTP: the server answered; the connection is closed without the answer.
    LostAnswer,
    /// TCP: the connection is reset part way through the server's answers.
    Reset,
    /// TCP: the connection is closed part way through the server's answers.
    Close,
    /// TCP: nothing moves for 2–5 s part way through the server's answers.
    Stall,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::SlowDown => "503 SlowDown",
            Fault::InternalError => "500 InternalError",
            Fault::Throttling => "400 Throttling",
            Fault::Delay => "delay 2-5 s",
            Fault::DropBefore => "dropped before the server",
            Fault::LostAnswer => "answer lost after the server acted",
            Fault::Reset => "TCP reset",
            Fault::Close => "TCP close",
            Fault::Stall => "TCP stall 2-5 s",
        }
    }
}

const S3_FAULTS: [Fault; 5] = [
    Fault::SlowDown,
    Fault::InternalError,
    Fault::Delay,
    Fault::DropBefore,
    Fault::LostAnswer,
];
const QUERY_FAULTS: [Fault; 5] = [
    Fault::Throttling,
    Fault::InternalError,
    Fault::Delay,
    Fault::DropBefore,
    Fault::LostAnswer,
];
const TCP_FAULTS: [Fault; 3] = [Fault::Reset, Fault::Close, Fault::Stall];

/// Which protocol a proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

struct Shared {
    /// Faults per million requests or connections.
    rate_ppm: AtomicU32,
    rng: Mutex<fastrand::Rng>,
    injected: Mutex<BTreeMap<Fault, u64>>,
    /// Requests (HTTP) or connections (TCP) seen.
    seen: AtomicU64,
    /// Faults for the first request (or client bytes) containing a text.
    script: Mutex<Vec<(Vec<u8>, Fault)>>,
}

impl Shared {
    /// Draws whether this request or connection gets a fault, and which.
    fn pick(&self, kinds: &[Fault]) -> Option<Fault> {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let rate = self.rate_ppm.load(Ordering::Relaxed);
        let mut rng = self.rng.lock().unwrap();
        if rng.u32(0..1_000_000) >= rate {
            return None;
        }
        let fault = kinds[rng.usize(..kinds.len())];
        *self.injected.lock().unwrap().entry(fault).or_default() += 1;
        Some(fault)
    }

    /// The scripted fault for `bytes`, taken off the script.
    fn scripted(&self, bytes: &[u8]) -> Option<Fault> {
        let mut script = self.script.lock().unwrap();
        let at = script
            .iter()
            .position(|(needle, _)| find(bytes, needle).is_some())?;
        let (_, fault) = script.remove(at);
        *self.injected.lock().unwrap().entry(fault).or_default() += 1;
        Some(fault)
    }

    fn pause(&self) -> Duration {
        Duration::from_millis(self.rng.lock().unwrap().u64(2_000..=5_000))
    }

    fn below(&self, n: usize) -> usize {
        self.rng.lock().unwrap().usize(1..=n)
    }
}

/// A running proxy in front of one upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` that breaks `rate` (0.0–1.0) of the requests or
    /// connections, drawing from `seed`.
    pub fn start(protocol: Protocol, upstream: SocketAddr, rate: f64, seed: u64) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            rate_ppm: AtomicU32::new(ppm(rate)),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            injected: Mutex::new(BTreeMap::new()),
            seen: AtomicU64::new(0),
            script: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(listener, protocol, upstream, serving) => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Gives `fault` to the first request (HTTP) or client bytes (TCP) that contain
    /// `needle`. On TCP, `DropBefore` closes the connection without passing the bytes
    /// on; the other faults take effect at the server's next answer.
    pub fn on_first(&self, needle: &str, fault: Fault) {
        self.shared
            .script
            .lock()
            .unwrap()
            .push((needle.as_bytes().to_vec(), fault));
    }

    /// The texts of scripted faults that no request has met yet.
    pub fn unmet(&self) -> Vec<String> {
        self.shared
            .script
            .lock()
            .unwrap()
            .iter()
            .map(|(needle, _)| String::from_utf8_lossy(needle).into_owned())
            .collect()
    }

    pub fn set_rate(&self, rate: f64) {
        self.shared.rate_ppm.store(ppm(rate), Ordering::Relaxed);
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        self.shared.injected.lock().unwrap().clone()
    }

    /// Requests (HTTP) or connections (TCP) seen so far.
    pub fn seen(&self) -> u64 {
        self.shared.seen.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ppm(rate: f64) -> u32 {
    (rate.clamp(0.0, 1.0) * 1_000_000.0) as u32
}

async fn accept_loop(
    listener: TcpListener,
    protocol: Protocol,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = match protocol {
                Protocol::Http => serve_http(client, upstream, shared).await,
                Protocol::Tcp => serve_tcp(client, upstream, shared).await,
            };
        });
    }
}

// --- HTTP ----------------------------------------------------------------------------

/// One request: read it whole, draw a fault, forward it (with `Connection: close`, so
/// that the server's answer ends where its connection does), pass the answer back, close.
async fn serve_http(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    let api = Api::of(&request);
    let fault = match shared.scripted(&request) {
        Some(f) => Some(f),
        None => shared.pick(api.faults()),
    };
    match fault {
        Some(Fault::DropBefore) => return Ok(()),
        Some(f @ (Fault::SlowDown | Fault::InternalError | Fault::Throttling)) => {
            client.write_all(&error_response(f, api)).await?;
            return client.shutdown().await;
        }
        Some(Fault::Delay) => tokio::time::sleep(shared.pause()).await,
        _ => {}
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&with_connection_close(&request)).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    if fault == Some(Fault::LostAnswer) {
        // The server has acted; the client hears nothing more.
        return Ok(());
    }
    client.write_all(&with_connection_close(&response)).await?;
    client.shutdown().await
}

/// Reads one request (head and body, by `Content-Length` or chunked), or `None` when the
/// client closed first.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = request_end(&buf) {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where the request in `buf` ends, once it is all there.
fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let mut at = head_end;
        loop {
            let line_end = at + find(&buf[at..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[at..line_end]);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, then the empty line.
                return Some(at + find(&buf[at..], b"\r\n")? + 2);
            }
            at += size + 2;
            if at > buf.len() {
                return None;
            }
        }
    }
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some(head_end + length)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The three ways the AWS APIs used here speak, each with its own error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// S3: REST with XML errors.
    Rest,
    /// IAM, ElastiCache, STS: a form body with `Action=`, XML errors.
    Query,
    /// Secrets Manager (and KMS): `X-Amz-Target` with a JSON body, JSON errors.
    Json,
}

impl Api {
    fn of(request: &[u8]) -> Api {
        let Some(head_end) = find(request, b"\r\n\r\n") else {
            return Api::Rest;
        };
        let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
        if head.contains("application/x-amz-json") {
            Api::Json
        } else if head.contains("application/x-www-form-urlencoded")
            && find(&request[head_end..], b"Action=").is_some()
        {
            Api::Query
        } else {
            Api::Rest
        }
    }

    fn faults(self) -> &'static [Fault] {
        match self {
            Api::Rest => &S3_FAULTS,
            Api::Query | Api::Json => &QUERY_FAULTS,
        }
    }
}

/// The message with its `Connection` header replaced by `Connection: close`.
fn with_connection_close(message: &[u8]) -> Vec<u8> {
    let Some(head_end) = find(message, b"\r\n\r\n") else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..head_end]);
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(&message[head_end + 4..]);
    out
}

/// The error `fault` stands for, with the body and content type `api` sends.
fn error_response(fault: Fault, api: Api) -> Vec<u8> {
    let (status, code, message) = match (fault, api) {
        (Fault::SlowDown, _) => (
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        (Fault::Throttling, Api::Json) => {
            ("400 Bad Request", "ThrottlingException", "Rate exceeded")
        }
        (Fault::Throttling, _) => ("400 Bad Request", "Throttling", "Rate exceeded"),
        (_, Api::Rest) => (
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        (_, Api::Query) => (
            "500 Internal Server Error",
            "InternalFailure",
            "The request processing has failed because of an unknown error.",
        ),
        (_, Api::Json) => (
            "500 Internal Server Error",
            "InternalServiceError",
            "An error occurred on the server side.",
        ),
    };
    let (content_type, body) = match api {
        Api::Query => {
            let kind = if fault == Fault::Throttling {
                "Sender"
            } else {
                "Receiver"
            };
            (
                "text/xml",
                format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected-fault</RequestId></ErrorResponse>"
                ),
            )
        }
        Api::Rest => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>injected-fault</RequestId></Error>"
            ),
        ),
        Api::Json => (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nx-amzn-ErrorType: {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// --- TCP -----------------------------------------------------------------------------

/// One connection: bytes pass both ways; a doomed connection breaks at a random one of
/// the server's first answers, after the server did what was asked.
async fn serve_tcp(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut fault = shared.pick(&TCP_FAULTS);
    let mut break_at = shared.below(24);
    let mut answers = 0usize;
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                match shared.scripted(&up[..n]) {
                    // The bytes never reach the server.
                    Some(Fault::DropBefore) => return Ok(()),
                    Some(f) => {
                        fault = Some(if f == Fault::LostAnswer { Fault::Close } else { f });
                        break_at = answers + 1;
                    }
                    None => {}
                }
                server.write_all(&up[..n]).await?;
            }
            read = server.read(&mut down) => {
                let n = read?;
                if n == 0 {
                    return client.shutdown().await;
                }
                answers += 1;
                if answers == break_at {
                    match fault {
                        Some(Fault::Reset) => {
                            client.set_zero_linger()?;
                            return Ok(());
                        }
                        Some(Fault::Close) => return client.shutdown().await,
                        Some(Fault::Stall) => tokio::time::sleep(shared.pause()).await,
                        _ => {}
                    }
                }
                client.write_all(&down[..n]).await?;
            }
        }
    }
}
