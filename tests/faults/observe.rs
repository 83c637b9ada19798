//! What the fault suites observe besides the answers (the scripted server that makes
//! the faults is in `tests/support/server.rs`):
//!
//! - [`Warnings`]: the crate's warnings on the current thread, to see which typed error
//!   a background fetch failed with.
//! - [`PeakRss`] and [`socket_buffer_ceiling`]: what memory and the kernel allow.
//!
//! Every test compiles all of it and uses only part, hence the `dead_code` allowance.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

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
