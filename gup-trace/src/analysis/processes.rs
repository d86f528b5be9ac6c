//! Processes: what each did with pins, what it still holds, and the orders they are ranked in.

use std::cmp::Ordering;

use super::{FolioRow, LockRow};
use crate::engine::pins::{ProcessId, SiteId};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessRow {
    pub id: ProcessId,
    pub pid: u32,
    pub comm: String,
    pub parent: Option<u32>,
    pub outstanding: u64,
    pub taken: u64,
    pub released: u64,
    /// Pins it released, its own or others'.
    pub releases_made: u64,
    /// Pins taken per second since the baseline.
    pub rate: f64,
    /// When its oldest outstanding pin was taken.
    pub oldest_ns: Option<u64>,
    pub first_ns: u64,
    pub exited_ns: Option<u64>,
    /// The cgroup v2 id its tasks last ran in (0: unknown).
    pub cgroup_id: u64,
    pub pin_calls: u64,
    pub failed_pin_calls: u64,
    pub get_calls: u64,
    pub fast_refs: u64,
    pub slow_refs: u64,
    pub lock: LockRow,
    /// Its pins outstanding per call site: (site, FOLL_LONGTERM, pages), most pages first.
    pub holdings: Vec<(SiteId, bool, u64)>,
    /// Pins on its memory that other processes took (kernel workers): (their pid, comm, pages
    /// outstanding), most pages first.
    pub taken_by: Vec<(u32, String, u64)>,
    /// Call sites it took pins through.
    pub sites: Vec<SiteId>,
    /// Its oldest pinned folios, oldest first, and how many folios it holds pins on.
    pub folios: Vec<FolioRow>,
    pub folio_count: u64,
}

impl ProcessRow {
    /// Whether it did anything with pins: took or released some, or made GUP calls. Other
    /// processes are only known from their forks and exits.
    pub fn active(&self) -> bool {
        self.taken + self.releases_made + self.pin_calls + self.get_calls + self.lock.drops > 0
    }

    /// Share of its GUP pages that came from the lockless fast walk (None: no path figures).
    pub fn fast_share(&self) -> Option<f64> {
        share(self.fast_refs, self.slow_refs)
    }

    /// Most pins taken first (then most released by it, most GUP calls), then the first seen:
    /// `gup-trace report`'s order.
    pub fn most_taken_first(a: &ProcessRow, b: &ProcessRow) -> Ordering {
        (b.taken, b.releases_made, b.pin_calls + b.get_calls)
            .cmp(&(a.taken, a.releases_made, a.pin_calls + a.get_calls))
            .then(a.first_ns.cmp(&b.first_ns))
    }

    /// The ones that matter most first: pins held, then pins taken, then the newest (what a
    /// dashboard keeps when there are too many).
    pub fn most_held_first(a: &ProcessRow, b: &ProcessRow) -> Ordering {
        (b.outstanding, b.taken, b.first_ns).cmp(&(a.outstanding, a.taken, a.first_ns))
    }
}

/// The fast share of `fast` and `slow` pages (None when both are 0).
pub fn share(fast: u64, slow: u64) -> Option<f64> {
    // In f64: the counts come from the records, and two near u64::MAX would overflow a sum.
    (fast != 0 || slow != 0).then(|| fast as f64 / (fast as f64 + slow as f64))
}
