//! A small recording with a story, for the tests of the replay and of the report: fio pins
//! and releases, a child it forked pins and exits holding its pins, 10 s pass.

use gup_trace_common::{EventKind, Hook, LockStats};

use super::{Compression, CounterSnapshot, RecordingReader, RecordingWriter, Replay, synthetic::*};
use crate::{engine::FindingRules, session::KernelCounters, vmstat::PinCounters};

pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000_000_000;

fn grab(ts: u64, tgid: u32, name: &str, pfn: u64, stack: i32) -> Vec<u8> {
    let mut e = event(
        EventKind::Folio,
        Hook::TryGrabFolioFast,
        ts,
        tgid,
        tgid,
        comm(name),
    );
    e.call_hook = Hook::PinUserPagesFast as u32;
    e.stack_id = stack;
    e.folio = pin_transition(pfn, 1, false, false);
    e.pages = 1;
    let mut b = Vec::new();
    put_event(&mut b, &e);
    b
}

fn pin_call(ts: u64, tgid: u32, name: &str, pfns: &[u64], flags: u32, stack: i32) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = pfns
        .iter()
        .map(|&pfn| grab(ts - 10, tgid, name, pfn, stack))
        .collect();
    let mut call = event(
        EventKind::Call,
        Hook::PinUserPagesFast,
        ts,
        tgid,
        tgid,
        comm(name),
    );
    call.pages = pfns.len() as u64;
    call.requested = call.pages;
    call.gup_flags = flags;
    call.stack_id = stack;
    call.path.fast_refs = call.pages - 1;
    call.path.slow_refs = 1;
    call.lock = LockStats {
        wait_ns: 3_000,
        hold_ns: 100_000,
        acquisitions: 1,
        drops: 0,
    };
    let mut b = Vec::new();
    put_event(&mut b, &call);
    out.push(b);
    out
}

fn unpin_call(ts: u64, tgid: u32, name: &str, pfns: &[u64]) -> Vec<u8> {
    let mut call = event(
        EventKind::Call,
        Hook::UnpinUserPages,
        ts,
        tgid,
        tgid,
        comm(name),
    );
    call.pages = pfns.len() as u64;
    let mut b = Vec::new();
    put_event(&mut b, &call);
    for &pfn in pfns {
        put_folio(&mut b, &pin_transition(pfn, 1, false, true));
    }
    b
}

fn plain(kind: EventKind, hook: Hook, ts: u64, tgid: u32, name: &str, start: u64) -> Vec<u8> {
    let mut e = event(kind, hook, ts, tgid, tgid, comm(name));
    e.start = start;
    e.duration_ns = 40_000;
    let mut b = Vec::new();
    put_event(&mut b, &e);
    b
}

/// fio (pid 100) pins 3 folios through io_uring and releases 1, and keeps running; leaker (pid
/// 200, forked by fio) pins 2 and exits holding them; 10 s pass.
pub fn scenario() -> Vec<u8> {
    let start = START_NS;
    let mut records = Vec::new();
    records.extend(pin_call(
        start + 100 * MS,
        100,
        "fio",
        &[1, 2, 3],
        FOLL_WRITE | FOLL_LONGTERM,
        12,
    ));
    records.push(unpin_call(start + 200 * MS, 100, "fio", &[2]));
    records.push(plain(
        EventKind::ProcessFork,
        Hook::TaskNewtask,
        start + 300 * MS,
        100,
        "fio",
        200,
    ));
    records.extend(pin_call(start + 400 * MS, 200, "leaker", &[7, 8], 0, 11));
    records.push(plain(
        EventKind::MmapLockDrop,
        Hook::MmapLockReleased,
        start + 450 * MS,
        200,
        "leaker",
        0x7f00_0000_0000,
    ));
    records.push(plain(
        EventKind::ProcessExit,
        Hook::SchedProcessExit,
        start + 500 * MS,
        200,
        "leaker",
        0,
    ));
    write_recording(&records, start + 10 * S, Some(((1000, 1000), (1005, 1001))))
}

/// A recording of `records` (with the synthetic stacks) that ends at `end_ns`, with the
/// kernel's pin counters (acquired, released) at both ends when given.
fn write_recording(
    records: &[Vec<u8>],
    end_ns: u64,
    vmstat: Option<((u64, u64), (u64, u64))>,
) -> Vec<u8> {
    let mut w = RecordingWriter::new(Vec::new(), &metadata(), Compression::Lz4).unwrap();
    let snapshot = |ts_ns, end, (acquired, released)| CounterSnapshot {
        ts_ns,
        end,
        kernel: KernelCounters::default(),
        vmstat: Some(PinCounters { acquired, released }),
    };
    if let Some((at_start, _)) = vmstat {
        w.counters(&snapshot(START_NS, false, at_start)).unwrap();
    }
    for (id, frames) in stacks() {
        w.stack(id, &Ok(frames.into())).unwrap();
    }
    for r in records {
        w.record(r).unwrap();
    }
    if let Some((_, at_end)) = vmstat {
        w.counters(&snapshot(end_ns, true, at_end)).unwrap();
    }
    let end = w.end_totals(end_ns, 0);
    w.finish(&end).unwrap().0
}

/// fio (pid 100) pins in batches that overlap: [1, 2] at 100 ms and [3] at 150 ms, drops
/// mmap_lock at 120 ms, releases [1, 2] at 300 ms (while [3] is held), pins [4] at 350 ms,
/// releases [3] at 400 ms and [4] at 1.5 s; 2 s pass. Every pin is released.
pub fn batches_scenario() -> Vec<u8> {
    let at = |ms: u64| START_NS + ms * MS;
    let fio = |ms, pfns: &[u64]| pin_call(at(ms), 100, "fio", pfns, FOLL_WRITE, 12);
    let mut records = fio(100, &[1, 2]);
    records.push(plain(
        EventKind::MmapLockDrop,
        Hook::MmapLockReleased,
        at(120),
        100,
        "fio",
        0x7f00_0000_0000,
    ));
    records.extend(fio(150, &[3]));
    records.push(unpin_call(at(300), 100, "fio", &[1, 2]));
    records.extend(fio(350, &[4]));
    records.push(unpin_call(at(400), 100, "fio", &[3]));
    records.push(unpin_call(at(1500), 100, "fio", &[4]));
    write_recording(&records, at(2000), None)
}

/// A kernel worker (pid 55) pins 2 folios of process 300's memory (`pin_user_pages_remote`
/// on its mm) and keeps them; 300 exits; 10 s pass.
pub fn remote_scenario() -> Vec<u8> {
    let start = START_NS;
    let mut records = pin_call(start + 100 * MS, 55, "kworker/u8:1", &[7, 8], 0, 11);
    for r in &mut records {
        // SAFETY: one whole Event's bytes, as put_event wrote them; read unaligned.
        let mut e: gup_trace_common::Event = unsafe { std::ptr::read_unaligned(r.as_ptr().cast()) };
        e.owner_tgid = 300;
        e.owner_comm = comm("victim");
        e.owner_bits = gup_trace_common::owner_bit::KNOWN | gup_trace_common::owner_bit::REMOTE_MM;
        r.clear();
        put_event(r, &e);
    }
    records.push(plain(
        EventKind::ProcessExit,
        Hook::SchedProcessExit,
        start + 500 * MS,
        300,
        "victim",
        0,
    ));
    write_recording(&records, start + 10 * S, None)
}

pub fn replay_with(bytes: &[u8], rules: FindingRules) -> Replay {
    Replay::read(RecordingReader::new(bytes).unwrap(), rules).unwrap()
}

pub fn replay(bytes: &[u8]) -> Replay {
    replay_with(bytes, FindingRules::default())
}
