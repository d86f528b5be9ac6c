//! `gup-trace serve`: a Prometheus/OpenMetrics exporter on the one live pipeline.
//!
//! One task owns the pipeline and its engine and takes events in continuously; each scrape asks
//! it (over a channel) for the metrics *now*: it flushes the engine, computes the analysis
//! layer's view once, sets the metrics from it and encodes them. The HTTP side only forwards
//! requests, so a slow scraper never holds up the intake. Owner series are rebuilt at every
//! scrape: the top N comms by the processes holding the most pins, the rest folded into
//! `other`, never pids; a comm whose processes all exited without pins leaves after `--forget`.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    process::ExitCode,
    sync::atomic::AtomicU64,
    time::Duration,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use clap::Args;
use gup_trace_common::HookClass;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text, text},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use tokio::sync::{mpsc, oneshot};

use super::{FindingArgs, SessionArgs, require_root, seconds};
use crate::{
    analysis::{Analysis, ProcessRow, SiteStacks},
    engine::PinEngine,
    events::TraceEvent,
    kernel::{HookReport, HookStatus},
    pipeline::{Events, LivePipeline, VmstatUse, stop_requested},
    session::{Session, monotonic_ns},
    symbols::CallStack,
    vmstat::PinCounters,
};

/// 9808: an exporter port not taken in Prometheus's list of default port allocations.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";

#[derive(Args, Debug)]
#[command(after_help = "\
Serves GET /metrics: the Prometheus text format (0.0.4), or OpenMetrics 1.0 when the scraper \
asks for application/openmetrics-text in its Accept header (Prometheus does). Logs go to \
stderr; SIGTERM or Ctrl-C stops it (exit 0). See deploy/prometheus/ for a scrape config and \
alerting rules. Events per second: rate(gup_trace_events_total[1m]) (no gauge: the scrape \
interval is the scraper's). Pinned memory is labelled by owner comm and cgroup v2 path, \
the top N pairs kept.")]
pub struct ServeArgs {
    /// Address to serve /metrics on (9808: an unassigned exporter port).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Owner (comm) series kept: the owners of the processes holding the most pins; the rest
    /// are summed into owner="other".
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
    /// Seconds an exited process's comm keeps its series once it holds no pins; the engine
    /// forgets such processes, and call sites idle as long, soon after (memory stays flat).
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub forget: f64,
    #[command(flatten)]
    pub findings: FindingArgs,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// What the pins of one owner series are labelled with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OwnerLabels {
    owner: String,
    /// The owner's cgroup v2 path (/system.slice/foo.service, a container's), "unknown" when
    /// not known, "other" beside owner="other".
    cgroup: String,
    longterm: &'static str,
}

/// Where cgroup v2 is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How often the cgroup tree may be read again for an id not found in it.
const CGROUP_REREAD_NS: u64 = 10_000_000_000;

/// Cgroup v2 paths by id (the inode number of the cgroup's directory), read from the cgroup
/// tree when a scrape meets an id it does not know, at most every 10 s. Each reading replaces
/// the last, so removed cgroups go.
struct CgroupPaths {
    root: Option<std::path::PathBuf>,
    paths: HashMap<u64, String>,
    read_ns: Option<u64>,
}

impl CgroupPaths {
    /// Paths under `root` (None: every cgroup is "unknown").
    fn new(root: Option<std::path::PathBuf>) -> CgroupPaths {
        CgroupPaths {
            root,
            paths: HashMap::new(),
            read_ns: None,
        }
    }

    /// The path of cgroup `id` at `now_ns`, "unknown" when it is not (or no longer) there.
    fn path(&mut self, id: u64, now_ns: u64) -> String {
        if id != 0
            && !self.paths.contains_key(&id)
            && self
                .read_ns
                .is_none_or(|t| now_ns >= t.saturating_add(CGROUP_REREAD_NS))
            && let Some(root) = &self.root
        {
            self.paths = cgroup_tree(root);
            self.read_ns = Some(now_ns);
        }
        self.paths
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Every cgroup directory under `root` by inode number, as a path from the root ("/" for it).
fn cgroup_tree(root: &std::path::Path) -> HashMap<u64, String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut paths = HashMap::new();
    let mut dirs = vec![(root.to_path_buf(), String::from("/"))];
    while let Some((dir, name)) = dirs.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        paths.insert(meta.ino(), name.clone());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let child = format!(
                    "{}/{}",
                    name.trim_end_matches('/'),
                    entry.file_name().to_string_lossy()
                );
                dirs.push((entry.path(), child));
            }
        }
    }
    paths
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntryLabels {
    entry: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: &'static str,
    class: String,
    /// attached, not_in_kernel or refused.
    state: &'static str,
    /// How it attached (fentry, kprobe, tracepoint) or why it was refused.
    reason: String,
}

/// Registers each metric field of `m` with its name, unit and help.
macro_rules! register {
    ($registry:ident, $m:ident, [$($field:ident: $name:literal, $unit:expr, $help:literal;)*]) => {
        $(match $unit {
            Some(unit) => $registry.register_with_unit($name, $help, unit, $m.$field.clone()),
            None => $registry.register($name, $help, $m.$field.clone()),
        })*
    };
}

/// Every metric `serve` exports.
struct Metrics {
    registry: Registry,
    pinned_pages: Family<OwnerLabels, Gauge>,
    pinned_bytes: Family<OwnerLabels, Gauge>,
    oldest_pin_age: Gauge<f64, AtomicU64>,
    pins: Family<EntryLabels, Counter>,
    releases: Family<EntryLabels, Counter>,
    get_pages: Counter,
    gup_pages: Family<PathLabels, Counter>,
    gup_latency: Family<EntryLabels, Histogram>,
    lock_wait: Histogram,
    lock_hold: Histogram,
    findings: Family<KindLabels, Counter>,
    vmstat_acquired: Counter,
    vmstat_released: Counter,
    lost_events: Counter,
    events: Counter,
    hooks: Family<HookLabels, Gauge>,
    cpu: Counter<f64, AtomicU64>,
    rss: Gauge,
    pruned: Family<WhatLabels, Counter>,
    state: Family<WhatLabels, Gauge>,
}

impl Metrics {
    fn new(hooks: &[HookReport]) -> Metrics {
        let mut registry = Registry::with_prefix("gup_trace");
        let m = Metrics {
            pinned_pages: Family::default(),
            pinned_bytes: Family::default(),
            oldest_pin_age: Gauge::default(),
            pins: Family::default(),
            releases: Family::default(),
            get_pages: Counter::default(),
            gup_pages: Family::default(),
            gup_latency: Family::new_with_constructor(seconds_histogram),
            lock_wait: seconds_histogram(),
            lock_hold: seconds_histogram(),
            findings: Family::default(),
            vmstat_acquired: Counter::default(),
            vmstat_released: Counter::default(),
            lost_events: Counter::default(),
            events: Counter::default(),
            hooks: Family::default(),
            cpu: Counter::default(),
            rss: Gauge::default(),
            pruned: Family::default(),
            state: Family::default(),
            registry: Registry::default(),
        };
        // Name (after the gup_trace_ prefix), unit, help.
        register!(registry, m, [
            pinned_pages: "pinned_pages", None, "Pages pinned now (FOLL_PIN) by owner comm, FOLL_LONGTERM or not; top N owners, the rest in owner=\"other\"";
            pinned_bytes: "pinned", Some(Unit::Bytes), "Memory pinned now by owner comm, FOLL_LONGTERM or not";
            oldest_pin_age: "oldest_pin_age", Some(Unit::Seconds), "Age of the oldest outstanding pin (0: none)";
            pins: "pins_pages", None, "Pages pinned, by the entry point the pins were taken through";
            releases: "releases_pages", None, "Pinned pages released, by the entry point the pins were taken through";
            get_pages: "foll_get_pages", None, "Pages referenced by get_user_pages (FOLL_GET)";
            gup_pages: "gup_pages", None, "Pages GUP calls got, by path (fast: the lockless walk; slow: under mmap_lock)";
            gup_latency: "gup_call_duration", Some(Unit::Seconds), "GUP call latency, by entry point";
            lock_wait: "gup_mmap_lock_wait", Some(Unit::Seconds), "Time a GUP call waited for mmap_lock (calls that took it)";
            lock_hold: "gup_mmap_lock_hold", Some(Unit::Seconds), "Time a GUP call held mmap_lock (calls that took it)";
            findings: "findings", None, "Findings that appeared, by kind (orphaned pins, unbalanced release, long-held short-term pin, bias anomaly, blocked migration)";
            vmstat_acquired: "kernel_foll_pin_acquired", None, "The kernel's nr_foll_pin_acquired (/proc/vmstat)";
            vmstat_released: "kernel_foll_pin_released", None, "The kernel's nr_foll_pin_released (/proc/vmstat)";
            lost_events: "lost_events", None, "Events the kernel side could not hand over (ring buffer full)";
            events: "events", None, "Events taken in";
            hooks: "hook_info", None, "Each hook: whether it attached (how) or was refused (why)";
            cpu: "process_cpu", Some(Unit::Seconds), "CPU time gup-trace itself used (user and system)";
            rss: "process_resident_memory", Some(Unit::Bytes), "gup-trace's own resident memory";
            pruned: "engine_pruned", None, "What the engine forgot --forget after it ended: exited processes without pins, idle call sites, their owners, ended long-held-pin findings, grabs whose call never came";
            state: "engine_records", None, "Records the engine keeps now, by kind (flat over weeks: see engine_pruned)";
        ]);
        for h in hooks {
            let (state, reason) = match &h.status {
                HookStatus::Attached { kind } => ("attached", kind.to_string()),
                HookStatus::NotInKernel => ("not_in_kernel", String::new()),
                HookStatus::Failed { reasons } => ("refused", reasons.join("; ")),
            };
            m.hooks
                .get_or_create(&HookLabels {
                    hook: h.hook.name(),
                    class: format!("{:?}", h.hook.class()).to_lowercase(),
                    state,
                    reason,
                })
                .set(1);
        }
        Metrics { registry, ..m }
    }

    /// Takes one event in: the counters that need every event (latency) are kept here.
    fn event(&self, e: &TraceEvent) {
        self.events.inc();
        if crate::output::is_gup_call(e) {
            self.gup_latency
                .get_or_create(&EntryLabels {
                    entry: e.hook.name(),
                })
                .observe(e.duration_ns as f64 / 1e9);
            if e.lock.acquisitions > 0 {
                self.lock_wait.observe(e.lock.wait_ns as f64 / 1e9);
                self.lock_hold.observe(e.lock.hold_ns as f64 / 1e9);
            }
        }
    }
}

/// Durations from 1 µs to about 4 s, buckets a factor 4 apart.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-6, 4.0, 12))
}

/// Sets a counter to a total the engine keeps (never lower: a counter only goes up).
fn set_total<N, A>(c: &Counter<N, A>, total: N)
where
    N: PartialOrd + std::ops::Sub<Output = N> + Copy,
    A: prometheus_client::metrics::counter::Atomic<N>,
{
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// What a scrape renders from the engine, apart from the kernel: the metrics and what they
/// remember between scrapes. The soak benchmark drives it with a synthetic engine.
pub struct Scraper {
    metrics: Metrics,
    site_stacks: SiteStacks,
    top: usize,
    forget_ns: u64,
    page_size: u64,
    folio_level: bool,
    /// Findings present at the previous scrape: a finding counts once while it lasts.
    seen_findings: HashSet<String>,
    cgroups: CgroupPaths,
}

/// What a scrape reads besides the engine: from the kernel and /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Readings {
    pub lost_events: u64,
    pub vmstat: Option<PinCounters>,
    /// gup-trace's own CPU seconds and resident bytes.
    pub usage: Option<(f64, u64)>,
}

impl Scraper {
    /// Metrics for `hooks`; owners beyond the `top` N fold into `other`, an exited process's
    /// comm leaves `forget_ns` after its exit once it holds no pins; owners' cgroups are
    /// named from the cgroup v2 tree at `cgroup_root` (None: "unknown").
    pub fn new(
        hooks: &[HookReport],
        top: usize,
        forget_ns: u64,
        page_size: u64,
        folio_level: bool,
        cgroup_root: Option<std::path::PathBuf>,
    ) -> Scraper {
        Scraper {
            metrics: Metrics::new(hooks),
            site_stacks: SiteStacks::new(1),
            top,
            forget_ns,
            page_size,
            folio_level,
            seen_findings: HashSet::new(),
            cgroups: CgroupPaths::new(cgroup_root),
        }
    }

    /// Takes one event in (what needs every event: latency histograms, the event count).
    pub fn event(&self, e: &TraceEvent) {
        self.metrics.event(e);
    }

    /// The metrics at `now_ns`, encoded as OpenMetrics or the Prometheus text format.
    /// `lookup` reads the kernel stacks of call sites not named yet.
    pub fn render(
        &mut self,
        engine: &mut PinEngine,
        now_ns: u64,
        readings: Readings,
        lookup: &mut dyn FnMut(u32) -> CallStack,
        openmetrics: bool,
    ) -> Result<String> {
        engine.flush();
        let engine = &*engine;
        let analysis = Analysis::new(engine, now_ns, None, &mut self.site_stacks, lookup);
        self.owners(&analysis, now_ns);
        let m = &self.metrics;

        set_total(&m.lost_events, readings.lost_events);
        if let Some(v) = readings.vmstat {
            set_total(&m.vmstat_acquired, v.acquired);
            set_total(&m.vmstat_released, v.released);
        }
        let oldest = analysis.processes.iter().filter_map(|p| p.oldest_ns).min();
        m.oldest_pin_age
            .set(oldest.map_or(0.0, |t| now_ns.saturating_sub(t) as f64 / 1e9));

        for &(entry, taken, released) in &analysis.by_entry {
            let labels = EntryLabels { entry };
            set_total(&m.pins.get_or_create(&labels), taken);
            set_total(&m.releases.get_or_create(&labels), released);
        }
        set_total(&m.get_pages, engine.ledger.totals.referenced);
        set_total(
            &m.gup_pages.get_or_create(&PathLabels { path: "fast" }),
            analysis.fast_refs,
        );
        set_total(
            &m.gup_pages.get_or_create(&PathLabels { path: "slow" }),
            analysis.slow_refs,
        );
        for (what, n) in engine.state.pruned.by_kind() {
            set_total(&m.pruned.get_or_create(&WhatLabels { what }), n);
        }
        for (what, n) in engine.size().by_kind() {
            m.state.get_or_create(&WhatLabels { what }).set(n as i64);
        }

        let findings = engine.findings(now_ns, None, self.folio_level);
        let mut present = HashSet::with_capacity(findings.len());
        for f in &findings {
            let key = crate::analysis::FindingSubject::of(f, &engine.state).key;
            if !self.seen_findings.contains(&key) {
                m.findings
                    .get_or_create(&KindLabels { kind: f.kind() })
                    .inc();
            }
            present.insert(key);
        }
        self.seen_findings = present;

        if let Some((cpu, rss)) = readings.usage {
            set_total(&m.cpu, cpu);
            m.rss.set(rss as i64);
        }

        let mut out = String::new();
        if openmetrics {
            text::encode(&mut out, &m.registry)
        } else {
            prometheus_text::encode(&mut out, &m.registry)
        }
        .context("cannot encode the metrics")?;
        Ok(out)
    }

    /// Sets the pinned pages and bytes by owner (see [`owner_pages`]).
    fn owners(&mut self, analysis: &Analysis, now_ns: u64) {
        let cgroups = &mut self.cgroups;
        let pages = owner_pages(
            &analysis.processes,
            now_ns,
            self.top,
            self.forget_ns,
            &mut |id| cgroups.path(id, now_ns),
        );
        let m = &self.metrics;
        m.pinned_pages.clear();
        m.pinned_bytes.clear();
        for (labels, n) in pages {
            m.pinned_bytes
                .get_or_create(&labels)
                .set((n * self.page_size) as i64);
            m.pinned_pages.get_or_create(&labels).set(n as i64);
        }
    }
}

/// Pinned pages by owner: each (comm, cgroup) of the `top` processes holding the most pins
/// (the analysis layer's order), the others summed into `other`. An owner stays while one of
/// its processes runs, holds pins, or exited less than `forget_ns` ago. `cgroup` names a
/// cgroup id.
fn owner_pages(
    processes: &[ProcessRow],
    now_ns: u64,
    top: usize,
    forget_ns: u64,
    cgroup: &mut dyn FnMut(u64) -> String,
) -> HashMap<OwnerLabels, u64> {
    let mut rows: Vec<&ProcessRow> = processes
        .iter()
        .filter(|p| {
            p.active()
                && (p.outstanding > 0
                    || p.exited_ns
                        .is_none_or(|t| now_ns.saturating_sub(t) < forget_ns))
        })
        .collect();
    rows.sort_by(|a, b| ProcessRow::most_held_first(a, b));
    let mut named: Vec<(&str, u64)> = Vec::new();
    let mut paths: HashMap<u64, String> = HashMap::new();
    let mut pages: HashMap<OwnerLabels, u64> = HashMap::new();
    for p in rows {
        let key = (p.comm.as_str(), p.cgroup_id);
        if !named.contains(&key) && named.len() < top {
            named.push(key);
        }
        let (owner, cgroup) = if named.contains(&key) {
            let path = paths
                .entry(p.cgroup_id)
                .or_insert_with(|| cgroup(p.cgroup_id));
            (p.comm.clone(), path.clone())
        } else {
            ("other".to_string(), "other".to_string())
        };
        for longterm in [true, false] {
            let held: u64 = p
                .holdings
                .iter()
                .filter(|h| h.1 == longterm)
                .map(|h| h.2)
                .sum();
            let labels = OwnerLabels {
                owner: owner.clone(),
                cgroup: cgroup.clone(),
                longterm: if longterm { "true" } else { "false" },
            };
            *pages.entry(labels).or_default() += held;
        }
    }
    pages
}

/// gup-trace's own CPU seconds and resident bytes, from /proc/self.
fn own_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the comm (which may hold spaces): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        ticks as f64 / hz,
        rss_pages * crate::kernel::page_size() as u64,
    ))
}

/// The live pipeline and the scraper that renders its engine.
struct Exporter {
    pipeline: LivePipeline<Events<PinEngine>>,
    scraper: Scraper,
}

impl Exporter {
    /// The metrics now, encoded as OpenMetrics or the Prometheus text format.
    fn scrape(&mut self, openmetrics: bool) -> Result<String> {
        let readings = Readings {
            lost_events: self.pipeline.counters_since_start()?.lost_events,
            vmstat: PinCounters::read().ok(),
            usage: own_usage(),
        };
        let (events, stacks) = self.pipeline.sink_and_stacks();
        let mut lookup = |id: u32| -> CallStack { stacks.frames(id) };
        self.scraper.render(
            &mut events.engine,
            monotonic_ns(),
            readings,
            &mut lookup,
            openmetrics,
        )
    }
}

/// A scrape: whether OpenMetrics was asked for, and where the encoded text goes.
type ScrapeRequest = (bool, oneshot::Sender<Result<String>>);

/// Whether an Accept header asks for OpenMetrics.
fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

async fn handle(
    req: Request<Incoming>,
    tx: mpsc::Sender<ScrapeRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Ok(r)
    };
    match req.uri().path() {
        "/metrics" => {}
        "/" => {
            return reply(
                StatusCode::OK,
                "text/plain",
                "gup-trace serve: metrics at /metrics\n".into(),
            );
        }
        _ => return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let openmetrics = wants_openmetrics(accept);
    let (otx, orx) = oneshot::channel();
    let text = match tx.send((openmetrics, otx)).await {
        Ok(()) => orx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the exporter stopped"))),
        Err(_) => Err(anyhow::anyhow!("the exporter stopped")),
    };
    match text {
        Ok(body) => reply(
            StatusCode::OK,
            if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                prometheus_text::CONTENT_TYPE
            },
            body,
        ),
        Err(e) => {
            log::error!("scrape failed: {e:#}");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e:#}\n"),
            )
        }
    }
}

/// Accepts connections and serves each on its own task.
async fn serve_http(listener: tokio::net::TcpListener, tx: mpsc::Sender<ScrapeRequest>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, tx.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::info!("connection from {peer}: {e}");
            }
        });
    }
}

pub async fn run(args: ServeArgs, verbose: bool) -> Result<ExitCode> {
    require_root("serve")?;
    let rules = args.findings.rules()?;
    let forget_ns = seconds(args.forget, "--forget")?.as_nanos() as u64;
    let mut config = args.session.config()?;
    // Who holds a pin is only known when its release is seen, whoever makes it.
    config.all_releases = true;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: give a free address with --listen",
                args.listen
            )
        })?;
    let mut session = Session::start(&config)?;
    let caps = session.capabilities.clone();
    if verbose {
        eprint!("{}", crate::output::capabilities(&caps, verbose));
    }
    let stacks = session.stack_names();
    let longterm = caps.foll.longterm();
    let mut pipeline = LivePipeline::open(session, stacks, VmstatUse::Skip, |start_ns| {
        let mut engine = PinEngine::new(start_ns, longterm, rules);
        // Weeks of churn: what ended is forgotten as its series are.
        engine.set_retention(Some(forget_ns));
        Events::new(engine)
    })?;
    pipeline.poll_every(Duration::from_millis(100));
    let mut exporter = Exporter {
        pipeline,
        scraper: Scraper::new(
            &caps.hooks,
            args.top,
            forget_ns,
            crate::kernel::page_size() as u64,
            caps.attached(HookClass::Grab) > 0,
            Some(CGROUP_ROOT.into()),
        ),
    };
    let (tx, mut rx) = mpsc::channel::<ScrapeRequest>(8);
    let http = tokio::spawn(serve_http(listener, tx));
    log::warn!(
        "gup-trace serve: metrics on http://{}/metrics ({} hooks attached)",
        args.listen,
        caps.hooks
            .iter()
            .filter(|h| matches!(h.status, HookStatus::Attached { .. }))
            .count()
    );
    let stop = stop_requested();
    tokio::pin!(stop);
    let result = loop {
        let Exporter { pipeline, scraper } = &mut exporter;
        let consume = |e: &TraceEvent, _: &mut _| {
            scraper.event(e);
            Ok(())
        };
        let next = pipeline
            .run_until(
                async {
                    tokio::select! {
                        r = rx.recv() => r,
                        _ = &mut stop => None,
                    }
                },
                consume,
            )
            .await;
        match next {
            Ok(Some((openmetrics, reply))) => {
                let _ = reply.send(exporter.scrape(openmetrics));
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    http.abort();
    result?;
    log::warn!("gup-trace serve: stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(comm: &str, held: &[(bool, u64)], exited_ns: Option<u64>) -> ProcessRow {
        ProcessRow {
            comm: comm.into(),
            taken: held.iter().map(|h| h.1).sum::<u64>() + 1,
            outstanding: held.iter().map(|h| h.1).sum(),
            holdings: held.iter().map(|&(l, n)| (0, l, n)).collect(),
            exited_ns,
            ..ProcessRow::default()
        }
    }

    fn pages(map: &HashMap<OwnerLabels, u64>, owner: &str, longterm: &'static str) -> Option<u64> {
        let cgroup = if owner == "other" { "other" } else { "/" };
        map.get(&OwnerLabels {
            owner: owner.into(),
            cgroup: cgroup.into(),
            longterm,
        })
        .copied()
    }

    fn root(_: u64) -> String {
        "/".into()
    }

    #[test]
    fn owners_beyond_the_top_fold_into_other_and_exited_ones_leave() {
        const S: u64 = 1_000_000_000;
        let rows = vec![
            process("fio", &[(true, 100), (false, 5)], None),
            process("qemu", &[(true, 50)], None),
            process("fio", &[(false, 7)], None),
            process("dd", &[(false, 3)], None),
            process("rdma", &[(true, 2)], None),
            // Exited with pins: orphaned pins still count.
            process("leaker", &[(false, 1)], Some(S)),
            // Exited without pins: kept for a while, then gone.
            process("recent", &[], Some(95 * S)),
            process("gone", &[], Some(10 * S)),
        ];
        let map = owner_pages(&rows, 100 * S, 2, 30 * S, &mut root);
        assert_eq!(pages(&map, "fio", "true"), Some(100));
        assert_eq!(pages(&map, "fio", "false"), Some(12));
        assert_eq!(pages(&map, "qemu", "true"), Some(50));
        assert_eq!(pages(&map, "other", "true"), Some(2));
        assert_eq!(pages(&map, "other", "false"), Some(4));
        assert_eq!(
            pages(&map, "dd", "false"),
            None,
            "beyond the top 2: in other"
        );
        assert_eq!(
            pages(&map, "gone", "false"),
            None,
            "exited 90 s ago, no pins"
        );
        assert_eq!(map.len(), 6, "{map:?}");
        let all = owner_pages(&rows, 100 * S, 10, 30 * S, &mut root);
        assert_eq!(pages(&all, "recent", "false"), Some(0), "exited 5 s ago");
        assert_eq!(pages(&all, "leaker", "false"), Some(1));
        assert_eq!(pages(&all, "gone", "false"), None);
    }

    #[test]
    fn gup_calls_fill_the_latency_and_mmap_lock_histograms() {
        use crate::engine::synthetic;
        use gup_trace_common::{EventKind, Hook};
        let m = Metrics::new(&[]);
        let mut events = synthetic::pin_call(1_000_000, 7, &[0x1000, 0x2000], 0, 1);
        let call = events.last_mut().unwrap();
        call.duration_ns = 3_000; // 3 µs: in the 4 µs bucket
        (call.lock.acquisitions, call.lock.wait_ns, call.lock.hold_ns) = (1, 500, 20_000);
        // A release call and a lockless call: latency only for GUP calls, lock only when taken.
        events.push(synthetic::event(
            EventKind::Call,
            Hook::UnpinUserPages,
            2_000_000,
            7,
        ));
        let mut lockless = synthetic::event(EventKind::Call, Hook::PinUserPagesFast, 3_000_000, 7);
        lockless.duration_ns = 100_000;
        events.push(lockless);
        for e in &events {
            m.event(e);
        }
        let mut out = String::new();
        prometheus_text::encode(&mut out, &m.registry).unwrap();
        for line in [
            "gup_trace_events_total 5",
            "gup_trace_gup_call_duration_seconds_count{entry=\"pin_user_pages_fast\"} 2",
            "gup_trace_gup_call_duration_seconds_bucket{entry=\"pin_user_pages_fast\",le=\"4e-06\"} 1",
            "gup_trace_gup_mmap_lock_wait_seconds_count 1",
            "gup_trace_gup_mmap_lock_hold_seconds_bucket{le=\"1.6e-05\"} 0",
            "gup_trace_gup_mmap_lock_hold_seconds_bucket{le=\"6.4e-05\"} 1",
        ] {
            assert!(out.contains(line), "no {line} in\n{out}");
        }
        assert!(!out.contains("unpin_user_pages"), "{out}");
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}

#[cfg(test)]
mod pruning_tests {
    use gup_trace_common::{EventKind, Hook};

    use super::*;
    use crate::engine::synthetic::{self, LONGTERM, S, exit, pin_call, small, unpin_call};

    /// A scrape of an engine that forgot an exited process and its call site: the counters by
    /// entry point keep what it did, and the pruned counters and state gauges say what went.
    #[test]
    fn a_scrape_keeps_the_totals_of_what_the_engine_forgot() {
        let mut engine = synthetic::engine();
        engine.set_retention(Some(10 * S));
        let mut scraper = Scraper::new(&[], 20, 10 * S, 4096, true, None);
        let mut lookup = |id: u32| -> CallStack { Err(format!("no stack {id}")) };
        let f1 = synthetic::F1;
        let events = [
            pin_call(S, 100, &[f1], 0, 7),
            unpin_call(2 * S, 100, &[(f1, small(1), small(0))]),
            pin_call(3 * S, 200, &[synthetic::F2], LONGTERM, 8),
            vec![exit(4 * S, 100), exit(4 * S, 200)],
        ];
        synthetic::run(&mut engine, events.into_iter().flatten());
        let before = scraper
            .render(&mut engine, 5 * S, Readings::default(), &mut lookup, false)
            .unwrap();
        let tick = |ts| synthetic::event(EventKind::MmapLockDrop, Hook::MmapLockReleased, ts, 300);
        synthetic::run(&mut engine, [tick(30 * S)]);
        let after = scraper
            .render(&mut engine, 31 * S, Readings::default(), &mut lookup, false)
            .unwrap();
        for line in [
            "gup_trace_pins_pages_total{entry=\"pin_user_pages_fast\"} 2",
            "gup_trace_releases_pages_total{entry=\"pin_user_pages_fast\"} 1",
            "gup_trace_gup_pages_total{path=\"fast\"} 2",
        ] {
            assert!(before.contains(line), "no {line} in\n{before}");
            assert!(after.contains(line), "no {line} after pruning in\n{after}");
        }
        for line in [
            "gup_trace_engine_pruned_total{what=\"processes\"} 1",
            "gup_trace_engine_pruned_total{what=\"sites\"} 1",
            "gup_trace_engine_records{what=\"processes\"} 2",
            "gup_trace_engine_records{what=\"folios\"} 1",
            "gup_trace_pinned_pages{owner=\"proc200\",cgroup=\"unknown\",longterm=\"true\"} 1",
        ] {
            assert!(after.contains(line), "no {line} in\n{after}");
        }
        // A counter never goes back, so only what comes next shows a total that lost the
        // forgotten: one more pin must make 3.
        synthetic::run(&mut engine, pin_call(32 * S, 300, &[f1], 0, 9));
        let next = scraper
            .render(&mut engine, 33 * S, Readings::default(), &mut lookup, false)
            .unwrap();
        let line = "gup_trace_pins_pages_total{entry=\"pin_user_pages_fast\"} 3";
        assert!(next.contains(line), "no {line} in\n{next}");
    }
}

#[cfg(test)]
mod cgroup_tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    const S: u64 = 1_000_000_000;

    /// A cgroup tree in a scratch directory: ids are inode numbers there too.
    fn tree(name: &str) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("gup-trace-cg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("system.slice/fio.service")).unwrap();
        std::fs::create_dir_all(root.join("machine.slice/vm1.scope")).unwrap();
        root
    }

    fn ino(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn cgroup_ids_are_named_by_their_path_and_the_tree_is_read_again_for_new_ones() {
        let root = tree("paths");
        let mut cg = CgroupPaths::new(Some(root.clone()));
        let fio = ino(&root.join("system.slice/fio.service"));
        assert_eq!(cg.path(fio, S), "/system.slice/fio.service");
        assert_eq!(cg.path(ino(&root), S), "/");
        assert_eq!(cg.path(0, S), "unknown");
        std::fs::create_dir(root.join("system.slice/new.service")).unwrap();
        let new = ino(&root.join("system.slice/new.service"));
        assert_eq!(cg.path(new, 5 * S), "unknown", "read at most every 10 s");
        assert_eq!(cg.path(new, 12 * S), "/system.slice/new.service");
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(CgroupPaths::new(None).path(fio, S), "unknown");
    }

    #[test]
    fn one_comm_in_two_cgroups_is_two_owners_within_the_top() {
        let root = tree("owners");
        let mut cg = CgroupPaths::new(Some(root.clone()));
        let (svc, vm) = (
            ino(&root.join("system.slice/fio.service")),
            ino(&root.join("machine.slice/vm1.scope")),
        );
        let row = |comm: &str, cgroup_id, pages| ProcessRow {
            comm: comm.into(),
            cgroup_id,
            taken: pages,
            outstanding: pages,
            holdings: vec![(0, true, pages)],
            ..ProcessRow::default()
        };
        let rows = [row("fio", svc, 10), row("fio", vm, 5), row("qemu", vm, 1)];
        let map = owner_pages(&rows, S, 2, S, &mut |id| cg.path(id, S));
        let get = |owner: &str, cgroup: &str| {
            map.get(&OwnerLabels {
                owner: owner.into(),
                cgroup: cgroup.into(),
                longterm: "true",
            })
            .copied()
        };
        assert_eq!(get("fio", "/system.slice/fio.service"), Some(10));
        assert_eq!(get("fio", "/machine.slice/vm1.scope"), Some(5));
        assert_eq!(
            get("other", "other"),
            Some(1),
            "qemu is third: beyond the top 2"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
