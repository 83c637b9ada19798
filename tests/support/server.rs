//! The scripted server: a hand-made HTTP/1.1 server on 127.0.0.1 for everything the
//! [`TestIssuer`](tower_oauth::testing::TestIssuer) does not serve.
//!
//! Each connection carries one request and gets one [`Behaviour`], decided when the
//! connection is accepted: the next queued one ([`Scripted::push`]), else the default
//! ([`Scripted::set`]), or, for a server started with [`Scripted::routes`], whatever
//! the routes answer to the request. A behaviour is a canned answer ([`Canned`], or any
//! bytes, HTTP or not), a delay before it, or one of the hostile ones: a body that never
//! ends, a flood streamed without ever being allocated, a socket that is never read.
//!
//! The server records every connection (when it came, what it asked, how many bytes it
//! was sent, when the client gave up) and every request (method, path, headers, body).
//! Dropping it stops it and every connection.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the server does with one connection.
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

impl Behaviour {
    /// These bytes after `delay` (at once for a zero delay).
    pub fn delayed(delay: Duration, bytes: Vec<u8>) -> Behaviour {
        if delay.is_zero() { Behaviour::Respond(bytes) } else { Behaviour::Stall { hold: delay, then: bytes } }
    }
}

impl From<Vec<u8>> for Behaviour {
    fn from(bytes: Vec<u8>) -> Behaviour {
        Behaviour::Respond(bytes)
    }
}

impl From<Canned> for Behaviour {
    fn from(canned: Canned) -> Behaviour {
        Behaviour::Respond(canned.to_bytes())
    }
}

/// A well-formed answer, built up by status, headers and body.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Canned {
    /// `status` with an `application/json` body.
    pub fn json(status: u16, body: impl Into<String>) -> Canned {
        Canned { status, headers: vec![("content-type", "application/json".into())], body: body.into() }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Canned {
        Canned { status, headers: Vec::new(), body: String::new() }
    }

    /// One more header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Canned {
        self.headers.push((name, value.into()));
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        response(self.status, &headers, self.body.as_bytes())
    }
}

/// One request the server read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The request target as sent: the path and any query.
    pub target: String,
    /// The path, without the query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as form pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// One connection the server accepted.
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

/// What a server started with [`Scripted::routes`] answers to a request, given its own
/// base URL (`http://127.0.0.1:PORT`).
type Routes = Arc<dyn Fn(&Seen, &str) -> Behaviour + Send + Sync>;

enum Fallback {
    Fixed(Behaviour),
    Routes(Routes),
}

/// The plan for one connection, fixed when it is accepted.
enum Plan {
    Fixed(Behaviour),
    Routes(Routes),
}

struct State {
    base: String,
    queue: VecDeque<Behaviour>,
    default: Fallback,
    connections: Vec<Connection>,
    seen: Vec<Seen>,
}

/// The scripted HTTP/1.1 server on 127.0.0.1. Dropping it stops it and every connection.
pub struct Scripted {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Scripted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scripted").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Scripted {
    /// Starts on a free port of 127.0.0.1, doing `behaviour` with every connection.
    pub async fn start(behaviour: impl Into<Behaviour>) -> Scripted {
        Scripted::bind("127.0.0.1:0".parse().expect("a socket address"), behaviour).await
    }

    /// Starts on `addr` (a port another server used before, say).
    pub async fn bind(addr: SocketAddr, behaviour: impl Into<Behaviour>) -> Scripted {
        Scripted::launch(addr, Fallback::Fixed(behaviour.into())).await
    }

    /// Starts on a free port of 127.0.0.1, answering each request with
    /// `routes(request, base)`, where `base` is `http://127.0.0.1:PORT`.
    pub async fn routes<B: Into<Behaviour>>(routes: impl Fn(&Seen, &str) -> B + Send + Sync + 'static) -> Scripted {
        let routes: Routes = Arc::new(move |seen, base| routes(seen, base).into());
        Scripted::launch("127.0.0.1:0".parse().expect("a socket address"), Fallback::Routes(routes)).await
    }

    async fn launch(addr: SocketAddr, default: Fallback) -> Scripted {
        let listener = TcpListener::bind(addr).await.expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let state = Arc::new(Mutex::new(State {
            base: format!("http://{addr}"),
            queue: VecDeque::new(),
            default,
            connections: Vec::new(),
            seen: Vec::new(),
        }));
        let task = tokio::spawn(accept_loop(listener, state.clone())).abort_handle();
        Scripted { addr, state, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What new connections get from now on, once the queue is empty; those under way
    /// keep what they had.
    pub fn set(&self, behaviour: impl Into<Behaviour>) {
        self.state.lock().unwrap().default = Fallback::Fixed(behaviour.into());
    }

    /// What the next new connection gets, after those queued before.
    pub fn push(&self, behaviour: impl Into<Behaviour>) {
        self.state.lock().unwrap().queue.push_back(behaviour.into());
    }

    /// Every request read so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests were read so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }

    /// Every connection accepted so far, in order.
    pub fn connections(&self) -> Vec<Connection> {
        self.state.lock().unwrap().connections.clone()
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.lock().unwrap().connections.len()
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

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Owned here, so that aborting this task drops every connection too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (plan, index) = {
                    let mut state = state.lock().unwrap();
                    let plan = match state.queue.pop_front() {
                        Some(behaviour) => Plan::Fixed(behaviour),
                        None => match &state.default {
                            Fallback::Fixed(behaviour) => Plan::Fixed(behaviour.clone()),
                            Fallback::Routes(routes) => Plan::Routes(routes.clone()),
                        },
                    };
                    state.connections.push(Connection {
                        accepted_at: Instant::now(),
                        request: None,
                        written: 0,
                        write_failed: false,
                        client_gone_at: None,
                        ended_at: None,
                    });
                    (plan, state.connections.len() - 1)
                };
                connections.spawn(serve(stream, plan, Record { state: state.clone(), index }));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Updates one connection's entry.
struct Record {
    state: Arc<Mutex<State>>,
    index: usize,
}

impl Record {
    fn update(&self, change: impl FnOnce(&mut Connection)) {
        change(&mut self.state.lock().unwrap().connections[self.index]);
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

async fn serve(mut stream: TcpStream, plan: Plan, record: Record) {
    if let Plan::Fixed(Behaviour::NeverRead) = plan {
        return std::future::pending().await;
    }
    let Some((line, seen)) = read_request(&mut stream).await else {
        record.update(|c| c.client_gone_at = Some(Instant::now()));
        return;
    };
    let behaviour = match plan {
        Plan::Fixed(behaviour) => behaviour,
        Plan::Routes(routes) => {
            let base = record.state.lock().unwrap().base.clone();
            routes(&seen, &base)
        }
    };
    {
        let mut state = record.state.lock().unwrap();
        state.connections[record.index].request = Some(line);
        state.seen.push(seen);
    }
    if let Behaviour::NeverRead = behaviour {
        return std::future::pending().await;
    }
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
        Behaviour::NeverRead => unreachable!("handled before anything is written"),
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
/// request line and the request, or `None` when the client went away first.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Seen)> {
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
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let mut headers = HeaderMap::new();
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.trim()), HeaderValue::try_from(value.trim())) {
            headers.append(name, value);
        }
    }
    let length: usize =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let mut parts = line.split(' ');
    let method = parts.next().and_then(|m| Method::from_bytes(m.as_bytes()).ok()).unwrap_or_default();
    let target = parts.next().unwrap_or_default().to_owned();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Some((line, Seen { method, target, path, headers, body: Bytes::from(body) }))
}

/// A complete response with `content-length` and `connection: close`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Scripted");
    let mut head = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
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

/// A `200 application/json` with a chunked body (no `content-length`), in pieces of
/// `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec();
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
    listener.local_addr().expect("a bound listener has an address")
}
