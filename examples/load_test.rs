//! A load test of `BearerAuthLayer` through a key rotation and a JWKS outage.
//!
//! Run with: `scripts/load-test` (both variants, release build), or
//!
//! ```text
//! cargo build --release --all-features --example resource_server --example load_test
//! target/release/examples/load_test [--cache] [--duration 60] [--concurrency 32] [--alg RS256]
//! ```
//!
//! It starts the embedded test issuer, runs the `resource_server` example (the binary
//! next to this one) as a child process configured for that issuer, and sends
//! `GET /me` with valid bearer tokens over a pool of keep-alive HTTP/1.1 connections
//! on 127.0.0.1 for the whole run, while the issuer goes through this timeline
//! (defaults for 60 s; each scales with `--duration` unless given):
//!
//! | time | event |
//! |---|---|
//! | 0 s | load starts, with tokens signed by the first key |
//! | 20 s | the issuer rotates its keys (the old ones stay published); as soon as new tokens are minted, only tokens with the new `kid` are sent, which the server learns through its unknown-`kid` refresh |
//! | 25 s | the JWKS endpoint and both discovery endpoints go down (later if the server has not yet accepted a new-key token, up to 5 s after they went out: a key published during an outage cannot be learned, and that would measure this driver's schedule) |
//! | 45 s | they are back (20 s after they went down) |
//! | 60 s | load stops |
//!
//! | flag | meaning |
//! |---|---|
//! | `--duration SECS` | default 60 |
//! | `--concurrency N` | connections, each with one request in flight; default 32 |
//! | `--cache` | runs the server with `OAUTH_TOKEN_CACHE=1` (the verified-token cache) |
//! | `--alg ALG` | the tokens' signing algorithm: `RS256` (default), `ES256`, any asymmetric one |
//! | `--tokens N` | distinct valid tokens per signing key; default 1000 |
//! | `--rotate-at SECS`, `--outage-at SECS`, `--outage-for SECS` | the timeline |
//! | `--outage down\|503` | `down` (default): every request to those endpoints has its connection closed with no response, as a crashed or firewalled IdP looks; `503`: an empty 503 |
//! | `--old-share PERCENT` | after the rotation, this share of requests still carries old-key tokens; default 0 |
//! | `--junk-rate N` | also send N requests per second whose token names a made-up `kid` (expected: 401), which is what makes the server try to fetch keys during the outage; default 0 |
//! | `--server PATH` | the `resource_server` binary; default: next to this one |
//!
//! Each request counts in the phase the issuer was in when it was sent. It prints a
//! summary (requests, requests per second, latency percentiles, every non-2xx answer to
//! a valid token by status, the same per phase with the issuer's JWKS and discovery
//! requests, and the server's CPU time), then one JSON line with the same numbers.
//! It exits with 1 if any valid token got anything but a 2xx (or any made-up `kid` got
//! a 2xx), 2 on a usage error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_oauth::Algorithm;
use tower_oauth::testing::{Endpoint, Fault, TestIssuer, TestKey};

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Longest a single request may take before it counts as a failure: far above any
/// healthy latency, so that a hang shows up as a failure instead of a stuck run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to print its address and to accept a first token.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies are recorded in microseconds, up to this bound (larger values saturate).
const MAX_LATENCY_US: u64 = 120_000_000;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config).await {
        Ok(report) => {
            print!("{report}");
            println!("{}", report.to_json());
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: load_test [--duration SECS] [--concurrency N] [--cache] [--alg RS256|ES256|…] \
[--tokens N] [--rotate-at SECS] [--outage-at SECS] [--outage-for SECS] [--outage down|503] \
[--old-share PERCENT] [--junk-rate N] [--server PATH]";

/// What to run; see the module docs for each flag.
#[derive(Debug, Clone)]
struct Config {
    duration: Duration,
    concurrency: usize,
    cache: bool,
    alg: Algorithm,
    tokens: usize,
    timeline: Timeline,
    outage: Fault,
    old_share: f64,
    junk_rate: u32,
    server: Option<PathBuf>,
}

impl Config {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
        let mut duration = 60.0;
        let mut concurrency = 32;
        let mut cache = false;
        let mut alg = Algorithm::RS256;
        let mut tokens = 1000;
        let (mut rotate_at, mut outage_at, mut outage_for) = (None, None, None);
        let mut outage = Fault::Down;
        let mut old_share = 0.0;
        let mut junk_rate = 0;
        let mut server = None;
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--duration" => duration = seconds(&flag, &value()?)?,
                "--concurrency" => concurrency = number(&flag, &value()?)?,
                "--cache" => cache = true,
                "--alg" => {
                    let name = value()?;
                    alg = name.parse().map_err(|_| format!("--alg: unknown algorithm {name:?}"))?;
                    if alg.is_symmetric() {
                        return Err(format!("--alg: {name} is symmetric; the server accepts asymmetric algorithms"));
                    }
                }
                "--tokens" => tokens = number(&flag, &value()?)?,
                "--rotate-at" => rotate_at = Some(seconds(&flag, &value()?)?),
                "--outage-at" => outage_at = Some(seconds(&flag, &value()?)?),
                "--outage-for" => outage_for = Some(seconds(&flag, &value()?)?),
                "--outage" => {
                    outage = match value()?.as_str() {
                        "down" => Fault::Down,
                        "503" => Fault::Status(503),
                        other => return Err(format!("--outage: expected down or 503, got {other:?}")),
                    }
                }
                "--old-share" => {
                    let percent: f64 = number(&flag, &value()?)?;
                    if !(0.0..=100.0).contains(&percent) {
                        return Err("--old-share: a percentage, 0 to 100".into());
                    }
                    old_share = percent / 100.0;
                }
                "--junk-rate" => junk_rate = number(&flag, &value()?)?,
                "--server" => server = Some(PathBuf::from(value()?)),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if duration <= 0.0 {
            return Err("--duration must be positive".into());
        }
        if concurrency == 0 || tokens == 0 {
            return Err("--concurrency and --tokens must be at least 1".into());
        }
        // The default timeline is 20 s / 25 s / 20 s of a 60 s run, scaled to the duration.
        let rotate_at = rotate_at.unwrap_or(duration * 20.0 / 60.0);
        let outage_at = outage_at.unwrap_or(duration * 25.0 / 60.0);
        let outage_end = outage_at + outage_for.unwrap_or(duration * 20.0 / 60.0);
        if !(0.0 < rotate_at && rotate_at <= outage_at && outage_end <= duration) {
            return Err(format!(
                "the timeline must satisfy 0 < rotation ({rotate_at} s) <= outage start ({outage_at} s) \
                 <= outage end ({outage_end} s) <= duration ({duration} s)"
            ));
        }
        Ok(Some(Config {
            duration: Duration::from_secs_f64(duration),
            concurrency,
            cache,
            alg,
            tokens,
            timeline: Timeline {
                rotate_at: Duration::from_secs_f64(rotate_at),
                outage_at: Duration::from_secs_f64(outage_at),
                outage_end: Duration::from_secs_f64(outage_end),
                end: Duration::from_secs_f64(duration),
            },
            outage,
            old_share,
            junk_rate,
            server,
        }))
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{flag}: not a number: {value:?}"))
}

fn seconds(flag: &str, value: &str) -> Result<f64, String> {
    let secs: f64 = number(flag, value)?;
    if secs.is_finite() && secs >= 0.0 { Ok(secs) } else { Err(format!("{flag}: not a duration: {value:?}")) }
}

/// When things are planned to happen, from the start of the load.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    rotate_at: Duration,
    outage_at: Duration,
    outage_end: Duration,
    end: Duration,
}

/// What the issuer is going through; each request counts in the phase it was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    Rotation,
    Outage,
    After,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Before, Phase::Rotation, Phase::Outage, Phase::After];

    fn from_index(index: u8) -> Phase {
        Phase::ALL[usize::from(index).min(Phase::ALL.len() - 1)]
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Rotation => "rotation",
            Phase::Outage => "outage",
            Phase::After => "after",
        }
    }
}

/// The tokens the workers send: the current key's, and (after a rotation) the
/// previous key's with the share of requests that still carry them.
#[derive(Debug)]
struct TokenPool {
    current: Vec<HeaderValue>,
    old: Vec<HeaderValue>,
    old_share: f64,
}

impl TokenPool {
    fn pick(&self) -> &HeaderValue {
        let tokens = if !self.old.is_empty() && fastrand::f64() < self.old_share { &self.old } else { &self.current };
        &tokens[fastrand::usize(..tokens.len())]
    }
}

/// Mints `count` distinct valid tokens with the issuer's current key for `alg`, on the
/// blocking pool (RSA signing is about a millisecond each), on up to `threads` threads.
async fn mint_tokens(
    issuer: &TestIssuer,
    alg: Algorithm,
    count: usize,
    lifetime: Duration,
    threads: usize,
) -> Result<Vec<HeaderValue>, Error> {
    let chunks = threads.clamp(1, count);
    let mut tasks = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        let issuer = issuer.clone();
        let range = (count * chunk / chunks)..(count * (chunk + 1) / chunks);
        tasks.push(tokio::task::spawn_blocking(move || {
            range
                .map(|i| {
                    let token = issuer
                        .mint()
                        .alg(alg)
                        .subject(&format!("user-{i:05}"))
                        .scope("read write")
                        .expires_in(lifetime)
                        .sign();
                    let mut value = HeaderValue::try_from(format!("Bearer {token}"))?;
                    value.set_sensitive(true);
                    Ok(value)
                })
                .collect::<Result<Vec<_>, http::header::InvalidHeaderValue>>()
        }));
    }
    let mut tokens = Vec::with_capacity(count);
    for task in tasks {
        tokens.extend(task.await??);
    }
    Ok(tokens)
}

async fn run(config: &Config) -> Result<Report, Error> {
    let issuer = TestIssuer::builder().signing_alg(config.alg).start().await?;
    // Every token outlives the run by far: expiry is not what this measures.
    let lifetime = config.duration + Duration::from_secs(3600);
    let first_kid = issuer.current_key(config.alg).kid().to_owned();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let first = mint_tokens(&issuer, config.alg, config.tokens, lifetime, cores).await?;
    let pool = Arc::new(ArcSwap::from_pointee(TokenPool { current: first, old: Vec::new(), old_share: 0.0 }));
    let junk = if config.junk_rate > 0 { junk_tokens(config, &issuer).await? } else { Vec::new() };

    let server = ResourceServer::start(config, &issuer).await?;
    let client = http_client(config.concurrency);
    let uri: Uri = format!("http://{}/me", server.addr).parse()?;
    let probe = pool.load().pick().clone();
    warm_up(&client, &uri, &probe).await?;

    let cpu_before = server.cpu_time();
    let phase = Arc::new(AtomicU8::new(Phase::Before as u8));
    let start = Instant::now();
    let deadline = start + config.duration;
    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| tokio::spawn(worker(client.clone(), uri.clone(), Arc::clone(&pool), Arc::clone(&phase), deadline)))
        .collect();
    let junk_task = (!junk.is_empty())
        .then(|| tokio::spawn(junk_sender(client.clone(), uri.clone(), junk, config.junk_rate, deadline)));
    let load = Load { client: &client, uri: &uri, pool: &pool, phase: &phase, start };
    let events = drive_issuer(config, &issuer, load, lifetime).await?;

    let mut stats = Stats::new();
    for worker in workers {
        stats.merge(worker.await?);
    }
    let junk = match junk_task {
        Some(task) => Some(task.await?),
        None => None,
    };
    let elapsed = start.elapsed();
    let server_cpu = match (cpu_before, server.cpu_time()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    server.stop().await;
    Ok(Report { config: config.clone(), elapsed, stats, junk, events, first_kid, server_cpu })
}

/// What the issuer went through, and its request counters at each phase boundary.
#[derive(Debug, Default)]
struct IssuerEvents {
    new_kid: Option<String>,
    /// When each phase began, from the start of the load; the last one ends with the run.
    began: [Option<Duration>; 4],
    ended: Option<Duration>,
    /// When the first new-key tokens went out, and when the server first accepted one.
    new_tokens_at: Option<Duration>,
    new_key_accepted_at: Option<Duration>,
    /// JWKS and discovery requests during each phase.
    jwks: [u64; 4],
    discovery: [u64; 4],
}

impl IssuerEvents {
    /// Where a phase began and ended, from the start of the load; zero length when it
    /// never happened.
    fn bounds(&self, phase: Phase) -> (Duration, Duration) {
        let index = phase as usize;
        let end = self.ended.unwrap_or_default();
        let Some(from) = self.began[index] else { return (end, end) };
        let to = self.began[index + 1..].iter().flatten().next().copied().unwrap_or(end);
        (from, to)
    }
}

/// What the issuer's side needs of the load: the client to probe with, the tokens to
/// switch, and the phase to announce.
#[derive(Clone, Copy)]
struct Load<'a> {
    client: &'a HttpClient,
    uri: &'a Uri,
    pool: &'a ArcSwap<TokenPool>,
    phase: &'a AtomicU8,
    start: Instant,
}

/// How many new-key tokens go out at once after a rotation, before the rest are minted.
const FIRST_NEW_TOKENS: usize = 32;
/// How long the outage waits past its planned start for the server to accept a new-key
/// token. A server that has not learned the key by then, with the JWKS up, shows it in
/// the results; waiting longer would only hide that.
const LEARN_GRACE: Duration = Duration::from_secs(5);

/// Runs the issuer's side of the timeline while the workers send load.
///
/// The outage starts at its planned time, but not before the server has accepted a
/// new-key token (within [`LEARN_GRACE`] of the new tokens going out): a key published
/// during an outage cannot be learned, so an outage that began first would measure the
/// schedule of this driver, not the server.
async fn drive_issuer(
    config: &Config,
    issuer: &TestIssuer,
    load: Load<'_>,
    lifetime: Duration,
) -> Result<IssuerEvents, Error> {
    let timeline = config.timeline;
    let start = load.start;
    let mut events = IssuerEvents { began: [Some(Duration::ZERO), None, None, None], ..Default::default() };
    let mut clock = PhaseClock { issuer, load, current: Phase::Before, marks: issuer_counts(issuer) };

    tokio::time::sleep_until((start + timeline.rotate_at).into()).await;
    clock.enter(Phase::Rotation, &mut events);
    let rotating = issuer.clone();
    tokio::task::spawn_blocking(move || rotating.rotate_keys()).await?;
    let new_kid = issuer.current_key(config.alg).kid().to_owned();
    let old = if config.old_share > 0.0 { load.pool.load().current.clone() } else { Vec::new() };
    // A few new-key tokens go out at once, the rest join them when minted; one thread, so
    // that minting leaves the other cores to the load.
    let first = config.tokens.min(FIRST_NEW_TOKENS);
    let mut fresh = mint_tokens(issuer, config.alg, first, lifetime, 1).await?;
    let probe = fresh[0].clone();
    load.pool.store(Arc::new(TokenPool { current: fresh.clone(), old: old.clone(), old_share: config.old_share }));
    events.new_tokens_at = Some(start.elapsed());
    events.new_kid = Some(new_kid);
    let deadline = start + timeline.end;
    let learn_by = (start + timeline.outage_at).max(Instant::now() + LEARN_GRACE).min(deadline);
    while Instant::now() < learn_by {
        if let Outcome::Ok = get(load.client, load.uri, &probe).await {
            events.new_key_accepted_at = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The rest of the new tokens, while the timeline goes on.
    let fill = async {
        if config.tokens > first {
            fresh.extend(mint_tokens(issuer, config.alg, config.tokens - first, lifetime, 1).await?);
            load.pool.store(Arc::new(TokenPool { current: fresh, old, old_share: config.old_share }));
        }
        Ok::<_, Error>(())
    };
    let outage = async {
        let outage_for = timeline.outage_end - timeline.outage_at;
        if !outage_for.is_zero() {
            tokio::time::sleep_until((start + timeline.outage_at).into()).await;
            if Instant::now() < deadline {
                clock.enter(Phase::Outage, &mut events);
                for endpoint in [Endpoint::Jwks, Endpoint::OpenIdConfiguration, Endpoint::OAuthServerMetadata] {
                    issuer.set_fault(endpoint, config.outage.clone());
                }
                tokio::time::sleep_until((Instant::now() + outage_for).min(deadline).into()).await;
                issuer.clear_faults();
                clock.enter(Phase::After, &mut events);
            }
        }
        tokio::time::sleep_until(deadline.into()).await;
    };
    let (filled, ()) = tokio::join!(fill, outage);
    filled?;
    clock.close(&mut events);
    events.ended = Some(start.elapsed());
    Ok(events)
}

/// Moves the load from phase to phase, and counts the issuer's requests in each.
struct PhaseClock<'a> {
    issuer: &'a TestIssuer,
    load: Load<'a>,
    current: Phase,
    /// The JWKS and discovery counters when the current phase began.
    marks: (u64, u64),
}

impl PhaseClock<'_> {
    fn close(&mut self, events: &mut IssuerEvents) {
        let now = issuer_counts(self.issuer);
        events.jwks[self.current as usize] = now.0 - self.marks.0;
        events.discovery[self.current as usize] = now.1 - self.marks.1;
        self.marks = now;
    }

    fn enter(&mut self, next: Phase, events: &mut IssuerEvents) {
        self.close(events);
        self.load.phase.store(next as u8, Ordering::Relaxed);
        events.began[next as usize] = Some(self.load.start.elapsed());
        self.current = next;
    }
}

/// The issuer's JWKS requests, and its discovery requests (both documents).
fn issuer_counts(issuer: &TestIssuer) -> (u64, u64) {
    (
        issuer.requests(Endpoint::Jwks),
        issuer.requests(Endpoint::OpenIdConfiguration) + issuer.requests(Endpoint::OAuthServerMetadata),
    )
}

/// Tokens signed by a key the issuer never published, each naming its own made-up
/// `kid`: every one is an unknown `kid` to the server.
async fn junk_tokens(config: &Config, issuer: &TestIssuer) -> Result<Vec<HeaderValue>, Error> {
    let count = (f64::from(config.junk_rate) * config.duration.as_secs_f64()).ceil() as usize + 1;
    let alg = config.alg;
    let issuer = issuer.clone();
    let tokens = tokio::task::spawn_blocking(move || {
        let stranger = TestKey::generate(alg);
        (0..count)
            .map(|_| {
                let kid = format!("unknown-{:016x}", fastrand::u64(..));
                let token = issuer.mint().alg(alg).header("kid", kid).sign_with(&stranger);
                HeaderValue::try_from(format!("Bearer {token}"))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    Ok(tokens)
}

fn http_client(concurrency: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build(connector)
}

/// One request, its body read to the end so that the connection goes back to the pool.
async fn get(client: &HttpClient, uri: &Uri, authorization: &HeaderValue) -> Outcome {
    let request = Request::get(uri.clone())
        .header(AUTHORIZATION, authorization.clone())
        .body(Empty::new())
        .expect("a GET with a valid URI and header is a valid request");
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, Error>(status)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(status)) if status.is_success() => Outcome::Ok,
        Ok(Ok(status)) => Outcome::Failed(status.as_str().to_owned()),
        Ok(Err(_)) => Outcome::Failed("transport error".to_owned()),
        Err(_) => Outcome::Failed("timeout".to_owned()),
    }
}

enum Outcome {
    Ok,
    /// A status code, or what went wrong instead of one.
    Failed(String),
}

/// Waits until the server accepts a valid token: it has loaded the issuer's keys.
async fn warm_up(client: &HttpClient, uri: &Uri, token: &HeaderValue) -> Result<(), Error> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match get(client, uri, token).await {
            Outcome::Ok => return Ok(()),
            Outcome::Failed(why) if Instant::now() >= deadline => {
                return Err(format!("the server still answers a valid token with {why}").into());
            }
            Outcome::Failed(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One connection's worth of load: a request at a time until the deadline.
async fn worker(
    client: HttpClient,
    uri: Uri,
    pool: Arc<ArcSwap<TokenPool>>,
    phase: Arc<AtomicU8>,
    deadline: Instant,
) -> Stats {
    let mut stats = Stats::new();
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            return stats;
        }
        let in_phase = Phase::from_index(phase.load(Ordering::Relaxed));
        let token = pool.load().pick().clone();
        let outcome = get(&client, &uri, &token).await;
        let latency = sent.elapsed();
        stats.record(in_phase, latency, outcome);
    }
}

/// Sends one made-up-`kid` request every `1/rate` s, each on its own task so that a
/// slow answer (one waiting for a key fetch) does not slow the rate.
async fn junk_sender(
    client: HttpClient,
    uri: Uri,
    tokens: Vec<HeaderValue>,
    rate: u32,
    deadline: Instant,
) -> BTreeMap<String, u64> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = tokio::task::JoinSet::new();
    for token in tokens {
        ticks.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let (client, uri) = (client.clone(), uri.clone());
        sent.spawn(async move { get(&client, &uri, &token).await });
    }
    let mut statuses = BTreeMap::new();
    while let Some(outcome) = sent.join_next().await {
        let key = match outcome {
            Ok(Outcome::Ok) => "2xx".to_owned(),
            Ok(Outcome::Failed(status)) => status,
            Err(_) => "task failed".to_owned(),
        };
        *statuses.entry(key).or_default() += 1;
    }
    statuses
}

/// Counts and latencies, per phase.
#[derive(Debug)]
struct Stats {
    phases: [PhaseStats; 4],
}

#[derive(Debug)]
struct PhaseStats {
    latency: Histogram<u64>,
    ok: u64,
    failed: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats { phases: std::array::from_fn(|_| PhaseStats::new()) }
    }

    fn record(&mut self, phase: Phase, latency: Duration, outcome: Outcome) {
        let stats = &mut self.phases[phase as usize];
        stats.latency.saturating_record(latency.as_micros().try_into().unwrap_or(u64::MAX));
        match outcome {
            Outcome::Ok => stats.ok += 1,
            Outcome::Failed(why) => *stats.failed.entry(why).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.phases.iter_mut().zip(other.phases) {
            mine.merge(theirs);
        }
    }

    fn total(&self) -> PhaseStats {
        let mut total = PhaseStats::new();
        for phase in &self.phases {
            total.merge_ref(phase);
        }
        total
    }
}

impl PhaseStats {
    fn new() -> PhaseStats {
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
        PhaseStats { latency, ok: 0, failed: BTreeMap::new() }
    }

    fn merge(&mut self, other: PhaseStats) {
        self.merge_ref(&other);
    }

    fn merge_ref(&mut self, other: &PhaseStats) {
        self.latency.add(&other.latency).expect("histograms with the same bounds");
        self.ok += other.ok;
        for (why, count) in &other.failed {
            *self.failed.entry(why.clone()).or_default() += count;
        }
    }

    fn requests(&self) -> u64 {
        self.latency.len()
    }

    fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    fn percentile_us(&self, q: f64) -> u64 {
        if self.latency.is_empty() { 0 } else { self.latency.value_at_quantile(q) }
    }

    fn max_us(&self) -> u64 {
        if self.latency.is_empty() { 0 } else { self.latency.max() }
    }
}

/// The `resource_server` example as a child process.
struct ResourceServer {
    child: Child,
    addr: SocketAddr,
}

impl ResourceServer {
    async fn start(config: &Config, issuer: &TestIssuer) -> Result<ResourceServer, Error> {
        let path = match &config.server {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name(format!("resource_server{}", std::env::consts::EXE_SUFFIX)),
        };
        if !path.is_file() {
            return Err(format!(
                "{} not found: build it first (cargo build --release --all-features --example resource_server) \
                 or pass --server PATH",
                path.display()
            )
            .into());
        }
        let mut command = Command::new(&path);
        command
            .env("OAUTH_ISSUER", issuer.issuer())
            .env("OAUTH_AUDIENCE", issuer.audience())
            .env("OAUTH_TOKEN_CACHE", if config.cache { "1" } else { "0" })
            .env("LISTEN", "127.0.0.1:0")
            .env_remove("OAUTH_ISSUERS")
            .env_remove("OAUTH_JWKS_URI")
            .env_remove("OAUTH_ALGORITHMS")
            .env_remove("OAUTH_REQUIRE_AT_JWT")
            .env_remove("OAUTH_DECRYPTION_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // Its log goes to our stderr: warnings only, unless RUST_LOG says otherwise, so
        // that logging costs nothing per request.
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| "the server did not print its address in time")??
            .ok_or("the server exited before listening")?;
        let addr = first
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.trim().parse().ok())
            .ok_or_else(|| format!("unexpected first line from the server: {first:?}"))?;
        // Keep draining its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ResourceServer { child, addr })
    }

    /// The CPU time the server has used so far (user and system, every thread), where
    /// `/proc` tells it.
    fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces;
        // utime and stime are fields 14 and 15 (proc(5)), in USER_HZ ticks, which
        // Linux fixes at 100 for user space.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Everything one run measured.
#[derive(Debug)]
struct Report {
    config: Config,
    elapsed: Duration,
    stats: Stats,
    junk: Option<BTreeMap<String, u64>>,
    events: IssuerEvents,
    first_kid: String,
    server_cpu: Option<Duration>,
}

impl Report {
    fn passed(&self) -> bool {
        let junk_accepted = self.junk.as_ref().is_some_and(|junk| junk.contains_key("2xx"));
        self.stats.total().failures() == 0 && !junk_accepted
    }

    fn outage_name(&self) -> &'static str {
        match self.config.outage {
            Fault::Status(_) => "503",
            _ => "down",
        }
    }

    fn to_json(&self) -> Value {
        let total = self.stats.total();
        let secs = self.elapsed.as_secs_f64();
        let phases: Vec<Value> = Phase::ALL
            .iter()
            .map(|&phase| {
                let stats = &self.stats.phases[phase as usize];
                let (from, to) = self.events.bounds(phase);
                json!({
                    "phase": phase.name(),
                    "from_s": from.as_secs_f64(),
                    "to_s": to.as_secs_f64(),
                    "requests": stats.requests(),
                    "requests_per_s": rate(stats.requests(), to.saturating_sub(from)),
                    "non_2xx": stats.failures(),
                    "non_2xx_by_status": stats.failed,
                    "p50_us": stats.percentile_us(0.50),
                    "p99_us": stats.percentile_us(0.99),
                    "max_us": stats.max_us(),
                    "jwks_requests": self.events.jwks[phase as usize],
                    "discovery_requests": self.events.discovery[phase as usize],
                })
            })
            .collect();
        json!({
            "alg": self.config.alg.as_str(),
            "cache": self.config.cache,
            "concurrency": self.config.concurrency,
            "tokens_per_key": self.config.tokens,
            "outage": self.outage_name(),
            "duration_s": secs,
            "requests": total.requests(),
            "requests_per_s": rate(total.requests(), self.elapsed),
            "latency_us": {
                "p50": total.percentile_us(0.50),
                "p90": total.percentile_us(0.90),
                "p99": total.percentile_us(0.99),
                "max": total.max_us(),
            },
            "non_2xx": total.failures(),
            "non_2xx_by_status": total.failed,
            "phases": phases,
            "rotated_at_s": secs_at(self.events.began[Phase::Rotation as usize]),
            "new_tokens_at_s": secs_at(self.events.new_tokens_at),
            "new_key_accepted_at_s": secs_at(self.events.new_key_accepted_at),
            "outage_from_s": secs_at(self.events.began[Phase::Outage as usize]),
            "outage_to_s": secs_at(self.events.began[Phase::After as usize]),
            "unknown_kid_requests": self.junk,
            "server_cpu_s": self.server_cpu.map(|cpu| cpu.as_secs_f64()),
            "passed": self.passed(),
        })
    }
}

fn rate(count: u64, over: Duration) -> f64 {
    if over.is_zero() { 0.0 } else { (count as f64 / over.as_secs_f64() * 10.0).round() / 10.0 }
}

/// Microseconds as milliseconds with two decimals.
fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn statuses(failed: &BTreeMap<String, u64>) -> String {
    if failed.is_empty() {
        return "0".to_owned();
    }
    let total: u64 = failed.values().sum();
    let parts: Vec<String> = failed.iter().map(|(why, count)| format!("{why}: {count}")).collect();
    format!("{total} ({})", parts.join(", "))
}

fn secs_at(time: Option<Duration>) -> Option<f64> {
    time.map(|t| (t.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn at(time: Option<Duration>) -> String {
    time.map_or_else(|| "-".to_owned(), |t| format!("{:.1} s", t.as_secs_f64()))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        let total = self.stats.total();
        writeln!(
            f,
            "load test: {} tokens ({} per key), {} connections, {:.1} s, verified-token cache {}, outage: {}",
            config.alg.as_str(),
            config.tokens,
            config.concurrency,
            self.elapsed.as_secs_f64(),
            if config.cache { "on" } else { "off" },
            match config.outage {
                Fault::Status(_) => "JWKS and discovery answer 503",
                _ => "JWKS and discovery drop every connection",
            },
        )?;
        writeln!(f, "  requests        {} ({:.1}/s)", total.requests(), rate(total.requests(), self.elapsed))?;
        writeln!(
            f,
            "  latency         p50 {}  p90 {}  p99 {}  max {}",
            ms(total.percentile_us(0.50)),
            ms(total.percentile_us(0.90)),
            ms(total.percentile_us(0.99)),
            ms(total.max_us()),
        )?;
        writeln!(f, "  valid, non-2xx  {}", statuses(&total.failed))?;
        writeln!(
            f,
            "  {:<9} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>5} {:>9}  non-2xx",
            "phase", "from", "to", "requests", "req/s", "p50", "p99", "max", "jwks", "discovery"
        )?;
        for phase in Phase::ALL {
            let stats = &self.stats.phases[phase as usize];
            let (from, to) = self.events.bounds(phase);
            writeln!(
                f,
                "  {:<9} {:>6.1} {:>6.1} {:>9} {:>9.1} {:>9} {:>9} {:>10} {:>5} {:>9}  {}",
                phase.name(),
                from.as_secs_f64(),
                to.as_secs_f64(),
                stats.requests(),
                rate(stats.requests(), to.saturating_sub(from)),
                ms(stats.percentile_us(0.50)),
                ms(stats.percentile_us(0.99)),
                ms(stats.max_us()),
                self.events.jwks[phase as usize],
                self.events.discovery[phase as usize],
                statuses(&stats.failed),
            )?;
        }
        writeln!(
            f,
            "  issuer          kid {} rotated to {} at {}; new-key tokens sent from {}, first accepted at {}",
            self.first_kid,
            self.events.new_kid.as_deref().unwrap_or("-"),
            at(self.events.began[Phase::Rotation as usize]),
            at(self.events.new_tokens_at),
            at(self.events.new_key_accepted_at),
        )?;
        writeln!(
            f,
            "  outage          {} to {}",
            at(self.events.began[Phase::Outage as usize]),
            at(self.events.began[Phase::After as usize]),
        )?;
        if config.old_share > 0.0 {
            writeln!(f, "  after rotation  {:.0} % of requests carry old-key tokens", config.old_share * 100.0)?;
        }
        if let Some(junk) = &self.junk {
            writeln!(f, "  unknown kid     {}/s: {} (expected: all 401)", config.junk_rate, statuses(junk))?;
        }
        if let Some(cpu) = self.server_cpu {
            let per_request = cpu.as_secs_f64() * 1e6 / total.requests().max(1) as f64;
            writeln!(f, "  server CPU      {:.1} s ({per_request:.1} µs per request)", cpu.as_secs_f64())?;
        }
        writeln!(f, "  result          {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}
