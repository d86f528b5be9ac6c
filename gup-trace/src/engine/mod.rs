//! The pin-state engine: events in, state and findings out. Pure: no I/O and no clock reads;
//! every time comes from the events or from the caller.
//!
//! - [`ledger`]: totals over a window in the kernel's units, and the GUP_PIN_COUNTING_BIAS
//!   check of every folio transition (what `selftest` compares with /proc/vmstat).
//! - [`pins`]: who holds which pins, per folio, process and call site.
//! - [`findings`]: leaks and anomalies, with their evidence.
//! - [`blocking`]: what pins block: failed isolation and migration with the holders in the
//!   range, and the migrations inside FOLL_LONGTERM pin calls.
//! - [`reorder`]: puts events from different CPUs back in time order first.

pub mod blocking;
pub mod findings;
pub mod ledger;
pub mod pins;
pub mod reorder;

pub use findings::{Finding, FindingRules};
pub use ledger::{BiasAnomaly, FolioTotals, PinLedger, PinTotals, ProcessPins};
pub use pins::{PinState, Pruned, Retired, StateSize};

use crate::events::TraceEvent;

/// The engine's hash maps: keyed by tids, folio addresses and small ids, looked up several
/// times per event. std's SipHash took a tenth of the engine's time; foldhash is several times
/// faster on integer keys (and still seeded per process).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How long an event may arrive behind a newer one from another CPU. Ring-buffer records
/// commit microseconds apart; 20 ms of event time is far beyond that and still invisible to a
/// person watching.
pub const REORDER_HOLD_NS: u64 = 20_000_000;

/// The engine as the commands use it: events in any near order in, state and findings out.
pub struct PinEngine {
    reorder: reorder::ReorderBuffer,
    pub ledger: PinLedger,
    pub state: PinState,
    pub blocking: blocking::BlockingState,
    pub rules: FindingRules,
    /// Time of the newest event applied: "now" for a recording.
    pub newest_ns: u64,
    /// How long what ended is remembered (None: for ever), and when to prune next.
    retention_ns: Option<u64>,
    next_prune_ns: u64,
}

impl PinEngine {
    /// `start_ns`: when tracing began (CLOCK_MONOTONIC); `foll_longterm`: the running
    /// kernel's FOLL_LONGTERM bit.
    pub fn new(start_ns: u64, foll_longterm: u32, rules: FindingRules) -> PinEngine {
        PinEngine {
            reorder: reorder::ReorderBuffer::new(REORDER_HOLD_NS),
            ledger: PinLedger::new(start_ns),
            state: PinState::new(foll_longterm, rules.long_pin_ns),
            blocking: blocking::BlockingState::default(),
            rules,
            newest_ns: start_ns,
            retention_ns: None,
            next_prune_ns: u64::MAX,
        }
    }

    /// Forgets what ended (exited processes without pins, idle call sites, ...; see
    /// [`PinState::prune`]) `retention_ns` after it ended, as events go by (None: never, the
    /// default: a report keeps everything). For a tracer that runs for weeks.
    pub fn set_retention(&mut self, retention_ns: Option<u64>) {
        self.retention_ns = retention_ns;
        self.next_prune_ns = match retention_ns {
            Some(r) => self.newest_ns.saturating_add(prune_every(r)),
            None => u64::MAX,
        };
    }

    pub fn push(&mut self, event: TraceEvent) {
        let (reorder, apply) = self.parts();
        reorder.push(event, apply);
        if self.newest_ns >= self.next_prune_ns {
            self.prune_now();
        }
    }

    /// Prunes at the newest event's time with the retention set, and sets the next time.
    fn prune_now(&mut self) {
        let Some(retention) = self.retention_ns else {
            return;
        };
        self.prune(self.newest_ns, retention);
        self.next_prune_ns = self.newest_ns.saturating_add(prune_every(retention));
    }

    /// Forgets what ended more than `retention_ns` before `now_ns`: in the pin state (see
    /// [`PinState::prune`]), the FOLL_GET references taken before (the blocking view's), and
    /// in the totals the per-thread releases of threads quiet since and the per-process totals
    /// of pids the pin state no longer knows.
    pub fn prune(&mut self, now_ns: u64, retention_ns: u64) {
        self.state.prune(now_ns, retention_ns);
        let cutoff = now_ns.saturating_sub(retention_ns);
        self.state.pruned.get_refs += self.blocking.forget_gets_before(cutoff) as u64;
        let known: std::collections::HashSet<u32, foldhash::fast::RandomState> =
            self.state.processes.iter().map(|p| p.tgid).collect();
        self.ledger.prune(cutoff, |tgid| known.contains(&tgid));
    }

    /// Applies everything held back for reordering: the end of the stream, or a moment to
    /// take stock (a report, a screen refresh).
    pub fn flush(&mut self) {
        let (reorder, apply) = self.parts();
        reorder.flush(apply);
        if self.newest_ns >= self.next_prune_ns {
            self.prune_now();
        }
    }

    /// The reorder buffer, and what applies an event it lets go to the ledger and the state.
    fn parts(&mut self) -> (&mut reorder::ReorderBuffer, impl FnMut(TraceEvent) + '_) {
        let Self {
            reorder,
            ledger,
            state,
            blocking,
            newest_ns,
            ..
        } = self;
        (reorder, move |e: TraceEvent| {
            apply(ledger, state, blocking, newest_ns, &e)
        })
    }

    /// How much the engine holds now: the pin state's records and the FOLL_GET references.
    pub fn size(&self) -> StateSize {
        StateSize {
            get_refs: self.blocking.remembered_gets(),
            ..self.state.size()
        }
    }

    /// Events that arrived after newer ones had already been applied.
    pub fn late_events(&self) -> u64 {
        self.reorder.late
    }

    /// Everything wrong at `now_ns`. `vmstat` is the kernel's (acquired, released) over the
    /// same run, when known; `folio_level` says whether the per-folio hooks were attached
    /// (then the per-folio totals are the ones vmstat must equal).
    pub fn findings(
        &self,
        now_ns: u64,
        vmstat: Option<(u64, u64)>,
        folio_level: bool,
    ) -> Vec<Finding> {
        let mut all = findings::held_pin_findings(&self.state, &self.rules, now_ns);
        all.extend(
            self.blocking
                .blocked
                .iter()
                .cloned()
                .map(Finding::BlockedMigration),
        );
        all.extend(
            self.state
                .unbalanced
                .iter()
                .cloned()
                .map(Finding::UnbalancedRelease),
        );
        all.extend(
            self.ledger
                .folios
                .anomaly_examples
                .iter()
                .cloned()
                .map(Finding::BiasAnomaly),
        );
        if let Some((acquired, released)) = vmstat {
            let (pinned, freed) = if folio_level {
                (self.ledger.folios.pinned, self.ledger.folios.released)
            } else {
                (self.ledger.totals.pinned, self.ledger.totals.released)
            };
            all.extend(findings::counter_drift(pinned, freed, acquired, released));
        }
        all
    }
}

/// Pruning walks the whole state: four times per retention keeps what ended at most 1.25
/// retentions, at a cost spread over all the events in between.
fn prune_every(retention_ns: u64) -> u64 {
    (retention_ns / 4).max(1)
}

fn apply(
    ledger: &mut PinLedger,
    state: &mut PinState,
    blocking: &mut blocking::BlockingState,
    newest_ns: &mut u64,
    e: &TraceEvent,
) {
    *newest_ns = (*newest_ns).max(e.ts_ns);
    ledger.apply(e);
    state.apply(e);
    blocking.apply(e, state);
}

#[cfg(test)]
pub(crate) mod synthetic;
#[cfg(test)]
mod tests;
