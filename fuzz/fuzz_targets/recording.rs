//! The recording reader and the report, on arbitrary bytes: `gup-trace report` on any file
//! must end (no panic, no hang, memory bounded by libFuzzer's limits) with a report or an
//! error.
//!
//! Every chunk carries CRC32C checksums, so almost every mutation would stop at the first
//! checksum. Each input is read twice: as it is (the checksum checks themselves), and with
//! its checksums written anew over whatever the mutation left, so that the fuzzer reaches
//! the chunk, item and stack parsers behind them.

#![no_main]

use gup_trace::{
    engine::FindingRules,
    output::report::{self, Report, ReportOptions},
    recording::{ReadStatus, RecordingReader, Replay},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    report(data);
    let mut sealed = data.to_vec();
    if reseal(&mut sealed) {
        report(&sealed);
    }
});

/// What `gup-trace report` does with a file, text and JSON.
fn report(bytes: &[u8]) {
    let Ok(reader) = RecordingReader::new(bytes) else {
        return;
    };
    let replay =
        Replay::read(reader, FindingRules::default()).expect("a slice cannot fail to read");
    assert_ne!(replay.status, ReadStatus::Reading, "the read ended");
    assert!(
        replay.undecodable <= replay.records,
        "{} undecodable of {} records",
        replay.undecodable,
        replay.records
    );
    let findings = replay.findings();
    let opts = ReportOptions {
        top: 10,
        stack_depth: 8,
    };
    let report = Report::new(&replay, &findings, opts);
    serde_json::to_string(&report).expect("the report serializes");
    let text = report::replay_text(&report, &replay, &findings, opts);
    assert!(!text.is_empty());
}

/// Writes the header's and every chunk's CRC32C checksums anew (format 3: see the layout in
/// gup_trace::recording); true if the bytes are a format 3 recording as far as its header.
fn reseal(bytes: &mut [u8]) -> bool {
    const FIXED_HEADER: usize = 24;
    const CHUNK_HEADER: usize = 20;
    if bytes.len() < FIXED_HEADER
        || bytes[..8] != gup_trace::recording::MAGIC
        || le32(bytes, 8) != 3
    {
        return false;
    }
    let end = FIXED_HEADER.saturating_add(le32(bytes, 20) as usize);
    if end.saturating_add(4) > bytes.len() {
        return false;
    }
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    let mut at = end + 4;
    while at + CHUNK_HEADER <= bytes.len() {
        let stored = le32(bytes, at + 8) as usize;
        let data_end = (at + CHUNK_HEADER).saturating_add(stored).min(bytes.len());
        let crc = crc32c::crc32c(&bytes[at + CHUNK_HEADER..data_end]);
        bytes[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[at..at + 16]);
        bytes[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
        at = data_end;
    }
    true
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
