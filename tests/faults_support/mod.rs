//! Shared by the fault-injection suites (`faults_jwks`, `faults_token`):
//!
//! - [`Hostile`]: a hand-made HTTP/1.1 server on 127.0.0.1 for the faults the test issuer
//!   cannot make (a body that never ends, 100 MB streamed without `content-length`, a
//!   30 s stall, a socket that is never read, bytes that are not HTTP, redirects). It
//!   records every connection: when it came, what it asked, how many bytes it was sent
//!   and when the client gave up on it.
//! - [`Warnings`]: the crate's warnings on the current thread, to see which typed error
//!   a background fetch failed with.
//! - [`peak_rss`] and [`socket_buffer_ceiling`]: what memory and the kernel allow.
//!
//! Every test compiles all of it and uses only part, hence the `dead_code` allowance.
#![allow(dead_code, unreachable_pub)]

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// What the hostile server does with each connection it accepts, decided at accept time.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Reads the request, writes these bytes verbatim (an HTTP response or not), closes.
    Respond(Vec<u8>),
    /// Reads the request, sends `200` headers, then a chunked JSON body of one byte per
    /// second that never ends.
    Dribble,
    /// Reads the request, sends `status` with `application/json` headers, then streams
    /// `len` body bytes (the start of a JSON object, then spaces) in 64 KiB writes:
    /// chunked, or after a `content-length`. Nothing of that size is ever allocated.
    Flood { status: u16, len: u64, chunked: bool },
    /// Reads the request, says nothing for `hold`, then writes `then`.
    Stall { hold: Duration, then: Vec<u8> },
    /// Accepts the connection, then neither reads nor writes until the server stops.
    NeverRead,
}

/// One connection the hostile server accepted.
#[derive(Debug, Clone)]
pub struct Connection {
    pub accepted_at: Instant,
    /// The request line (`GET /jwks HTTP/1.1`), once the request was read.
    pub request: Option<String>,
    /// Bytes the socket accepted from the server, headers included.
    pub written: u64,
    /// A write failed: the client had closed or reset the connection.
    pub write_failed: bool,
    /// When the server saw the client close or reset the connection.
    pub client_gone_at: Option<Instant>,
    /// When the server was done with the connection.
    pub ended_at: Option<Instant>,
}

struct State {
    behaviour: Mutex<Behaviour>,
    connections: Mutex<Vec<Connection>>,
}

/// A hostile HTTP/1.1 server on 127.0.0.1. Dropping it stops it and every connection.
pub struct Hostile {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::AbortHandle,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hostile").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Hostile {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(behaviour: Behaviour) -> Hostile {
        Hostile::bind("127.0.0.1:0".parse().expect("a socket address"), behaviour).await
    }

    /// Starts on `addr` (a port another server used before, say).
    pub async fn bind(addr: SocketAddr, behaviour: Behaviour) -> Hostile {
        let listener = TcpListener::bind(addr).await.expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let state = Arc::new(State { behaviour: Mutex::new(behaviour), connections: Mutex::new(Vec::new()) });
        let task = tokio::spawn(accept_loop(listener, state.clone())).abort_handle();
        Hostile { addr, state, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What new connections get from now on; those under way keep what they had.
    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Every connection accepted so far, in order.
    pub fn connections(&self) -> Vec<Connection> {
        self.state.connections.lock().unwrap().clone()
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.connections.lock().unwrap().len()
    }

    /// Waits until connection `index` has ended; panics after `deadline`.
    pub async fn wait_ended(&self, index: usize, deadline: Duration) -> Connection {
        let started = Instant::now();
        loop {
            if let Some(connection) = self.connections().get(index).filter(|c| c.ended_at.is_some()) {
                return connection.clone();
            }
            assert!(started.elapsed() < deadline, "connection {index} still open after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    // Owned here, so that aborting this task drops every connection too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let behaviour = state.behaviour.lock().unwrap().clone();
                let index = {
                    let mut all = state.connections.lock().unwrap();
                    all.push(Connection {
                        accepted_at: Instant::now(),
                        request: None,
                        written: 0,
                        write_failed: false,
                        client_gone_at: None,
                        ended_at: None,
                    });
                    all.len() - 1
                };
                connections.spawn(serve(stream, behaviour, Record { state: state.clone(), index }));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Updates one connection's entry.
struct Record {
    state: Arc<State>,
    index: usize,
}

impl Record {
    fn update(&self, change: impl FnOnce(&mut Connection)) {
        change(&mut self.state.connections.lock().unwrap()[self.index]);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.update(|c| c.ended_at = Some(Instant::now()));
    }
}

const CHUNK: usize = 64 * 1024;
static SPACES: [u8; CHUNK] = [b' '; CHUNK];
const JSON_START: &[u8] = b"{\"keys\":[";

async fn serve(mut stream: TcpStream, behaviour: Behaviour, record: Record) {
    if let Behaviour::NeverRead = behaviour {
        return std::future::pending().await;
    }
    let Some(request) = read_request(&mut stream).await else {
        record.update(|c| c.client_gone_at = Some(Instant::now()));
        return;
    };
    record.update(|c| c.request = Some(request));
    let (mut reader, mut writer) = stream.split();
    let mut written = 0u64;
    // The client may give up at any moment: watch for that while writing (or waiting).
    let finished = tokio::select! {
        biased;
        () = client_gone(&mut reader) => {
            record.update(|c| c.client_gone_at = Some(Instant::now()));
            false
        }
        result = answer(&mut writer, &behaviour, &mut written) => result.is_ok(),
    };
    record.update(|c| {
        c.written = written;
        c.write_failed = !finished && c.client_gone_at.is_none();
    });
    if !finished {
        // A failed write means the client is gone, whether or not the read side saw it.
        record.update(|c| {
            c.client_gone_at.get_or_insert_with(Instant::now);
        });
        return;
    }
    let _ = writer.shutdown().await;
    // Read what the client may still send, so that closing never resets the connection
    // under a response it has not read yet.
    if tokio::time::timeout(Duration::from_secs(5), client_gone(&mut reader)).await.is_ok() {
        record.update(|c| c.client_gone_at = Some(Instant::now()));
    }
}

/// Resolves when the client closes or resets the connection.
async fn client_gone(reader: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn answer(
    writer: &mut (impl AsyncWrite + Unpin),
    behaviour: &Behaviour,
    written: &mut u64,
) -> std::io::Result<()> {
    match behaviour {
        Behaviour::Respond(bytes) => send(writer, bytes, written).await,
        Behaviour::Stall { hold, then } => {
            tokio::time::sleep(*hold).await;
            send(writer, then, written).await
        }
        Behaviour::Dribble => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            send(writer, head.as_bytes(), written).await?;
            let mut byte = b'{';
            loop {
                send(writer, &[b'1', b'\r', b'\n', byte, b'\r', b'\n'], written).await?;
                byte = b' ';
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Behaviour::Flood { status, len, chunked } => {
            let mut head = format!("HTTP/1.1 {status} Flood\r\ncontent-type: application/json\r\n");
            if *chunked {
                head.push_str("transfer-encoding: chunked\r\n\r\n");
            } else {
                let _ = write!(head, "content-length: {len}\r\n\r\n");
            }
            send(writer, head.as_bytes(), written).await?;
            let mut remaining = *len;
            let mut first = true;
            while remaining > 0 {
                let piece: &[u8] = if first { JSON_START } else { &SPACES };
                first = false;
                let piece = &piece[..piece.len().min(usize::try_from(remaining).unwrap_or(usize::MAX))];
                if *chunked {
                    send(writer, format!("{:x}\r\n", piece.len()).as_bytes(), written).await?;
                }
                send(writer, piece, written).await?;
                if *chunked {
                    send(writer, b"\r\n", written).await?;
                }
                remaining -= piece.len() as u64;
            }
            if *chunked {
                send(writer, b"0\r\n\r\n", written).await?;
            }
            Ok(())
        }
        Behaviour::NeverRead => unreachable!("handled before the request is read"),
    }
}

/// Writes `bytes`, counting what the socket accepted even when it fails part way.
async fn send(writer: &mut (impl AsyncWrite + Unpin), mut bytes: &[u8], written: &mut u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = writer.write(bytes).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *written += n as u64;
        bytes = &bytes[n..];
    }
    writer.flush().await
}

/// Reads a request head (at most 64 KiB) and its `content-length` body; returns the
/// request line, or `None` when the client went away first.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = data.len() - head_end;
    while body < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body += n,
        }
    }
    Some(head.lines().next().unwrap_or_default().to_owned())
}

/// A complete response with `content-length` and `connection: close`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} Hostile\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `200 application/json` with `value`.
pub fn json(value: &Value) -> Vec<u8> {
    response(200, &[("content-type", "application/json")], value.to_string().as_bytes())
}

/// A redirect with this status to `location`.
pub fn redirect(status: u16, location: &str) -> Vec<u8> {
    response(status, &[("location", location)], b"")
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
    listener.local_addr().expect("a bound listener has an address")
}

// ---------------------------------------------------------------------------------
// Warnings
// ---------------------------------------------------------------------------------

/// A warning the crate logged: its message and its `error` field.
#[derive(Debug, Clone)]
pub struct Warning {
    pub message: String,
    pub error: Option<String>,
}

/// The crate's warnings (level WARN and above, targets under `tower_oauth`) logged on
/// this thread while the guard lives. Under a current-thread runtime every task of the
/// test runs on this thread, background refreshers included, and other tests' warnings
/// (on their own threads) stay out.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<Warning>>>);

impl Warnings {
    pub fn capture() -> (Warnings, DefaultGuard) {
        let warnings = Warnings::default();
        let subscriber = tracing_subscriber::registry().with(Collect(warnings.0.clone()));
        (warnings, tracing::subscriber::set_default(subscriber))
    }

    /// The `error` of every warning with this message, oldest first.
    pub fn errors(&self, message: &str) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|w| w.message == message).filter_map(|w| w.error.clone()).collect()
    }

    pub fn all(&self) -> Vec<Warning> {
        self.0.lock().unwrap().clone()
    }
}

struct Collect(Arc<Mutex<Vec<Warning>>>);

impl<S: Subscriber> Layer<S> for Collect {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= Level::WARN && metadata.target().starts_with("tower_oauth")
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push(Warning { message: fields.message, error: fields.error });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    error: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" => self.error = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "error" => self.error = Some(value.to_owned()),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------
// Memory and the kernel
// ---------------------------------------------------------------------------------

/// Held by the tests that measure memory and by those that allocate a lot (a flood of
/// 10,000 tokens), so that a measurement sees only its own test.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How far the process's peak resident memory rises during a test.
#[derive(Debug)]
pub struct PeakRss {
    start: u64,
}

impl PeakRss {
    /// Resets the kernel's peak (`VmHWM`, through `/proc/self/clear_refs`) to the present
    /// size, and starts from there; where the reset is refused, from the old peak, which
    /// hides no growth beyond it. `None` where `/proc` has no such numbers.
    pub fn start() -> Option<PeakRss> {
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let start = if reset { status_kib("VmRSS:")? } else { status_kib("VmHWM:")? };
        Some(PeakRss { start: start * 1024 })
    }

    /// (peak now, growth over the start), in bytes.
    pub fn growth(&self) -> (u64, u64) {
        let peak = status_kib("VmHWM:").map_or(0, |kib| kib * 1024);
        (peak, peak.saturating_sub(self.start))
    }
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.trim_start_matches(field).trim().trim_end_matches("kB").trim().parse().ok()
}

/// The most bytes a loopback connection can hold between a writer and a reader that
/// stopped reading: the largest send and receive buffers the kernel may grow to
/// (`tcp_wmem` and `tcp_rmem` maxima), or 16 MiB where they cannot be read.
pub fn socket_buffer_ceiling() -> u64 {
    let max =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.split_whitespace().nth(2)?.parse().ok() };
    match (max("/proc/sys/net/ipv4/tcp_wmem"), max("/proc/sys/net/ipv4/tcp_rmem")) {
        (Some(w), Some(r)) => w + r,
        _ => 16 * 1024 * 1024,
    }
}

pub const MIB: u64 = 1024 * 1024;

/// Bytes as MiB with two decimals, for the numbers the tests print.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / MIB as f64)
}
