//! The soak of the engine behind `serve`: a synthetic stream with what days of uptime bring
//! ([`Synthetic::soak`]: churning processes, pid reuse, long-held and orphaned pins, call sites
//! coming and going) decoded and pushed into a [`PinEngine`] with serve's retention, each event
//! counted by serve's [`Scraper`], which renders the metrics as a scrape does every
//! `scrape_every_ns` of machine time. Sampled at intervals: the engine's state sizes, the
//! process's memory, and the CPU time per event. Used by the host benchmark (`cargo xtask
//! bench`, its soak rows) and, short, by a test that fails if the state grows with churn.

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    commands::serve::{Readings, Scraper},
    engine::{FindingRules, PinEngine, Pruned, StateSize},
    events::TraceEvent,
    recording::synthetic::{FOLL_LONGTERM, START_NS, SoakMix, Synthetic},
};

/// A soak run.
#[derive(Clone, Copy, Debug)]
pub struct SoakOptions {
    pub events: u64,
    /// Samples taken, evenly over the events.
    pub samples: u32,
    pub seed: u64,
    pub mix: SoakMix,
    /// The engine's retention (serve: its --forget); None: nothing is pruned.
    pub retention_ns: Option<u64>,
    /// Machine time between two scrapes.
    pub scrape_every_ns: u64,
}

impl Default for SoakOptions {
    /// serve's defaults: --forget 300, a scrape every 15 s (Prometheus's default interval).
    fn default() -> Self {
        SoakOptions {
            events: 100_000_000,
            samples: 20,
            seed: 42,
            mix: SoakMix::default(),
            retention_ns: Some(300_000_000_000),
            scrape_every_ns: 15_000_000_000,
        }
    }
}

/// The soak at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct SoakSample {
    pub events: u64,
    /// Machine time simulated so far.
    pub machine_s: f64,
    pub size: StateSize,
    /// [`StateSize::records`].
    pub records: usize,
    pub pruned: Pruned,
    pub pinned_now: u64,
    /// Resident memory now and at its peak (/proc/self/status).
    pub rss_bytes: u64,
    pub rss_peak_bytes: u64,
    /// CPU time per event since the previous sample: decoding, serve's per-event metrics and
    /// the engine (generating the stream and the scrapes not counted).
    pub ns_per_event: f64,
    /// Scrapes since the previous sample, their mean CPU time, and the last one's size.
    pub scrapes: u64,
    pub scrape_ms: f64,
    pub scrape_bytes: usize,
}

/// Records generated at a time, between two readings of the CPU clock.
const BATCH_RECORDS: usize = 4096;

/// Runs the soak; `sampled` sees each sample as it is taken.
pub fn run(o: &SoakOptions, mut sampled: impl FnMut(&SoakSample)) -> Result<Vec<SoakSample>> {
    let mut synth = Synthetic::soak(o.seed, 32, o.mix);
    let mut engine = PinEngine::new(START_NS, FOLL_LONGTERM, FindingRules::default());
    engine.set_retention(o.retention_ns);
    let forget = o.retention_ns.unwrap_or(300_000_000_000);
    let mut scraper = Scraper::new(&[], 20, forget, 4096, true, None);
    let mut lookup = |id: u32| -> crate::symbols::CallStack { Err(format!("no stack {id}")) };

    let every = (o.events / u64::from(o.samples.max(1))).max(1);
    let (mut events, mut next_sample) = (0u64, every);
    let mut next_scrape = START_NS + o.scrape_every_ns;
    let (mut arena, mut spans) = (Vec::new(), Vec::with_capacity(BATCH_RECORDS));
    let (mut record, mut decoded) = (Vec::new(), Vec::new());
    let mut interval = Interval::default();
    let mut last_scrape_bytes = 0;
    let mut samples = Vec::new();
    while events < o.events {
        arena.clear();
        spans.clear();
        for _ in 0..BATCH_RECORDS {
            synth.next_record(&mut record);
            spans.push((arena.len(), record.len()));
            arena.extend_from_slice(&record);
        }
        let start = thread_cpu_ns();
        for &(at, len) in &spans {
            TraceEvent::decode_record(&arena[at..at + len], &mut decoded)
                .context("a synthetic record does not decode")?;
            for e in decoded.drain(..) {
                scraper.event(&e);
                engine.push(e);
                events += 1;
            }
        }
        interval.event_ns += thread_cpu_ns() - start;
        while synth.now_ns() >= next_scrape {
            let start = thread_cpu_ns();
            let text = scraper.render(
                &mut engine,
                next_scrape,
                Readings::default(),
                &mut lookup,
                true,
            )?;
            interval.scrape_ns += thread_cpu_ns() - start;
            interval.scrapes += 1;
            last_scrape_bytes = text.len();
            next_scrape += o.scrape_every_ns;
        }
        if events >= next_sample || events >= o.events {
            let size = engine.size();
            let (rss_bytes, rss_peak_bytes) = rss();
            let since = samples.last().map_or(0, |s: &SoakSample| s.events);
            let s = SoakSample {
                events,
                machine_s: synth.now_ns().saturating_sub(START_NS) as f64 / 1e9,
                size,
                records: size.records(),
                pruned: engine.state.pruned,
                pinned_now: engine.state.pinned_now,
                rss_bytes,
                rss_peak_bytes,
                ns_per_event: interval.event_ns as f64 / (events - since).max(1) as f64,
                scrapes: interval.scrapes,
                scrape_ms: interval.scrape_ns as f64 / 1e6 / interval.scrapes.max(1) as f64,
                scrape_bytes: last_scrape_bytes,
            };
            sampled(&s);
            samples.push(s);
            interval = Interval::default();
            next_sample += every;
        }
    }
    Ok(samples)
}

/// CPU time spent since the last sample.
#[derive(Default)]
struct Interval {
    event_ns: u64,
    scrapes: u64,
    scrape_ns: u64,
}

/// CPU time of this thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Resident memory now and at its peak (VmRSS, VmHWM), in bytes; 0 when unreadable.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short soak: 13 minutes of machine time (1,300 processes exit), a 30 s retention. Past
    /// its first fifth (the orphans' 2-minute teardown and the retention behind), the state
    /// must stay flat while churn goes on; without pruning the same stream grows it several
    /// times over.
    #[test]
    fn state_stays_flat_under_churn_with_pruning_and_grows_without() {
        let short = |retention_ns| SoakOptions {
            events: 1_000_000,
            samples: 10,
            retention_ns,
            scrape_every_ns: 15_000_000_000,
            ..SoakOptions::default()
        };
        // Records besides the pinned folios (those follow the stream's pins, which come and
        // go): processes, sites, owners, threads, long releases, FOLL_GET references.
        let records = |samples: &[SoakSample]| -> Vec<usize> {
            samples.iter().map(|s| s.records - s.size.folios).collect()
        };
        let pruned = run(&short(Some(30_000_000_000)), |_| {}).unwrap();
        let kept = records(&pruned);
        let end = pruned.last().unwrap();
        assert!(end.machine_s > 750.0, "{} s of machine time", end.machine_s);
        assert!(end.pruned.processes > 1_000, "{:?}", end.pruned);
        assert!(end.pruned.sites >= 8, "{:?}", end.pruned);
        let settled = kept[2];
        let most = *kept[2..].iter().max().unwrap();
        assert!(
            most <= settled + settled / 3,
            "the state grew with churn: records per sample {kept:?}"
        );
        let unpruned = run(&short(None), |_| {}).unwrap();
        let all = records(&unpruned);
        assert!(
            *all.last().unwrap() > 3 * all[2],
            "without pruning the state should grow: {all:?}"
        );
        assert_eq!(unpruned.last().unwrap().pruned, Pruned::default());
        // The same stream: what is pinned now does not depend on pruning.
        assert_eq!(end.pinned_now, unpruned.last().unwrap().pinned_now);
    }
}
