//! mmap_lock inside GUP calls: percentiles and totals of one process, or of all of them.

use std::cmp::Ordering;

use crate::engine::pins::LockFigures;

/// mmap_lock taken by GUP calls. Percentiles are upper bounds of power-of-two buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockRow {
    /// GUP calls that took mmap_lock.
    pub calls: u64,
    pub wait_p50: u64,
    pub wait_p99: u64,
    pub hold_p50: u64,
    pub hold_p99: u64,
    pub wait_total_ns: u64,
    pub hold_total_ns: u64,
    /// Times GUP dropped the lock and took it again, and how long it stayed dropped.
    pub drops: u64,
    pub dropped_ns: u64,
}

impl LockRow {
    pub fn of(l: &LockFigures) -> LockRow {
        LockRow {
            calls: l.wait.count,
            wait_p50: l.wait.percentile(50.0),
            wait_p99: l.wait.percentile(99.0),
            hold_p50: l.hold.percentile(50.0),
            hold_p99: l.hold.percentile(99.0),
            wait_total_ns: l.wait_ns,
            hold_total_ns: l.hold_ns,
            drops: l.drops,
            dropped_ns: l.dropped_ns,
        }
    }

    /// Whether any GUP call took the lock or dropped it.
    pub fn used(&self) -> bool {
        self.calls > 0 || self.drops > 0
    }

    /// Time spent waiting, holding and with the lock dropped.
    pub fn total_ns(&self) -> u64 {
        // Saturating, as the figures are (see LockTotals::add).
        self.wait_total_ns
            .saturating_add(self.hold_total_ns)
            .saturating_add(self.dropped_ns)
    }

    /// The most time in the lock first.
    pub fn most_time_first(a: &LockRow, b: &LockRow) -> Ordering {
        b.total_ns().cmp(&a.total_ns())
    }
}

/// Figures of many processes merged into one.
#[derive(Default)]
pub(super) struct LockTotals(LockFigures);

impl LockTotals {
    pub fn add(&mut self, l: &LockFigures) {
        self.0.merge(l);
    }

    pub fn row(&self) -> LockRow {
        LockRow::of(&self.0)
    }
}
