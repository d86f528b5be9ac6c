//! The pin-state engine: events in, totals and per-process state out. Pure: no I/O and no clock
//! reads; every time comes from the events or from the caller.

use std::collections::BTreeMap;

use gup_trace_common::HookClass;
use serde::Serialize;

use crate::events::TraceEvent;

/// Pins and releases of one process over the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessPins {
    pub comm: String,
    pub pinned: u64,
    pub released: u64,
}

impl ProcessPins {
    /// Pages this process pinned and did not release within the window (negative: it released
    /// pins taken before the window, or by another process, e.g. io_uring teardown).
    pub fn outstanding(&self) -> i64 {
        self.pinned as i64 - self.released as i64
    }
}

/// Totals over a time window `[start_ns, end_ns]` of CLOCK_MONOTONIC (the clock of
/// `bpf_ktime_get_ns`). Events outside the window are not counted, so the totals line up with
/// counters read at the window's edges.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PinLedger {
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub totals: PinTotals,
    /// Events seen outside the window (before its start, or after its end).
    pub outside_window: u64,
    pub processes: BTreeMap<u32, ProcessPins>,
}

/// Counts over a window, in the units the kernel's counters use (pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinTotals {
    /// Pages pinned, as the kernel counts them in `nr_foll_pin_acquired`.
    pub pinned: u64,
    /// Pages released, as the kernel counts them in `nr_foll_pin_released`.
    pub released: u64,
    pub pin_calls: u64,
    pub failed_pin_calls: u64,
    /// get_user_pages* calls and the pages they returned with plain references (FOLL_GET).
    pub get_calls: u64,
    pub referenced: u64,
    pub unpin_calls: u64,
    pub mmap_lock_events: u64,
}

impl PinLedger {
    pub fn new(start_ns: u64) -> PinLedger {
        PinLedger {
            start_ns,
            ..PinLedger::default()
        }
    }

    /// Closes the window: later events with a later timestamp are not counted.
    pub fn close(&mut self, end_ns: u64) {
        self.end_ns = Some(end_ns);
    }

    pub fn in_window(&self, ts_ns: u64) -> bool {
        ts_ns >= self.start_ns && self.end_ns.is_none_or(|end| ts_ns <= end)
    }

    pub fn apply(&mut self, event: &TraceEvent) {
        if !self.in_window(event.ts_ns) {
            self.outside_window += 1;
            return;
        }
        let class = event.hook.class();
        if class == HookClass::MmapLock {
            self.totals.mmap_lock_events += 1;
            return;
        }
        let process = self.processes.entry(event.tgid).or_default();
        if process.comm != event.comm {
            // The latest name wins: a process's first events often come from its own execve
            // (argument copying through get_user_pages_remote), under the parent's name.
            process.comm.clone_from(&event.comm);
        }
        match class {
            HookClass::Pin => {
                self.totals.pin_calls += 1;
                if event.error < 0 {
                    self.totals.failed_pin_calls += 1;
                }
                self.totals.pinned += event.pages;
                process.pinned += event.pages;
            }
            HookClass::Get => {
                self.totals.get_calls += 1;
                self.totals.referenced += event.pages;
            }
            HookClass::Unpin => {
                self.totals.unpin_calls += 1;
                self.totals.released += event.pages;
                process.released += event.pages;
            }
            HookClass::MmapLock => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use gup_trace_common::Hook;

    use super::*;

    fn ev(ts_ns: u64, tgid: u32, hook: Hook, pages: u64) -> TraceEvent {
        TraceEvent {
            ts_ns,
            duration_ns: 0,
            pages,
            tgid,
            tid: tgid,
            hook,
            error: 0,
            start: 0,
            requested: pages,
            gup_flags: 0,
            stack_id: None,
            cgroup_id: 0,
            comm: format!("p{tgid}"),
        }
    }

    #[test]
    fn totals_follow_pins_and_releases_per_process() {
        let mut l = PinLedger::new(100);
        l.apply(&ev(110, 1, Hook::PinUserPagesFast, 64));
        l.apply(&ev(120, 2, Hook::PinUserPagesRemote, 8));
        l.apply(&ev(130, 1, Hook::UnpinUserPages, 60));
        l.apply(&ev(140, 1, Hook::MmapLockReleased, 0));
        l.apply(&ev(150, 2, Hook::GetUserPagesRemote, 16));
        assert_eq!(
            (l.totals.get_calls, l.totals.referenced),
            (1, 16),
            "FOLL_GET pages are not pins"
        );
        assert_eq!(
            (
                l.totals.pinned,
                l.totals.released,
                l.totals.pin_calls,
                l.totals.unpin_calls
            ),
            (72, 60, 2, 1)
        );
        assert_eq!(l.processes[&1].outstanding(), 4);
        assert_eq!(l.processes[&2].outstanding(), 8);
        assert_eq!(l.processes[&2].comm, "p2");
        let mut renamed = ev(160, 2, Hook::UnpinUserPage, 1);
        renamed.comm = "after-exec".into();
        l.apply(&renamed);
        assert_eq!(
            l.processes[&2].comm, "after-exec",
            "execve renames the process"
        );
        assert_eq!(l.totals.mmap_lock_events, 1);
    }

    #[test]
    fn events_outside_the_window_are_not_counted() {
        let mut l = PinLedger::new(100);
        l.apply(&ev(99, 1, Hook::PinUserPagesFast, 5));
        l.apply(&ev(150, 1, Hook::PinUserPagesFast, 7));
        l.close(200);
        // Arrives after close (drained from another CPU's ring position) but inside: counted.
        l.apply(&ev(199, 1, Hook::UnpinUserPage, 1));
        l.apply(&ev(201, 1, Hook::UnpinUserPage, 1));
        assert_eq!(
            (l.totals.pinned, l.totals.released, l.outside_window),
            (7, 1, 2)
        );
    }

    #[test]
    fn a_failed_pin_call_counts_as_a_call_and_pins_nothing_extra() {
        let mut l = PinLedger::new(0);
        let mut e = ev(1, 3, Hook::PinUserPages, 0);
        e.error = -14;
        l.apply(&e);
        assert_eq!(
            (
                l.totals.pin_calls,
                l.totals.failed_pin_calls,
                l.totals.pinned
            ),
            (1, 1, 0)
        );
    }
}
