//! Pins held at one moment. One walk over the pinned folios gives each holding (the pages one
//! process holds through one call site, short-term or FOLL_LONGTERM), every process's oldest
//! pinned folios, each call site's oldest pin, and the pinned pages by age.

use std::cmp::Ordering;

use crate::engine::{
    PinState,
    pins::{ProcessId, SiteId},
};

/// Upper bounds of the pin-age buckets, in ns; the last bucket is open.
pub const AGE_BOUNDS_NS: [u64; 6] = [
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    60_000_000_000,
    600_000_000_000,
];
pub const AGE_LABELS: [&str; 7] = ["<10ms", "<100ms", "<1s", "<10s", "<1m", "<10m", ">=10m"];

/// Pinned folios kept per process (its oldest).
pub const FOLIOS_PER_PROCESS: usize = 64;

/// Pins one process holds through one call site, short-term or FOLL_LONGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    pub process: ProcessId,
    pub site: SiteId,
    pub longterm: bool,
    /// The process that took them on `process`'s memory, when another (a kernel worker).
    pub taker: Option<ProcessId>,
    pub pages: u64,
    pub folios: u64,
    /// When the oldest of them was taken.
    pub oldest_ns: u64,
}

impl Holding {
    /// The oldest first, then the largest.
    pub fn oldest_first(a: &Holding, b: &Holding) -> Ordering {
        a.oldest_ns.cmp(&b.oldest_ns).then(b.pages.cmp(&a.pages))
    }
}

/// One pinned folio of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolioRow {
    pub folio: u64,
    pub pfn: u64,
    pub order: u8,
    pub refs: u32,
    pub since_ns: u64,
    pub longterm: bool,
    pub site: SiteId,
}

/// Pinned pages by age (buckets of [`AGE_BOUNDS_NS`]): short-term and FOLL_LONGTERM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinAges {
    pub short: [u64; 7],
    pub long: [u64; 7],
}

/// What one process holds.
#[derive(Debug, Default)]
pub(super) struct ProcessHolds {
    pub oldest_ns: Option<u64>,
    /// Its oldest [`FOLIOS_PER_PROCESS`] pinned folios, oldest first once [`walk`] returns.
    pub folios: Vec<FolioRow>,
    /// Once `folios` was trimmed: the newest pin it kept (younger ones cannot get in).
    cutoff_ns: u64,
    pub folio_count: u64,
    pub holdings: Vec<Holding>,
}

impl ProcessHolds {
    fn new() -> ProcessHolds {
        ProcessHolds {
            cutoff_ns: u64::MAX,
            ..ProcessHolds::default()
        }
    }

    /// Keeps the oldest [`FOLIOS_PER_PROCESS`] folios, in linear time per folio on average.
    fn offer(&mut self, row: FolioRow) {
        if row.since_ns > self.cutoff_ns {
            return;
        }
        self.folios.push(row);
        if self.folios.len() >= 2 * FOLIOS_PER_PROCESS {
            self.folios
                .select_nth_unstable_by_key(FOLIOS_PER_PROCESS - 1, |f| (f.since_ns, f.pfn));
            self.folios.truncate(FOLIOS_PER_PROCESS);
            self.cutoff_ns = self.folios.iter().map(|f| f.since_ns).max().unwrap_or(0);
        }
    }
}

/// Everything the walk gathers.
pub(super) struct HeldPins {
    /// Indexed by ProcessId (None: it holds nothing).
    pub processes: Vec<Option<ProcessHolds>>,
    /// Indexed by SiteId.
    pub site_oldest: Vec<Option<u64>>,
    pub ages: PinAges,
    pub longterm_pages: u64,
}

fn min_into(slot: &mut Option<u64>, ns: u64) {
    *slot = Some(slot.map_or(ns, |t| t.min(ns)));
}

/// One walk over the pinned folios at `now_ns`. Indexed by ProcessId and SiteId: a hash lookup
/// per pinned folio was most of the walk.
pub(super) fn walk(state: &PinState, now_ns: u64) -> HeldPins {
    let mut processes: Vec<Option<ProcessHolds>> = Vec::new();
    processes.resize_with(state.processes.len(), || None);
    let mut held = HeldPins {
        processes,
        site_oldest: vec![None; state.call_sites.len()],
        ages: PinAges::default(),
        longterm_pages: 0,
    };
    for (&address, folio) in &state.folios {
        for hold in &folio.holds {
            let owner = state.owners[hold.owner as usize];
            let age = now_ns.saturating_sub(hold.since_ns);
            let bucket = AGE_BOUNDS_NS
                .iter()
                .position(|&b| age < b)
                .unwrap_or(AGE_BOUNDS_NS.len());
            let refs = u64::from(hold.refs);
            if owner.longterm {
                held.ages.long[bucket] += refs;
                held.longterm_pages += refs;
            } else {
                held.ages.short[bucket] += refs;
            }
            min_into(&mut held.site_oldest[owner.site as usize], hold.since_ns);
            let p = held.processes[owner.process as usize].get_or_insert_with(ProcessHolds::new);
            min_into(&mut p.oldest_ns, hold.since_ns);
            p.folio_count += 1;
            match p.holdings.iter_mut().find(|h| {
                h.site == owner.site && h.longterm == owner.longterm && h.taker == owner.taker
            }) {
                Some(h) => {
                    h.pages += refs;
                    h.folios += 1;
                    h.oldest_ns = h.oldest_ns.min(hold.since_ns);
                }
                None => p.holdings.push(Holding {
                    process: owner.process,
                    site: owner.site,
                    longterm: owner.longterm,
                    taker: owner.taker,
                    pages: refs,
                    folios: 1,
                    oldest_ns: hold.since_ns,
                }),
            }
            p.offer(FolioRow {
                folio: address,
                pfn: folio.pfn,
                order: folio.order,
                refs: hold.refs,
                since_ns: hold.since_ns,
                longterm: owner.longterm,
                site: owner.site,
            });
        }
    }
    for p in held.processes.iter_mut().flatten() {
        p.folios.sort_by_key(|f| (f.since_ns, f.pfn));
        p.folios.truncate(FOLIOS_PER_PROCESS);
        p.holdings.sort_by(|a, b| b.pages.cmp(&a.pages));
    }
    held
}
