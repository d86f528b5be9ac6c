use std::sync::Arc;

use gup_trace_common::{EventKind, Hook};

use super::{synthetic::*, *};

/// What a reader gives back, owned, to compare.
#[derive(Debug, PartialEq)]
enum Owned {
    Record(Vec<u8>),
    Stack(u32, CallStack),
    Counters(CounterSnapshot),
    End(EndTotals),
}

fn read_all(bytes: &[u8]) -> Result<(Metadata, Vec<Owned>, ReadStatus)> {
    let mut r = RecordingReader::new(bytes)?;
    let mut items = Vec::new();
    while let Some(item) = r.next_item()? {
        items.push(match item {
            Item::Record(b) => Owned::Record(b.to_vec()),
            Item::Stack(id, s) => Owned::Stack(id, s),
            Item::Counters(c) => Owned::Counters(c),
            Item::End(e) => Owned::End(e),
        });
    }
    Ok((r.meta.clone(), items, r.status.clone()))
}

/// Bytes of the header of a recording of [`metadata`], its checksum included.
fn header_len() -> usize {
    FIXED_HEADER + serde_json::to_vec(&metadata()).unwrap().len() + HEADER_CHECKSUM
}

/// Writes the header's checksum anew, after a test changed a field of the header.
fn reseal_header(bytes: &mut [u8]) {
    let end = header_len() - HEADER_CHECKSUM;
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The same recording in format 2, as a gup-trace before checksums wrote it: no header
/// checksum, 12-byte chunk headers.
fn as_format_2(bytes: &[u8]) -> Vec<u8> {
    let header = header_len();
    let mut old = bytes[..header - HEADER_CHECKSUM].to_vec();
    old[8..12].copy_from_slice(&2u32.to_le_bytes());
    let mut at = header;
    while at < bytes.len() {
        let stored = le32(&bytes[at + 8..]) as usize;
        old.extend_from_slice(&bytes[at..at + CHUNK_HEADER_V2]);
        old.extend_from_slice(&bytes[at + CHUNK_HEADER..at + CHUNK_HEADER + stored]);
        at += CHUNK_HEADER + stored;
    }
    old
}

fn counters(ts_ns: u64, end: bool) -> CounterSnapshot {
    CounterSnapshot {
        ts_ns,
        end,
        kernel: KernelCounters {
            lost_events: 3,
            mmap_lock_releases: 40,
            ..KernelCounters::default()
        },
        vmstat: end.then_some(PinCounters {
            acquired: 100,
            released: 90,
        }),
    }
}

/// A small recording: counters, two stacks (one unreadable), `records` synthetic records with
/// a chunk boundary every `chunk_every`, counters, the end. Returns the bytes and the items in
/// order.
fn small_recording(
    records: usize,
    chunk_every: usize,
    compression: Compression,
) -> (Vec<u8>, Vec<Owned>) {
    let mut expected = Vec::new();
    let mut w = RecordingWriter::new(Vec::new(), &metadata(), compression).unwrap();
    w.counters(&counters(START_NS, false)).unwrap();
    expected.push(Owned::Counters(counters(START_NS, false)));
    let (id, frames) = stacks().remove(1);
    let frames: Arc<[StackFrame]> = frames.into();
    w.stack(id, &Ok(frames.clone())).unwrap();
    w.stack(id, &Ok(frames.clone())).unwrap(); // once per id
    expected.push(Owned::Stack(id, Ok(frames)));
    let unnamed: Arc<[StackFrame]> = vec![StackFrame {
        address: 0xffff_ffff_c0a0_3040,
        symbol: Some(FrameSymbol {
            function: "bpf_prog_x".into(),
            offset: 0x40,
            module: Some("bpf".into()),
        }),
    }]
    .into();
    w.stack(7, &Ok(unnamed.clone())).unwrap();
    expected.push(Owned::Stack(7, Ok(unnamed)));
    w.stack(8, &Err("STACKS map full".into())).unwrap();
    expected.push(Owned::Stack(8, Err("STACKS map full".into())));
    let mut synth = Synthetic::new(7, 4);
    let mut record = Vec::new();
    for i in 0..records {
        synth.next_record(&mut record);
        w.record(&record).unwrap();
        expected.push(Owned::Record(record.clone()));
        if (i + 1) % chunk_every == 0 {
            w.flush().unwrap();
        }
    }
    w.counters(&counters(synth.now_ns(), true)).unwrap();
    expected.push(Owned::Counters(counters(synth.now_ns(), true)));
    let end = EndTotals {
        end_ns: synth.now_ns() + 1,
        records: records as u64,
        events: w.stats.events,
        lost_events: 3,
        stacks: 3,
    };
    expected.push(Owned::End(end));
    let (bytes, stats) = w.finish(&end).unwrap();
    assert_eq!(stats.file_bytes, bytes.len() as u64);
    assert_eq!(stats.stacks, 3);
    (bytes, expected)
}

#[test]
fn a_recording_reads_back_item_for_item() {
    for compression in [Compression::None, Compression::Lz4] {
        let (bytes, expected) = small_recording(500, 100, compression);
        let (meta, items, status) = read_all(&bytes).unwrap();
        assert_eq!(meta, metadata());
        assert_eq!(status, ReadStatus::Complete);
        assert_eq!(items.len(), expected.len());
        for (i, (got, want)) in items.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "item {i} ({compression:?})");
        }
        let mut r = RecordingReader::new(&bytes[..]).unwrap();
        while r.next_item().unwrap().is_some() {}
        assert_eq!(r.records, 500);
        let Some(Owned::End(end)) = expected.last() else {
            panic!("ends with the end marker")
        };
        assert_eq!(r.events, end.events);
        assert!(
            r.events > 500,
            "release records carry folios: more events than records"
        );
    }
}

#[test]
fn compression_shrinks_records() {
    let (plain, _) = small_recording(2000, 5000, Compression::None);
    let (packed, _) = small_recording(2000, 5000, Compression::Lz4);
    assert!(
        packed.len() * 3 < plain.len(),
        "{} bytes packed, {} plain",
        packed.len(),
        plain.len()
    );
}

#[test]
fn a_recording_cut_at_any_byte_reads_a_prefix_and_says_it_was_truncated() {
    let (bytes, expected) = small_recording(60, 7, Compression::Lz4);
    let header = header_len();
    let mut last_events = 0;
    for cut in 0..=bytes.len() {
        let result = read_all(&bytes[..cut]);
        if cut < header {
            let err = format!("{:#}", result.unwrap_err());
            assert!(err.contains("ends inside its header"), "cut {cut}: {err}");
            continue;
        }
        let (_, items, status) = result.unwrap_or_else(|e| panic!("cut {cut}: {e:#}"));
        assert!(items.len() <= expected.len());
        assert_eq!(
            items[..],
            expected[..items.len()],
            "cut {cut}: not a prefix"
        );
        let mut r = RecordingReader::new(&bytes[..cut]).unwrap();
        while r.next_item().unwrap().is_some() {}
        assert!(
            r.events >= last_events,
            "cut {cut}: fewer events than a shorter cut"
        );
        last_events = r.events;
        if cut == bytes.len() {
            assert_eq!(status, ReadStatus::Complete);
        } else {
            assert_eq!(status, ReadStatus::Truncated, "cut {cut}");
        }
    }
    assert!(last_events > 60);
}

#[test]
fn another_format_version_or_event_size_is_refused_with_the_reason() {
    let (bytes, _) = small_recording(3, 100, Compression::Lz4);
    // Version 1: events without their memory's owner, as every recording before owners.
    let mut older = bytes.clone();
    older[8..12].copy_from_slice(&1u32.to_le_bytes());
    let err = format!("{:#}", RecordingReader::new(&older[..]).err().unwrap());
    assert!(
        err.contains("recording format version 1")
            && err.contains(&format!("reads versions 2 to {FORMAT_VERSION} only"))
            && err.contains(&format!(
                "written by gup-trace {}",
                env!("CARGO_PKG_VERSION")
            )),
        "{err}"
    );
    let mut bigger = bytes.clone();
    let size = size_of::<Event>() as u32;
    bigger[12..16].copy_from_slice(&(size + 8).to_le_bytes());
    reseal_header(&mut bigger);
    let err = format!("{:#}", RecordingReader::new(&bigger[..]).err().unwrap());
    assert!(
        err.contains(&format!("events are {} bytes", size + 8))
            && err.contains(&format!("this build's are {size}")),
        "{err}"
    );
    let mut folio = bytes.clone();
    folio[16..20].copy_from_slice(&40u32.to_le_bytes());
    reseal_header(&mut folio);
    let err = format!("{:#}", RecordingReader::new(&folio[..]).err().unwrap());
    assert!(err.contains("40-byte folio entries"), "{err}");
    let err = format!(
        "{:#}",
        RecordingReader::new(&b"{\"json\": 1}"[..]).err().unwrap()
    );
    assert!(err.contains("not a gup-trace recording"), "{err}");
}

#[test]
fn a_damaged_chunk_stops_reading_with_what_came_before() {
    let (bytes, expected) = small_recording(20, 10, Compression::Lz4);
    let header = header_len();
    let damage = |chunk, offset, reason: &str| {
        ReadStatus::Damaged(Damage {
            chunk,
            offset: offset as u64,
            reason: reason.into(),
        })
    };
    // The first chunk's codec byte.
    let mut bad = bytes.clone();
    bad[header] = 9;
    let (_, items, status) = read_all(&bad).unwrap();
    assert!(items.is_empty());
    assert_eq!(
        status,
        damage(1, header, "its header fails its CRC32C checksum")
    );
    // The second chunk's length, past the file's end: damage, not a file cut short, and
    // everything of the first chunk.
    let first = le32(&bytes[header + 8..]) as usize;
    let second = header + CHUNK_HEADER + first;
    let mut long = bytes.clone();
    long[second + 8..second + 12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let (_, items, status) = read_all(&long).unwrap();
    assert_eq!(
        status,
        damage(2, second, "its header fails its CRC32C checksum")
    );
    assert_eq!(items[..], expected[..items.len()]);
    assert!(items.len() >= 10);
    // One bit of the second chunk's bytes.
    let mut flipped = bytes.clone();
    flipped[second + CHUNK_HEADER + 3] ^= 0x10;
    let (_, again, status) = read_all(&flipped).unwrap();
    assert_eq!(
        status,
        damage(2, second, "its bytes fail their CRC32C checksum")
    );
    assert_eq!(again, items);
    // Format 2 has no checksums: the same damaged codec byte is caught by the unpacking only.
    let mut old = as_format_2(&bytes);
    old[header - HEADER_CHECKSUM] = 9;
    let (_, _, status) = read_all(&old).unwrap();
    assert_eq!(
        status,
        damage(1, header - HEADER_CHECKSUM, "it cannot be unpacked")
    );
}

#[test]
fn a_damaged_header_is_refused() {
    let (bytes, _) = small_recording(3, 100, Compression::Lz4);
    // A bit of the metadata (inside the kernel release, say): nothing else would notice.
    for at in [30, header_len() - HEADER_CHECKSUM - 3, header_len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 4;
        let err = format!("{:#}", RecordingReader::new(&bad[..]).err().unwrap());
        assert!(
            err.contains("header is damaged") && err.contains("CRC32C"),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn a_format_2_recording_without_checksums_is_still_read() {
    for compression in [Compression::None, Compression::Lz4] {
        let (bytes, expected) = small_recording(200, 50, compression);
        let old = as_format_2(&bytes);
        assert!(old.len() < bytes.len());
        let (meta, items, status) = read_all(&old).unwrap();
        assert_eq!(meta, metadata());
        assert_eq!(status, ReadStatus::Complete);
        assert_eq!(items, expected);
    }
}

#[test]
fn unknown_items_are_skipped() {
    let mut w = RecordingWriter::new(Vec::new(), &metadata(), Compression::None).unwrap();
    w.item(42, b"from a later gup-trace").unwrap();
    w.counters(&counters(1, false)).unwrap();
    let (bytes, _) = w.finish(&EndTotals::default()).unwrap();
    let (_, items, status) = read_all(&bytes).unwrap();
    assert_eq!(status, ReadStatus::Complete);
    assert_eq!(
        items,
        [
            Owned::Counters(counters(1, false)),
            Owned::End(EndTotals::default())
        ]
    );
}

#[test]
fn records_tell_their_events_and_stack() {
    let mut call = event(EventKind::Call, Hook::UnpinUserPages, 5, 1, 1, comm("x"));
    let mut bytes = Vec::new();
    put_event(&mut bytes, &call);
    assert_eq!((events_in(&bytes), stack_id_of(&bytes)), (1, None));
    put_folio(&mut bytes, &pin_transition(1, 1, false, true));
    put_folio(&mut bytes, &pin_transition(2, 1, false, true));
    assert_eq!(events_in(&bytes), 3);
    call.stack_id = 12;
    bytes.clear();
    put_event(&mut bytes, &call);
    assert_eq!(stack_id_of(&bytes), Some(12));
}

#[test]
fn the_process_filter_is_stored_and_named_as_it_always_was() {
    let filters = Filters {
        processes: ProcessFilter {
            pid: Some(12),
            comm: Some("fio".into()),
            cgroup_id: Some(3),
        },
        mmap_lock: "gup".into(),
        all_releases: true,
        ring_buffer_kib: 4096,
    };
    let json = serde_json::to_string(&filters).unwrap();
    assert_eq!(
        json,
        r#"{"pid":12,"comm":"fio","cgroup_id":3,"mmap_lock":"gup","all_releases":true,"ring_buffer_kib":4096}"#
    );
    assert_eq!(serde_json::from_str::<Filters>(&json).unwrap(), filters);
    let unfiltered = r#"{"pid":null,"comm":null,"cgroup_id":null,"mmap_lock":"off","all_releases":false,"ring_buffer_kib":1}"#;
    assert!(
        !serde_json::from_str::<Filters>(unfiltered)
            .unwrap()
            .processes
            .is_set()
    );
    assert_eq!(
        filters.processes.describe(),
        ["pid 12", "comm fio", "cgroup 3"]
    );
}
