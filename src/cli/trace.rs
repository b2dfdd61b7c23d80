//! `etch bench --trace FILE.json`: the engine's per-instruction spans as a Chrome/Perfetto trace.
//!
//! Why not `tracing-chrome`: it sends every span event over a channel to a writer thread that
//! formats JSON while the benchmark runs. On a 2-core machine that thread takes a core from the
//! workers, and the per-event cost was microseconds: transformer_layer ran 0.158 ms traced
//! against 0.025 untraced, which made the timeline misrepresent what it shows. Here each thread
//! appends (instruction, operator, start, end) to its own buffer, and the file is written when
//! the trace ends.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::span::{Attributes, Id};
use tracing::{Subscriber, field};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// One finished span.
struct Event {
    index: u64,
    op: Box<str>,
    start_ns: u64,
    end_ns: u64,
}

/// The spans one thread recorded.
struct ThreadEvents {
    tid: usize,
    name: String,
    events: Vec<Event>,
}

type Buffers = Arc<Mutex<Vec<Arc<Mutex<ThreadEvents>>>>>;

thread_local! {
    /// This thread's buffer (registered in the recorder's list on first use).
    static BUFFER: RefCell<Option<Arc<Mutex<ThreadEvents>>>> = const { RefCell::new(None) };
}

/// The span's fields and start, kept in its extensions.
struct Open {
    fields: Fields,
    start: Option<Instant>,
}

#[derive(Default)]
struct Fields {
    index: u64,
    op: String,
}

impl field::Visit for Fields {
    fn record_u64(&mut self, f: &field::Field, value: u64) {
        if f.name() == "index" {
            self.index = value;
        }
    }

    fn record_i64(&mut self, f: &field::Field, value: i64) {
        if f.name() == "index" {
            self.index = u64::try_from(value).unwrap_or(0);
        }
    }

    fn record_debug(&mut self, f: &field::Field, value: &dyn std::fmt::Debug) {
        if f.name() == "op" {
            self.op = format!("{value:?}");
        }
    }
}

/// A `tracing` layer recording spans named `instruction` into per-thread buffers, while `active`.
struct Recorder {
    epoch: Instant,
    buffers: Buffers,
    active: Arc<AtomicBool>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "instruction" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Open { fields, start: None });
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            open.start = Some(Instant::now());
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let end = Instant::now();
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(open) = ext.get_mut::<Open>() else { return };
        let Some(start) = open.start.take() else { return };
        let ns = |t: Instant| u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let op = std::mem::take(&mut open.fields.op).into();
        let event = Event { index: open.fields.index, op, start_ns: ns(start), end_ns: ns(end) };
        BUFFER.with(|b| {
            let mut b = b.borrow_mut();
            let buffer = b.get_or_insert_with(|| {
                let mut all = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
                let name = std::thread::current().name().unwrap_or("thread").to_string();
                let mine = Arc::new(Mutex::new(ThreadEvents { tid: all.len(), name, events: Vec::new() }));
                all.push(Arc::clone(&mine));
                mine
            });
            buffer.lock().unwrap_or_else(|p| p.into_inner()).events.push(event);
        });
    }
}

/// Writes the trace file when dropped (at the end of the timed runs).
pub struct TraceGuard {
    path: PathBuf,
    buffers: Buffers,
    active: Arc<AtomicBool>,
}

/// Installs the recorder as the process's subscriber. Spans from before or after the guard's
/// life are not written.
pub fn start(path: &Path) -> TraceGuard {
    use tracing_subscriber::prelude::*;
    let epoch = Instant::now();
    let buffers: Buffers = Arc::default();
    let active = Arc::new(AtomicBool::new(true));
    let recorder = Recorder { epoch, buffers: Arc::clone(&buffers), active: Arc::clone(&active) };
    let _ = tracing_subscriber::registry().with(recorder).try_init();
    TraceGuard { path: path.to_path_buf(), buffers, active }
}

impl TraceGuard {
    /// The trace as Chrome's JSON event format: one complete (`X`) event per instruction, with
    /// its index and operator, and each thread's name.
    fn json(&self) -> serde_json::Value {
        let mut events = Vec::new();
        let all = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        for thread in all.iter() {
            let t = thread.lock().unwrap_or_else(|p| p.into_inner());
            events.push(serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": t.tid, "args": { "name": t.name },
            }));
            for e in &t.events {
                events.push(serde_json::json!({
                    "name": "instruction", "cat": "etch", "ph": "X", "pid": 1, "tid": t.tid,
                    "ts": e.start_ns as f64 / 1e3,
                    "dur": e.end_ns.saturating_sub(e.start_ns) as f64 / 1e3,
                    "args": { "index": e.index, "op": &*e.op },
                }));
            }
        }
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ns" })
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        // Later executions (the profile runs) are not recorded.
        self.active.store(false, Ordering::Relaxed);
        let json = self.json();
        if let Err(e) = std::fs::write(&self.path, json.to_string()) {
            eprintln!("cannot write the trace to {}: {e}", self.path.display());
        }
    }
}
