use super::*;
use crate::{
    engine::FindingRules,
    recording::{
        Compression, FIXED_HEADER, HEADER_CHECKSUM, ReadStatus, RecordingReader, Replay,
        scenario::{remote_scenario, replay, replay_with, scenario},
        synthetic::{Rng, metadata, write_recording},
    },
};

const OPTS: ReportOptions = ReportOptions {
    top: 10,
    stack_depth: 3,
};

#[test]
fn a_replayed_recording_says_who_pinned_where_and_what_is_left() {
    let replay = replay(&scenario());
    assert_eq!(replay.status, ReadStatus::Complete);
    let findings = replay.findings();
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
    let findings = replay.findings();
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
    let findings = replay.findings();
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
    let findings = replay.findings();
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
    let findings = replay.findings();
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
fn pins_a_worker_took_on_a_process_memory_are_reported_as_that_process_taken_by_the_worker() {
    let replay = replay(&remote_scenario());
    let findings = replay.findings();
    let report = Report::new(&replay, &findings, OPTS);
    let [held] = report.outstanding.rows.as_slice() else {
        panic!("one holder: {:?}", report.outstanding.rows);
    };
    assert_eq!(
        (held.pid, held.comm.as_str(), held.pages),
        (300, "victim", 2)
    );
    let taker = held.taken_by.as_ref().expect("the worker is named");
    assert_eq!((taker.pid, taker.comm.as_str()), (55, "kworker/u8:1"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outstanding"]["rows"][0]["taken_by"]["pid"], 55);
    let text = text::text(&report, "");
    assert!(
        text.contains("victim") && text.contains("taken by pid 55 (kworker/u8:1)"),
        "{text}"
    );
}

#[test]
fn a_longterm_call_that_migrated_reads_as_one_line_and_one_json_row() {
    let call = crate::engine::blocking::LongtermMigration {
        ts_ns: 1_500_000_000,
        tgid: 100,
        tid: 101,
        comm: "fio".into(),
        entry: gup_trace_common::Hook::PinUserPagesFast,
        stack_id: Some(7),
        pages: 64,
        requested: 64,
        error: 0,
        migrated: 542,
        failed: 2,
        retries: 2,
        duration_ns: 2_000_000,
        enomem_after_failed_migration: false,
    };
    let section = LongtermSection {
        totals: LongtermTotals {
            calls: 1,
            migrated: 542,
            failed: 2,
            retries: 2,
            enomem_calls: 0,
        },
        rows: vec![LongtermEntry::of(&call, 1_000_000_000)],
    };
    let mut out = String::new();
    super::text::longterm_text(&mut out, &section);
    let line = out.lines().last().unwrap();
    assert!(
        line.contains(
            "0.500 s  pid 100 (fio) pin_user_pages_fast: 542 migrated, 2 failed, 2 migrations in"
        ) && line.ends_with("64 pins taken for 64 pages asked"),
        "{out}"
    );
    let v = serde_json::to_value(&section).unwrap();
    assert_eq!(v["migrated"], 542);
    let row = &v["rows"][0];
    assert_eq!(
        (&row["time_s"], &row["tgid"], &row["entry"], &row["retries"]),
        (
            &serde_json::json!(0.5),
            &serde_json::json!(100),
            &serde_json::json!("pin_user_pages_fast"),
            &serde_json::json!(2)
        )
    );
}

/// The report of a recording as text and JSON, or the reader's refusal.
fn report_of(bytes: &[u8]) -> Result<(ReadStatus, String), String> {
    let rules = FindingRules {
        grace_ns: 0,
        ..FindingRules::default()
    };
    let reader = RecordingReader::new(bytes).map_err(|e| format!("{e:#}"))?;
    let replay = Replay::read(reader, rules).map_err(|e| format!("{e:#}"))?;
    let findings = replay.findings();
    let report = Report::new(&replay, &findings, OPTS);
    let json = serde_json::to_string(&report).unwrap();
    Ok((
        replay.status.clone(),
        format!("{}\n{json}", text(&report, "")),
    ))
}

#[test]
fn a_flipped_bit_anywhere_in_the_body_is_detected_or_changes_nothing() {
    let (bytes, _) = write_recording(Vec::new(), 5, 30_000, Compression::Lz4).unwrap();
    let body = FIXED_HEADER + serde_json::to_vec(&metadata()).unwrap().len() + HEADER_CHECKSUM;
    let (status, clean) = report_of(&bytes).unwrap();
    assert_eq!(status, ReadStatus::Complete);
    let mut rng = Rng::new(13);
    let (mut detected, mut unchanged) = (0, 0);
    let mut silent = Vec::new();
    for _ in 0..200 {
        let at = rng.range(body as u64, bytes.len() as u64) as usize;
        let bit = 1u8 << rng.range(0, 8);
        let mut bad = bytes.clone();
        bad[at] ^= bit;
        match report_of(&bad) {
            Ok((ReadStatus::Damaged(d), text)) => {
                assert!(d.offset <= at as u64, "damage at {at} placed after it: {d}");
                assert!(text.starts_with("DAMAGED recording: chunk "), "{text}");
                assert!(text.contains(r#""damaged":{"chunk":"#), "{text}");
                detected += 1;
            }
            Ok((_, report)) if report == clean => unchanged += 1,
            Ok((status, _)) => silent.push((at, bit, status)),
            Err(why) => panic!("byte {at}: the body's damage refused the whole file: {why}"),
        }
    }
    assert!(
        silent.is_empty(),
        "{} of 200 flips gave another report without saying the recording is damaged \
         ({detected} detected, {unchanged} unchanged): {silent:?}",
        silent.len()
    );
    assert!(detected > 150, "{detected} detected, {unchanged} unchanged");
}
