//! The host section of `cargo xtask bench`: what the userspace side costs, with no kernel
//! involved. Prints one JSON object on stdout (xtask makes the table); progress on stderr.
//!
//! - Engine throughput: a synthetic recording of `--events` events (a realistic mix: pin calls
//!   with their grab records, release records carrying their folios, FOLL_GET calls, mmap_lock
//!   drops, forks and exits) replayed on one thread, timed apart: reading and unpacking,
//!   decoding the raw records into `TraceEvent`s, and `PinEngine::push`.
//! - Memory per tracked pinned folio: `--folios` folios pinned and held, each by its own call,
//!   with a counting global allocator (bytes asked of the allocator, live) and the RSS growth.
//!   Over the same engine, one refresh of `top`: its snapshot, and four screens drawn.
//! - Recording writer throughput: the records of the same mix written to a file in
//!   `--dir`, as `record` writes them (stack check, framing, packing, one write per chunk),
//!   with and without LZ4, then fsync'd.
//!
//! - Soak: `--soak-events` events of a stream with what days of uptime bring (churning
//!   processes, pid reuse, long-held and orphaned pins, call sites coming and going) through
//!   the engine with `serve`'s retention and `serve`'s scrapes (`gup_trace::soak`): the
//!   engine's records, the heap (counting allocator), RSS and CPU ns per event, sampled 20
//!   times. All must stay flat.
//!
//! `cargo bench -p gup-trace --bench host -- [--events N] [--folios N] [--soak-events N]
//! [--dir DIR]`

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fs::File,
    path::PathBuf,
    sync::atomic::{AtomicIsize, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use gup_trace::{
    engine::{FindingRules, PinEngine},
    events::TraceEvent,
    recording::{
        Compression, Item, RecordingReader, RecordingWriter,
        synthetic::{self, Synthetic},
    },
};
use gup_trace_common::{EventKind, Hook};
use serde_json::json;

/// Counts the bytes the program holds from the allocator.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Options {
    only: Option<String>,
    /// Keep the synthetic recording (for `gup-trace report` or a profiler).
    keep: bool,
    events: u64,
    folios: u64,
    soak_events: u64,
    dir: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        only: None,
        keep: false,
        events: 4_000_000,
        folios: 1_000_000,
        soak_events: 100_000_000,
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--events" => o.events = value().parse().expect("--events N"),
            "--folios" => o.folios = value().parse().expect("--folios N"),
            "--soak-events" => o.soak_events = value().parse().expect("--soak-events N"),
            "--dir" => o.dir = value().into(),
            "--only" => o.only = Some(value()),
            "--keep" => o.keep = true,
            // cargo bench passes --bench; anything else is a mistake.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// CPU time of this thread: what a measurement costs on one core, however busy the machine
/// is with other work (wall time is reported too).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and CPU time since it started.
#[derive(Clone, Copy)]
struct Clock {
    wall: Instant,
    cpu: Duration,
}

#[derive(Clone, Copy, Default)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: thread_cpu(),
        }
    }
    fn spent(&self) -> Spent {
        Spent {
            wall: self.wall.elapsed(),
            cpu: thread_cpu().saturating_sub(self.cpu),
        }
    }
}

impl Spent {
    fn add(&mut self, other: Spent) {
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
    fn minus(self, other: Spent) -> Spent {
        Spent {
            wall: self.wall.saturating_sub(other.wall),
            cpu: self.cpu.saturating_sub(other.cpu),
        }
    }
    /// `{"cpu_s", "wall_s", "per_cpu_s", "per_wall_s"}` for `n` things done.
    fn rate(self, n: u64) -> serde_json::Value {
        json!({
            "cpu_s": self.cpu.as_secs_f64(),
            "wall_s": self.wall.as_secs_f64(),
            "per_cpu_s": per_s(n, self.cpu),
            "per_wall_s": per_s(n, self.wall),
        })
    }
}

/// The synthetic recording, written once (its writing is not what is timed here).
fn synthetic_file(o: &Options) -> (PathBuf, u64, u64) {
    let path = o.dir.join("gup-trace-bench-replay.gtr");
    let file = File::create(&path).expect("create the synthetic recording");
    let (_, stats) = synthetic::write_recording(file, 42, o.events, Compression::Lz4)
        .expect("write the synthetic recording");
    (path, stats.records, stats.events)
}

fn replay(path: &PathBuf, events: u64) -> serde_json::Value {
    let open = || RecordingReader::open(path).unwrap();
    // Read and unpack only.
    let mut reader = open();
    let clock = Clock::start();
    let mut bytes = 0u64;
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Record(r) = item {
            bytes += r.len() as u64;
        }
    }
    let read = clock.spent();
    assert_eq!(reader.events, events);

    // Read, unpack and decode.
    let mut reader = open();
    let mut batch: Vec<TraceEvent> = Vec::with_capacity(8192);
    let clock = Clock::start();
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Record(r) = item {
            TraceEvent::decode_record(r, &mut batch).unwrap();
            batch.clear();
        }
    }
    let decoded = clock.spent();

    // The whole replay, the engine's part timed per batch of events.
    let mut reader = open();
    let meta = reader.meta.clone();
    let mut engine = PinEngine::new(meta.start_ns, meta.foll_longterm, FindingRules::default());
    let mut engine_time = Spent::default();
    let clock = Clock::start();
    loop {
        let mut more = true;
        while batch.len() < 4096 {
            match reader.next_item().unwrap() {
                Some(Item::Record(r)) => TraceEvent::decode_record(r, &mut batch).unwrap(),
                Some(_) => {}
                None => {
                    more = false;
                    break;
                }
            }
        }
        let e = Clock::start();
        batch.drain(..).for_each(|ev| engine.push(ev));
        if !more {
            engine.flush();
        }
        engine_time.add(e.spent());
        if !more {
            break;
        }
    }
    let total = clock.spent();
    let findings = engine.findings(engine.newest_ns, None, true);
    json!({
        "events": events,
        "record_bytes": bytes,
        "read": read.rate(events),
        "decode": decoded.minus(read).rate(events),
        "engine": engine_time.rate(events),
        "replay": total.rate(events),
        "processes": engine.state.processes.len(),
        "folios_held_at_end": engine.state.folios.len(),
        "late_events": engine.late_events(),
        "findings": findings.len(),
    })
}

/// What one refresh of `top` costs over this engine: building the snapshot (one walk over the
/// pinned folios) and drawing the overview and the process screen at 80x24 and 120x40, in ms.
fn dashboard(engine: &mut PinEngine) -> (f64, f64) {
    use gup_trace::tui::{
        self,
        app::{App, Mode, Screen},
        snapshot::{History, Moment, SnapshotBuilder, SourceInfo},
        theme::Theme,
    };
    let now = engine.newest_ns + 1_000_000_000;
    let mut history = History::default();
    history.sample(engine, true, now);
    let source = SourceInfo {
        source: "bench".into(),
        start_ns: synthetic::START_NS,
        folio_level: true,
        page_size: 4096,
        ..SourceInfo::default()
    };
    let mut lookup = |id: u32| -> gup_trace::symbols::CallStack { Err(format!("no stack {id}")) };
    let start = Instant::now();
    let snap = SnapshotBuilder::new().build(
        engine,
        &source,
        &Moment {
            now_ns: now,
            lost_events: Some(0),
        },
        &history,
        &mut lookup,
    );
    let built = start.elapsed();
    let start = Instant::now();
    let mut app = App::new(Mode::Live);
    for (w, h) in [(80, 24), (120, 40)] {
        std::hint::black_box(tui::render(&app, &snap, &Theme::colour(), w, h));
    }
    app.screens.push(Screen::Process(0));
    for (w, h) in [(80, 24), (120, 40)] {
        std::hint::black_box(tui::render(&app, &snap, &Theme::colour(), w, h));
    }
    let drawn = start.elapsed();
    (built.as_secs_f64() * 1e3, drawn.as_secs_f64() * 1e3)
}

/// `n` folios pinned, each by its own pin_user_pages_fast call of one process, none released.
fn memory_per_folio(n: u64) -> serde_json::Value {
    let name = synthetic::comm("fio");
    let mut engine = PinEngine::new(
        synthetic::START_NS,
        synthetic::FOLL_LONGTERM,
        FindingRules::default(),
    );
    let mut batch = Vec::new();
    let mut record = Vec::new();
    let mut feed = |engine: &mut PinEngine, i: u64| {
        let ts = synthetic::START_NS + 1_000 * (i + 1);
        let mut grab =
            synthetic::event(EventKind::Folio, Hook::TryGrabFolioFast, ts, 100, 100, name);
        grab.call_hook = Hook::PinUserPagesFast as u32;
        grab.stack_id = 11;
        grab.folio = synthetic::pin_transition(0x10_0000 + i, 1, false, false);
        grab.pages = 1;
        record.clear();
        synthetic::put_event(&mut record, &grab);
        TraceEvent::decode_record(&record, &mut batch).unwrap();
        let mut call = synthetic::event(
            EventKind::Call,
            Hook::PinUserPagesFast,
            ts + 100,
            100,
            100,
            name,
        );
        call.pages = 1;
        call.stack_id = 11;
        record.clear();
        synthetic::put_event(&mut record, &call);
        TraceEvent::decode_record(&record, &mut batch).unwrap();
        batch.drain(..).for_each(|e| engine.push(e));
    };
    // The process, its call site and owner exist before counting starts.
    feed(&mut engine, n);
    engine.flush();
    let live_before = LIVE.load(Ordering::Relaxed);
    let rss_before = rss_bytes();
    for i in 0..n {
        feed(&mut engine, i);
    }
    engine.flush();
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    let rss = rss_bytes().saturating_sub(rss_before);
    let held = engine.state.folios.len() as u64;
    assert_eq!(held, n + 1);
    assert_eq!(engine.state.pinned_now, n + 1);
    let capacity = engine.state.folios.capacity() as u64;
    let (snapshot_ms, draw_ms) = dashboard(&mut engine);
    json!({
        "folios": n,
        "dashboard_snapshot_ms": snapshot_ms,
        "dashboard_draw_ms": draw_ms,
        "bytes_per_folio": live as f64 / n as f64,
        "rss_bytes_per_folio": rss as f64 / n as f64,
        "map_capacity": capacity,
        "map_load": held as f64 / capacity as f64,
        "folio_state_bytes": size_of::<gup_trace::engine::pins::FolioState>(),
    })
}

/// A pool of the mix's records, cycled through while writing.
fn record_pool(records: usize) -> (Vec<u8>, Vec<(usize, usize)>, u64) {
    let mut synth = Synthetic::new(7, 32);
    let mut arena = Vec::new();
    let mut spans = Vec::with_capacity(records);
    let mut record = Vec::new();
    let mut events = 0;
    for _ in 0..records {
        synth.next_record(&mut record);
        spans.push((arena.len(), record.len()));
        arena.extend_from_slice(&record);
        events += gup_trace::recording::events_in(&record);
    }
    (arena, spans, events)
}

fn writer(o: &Options, compression: Compression) -> serde_json::Value {
    let (arena, spans, pool_events) = record_pool(200_000);
    let path = o.dir.join("gup-trace-bench-writer.gtr");
    let file = File::create(&path).expect("create the writer's file");
    let mut w = RecordingWriter::new(file, &synthetic::metadata(), compression).unwrap();
    for (id, frames) in synthetic::stacks() {
        w.stack(id, &Ok(frames.into())).unwrap();
    }
    let rounds = (o.events / pool_events).max(1);
    let clock = Clock::start();
    for _ in 0..rounds {
        for &(at, len) in &spans {
            let record = &arena[at..at + len];
            // What `record` does per record besides writing: is its stack known?
            if let Some(id) = gup_trace::recording::stack_id_of(record) {
                assert!(w.has_stack(id));
            }
            w.record(record).unwrap();
        }
    }
    let (file, stats) = w.finish(&Default::default()).unwrap();
    let written = clock.spent();
    file.sync_all().unwrap();
    let synced = clock.spent();
    drop(file);
    let _ = std::fs::remove_file(&path);
    json!({
        "compression": format!("{compression:?}").to_lowercase(),
        "events": stats.events,
        "records": stats.records,
        "raw_bytes": stats.raw_bytes,
        "file_bytes": stats.file_bytes,
        "ratio": stats.raw_bytes as f64 / (stats.file_bytes - stats.header_bytes) as f64,
        "written": written.rate(stats.events),
        "synced": synced.rate(stats.events),
        "file_mb_per_wall_s_synced": stats.file_bytes as f64 / 1e6 / synced.wall.as_secs_f64(),
    })
}

/// The soak (see the top): each sample with the heap the program held then.
fn soak(o: &Options) -> serde_json::Value {
    let opts = gup_trace::soak::SoakOptions {
        events: o.soak_events,
        ..Default::default()
    };
    let mut rows = Vec::new();
    let samples = gup_trace::soak::run(&opts, |s| {
        let heap = LIVE.load(Ordering::Relaxed);
        eprintln!(
            "bench host: soak {:>11} events, {:>6.1} h: {} records, heap {:.1} MB, RSS {:.1} MB, \
             {:.0} ns/event, scrape {:.2} ms",
            s.events,
            s.machine_s / 3600.0,
            s.records,
            heap as f64 / 1e6,
            s.rss_bytes as f64 / 1e6,
            s.ns_per_event,
            s.scrape_ms
        );
        let mut row = serde_json::to_value(s).expect("a sample is JSON");
        row["heap_bytes"] = json!(heap);
        rows.push(row);
    })
    .expect("the soak runs");
    let end = samples.last().expect("at least one sample");
    json!({
        "events": end.events,
        "machine_hours": end.machine_s / 3600.0,
        "retention_s": opts.retention_ns.map(|r| r as f64 / 1e9),
        "scrape_every_s": opts.scrape_every_ns as f64 / 1e9,
        "pid_max": opts.mix.pid_max,
        "samples": rows,
    })
}

fn main() {
    let o = options();
    let run = |section: &str| o.only.as_deref().is_none_or(|only| only == section);
    let mut result = json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "load_average": std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string(),
    });
    if run("replay") {
        eprintln!(
            "bench host: writing a synthetic recording of {} events",
            o.events
        );
        let (path, records, events) = synthetic_file(&o);
        let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        eprintln!("bench host: replaying it ({records} records, {file_bytes} bytes)");
        result["synthetic"] =
            json!({"events": events, "records": records, "file_bytes": file_bytes});
        result["replay"] = replay(&path, events);
        if !o.keep {
            let _ = std::fs::remove_file(&path);
        }
    }
    if run("memory") {
        eprintln!("bench host: {} folios held", o.folios);
        result["memory"] = memory_per_folio(o.folios);
    }
    if run("soak") {
        eprintln!("bench host: soak of {} events", o.soak_events);
        result["soak"] = soak(&o);
    }
    if run("writer") {
        eprintln!("bench host: the recording writer, LZ4 and plain");
        result["writer"] = json!([writer(&o, Compression::Lz4), writer(&o, Compression::None)]);
    }
    println!("{result}");
}
