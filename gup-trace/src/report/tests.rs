use gup_trace_common::{EventKind, Hook, LockStats};

use super::*;
use crate::recording::{Compression, RecordingWriter, synthetic::*};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

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
fn scenario() -> Vec<u8> {
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
    let mut w = RecordingWriter::new(Vec::new(), &metadata(), Compression::Lz4).unwrap();
    let snapshot = |ts_ns, end, acquired, released| CounterSnapshot {
        ts_ns,
        end,
        kernel: KernelCounters::default(),
        vmstat: Some(PinCounters { acquired, released }),
    };
    w.counters(&snapshot(start, false, 1000, 1000)).unwrap();
    for (id, frames) in stacks() {
        w.stack(id, &Ok(frames.into())).unwrap();
    }
    for r in &records {
        w.record(r).unwrap();
    }
    let end_ns = start + 10 * S;
    w.counters(&snapshot(end_ns, true, 1005, 1001)).unwrap();
    let end = w.end_totals(end_ns, 0);
    w.finish(&end).unwrap().0
}

fn replay_with(bytes: &[u8], rules: FindingRules) -> Replay {
    Replay::read(RecordingReader::new(bytes).unwrap(), rules).unwrap()
}

fn replay(bytes: &[u8]) -> Replay {
    replay_with(bytes, FindingRules::default())
}

const OPTS: ReportOptions = ReportOptions {
    top: 10,
    stack_depth: 3,
};

#[test]
fn a_replayed_recording_says_who_pinned_where_and_what_is_left() {
    let replay = replay(&scenario());
    assert_eq!(replay.status, ReadStatus::Complete);
    let findings = findings(&replay);
    let report = Report::new(&replay, &findings, OPTS);
    let r = &report.recording;
    assert_eq!((r.records, r.events, r.lost_events), (11, 12, Some(0)));
    assert_eq!((r.pinned, r.released), (5, 1));
    assert_eq!(
        r.vmstat,
        Some(PinCounters {
            acquired: 5,
            released: 1
        })
    );
    assert!((r.seconds - 10.0).abs() < 1e-9);

    let p: Vec<_> = report
        .processes
        .rows
        .iter()
        .map(|p| {
            (
                p.pid,
                p.comm.as_str(),
                p.pins_taken,
                p.pins_released,
                p.outstanding,
            )
        })
        .collect();
    assert_eq!(p, [(100, "fio", 3, 1, 2), (200, "leaker", 2, 0, 2)]);
    let leaker = &report.processes.rows[1];
    assert_eq!(leaker.parent, Some(100));
    assert_eq!(leaker.exited_s, Some(0.5));
    assert_eq!(leaker.fast_share, Some(0.5));

    let io_uring = &report.call_sites.rows[0];
    assert_eq!(
        (io_uring.entry, io_uring.stack_id, io_uring.pins_taken),
        ("pin_user_pages_fast", Some(12), 3)
    );
    assert_eq!(
        io_uring.stack,
        [
            "io_pin_pages+0x8a",
            "io_sqe_buffer_register+0x1a3",
            "io_sqe_buffers_register+0x130"
        ],
        "the recorded frames, at most --stack-depth"
    );

    // Oldest first: fio's since 0.1 s (long-term), then leaker's since 0.4 s.
    let held: Vec<_> = report
        .outstanding
        .rows
        .iter()
        .map(|h| (h.pid, h.pages, h.folios, h.longterm))
        .collect();
    assert_eq!(held, [(100, 2, 2, true), (200, 2, 2, false)]);
    assert!((report.outstanding.rows[0].age_s - 9.9).abs() < 1e-6);

    // The leaker's pins are orphaned (exited 9.5 s before the end); fio's are long-term.
    let kinds: Vec<_> = findings.iter().map(|f| f.kind()).collect();
    assert_eq!(kinds, ["orphaned pins"]);
    assert_eq!(report.findings[0].stack.as_ref().map(Vec::len), Some(3));

    let locks: Vec<_> = report
        .mmap_lock
        .rows
        .iter()
        .map(|l| (l.pid, l.calls, l.drops, l.hold_p50_ns))
        .collect();
    assert_eq!(locks, [(200, 1, 1, 131_071), (100, 1, 0, 131_071)]);
}

#[test]
fn the_text_report_has_every_section() {
    let replay = replay(&scenario());
    let findings = findings(&replay);
    let report = Report::new(&replay, &findings, OPTS);
    let mut lookup = |id: u32| replay.stack(id);
    let f = crate::output::findings_text(&findings, replay.meta.start_ns, &mut lookup, 3);
    let t = text(&report, &f);
    for needle in [
        "recording by gup-trace",
        "on Linux synthetic, started 2026-",
        "12 events in 11 records; lost events: 0; 4 kernel stacks; complete",
        "hooks: every hook this kernel has was attached",
        "pages pinned/released: 5 / 1 seen, /proc/vmstat 5 / 1",
        "processes (2, by pins taken;",
        "call sites (2, by pins taken)",
        "        io_sqe_buffer_register+0x1a3",
        "outstanding pins at the end (2 holders, oldest first)",
        "ORPHANED PINS: pid 200 (leaker)",
        "mmap_lock inside GUP calls, per process (2)",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
    let fio = t
        .lines()
        .find(|l| l.contains(" fio ") && l.contains("running"))
        .unwrap();
    assert!(fio.contains("67%"), "fast share: {fio}");
}

#[test]
fn the_json_report_is_one_document_with_every_section() {
    let replay = replay(&scenario());
    let findings = findings(&replay);
    let v = serde_json::to_value(Report::new(&replay, &findings, OPTS)).unwrap();
    assert_eq!(v["recording"]["events"], 12);
    assert_eq!(v["recording"]["status"], "complete");
    assert_eq!(v["processes"]["total"], 2);
    assert_eq!(v["processes"]["rows"][1]["comm"], "leaker");
    assert_eq!(v["call_sites"]["rows"][0]["stack"][0], "io_pin_pages+0x8a");
    assert_eq!(v["outstanding"]["rows"][1]["pid"], 200);
    assert_eq!(v["findings"][0]["finding"], "orphaned_pins");
    assert_eq!(v["findings"][0]["problem"], true);
    assert_eq!(v["mmap_lock"]["rows"][0]["drops"], 1);
}

#[test]
fn a_truncated_recording_is_reported_up_to_where_it_stops() {
    let bytes = scenario();
    // Cut inside the last chunk (the writer flushed once, at the end): nothing but the
    // header is left, and the report says so instead of failing.
    let header = bytes.len() - 200;
    let replay = replay(&bytes[..header]);
    assert_eq!(replay.status, ReadStatus::Truncated);
    let findings = findings(&replay);
    let report = Report::new(&replay, &findings, OPTS);
    let t = text(&report, "");
    assert!(t.contains("TRUNCATED after 0 events"), "{t}");
    assert!(t.contains("lost events: unknown"), "{t}");
}

#[test]
fn a_synthetic_recording_replays_with_every_record_decoded() {
    let (bytes, stats) = write_recording(Vec::new(), 3, 50_000, Compression::Lz4).unwrap();
    // The synthetic traffic is dense: 50k events take ~50 ms, less than the default grace.
    let rules = FindingRules {
        grace_ns: 0,
        ..FindingRules::default()
    };
    let replay = replay_with(&bytes, rules);
    assert_eq!(replay.status, ReadStatus::Complete);
    assert_eq!(replay.events, stats.events);
    assert_eq!(replay.undecodable, 0);
    let findings = findings(&replay);
    let report = Report::new(&replay, &findings, OPTS);
    assert!(report.processes.total > 32, "processes were replaced");
    let sites: Vec<_> = report
        .call_sites
        .rows
        .iter()
        .map(|s| (s.entry, s.stack_id))
        .collect();
    assert_eq!(
        sites,
        [
            ("pin_user_pages_fast", Some(11)),
            ("pin_user_pages_fast", Some(12)),
            ("pin_user_pages_remote", Some(13))
        ],
        "every pin is owned by the call that took it (FOLL_GET calls own none)"
    );
    assert_eq!(
        report.recording.pinned,
        report.recording.vmstat.unwrap().acquired,
        "the synthetic vmstat counts what was pinned"
    );
    assert!(
        findings.iter().any(|f| f.kind() == "orphaned pins"),
        "one exit in ten leaves pins behind"
    );
    assert!(
        !findings.iter().any(|f| f.kind() == "unbalanced release"),
        "{findings:?}"
    );
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(1_795_000_000.0), "2026-11-18 11:06:40 UTC");
    assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
}

#[test]
fn a_replay_in_steps_reaches_the_state_of_a_replay_in_one_go() {
    let (bytes, _) = write_recording(Vec::new(), 5, 30_000, Compression::Lz4).unwrap();
    let rules = FindingRules::default();
    let whole = replay_with(&bytes, rules);
    let mut steps = Replayer::new(RecordingReader::new(&bytes[..]).unwrap(), rules);
    let mut t = START_NS;
    let mut pinned_before = Vec::new();
    while !steps.at_end() {
        t += MS;
        steps.advance(Some(t)).unwrap();
        assert!(
            steps.engine.newest_ns <= t,
            "nothing past the cursor is applied"
        );
        pinned_before.push(steps.engine.state.pinned_now);
    }
    steps.advance(None).unwrap();
    let stepped = steps.into_replay();
    assert!(pinned_before.len() > 10, "the recording spans many steps");
    assert_eq!(stepped.events, whole.events);
    let (a, b) = (&stepped.engine, &whole.engine);
    assert_eq!(a.state.pinned_now, b.state.pinned_now);
    assert_eq!(a.state.folios.len(), b.state.folios.len());
    assert_eq!(a.state.processes.len(), b.state.processes.len());
    assert_eq!(a.ledger.totals, b.ledger.totals);
    assert_eq!(a.ledger.folios, b.ledger.folios);
    assert_eq!(a.late_events(), b.late_events());
}

#[test]
fn a_pid_filter_keeps_that_process_and_every_release() {
    let bytes = scenario();
    let filter = ReplayFilter {
        pid: Some(100),
        ..ReplayFilter::default()
    };
    let replay = Replay::read_filtered(
        RecordingReader::new(&bytes[..]).unwrap(),
        FindingRules::default(),
        &filter,
    )
    .unwrap();
    let tgids: Vec<u32> = replay
        .engine
        .state
        .processes
        .iter()
        .map(|p| p.tgid)
        .collect();
    // 200 appears only as the child of 100's fork (forks always pass): it pinned nothing.
    assert!(tgids.contains(&100), "{tgids:?}");
    let leaker = replay.engine.state.processes.iter().find(|p| p.tgid == 200);
    assert!(leaker.is_none_or(|p| p.pins_taken == 0), "{leaker:?}");
    let fio = replay
        .engine
        .state
        .processes
        .iter()
        .find(|p| p.tgid == 100)
        .unwrap();
    assert_eq!((fio.pins_taken, fio.pins_released), (3, 1));
    assert!(
        findings(&replay).iter().all(|f| !f.is_problem()),
        "the leaker's orphaned pins are filtered out"
    );
}
