//! A measurement window: gup-trace's own totals and the kernel's vmstat counters over the same
//! stretch of time, so the two can be compared.

use anyhow::Result;
use serde::Serialize;

use crate::{
    engine::{FolioTotals, PinLedger, PinTotals, ProcessPins},
    events::TraceEvent,
    session::{KernelCounters, Session, monotonic_ns},
    vmstat::PinCounters,
};

pub struct Window {
    pub ledger: PinLedger,
    vmstat_start: PinCounters,
    counters_start: KernelCounters,
}

/// What a window measured.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub seconds: f64,
    /// What gup-trace saw.
    #[serde(flatten)]
    pub totals: PinTotals,
    /// What gup-trace saw, folio by folio.
    pub folios: FolioTotals,
    /// The kernel's counters over the same window.
    pub vmstat: PinCounters,
    pub kernel: KernelCounters,
    /// Processes by pages pinned, most first.
    pub processes: Vec<(u32, ProcessPins)>,
}

impl Summary {
    pub fn pins_match(&self) -> bool {
        self.totals.pinned == self.vmstat.acquired
    }

    pub fn releases_match(&self) -> bool {
        self.totals.released == self.vmstat.released
    }

    /// Per-folio pins against vmstat (meaningful when grab hooks are attached).
    pub fn folio_pins_match(&self) -> bool {
        self.folios.pinned == self.vmstat.acquired
    }

    pub fn folio_releases_match(&self) -> bool {
        self.folios.released == self.vmstat.released
    }
}

impl Window {
    pub fn open(session: &Session) -> Result<Window> {
        let counters_start = session.counters()?;
        let vmstat_start = PinCounters::read()?;
        Ok(Window {
            ledger: PinLedger::new(monotonic_ns()),
            vmstat_start,
            counters_start,
        })
    }

    pub fn apply(&mut self, events: &[TraceEvent]) {
        for e in events {
            self.ledger.apply(e);
        }
    }

    /// Closes the window now, takes in the events still in the ring buffer (each passed to
    /// `on_event` first), and returns the comparison.
    pub fn close(
        mut self,
        session: &mut Session,
        mut on_event: impl FnMut(&TraceEvent),
    ) -> Result<Summary> {
        let end_ns = monotonic_ns();
        let vmstat = PinCounters::read()?.delta_since(&self.vmstat_start);
        self.ledger.close(end_ns);
        let mut rest = Vec::new();
        session.drain(&mut rest)?;
        for e in &rest {
            if self.ledger.in_window(e.ts_ns) {
                on_event(e);
            }
        }
        self.apply(&rest);
        let l = self.ledger;
        let mut processes: Vec<_> = l.processes.into_iter().collect();
        processes.sort_by(|a, b| b.1.pinned.cmp(&a.1.pinned).then(a.0.cmp(&b.0)));
        Ok(Summary {
            seconds: end_ns.saturating_sub(l.start_ns) as f64 / 1e9,
            totals: l.totals,
            folios: l.folios,
            vmstat,
            kernel: session.counters()?.delta_since(&self.counters_start),
            processes,
        })
    }
}
