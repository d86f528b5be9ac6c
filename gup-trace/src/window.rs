//! A measurement window: gup-trace's own totals and the kernel's vmstat counters over the same
//! stretch of time, so the two can be compared (`trace`, `selftest`, `bench`). The window is a
//! [`LivePipeline`] whose engine is a [`PinLedger`].

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    engine::{FolioTotals, PinLedger, PinTotals, ProcessPins},
    events::TraceEvent,
    pipeline::{Events, LivePipeline, VmstatUse},
    session::{KernelCounters, Session, StackNames},
    vmstat::PinCounters,
};

/// A live pipeline counting into a window's ledger.
pub type Window = LivePipeline<Events<PinLedger>>;

/// Opens a window now: whatever starts after this is inside it.
pub fn open(session: Session, stacks: StackNames) -> Result<Window> {
    LivePipeline::open(session, stacks, VmstatUse::Required, |start_ns| {
        Events::new(PinLedger::new(start_ns))
    })
}

/// Closes `window` now, takes in the events still in the ring buffer (each inside the window
/// passed to `consume` first), and returns the comparison, and the session for another window.
pub fn close(
    window: Window,
    consume: impl FnMut(&TraceEvent, &mut StackNames) -> Result<()>,
) -> Result<(Summary, Session)> {
    let finished = window.finish(consume)?;
    let closing = finished.closing;
    let ledger = finished.sink.engine;
    let mut processes: Vec<_> = ledger.processes.into_iter().collect();
    processes.sort_by(|a, b| b.1.pinned.cmp(&a.1.pinned).then(a.0.cmp(&b.0)));
    let summary = Summary {
        seconds: closing.seconds(),
        totals: ledger.totals,
        folios: ledger.folios,
        vmstat: closing
            .vmstat()
            .context("the window has no /proc/vmstat readings")?,
        kernel: closing.kernel,
        processes,
    };
    Ok((summary, finished.session))
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
