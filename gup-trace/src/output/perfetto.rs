//! `gup-trace report --perfetto FILE.pftrace`: a recording as a Perfetto trace, to open in
//! the Perfetto UI (ui.perfetto.dev) or query with its trace processor.
//!
//! Written with the `perfetto_protos` crate (Perfetto's own trace protos compiled to Rust
//! with rust-protobuf), not hand-rolled bytes. The trace holds, per process, a track with a
//! child track per thread: each GUP and unpin call is a slice there (entry point, pages,
//! flags, fast/slow pages, mmap_lock drops as arguments); a counter track of the pages the
//! process holds pinned, sampled as the recording is replayed, and a "holding pins" slice from
//! its first pin to the release of its last; and the findings at the end
//! of the recording as instants on the process they are about, their evidence (the finding
//! as JSON) in the arguments.

use std::{
    collections::{HashMap, HashSet},
    io::Read,
};

use anyhow::Result;
use perfetto_protos::{
    counter_descriptor::CounterDescriptor,
    debug_annotation::DebugAnnotation,
    process_descriptor::ProcessDescriptor,
    thread_descriptor::ThreadDescriptor,
    trace::Trace,
    trace_packet::TracePacket,
    track_descriptor::TrackDescriptor,
    track_event::{TrackEvent, track_event::Type},
};
use protobuf::{Message as _, MessageField};

use crate::{
    analysis::FindingSubject,
    engine::FindingRules,
    events::TraceEvent,
    recording::{ProcessFilter, RecordingReader, Replayer},
};

/// What the trace holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfettoSummary {
    pub processes: usize,
    pub threads: usize,
    pub calls: u64,
    pub counter_samples: u64,
    pub findings: usize,
}

/// Track uuids: a process's track, its threads', its pinned-pages counter, the findings
/// track of no process.
fn process_uuid(tgid: u32) -> u64 {
    1 << 40 | u64::from(tgid)
}
fn thread_uuid(tid: u32) -> u64 {
    2 << 40 | u64::from(tid)
}
fn counter_uuid(tgid: u32) -> u64 {
    3 << 40 | u64::from(tgid)
}
const MACHINE_UUID: u64 = 4 << 40;
fn holding_uuid(tgid: u32) -> u64 {
    5 << 40 | u64::from(tgid)
}

/// The packets of a trace being built, and the tracks described so far.
#[derive(Default)]
struct Builder {
    trace: Trace,
    described: HashSet<u64>,
    summary: PerfettoSummary,
}

impl Builder {
    fn packet(&mut self, ts_ns: u64, event: TrackEvent) {
        let mut p = TracePacket::new();
        p.set_timestamp(ts_ns);
        p.set_trusted_packet_sequence_id(1);
        p.set_track_event(event);
        self.trace.packet.push(p);
    }

    fn describe(&mut self, track: TrackDescriptor) {
        if self.described.insert(track.uuid()) {
            let mut p = TracePacket::new();
            p.set_trusted_packet_sequence_id(1);
            p.set_track_descriptor(track);
            self.trace.packet.push(p);
        }
    }

    /// The process's track (described once).
    fn process(&mut self, tgid: u32, comm: &str) -> u64 {
        let uuid = process_uuid(tgid);
        if !self.described.contains(&uuid) {
            let mut d = ProcessDescriptor::new();
            d.set_pid(tgid as i32);
            d.set_process_name(comm.to_string());
            let mut t = TrackDescriptor::new();
            t.set_uuid(uuid);
            t.process = MessageField::some(d);
            self.describe(t);
            self.summary.processes += 1;
        }
        uuid
    }

    /// The thread's track under its process (described once).
    fn thread(&mut self, tgid: u32, tid: u32, comm: &str) -> u64 {
        let parent = self.process(tgid, comm);
        let uuid = thread_uuid(tid);
        if !self.described.contains(&uuid) {
            let mut d = ThreadDescriptor::new();
            d.set_pid(tgid as i32);
            d.set_tid(tid as i32);
            d.set_thread_name(comm.to_string());
            let mut t = TrackDescriptor::new();
            t.set_uuid(uuid);
            t.set_parent_uuid(parent);
            t.thread = MessageField::some(d);
            self.describe(t);
            self.summary.threads += 1;
        }
        uuid
    }

    /// A GUP or unpin call as a slice on its thread's track.
    fn call(&mut self, e: &TraceEvent) {
        let track = self.thread(e.tgid, e.tid, &e.comm.to_string());
        let mut begin = TrackEvent::new();
        begin.set_type(Type::TYPE_SLICE_BEGIN);
        begin.set_track_uuid(track);
        begin.set_name(e.hook.name().to_string());
        let args: [(&str, u64); 6] = [
            ("pages", e.pages),
            ("requested", e.requested),
            ("gup_flags", u64::from(e.gup_flags)),
            ("fast_pages", e.path.fast_refs),
            ("slow_pages", e.path.slow_refs),
            ("mmap_lock_drops", u64::from(e.lock.drops)),
        ];
        for (name, value) in args {
            let mut a = DebugAnnotation::new();
            a.set_name(name.to_string());
            a.set_uint_value(value);
            begin.debug_annotations.push(a);
        }
        if e.error != 0 {
            let mut a = DebugAnnotation::new();
            a.set_name("error".to_string());
            a.set_int_value(i64::from(e.error));
            begin.debug_annotations.push(a);
        }
        self.packet(e.ts_ns.saturating_sub(e.duration_ns), begin);
        let mut end = TrackEvent::new();
        end.set_type(Type::TYPE_SLICE_END);
        end.set_track_uuid(track);
        self.packet(e.ts_ns, end);
        self.summary.calls += 1;
    }

    /// A process started holding pins (`begin`), or released its last one: the slice between
    /// on its "holding pins" track.
    fn holding(&mut self, ts_ns: u64, tgid: u32, comm: &str, begin: bool) {
        let parent = self.process(tgid, comm);
        let uuid = holding_uuid(tgid);
        let mut t = TrackDescriptor::new();
        t.set_uuid(uuid);
        t.set_parent_uuid(parent);
        t.set_name("holding pins".to_string());
        self.describe(t);
        let mut e = TrackEvent::new();
        e.set_track_uuid(uuid);
        if begin {
            e.set_type(Type::TYPE_SLICE_BEGIN);
            e.set_name("pins held".to_string());
        } else {
            e.set_type(Type::TYPE_SLICE_END);
        }
        self.packet(ts_ns, e);
    }

    /// A sample of the pages a process holds pinned.
    fn pinned(&mut self, ts_ns: u64, tgid: u32, comm: &str, pages: u64) {
        let parent = self.process(tgid, comm);
        let uuid = counter_uuid(tgid);
        if !self.described.contains(&uuid) {
            let mut t = TrackDescriptor::new();
            t.set_uuid(uuid);
            t.set_parent_uuid(parent);
            t.set_name("pinned pages".to_string());
            t.counter = MessageField::some(CounterDescriptor::new());
            self.describe(t);
        }
        let mut c = TrackEvent::new();
        c.set_type(Type::TYPE_COUNTER);
        c.set_track_uuid(uuid);
        c.set_counter_value(pages as i64);
        self.packet(ts_ns, c);
        self.summary.counter_samples += 1;
    }
}

/// Replays `reader` in steps of `step_ns` of recording time and returns the trace's bytes.
pub fn perfetto_trace<R: Read>(
    reader: RecordingReader<R>,
    rules: FindingRules,
    filter: ProcessFilter,
    step_ns: u64,
) -> Result<(Vec<u8>, PerfettoSummary)> {
    let mut replayer = Replayer::new(reader, rules).filtered(filter);
    replayer.applied = Some(Vec::new());
    let mut b = Builder::default();
    // The pinned pages last sampled, per process record.
    let mut last: HashMap<usize, u64> = HashMap::new();
    let mut until = replayer.meta().start_ns;
    while !replayer.at_end() {
        until = until.saturating_add(step_ns.max(1));
        replayer.advance(Some(until))?;
        for e in replayer
            .applied
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            if e.kind == gup_trace_common::EventKind::Call {
                b.call(&e);
            }
        }
        let now = replayer.engine.newest_ns.min(until);
        for (i, p) in replayer.engine.state.processes.iter().enumerate() {
            let pages = p.outstanding();
            let before = last.get(&i).copied().unwrap_or(0);
            if before != pages {
                let comm = p.comm.to_string();
                if (before == 0) != (pages == 0) {
                    b.holding(now, p.tgid, &comm, before == 0);
                }
                b.pinned(now, p.tgid, &comm, pages);
                last.insert(i, pages);
            }
        }
    }
    let replay = replayer.into_replay();
    let end_ns = replay.end_ns();
    let findings = replay.findings();
    for f in &findings {
        let subject = FindingSubject::of(f, &replay.engine.state);
        let track = match subject.process {
            Some(id) => {
                let p = &replay.engine.state.processes[id as usize];
                b.process(p.tgid, &p.comm.to_string())
            }
            None => {
                let mut t = TrackDescriptor::new();
                t.set_uuid(MACHINE_UUID);
                t.set_name("gup-trace findings".to_string());
                b.describe(t);
                MACHINE_UUID
            }
        };
        let mut i = TrackEvent::new();
        i.set_type(Type::TYPE_INSTANT);
        i.set_track_uuid(track);
        i.set_name(format!("finding: {}", f.kind()));
        let mut a = DebugAnnotation::new();
        a.set_name("evidence".to_string());
        a.set_string_value(serde_json::to_string(f)?);
        i.debug_annotations.push(a);
        b.packet(end_ns, i);
    }
    b.summary.findings = findings.len();
    Ok((b.trace.write_to_bytes()?, b.summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::scenario::{MS, scenario};

    #[test]
    fn the_scenario_decodes_with_process_thread_and_counter_tracks_slices_and_a_finding() {
        let bytes = scenario();
        let reader = RecordingReader::new(&bytes[..]).unwrap();
        let (trace, summary) = perfetto_trace(
            reader,
            FindingRules::default(),
            ProcessFilter::default(),
            10 * MS,
        )
        .unwrap();
        // Decoded with Perfetto's schema (the same generated types, parsing the bytes).
        let decoded = Trace::parse_from_bytes(&trace).unwrap();
        let tracks: Vec<&TrackDescriptor> = decoded
            .packet
            .iter()
            .filter(|p| p.has_track_descriptor())
            .map(|p| p.track_descriptor())
            .collect();
        let processes: Vec<(i32, &str)> = tracks
            .iter()
            .filter(|t| t.process.is_some())
            .map(|t| (t.process.pid(), t.process.process_name()))
            .collect();
        assert!(
            processes.iter().any(|p| p.1 == "fio"),
            "no fio process track: {processes:?}"
        );
        let events: Vec<&TrackEvent> = decoded
            .packet
            .iter()
            .filter(|p| p.has_track_event())
            .map(|p| p.track_event())
            .collect();
        let count = |ty: Type| events.iter().filter(|e| e.type_() == ty).count();
        // The calls, and the two "holding pins" slices (both still open at the end).
        assert_eq!(count(Type::TYPE_SLICE_BEGIN), summary.calls as usize + 2);
        assert_eq!(count(Type::TYPE_SLICE_END), summary.calls as usize);
        assert!(summary.calls >= 3, "{summary:?}");
        // Every slice is on a thread track whose parent is a process track.
        let thread_tracks: HashMap<u64, u64> = tracks
            .iter()
            .filter(|t| t.thread.is_some())
            .map(|t| (t.uuid(), t.parent_uuid()))
            .collect();
        let calls = events.iter().filter(|e| {
            e.type_() == Type::TYPE_SLICE_BEGIN && thread_tracks.contains_key(&e.track_uuid())
        });
        assert_eq!(calls.clone().count() as u64, summary.calls);
        for e in calls {
            let parent = thread_tracks[&e.track_uuid()];
            assert!(
                tracks
                    .iter()
                    .any(|t| t.uuid() == parent && t.process.is_some())
            );
            assert!(e.debug_annotations.iter().any(|a| a.name() == "pages"));
        }
        // The pinned-pages counter of the forked child rises and stays up (it exits holding).
        let counters: Vec<i64> = events
            .iter()
            .filter(|e| e.type_() == Type::TYPE_COUNTER)
            .map(|e| e.counter_value())
            .collect();
        assert_eq!(counters.len() as u64, summary.counter_samples);
        assert!(counters.iter().any(|&v| v > 0), "{counters:?}");
        // Holding pins: fio (3 pinned, 1 released) and its child (2, exits holding them) each
        // open a slice that stays open.
        let holding: HashMap<u64, &str> = tracks
            .iter()
            .filter(|t| t.name() == "holding pins")
            .map(|t| (t.uuid(), t.name()))
            .collect();
        let on_holding = |ty: Type| {
            events
                .iter()
                .filter(|e| holding.contains_key(&e.track_uuid()) && e.type_() == ty)
                .count()
        };
        assert_eq!(holding.len(), 2, "{tracks:?}");
        assert_eq!(on_holding(Type::TYPE_SLICE_BEGIN), 2);
        assert_eq!(on_holding(Type::TYPE_SLICE_END), 0);
        // The orphaned pins are an instant with their evidence.
        let orphaned = events
            .iter()
            .find(|e| e.type_() == Type::TYPE_INSTANT && e.name() == "finding: orphaned pins")
            .unwrap_or_else(|| panic!("no orphaned finding: {summary:?}"));
        assert!(
            orphaned.debug_annotations[0]
                .string_value()
                .contains("\"exited_ns\":"),
            "{:?}",
            orphaned.debug_annotations
        );
    }
}
