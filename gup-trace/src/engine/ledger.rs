//! Totals over a window, in the units of the kernel's own counters, and the
//! GUP_PIN_COUNTING_BIAS check of every folio transition.

use std::collections::BTreeMap;

use gup_trace_common::{EventKind, FolioTransition, Hook, HookClass, folio_bit};
use serde::Serialize;

use super::FastMap;
use crate::events::{Comm, TraceEvent};

/// Pins and releases of one process over the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessPins {
    pub comm: Comm,
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
    /// The same window, counted folio by folio.
    pub folios: FolioTotals,
    /// Release folio events waiting for their call's event (per thread), so that a folio listed
    /// twice in one batch is checked once with all its references.
    #[serde(skip)]
    pending_releases: FastMap<u32, Vec<FolioTransition>>,
    /// Pin releases per thread since its last pin call's event, which tells which of them
    /// happened inside the call; each unpin call's event marks those inside it (see
    /// [`FolioTotals`]).
    #[serde(skip)]
    recent_releases: FastMap<u32, Vec<RecentRelease>>,
}

/// A pin release waiting to be placed inside a call or outside any.
#[derive(Clone, Copy, Debug)]
struct RecentRelease {
    ts_ns: u64,
    refs: u32,
    /// Already counted inside an unpin call (which may itself run inside a pin call: an I/O
    /// completion in interrupt context on a thread that is pinning).
    in_unpin: bool,
}

/// Bound of [`PinLedger::recent_releases`] per thread: a thread that releases pins and never
/// pins (interrupt context on an idle CPU) must not grow it without end.
const RECENT_RELEASES_MAX: usize = 1 << 14;

/// GUP_PIN_COUNTING_BIAS: what one pin adds to a small folio's refcount. 1 << 10 in every
/// kernel since 5.7; a #define, so BTF cannot give it.
pub const PIN_COUNTING_BIAS: i64 = 1024;

/// Per-folio counts over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FolioTotals {
    /// Pins taken by grab functions that the kernel counts in `nr_foll_pin_acquired`.
    pub pinned: u64,
    /// Pins released (each counted in `nr_foll_pin_released`).
    pub released: u64,
    /// Plain references (FOLL_GET) taken by grab functions.
    pub referenced: u64,
    /// Pins on the shared zero page the kernel did not take (it skips them, and vmstat with it).
    pub zero_page_pins: u64,
    /// Pins added by `folio_add_pin(s)` to folios already pinned (io_uring, block merges): the
    /// kernel does not count them in `nr_foll_pin_acquired`, but counts their release.
    pub added_pins: u64,
    /// Pins on large folios (the `_pincount` path).
    pub large_folio_pins: u64,
    pub failed_grabs: u64,
    /// Transitions checked against the GUP_PIN_COUNTING_BIAS rule, and those that broke it.
    pub bias_checked: u64,
    pub bias_anomalies: u64,
    /// The first few anomalies, as evidence.
    pub anomaly_examples: Vec<BiasAnomaly>,
    /// Folio events of release batches cut short by the in-kernel walk bound. Their counts
    /// also moved with the pages not walked, so the bias rule is not checked on them.
    pub truncated_releases: u64,
    /// Releases of zero-page pins the kernel skipped: an unpin call counts them among its
    /// pages, vmstat does not.
    pub zero_page_releases: u64,
    /// Pin releases made by a thread while it was inside a pin call: the call's own pins given
    /// back (vmstat counted them acquired too), or an I/O completion in interrupt context on
    /// that thread. The per-call count adds them to the call's pins.
    pub released_in_pin_calls: u64,
    /// Pin releases made inside an unpin call: the only ones the per-call release count has
    /// (the others are `gup_put_folio` outside any `unpin_*`, or inside a pin call).
    pub released_in_unpin_calls: u64,
}

/// A transition whose refcount/pincount change is not what the bias rule says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BiasAnomaly {
    pub ts_ns: u64,
    pub tgid: u32,
    pub hook: &'static str,
    #[serde(serialize_with = "crate::hex::address")]
    pub folio: u64,
    pub pfn: u64,
    pub refs: u32,
    pub large: bool,
    pub release: bool,
    pub refcount_delta: i64,
    pub pincount_delta: i64,
    pub expected_refcount_delta: i64,
    pub expected_pincount_delta: i64,
}

const ANOMALY_EXAMPLES: usize = 8;

/// The refcount and pincount changes the bias rule expects for `t` (with `refs` pins): a pin
/// on a small folio adds GUP_PIN_COUNTING_BIAS per pin to `_refcount`; on a large folio it adds
/// one to `_refcount` and one to `_pincount`; a failed grab changes nothing; a release is the
/// exact opposite.
fn expected_deltas(t: &FolioTransition, refs: u32) -> (i64, i64) {
    if t.bits & folio_bit::FAILED != 0 {
        return (0, 0);
    }
    let refs = i64::from(refs);
    let sign = if t.bits & folio_bit::RELEASE != 0 {
        -1
    } else {
        1
    };
    let (refcount, pincount) = if t.bits & folio_bit::LARGE != 0 {
        (refs, refs)
    } else {
        (refs * PIN_COUNTING_BIAS, 0)
    };
    (sign * refcount, sign * pincount)
}

/// Whether observed deltas obey the rule. The counts are read just before and just after the
/// function, and other tasks take and drop plain references on the same folio meanwhile (the
/// LRU, the page cache, I/O completing on another CPU): `_refcount` may drift by a few of
/// those, far less than half a pin's bias. `_pincount` moves only with pins and must match
/// exactly. A pin too many or too few on a small folio is off by 1024, which this catches.
fn obeys_bias_rule(got: (i64, i64), want: (i64, i64)) -> bool {
    got.1 == want.1 && (got.0 - want.0).abs() < PIN_COUNTING_BIAS / 2
}

/// Pins on the zero page that the kernel skipped: its counts did not move.
pub(super) fn skipped_zero_page(t: &FolioTransition) -> bool {
    t.bits & folio_bit::ZERO_PAGE != 0
        && t.refcount_after == t.refcount_before
        && t.pincount_after == t.pincount_before
}

/// A release call's folios, each once with all the references the call dropped on it (a
/// folio may be listed more than once: its counts were read once, at the call's entry).
pub(super) fn refs_by_folio(
    batch: &[FolioTransition],
) -> smallvec::SmallVec<[(FolioTransition, u32); 8]> {
    let mut by_folio: smallvec::SmallVec<[(FolioTransition, u32); 8]> = smallvec::SmallVec::new();
    for &t in batch {
        match by_folio.iter_mut().find(|(seen, _)| seen.folio == t.folio) {
            Some((_, refs)) => *refs = refs.saturating_add(t.refs),
            None => by_folio.push((t, t.refs)),
        }
    }
    by_folio
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

    /// Forgets the releases of threads that released nothing since `cutoff_ns` (exited
    /// threads leave them behind), and the per-process totals of pids `known` says are gone.
    pub(super) fn prune(&mut self, cutoff_ns: u64, known: impl Fn(u32) -> bool) {
        self.recent_releases
            .retain(|_, recent| recent.last().is_some_and(|r| r.ts_ns >= cutoff_ns));
        self.processes.retain(|&tgid, _| known(tgid));
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
        match (event.kind, event.folio) {
            (EventKind::Folio, Some(folio)) => return self.apply_folio(event, &folio),
            (EventKind::MmapLockDrop | EventKind::MmapLockRelease, _) => {
                self.totals.mmap_lock_events += 1;
                return;
            }
            (EventKind::ProcessExit | EventKind::ProcessFork, _) => return,
            // What pins block is the blocking view's (engine::blocking), not the totals'.
            (
                EventKind::Migration
                | EventKind::Isolation
                | EventKind::OfflineEnd
                | EventKind::CmaBusy
                | EventKind::CmaAllocEnd,
                _,
            ) => return,
            _ => {}
        }
        if event.hook.class() == HookClass::Unpin
            && let Some(batch) = self.pending_releases.remove(&event.tid)
        {
            self.check_release_batch(event, batch);
        }
        let class = event.hook.class();
        if class == HookClass::MmapLock {
            self.totals.mmap_lock_events += 1;
            return;
        }
        if matches!(class, HookClass::Pin | HookClass::Unpin) {
            self.classify_recent_releases(event, class);
        }
        let process = self.processes.entry(event.tgid).or_default();
        // The latest name wins: a process's first events often come from its own execve
        // (argument copying through get_user_pages_remote), under the parent's name.
        process.comm = event.comm;
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
            // Only folio and mmap_lock events come from these, handled above.
            HookClass::Grab
            | HookClass::SlowPath
            | HookClass::MmapLock
            | HookClass::Process
            | HookClass::Migration => {}
        }
    }

    fn apply_folio(&mut self, event: &TraceEvent, t: &FolioTransition) {
        let f = &mut self.folios;
        let pin = t.bits & folio_bit::PIN != 0;
        if t.bits & folio_bit::RELEASE != 0 {
            if t.bits & folio_bit::TRUNCATED != 0 {
                f.truncated_releases += 1;
            }
            if skipped_zero_page(t) {
                f.zero_page_releases += u64::from(t.refs);
            } else {
                f.released += u64::from(t.refs);
                let recent = self.recent_releases.entry(event.tid).or_default();
                if recent.len() >= RECENT_RELEASES_MAX {
                    recent.drain(..RECENT_RELEASES_MAX / 2);
                }
                recent.push(RecentRelease {
                    ts_ns: event.ts_ns,
                    refs: t.refs,
                    in_unpin: false,
                });
            }
            self.pending_releases.entry(event.tid).or_default().push(*t);
            return;
        }
        if t.bits & folio_bit::FAILED != 0 {
            f.failed_grabs += 1;
        } else if !pin {
            f.referenced += u64::from(t.refs);
        } else if skipped_zero_page(t) {
            f.zero_page_pins += u64::from(t.refs);
        } else if matches!(event.hook, Hook::FolioAddPin | Hook::FolioAddPins) {
            f.added_pins += u64::from(t.refs);
        } else {
            f.pinned += u64::from(t.refs);
        }
        if pin && t.bits & (folio_bit::LARGE | folio_bit::FAILED) == folio_bit::LARGE {
            f.large_folio_pins += u64::from(t.refs);
        }
        // Plain references (FOLL_GET) have no bias to check: any reference holder moves the
        // same count.
        if pin && !skipped_zero_page(t) {
            self.check_bias(event.ts_ns, event.tgid, event.hook, t, t.refs);
        }
    }

    /// A release call's folios, checked once per folio with all the references the call
    /// dropped on it (its counts were read at the call's entry and return).
    /// A pin or unpin call of `event.tid` returned: its releases since the call started were
    /// made inside it. A pin call's event ends the list (earlier releases were inside no pin
    /// call); an unpin call's event only marks its own, since it may run inside a pin call
    /// whose event comes later.
    fn classify_recent_releases(&mut self, event: &TraceEvent, class: HookClass) {
        let start = event.ts_ns.saturating_sub(event.duration_ns);
        let inside = |r: &&mut RecentRelease| r.ts_ns >= start;
        if class == HookClass::Pin {
            let Some(mut recent) = self.recent_releases.remove(&event.tid) else {
                return;
            };
            let pages: u64 = recent
                .iter_mut()
                .filter(inside)
                .map(|r| u64::from(r.refs))
                .sum();
            self.folios.released_in_pin_calls += pages;
        } else if let Some(recent) = self.recent_releases.get_mut(&event.tid) {
            for r in recent.iter_mut().filter(inside).filter(|r| !r.in_unpin) {
                r.in_unpin = true;
                self.folios.released_in_unpin_calls += u64::from(r.refs);
            }
        }
    }

    fn check_release_batch(&mut self, call: &TraceEvent, batch: Vec<FolioTransition>) {
        if batch.iter().any(|t| t.bits & folio_bit::TRUNCATED != 0) {
            return;
        }
        for (t, refs) in refs_by_folio(&batch) {
            if !skipped_zero_page(&t) {
                self.check_bias(call.ts_ns, call.tgid, call.hook, &t, refs);
            }
        }
    }

    fn check_bias(&mut self, ts_ns: u64, tgid: u32, hook: Hook, t: &FolioTransition, refs: u32) {
        let f = &mut self.folios;
        f.bias_checked += 1;
        let (want_ref, want_pin) = expected_deltas(t, refs);
        let got_ref = i64::from(t.refcount_after) - i64::from(t.refcount_before);
        let got_pin = i64::from(t.pincount_after) - i64::from(t.pincount_before);
        if obeys_bias_rule((got_ref, got_pin), (want_ref, want_pin)) {
            return;
        }
        f.bias_anomalies += 1;
        if f.anomaly_examples.len() < ANOMALY_EXAMPLES {
            f.anomaly_examples.push(BiasAnomaly {
                ts_ns,
                tgid,
                hook: hook.name(),
                folio: t.folio,
                pfn: t.pfn,
                refs,
                large: t.bits & folio_bit::LARGE != 0,
                release: t.bits & folio_bit::RELEASE != 0,
                refcount_delta: got_ref,
                pincount_delta: got_pin,
                expected_refcount_delta: want_ref,
                expected_pincount_delta: want_pin,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use gup_trace_common::Hook;

    use super::*;

    fn ev(ts_ns: u64, tgid: u32, hook: Hook, pages: u64) -> TraceEvent {
        let kind = match hook.class() {
            HookClass::MmapLock => EventKind::MmapLockDrop,
            _ => EventKind::Call,
        };
        TraceEvent::sample(kind, hook, ts_ns, tgid, pages)
    }

    /// A folio event: `refs` references on `folio`, counts moving from `before` to `after`
    /// as (refcount, pincount).
    fn folio_ev(
        ts_ns: u64,
        hook: Hook,
        folio: u64,
        refs: u32,
        bits: u32,
        before: (i32, i32),
        after: (i32, i32),
    ) -> TraceEvent {
        let mut e = TraceEvent::sample(EventKind::Folio, hook, ts_ns, 7, u64::from(refs));
        e.folio = Some(FolioTransition {
            folio,
            pfn: folio >> 6,
            refs,
            bits,
            refcount_before: before.0,
            refcount_after: after.0,
            pincount_before: before.1,
            pincount_after: after.1,
            ..FolioTransition::default()
        });
        e
    }

    const PIN: u32 = folio_bit::PIN;
    const LARGE: u32 = folio_bit::LARGE;
    const RELEASE: u32 = folio_bit::RELEASE;

    #[test]
    fn pins_that_follow_the_bias_rule_are_counted_and_pass() {
        let mut l = PinLedger::new(0);
        // Small folio: +1024 per pin.
        l.apply(&folio_ev(
            1,
            Hook::TryGrabFolioFast,
            0x1000,
            1,
            PIN,
            (1, 0),
            (1025, 0),
        ));
        // Large folio (THP): +refs on both counts.
        l.apply(&folio_ev(
            2,
            Hook::TryGrabFolio,
            0x2000,
            512,
            PIN | LARGE,
            (1, 0),
            (513, 512),
        ));
        // FOLL_GET: plain references, counted, not checked (another holder dropped one here).
        l.apply(&folio_ev(
            3,
            Hook::TryGrabFolio,
            0x3000,
            1,
            0,
            (2, 0),
            (2, 0),
        ));
        // A small-folio pin while someone else took a plain reference: still one pin.
        l.apply(&folio_ev(
            4,
            Hook::TryGrabFolioFast,
            0x8000,
            1,
            PIN,
            (3, 0),
            (1028, 0),
        ));
        assert_eq!((l.folios.pinned, l.folios.referenced), (514, 1));
        assert_eq!(l.folios.large_folio_pins, 512);
        assert_eq!((l.folios.bias_checked, l.folios.bias_anomalies), (3, 0));
    }

    #[test]
    fn a_pin_that_breaks_the_bias_rule_is_an_anomaly_with_evidence() {
        let mut l = PinLedger::new(0);
        // A small-folio pin that only added 1: what a FOLL_GET would do.
        l.apply(&folio_ev(
            5,
            Hook::TryGrabPage,
            0x4000,
            1,
            PIN,
            (3, 0),
            (4, 0),
        ));
        // A large-folio pin that did not move _pincount.
        l.apply(&folio_ev(
            6,
            Hook::TryGrabFolio,
            0x9000,
            2,
            PIN | LARGE,
            (5, 1),
            (7, 1),
        ));
        assert_eq!(l.folios.bias_anomalies, 2);
        let a = &l.folios.anomaly_examples[0];
        assert_eq!((a.refcount_delta, a.expected_refcount_delta), (1, 1024));
        assert_eq!(
            (a.folio, a.hook, a.release),
            (0x4000, "try_grab_page", false)
        );
        let b = &l.folios.anomaly_examples[1];
        assert_eq!((b.pincount_delta, b.expected_pincount_delta), (0, 2));
    }

    #[test]
    fn zero_page_pins_the_kernel_skips_are_not_counted_as_pins() {
        let mut l = PinLedger::new(0);
        let zero = PIN | folio_bit::ZERO_PAGE;
        l.apply(&folio_ev(
            1,
            Hook::TryGrabFolioFast,
            0x5000,
            4,
            zero,
            (9, 0),
            (9, 0),
        ));
        assert_eq!((l.folios.pinned, l.folios.zero_page_pins), (0, 4));
        assert_eq!(l.folios.bias_anomalies, 0, "a skipped pin moves nothing");
    }

    #[test]
    fn folio_add_pin_is_counted_apart_from_vmstat_pins() {
        let mut l = PinLedger::new(0);
        l.apply(&folio_ev(
            1,
            Hook::FolioAddPin,
            0x6000,
            1,
            PIN,
            (1025, 0),
            (2049, 0),
        ));
        assert_eq!((l.folios.pinned, l.folios.added_pins), (0, 1));
        assert_eq!(l.folios.bias_anomalies, 0);
    }

    #[test]
    fn a_failed_grab_must_change_nothing() {
        let mut l = PinLedger::new(0);
        let failed = PIN | folio_bit::FAILED;
        l.apply(&folio_ev(
            1,
            Hook::TryGrabFolioFast,
            0x7000,
            1,
            failed,
            (1, 0),
            (1, 0),
        ));
        assert_eq!((l.folios.failed_grabs, l.folios.pinned), (1, 0));
        assert_eq!(l.folios.bias_anomalies, 0);
    }

    #[test]
    fn a_release_batch_is_checked_per_folio_when_its_call_returns() {
        let mut l = PinLedger::new(0);
        // unpin_user_pages([A, B, A]): A appears twice, so both of its events saw -2048.
        let hook = Hook::UnpinUserPages;
        let rel = PIN | RELEASE;
        l.apply(&folio_ev(1, hook, 0xa000, 1, rel, (2049, 0), (1, 0)));
        l.apply(&folio_ev(2, hook, 0xb000, 1, rel, (1025, 0), (1, 0)));
        l.apply(&folio_ev(3, hook, 0xa000, 1, rel, (2049, 0), (1, 0)));
        assert_eq!(
            l.folios.bias_checked, 0,
            "checked once the call is complete"
        );
        let mut call = ev(4, 7, hook, 3);
        call.tid = 7;
        l.apply(&call);
        assert_eq!(l.folios.released, 3);
        assert_eq!((l.folios.bias_checked, l.folios.bias_anomalies), (2, 0));
    }

    #[test]
    fn releases_are_placed_inside_the_pin_or_unpin_call_that_was_running() {
        let mut l = PinLedger::new(0);
        let rel = PIN | RELEASE;
        // Thread 7: a release before any call (gup_put_folio on its own), then a pin call
        // from 10 to 20 ns with one release inside it, then an unpin call from 30 to 40 ns
        // with two releases inside it and a zero-page release.
        l.apply(&folio_ev(
            5,
            Hook::GupPutFolio,
            0xa000,
            1,
            rel,
            (1025, 0),
            (1, 0),
        ));
        l.apply(&folio_ev(
            12,
            Hook::GupPutFolio,
            0xb000,
            1,
            rel,
            (1025, 0),
            (1, 0),
        ));
        let mut pin = ev(20, 7, Hook::PinUserPagesFast, 4);
        (pin.tid, pin.duration_ns) = (7, 10);
        l.apply(&pin);
        let unpin = Hook::UnpinUserPages;
        l.apply(&folio_ev(32, unpin, 0xc000, 1, rel, (1025, 0), (1, 0)));
        l.apply(&folio_ev(33, unpin, 0xd000, 1, rel, (1025, 0), (1, 0)));
        let zero = rel | folio_bit::ZERO_PAGE;
        l.apply(&folio_ev(34, unpin, 0xe000, 1, zero, (9, 0), (9, 0)));
        let mut call = ev(40, 7, unpin, 3);
        (call.tid, call.duration_ns) = (7, 10);
        l.apply(&call);
        let f = &l.folios;
        assert_eq!(f.released, 4);
        assert_eq!(f.released_in_pin_calls, 1, "only the release at 12 ns");
        assert_eq!(f.released_in_unpin_calls, 2);
        assert_eq!(f.zero_page_releases, 1);
        // An I/O completion unpins 2 pages in interrupt context (52-53 ns) while thread 7 is
        // inside a pin call (50-60 ns): inside both.
        l.apply(&folio_ev(52, unpin, 0xf000, 2, rel | LARGE, (3, 2), (1, 0)));
        let mut irq = ev(53, 7, unpin, 2);
        (irq.tid, irq.duration_ns) = (7, 2);
        l.apply(&irq);
        let mut pin = ev(60, 7, Hook::PinUserPagesFast, 6);
        (pin.tid, pin.duration_ns) = (7, 10);
        l.apply(&pin);
        let f = &l.folios;
        assert_eq!((f.released_in_pin_calls, f.released_in_unpin_calls), (3, 4));
    }

    #[test]
    fn a_truncated_batch_is_counted_but_not_checked() {
        let mut l = PinLedger::new(0);
        let rel = PIN | RELEASE | LARGE | folio_bit::TRUNCATED;
        // 1024 entries walked of a 1500-page call: the counts moved by all 1500.
        let hook = Hook::UnpinUserPages;
        l.apply(&folio_ev(1, hook, 0xd000, 1024, rel, (1501, 1500), (1, 0)));
        l.apply(&ev(2, 7, hook, 1500));
        assert_eq!((l.folios.released, l.folios.truncated_releases), (1024, 1));
        assert_eq!((l.folios.bias_checked, l.folios.bias_anomalies), (0, 0));
    }

    #[test]
    fn a_large_folio_release_drops_refcount_and_pincount_by_refs() {
        let mut l = PinLedger::new(0);
        let rel = PIN | RELEASE | LARGE;
        l.apply(&folio_ev(
            1,
            Hook::UnpinUserFolio,
            0xc000,
            511,
            rel,
            (513, 512),
            (2, 1),
        ));
        l.apply(&ev(2, 7, Hook::UnpinUserFolio, 511));
        assert_eq!((l.folios.released, l.folios.bias_anomalies), (511, 0));
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
