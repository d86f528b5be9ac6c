//! Synthetic events for tests: GUP calls with their grab events, release calls with their
//! folio events, process exits and forks, as the kernel side would send them. Shared by the
//! engine's tests and the dashboard's.

use gup_trace_common::{EventKind, FolioTransition, Hook, folio_bit};

use super::{FindingRules, PinEngine};
use crate::events::TraceEvent;

pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000_000_000;
/// FOLL_LONGTERM on 6.6+ kernels.
pub const LONGTERM: u32 = 0x100;
/// Two folio addresses and a large one.
pub const F1: u64 = 0xffff_ea00_0000_1000;
pub const F2: u64 = 0xffff_ea00_0000_2000;
pub const HUGE: u64 = 0xffff_ea00_0020_0000;

/// An engine that started at 0, with FOLL_LONGTERM as [`LONGTERM`] and the default rules.
pub fn engine() -> PinEngine {
    PinEngine::new(0, LONGTERM, FindingRules::default())
}

/// Pushes `events` through `engine` and flushes its reorder buffer.
pub fn run(engine: &mut PinEngine, events: impl IntoIterator<Item = TraceEvent>) {
    for e in events {
        engine.push(e);
    }
    engine.flush();
}

pub fn event(kind: EventKind, hook: Hook, ts: u64, tgid: u32) -> TraceEvent {
    let mut e = TraceEvent::sample(kind, hook, ts, tgid, 0);
    e.comm = format!("proc{tgid}").as_str().into();
    e
}

/// A small folio's counts with `pins` pins on it (and one plain reference).
pub fn small(pins: i32) -> (i32, i32) {
    (1 + pins * 1024, 0)
}

pub fn transition(
    folio: u64,
    refs: u32,
    bits: u32,
    before: (i32, i32),
    after: (i32, i32),
) -> FolioTransition {
    FolioTransition {
        folio,
        pfn: folio >> 6,
        refs,
        bits,
        order: if bits & folio_bit::LARGE != 0 { 9 } else { 0 },
        refcount_before: before.0,
        refcount_after: after.0,
        pincount_before: before.1,
        pincount_after: after.1,
        _pad: 0,
    }
}

/// A GUP call by `tgid` at `ts` that pins `folios` (each one pin on a small folio with
/// `pins_before` pins already), with the given flags and stack: its grab events, then the call.
pub fn pin_call(ts: u64, tgid: u32, folios: &[u64], flags: u32, stack: u32) -> Vec<TraceEvent> {
    let mut out: Vec<TraceEvent> = folios
        .iter()
        .map(|&f| {
            grab(
                ts - 1,
                tgid,
                transition(f, 1, folio_bit::PIN, small(0), small(1)),
            )
        })
        .collect();
    let mut call = event(EventKind::Call, Hook::PinUserPagesFast, ts, tgid);
    call.pages = folios.len() as u64;
    call.gup_flags = flags;
    call.stack_id = Some(stack);
    call.path.fast_refs = folios.len() as u64;
    out.push(call);
    out
}

/// [`pin_call`] by a kernel thread `worker` on the memory of process `owner`
/// (`pin_user_pages_remote` on its mm): the grabs and the call carry the owner.
pub fn remote_pin_call(ts: u64, worker: u32, owner: u32, folios: &[u64]) -> Vec<TraceEvent> {
    let mut out = pin_call(ts, worker, folios, 0, 9);
    for e in &mut out {
        e.comm = "kworker/u8:1".into();
        e.owner_tgid = owner;
        e.owner_comm = format!("proc{owner}").as_str().into();
        e.owner_bits = gup_trace_common::owner_bit::KNOWN
            | gup_trace_common::owner_bit::REMOTE_MM
            | gup_trace_common::owner_bit::KTHREAD_CALLER;
        if e.kind == EventKind::Call {
            e.hook = Hook::PinUserPagesRemote;
        } else {
            e.call_hook = Some(Hook::PinUserPagesRemote);
        }
    }
    out
}

pub fn grab(ts: u64, tgid: u32, t: FolioTransition) -> TraceEvent {
    let mut e = event(EventKind::Folio, Hook::TryGrabFolioFast, ts, tgid);
    e.call_hook = Some(Hook::PinUserPagesFast);
    e.pages = u64::from(t.refs);
    e.folio = Some(t);
    e
}

/// An unpin call by `tgid` releasing one pin on each folio: its folio events, then the call.
pub fn unpin_call(ts: u64, tgid: u32, folios: &[(u64, (i32, i32), (i32, i32))]) -> Vec<TraceEvent> {
    let mut out: Vec<TraceEvent> = folios
        .iter()
        .map(|&(f, before, after)| {
            let mut e = event(EventKind::Folio, Hook::UnpinUserPages, ts, tgid);
            e.folio = Some(transition(
                f,
                1,
                folio_bit::PIN | folio_bit::RELEASE,
                before,
                after,
            ));
            e.pages = 1;
            e
        })
        .collect();
    let mut call = event(EventKind::Call, Hook::UnpinUserPages, ts, tgid);
    call.pages = folios.len() as u64;
    out.push(call);
    out
}

pub fn exit(ts: u64, tgid: u32) -> TraceEvent {
    event(EventKind::ProcessExit, Hook::SchedProcessExit, ts, tgid)
}

pub fn fork(ts: u64, parent: u32, child: u32) -> TraceEvent {
    let mut e = event(EventKind::ProcessFork, Hook::TaskNewtask, ts, parent);
    e.start = u64::from(child);
    e
}
