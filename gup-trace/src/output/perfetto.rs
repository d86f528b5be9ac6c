//! `gup-trace report --perfetto FILE.pftrace`: a recording as a Perfetto trace, to open in
//! the Perfetto UI (ui.perfetto.dev) or query with its trace processor.
//!
//! Written with the `perfetto_protos` crate (Perfetto's own trace protos compiled to Rust
//! with rust-protobuf), not hand-rolled bytes. The trace holds:
//! - per process, a track with a child track per thread: each GUP and unpin call is a slice
//!   there (entry point, pages, requested, flags, fast/slow pages, error in its arguments), and
//!   each mmap_lock drop inside a GUP call an instant (the address GUP was faulting in, how
//!   long the lock stayed dropped);
//! - per process whose memory is pinned (the owner, whoever took the pins), "pins held"
//!   tracks: one slice per GUP call's batch of pins (one per grab outside a call), from the
//!   call to the release of the batch's last page. Releases are matched to pins by the
//!   engine's rule (the releaser's own pins first, then the oldest) and, among one owner's
//!   pins on a folio, to the oldest batch first. Batches that overlap go on separate tracks
//!   ("lanes"); a batch still held at the end stays open to the end of the trace;
//! - counters: the pages each process holds pinned, and machine-wide the pages pinned and the
//!   pages pinned and released in each second of the recording;
//! - the findings as instants at the time each came to be (a counter drift, known only at the
//!   end, at the end), on the process they are about, with their evidence in the arguments:
//!   kind, owner, pages, kernel stack, and the whole finding as JSON.

use std::{
    collections::{HashMap, HashSet, VecDeque, hash_map::Entry},
    io::Write,
};

use anyhow::{Context as _, Result};
use gup_trace_common::{EventKind, Hook};
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
    engine::{
        Finding, FindingRules,
        pins::{HoldChange, OwnerId, PinState},
    },
    events::TraceEvent,
    recording::{ProcessFilter, RecordingReader, Replayer, replay::stack_in},
    symbols::{CallStack, call_frames},
};

/// What the trace holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfettoSummary {
    pub processes: usize,
    pub threads: usize,
    pub calls: u64,
    pub lock_drops: u64,
    /// Pin batches, and those still held at the end (their slices stay open).
    pub pin_slices: u64,
    pub pins_open: u64,
    pub counter_samples: u64,
    pub findings: usize,
}

/// Track uuids: a process's track, its threads', its pinned-pages counter, the machine-wide
/// tracks, a process's lanes of pin slices.
fn process_uuid(tgid: u32) -> u64 {
    1 << 40 | u64::from(tgid)
}
fn thread_uuid(tid: u32) -> u64 {
    2 << 40 | u64::from(tid)
}
fn counter_uuid(tgid: u32) -> u64 {
    3 << 40 | u64::from(tgid)
}
const FINDINGS_UUID: u64 = 4 << 40;
const PINNED_UUID: u64 = 4 << 40 | 1;
const PIN_RATE_UUID: u64 = 4 << 40 | 2;
const RELEASE_RATE_UUID: u64 = 4 << 40 | 3;
fn lane_uuid(tgid: u32, lane: usize) -> u64 {
    6 << 56 | u64::from(tgid) << 24 | (lane as u64 & 0xff_ffff)
}

const NS_PER_S: u64 = 1_000_000_000;

/// A value of a slice's or an instant's argument.
enum Arg {
    U(u64),
    I(i64),
    S(String),
    B(bool),
}

fn annotate(event: &mut TrackEvent, args: Vec<(&str, Arg)>) {
    for (name, value) in args {
        let mut a = DebugAnnotation::new();
        a.set_name(name.to_string());
        match value {
            Arg::U(v) => a.set_uint_value(v),
            Arg::I(v) => a.set_int_value(v),
            Arg::S(v) => a.set_string_value(v),
            Arg::B(v) => a.set_bool_value(v),
        }
        event.debug_annotations.push(a);
    }
}

fn event(ty: Type, track: u64, name: Option<String>) -> TrackEvent {
    let mut e = TrackEvent::new();
    e.set_type(ty);
    e.set_track_uuid(track);
    if let Some(name) = name {
        e.set_name(name);
    }
    e
}

/// A kernel stack as one argument: its frames from the entry point down, one a line.
fn stack_text(stack: &CallStack, hook: Hook) -> String {
    match stack {
        Ok(frames) => call_frames(frames, hook)
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(why) => format!("(no stack: {why})"),
    }
}

/// The packets of a trace being built, and the tracks described so far. Packets wait in
/// `pending` until [`Builder::flush`] writes them out (once per step of the replay), so
/// memory does not grow with the recording.
struct Builder<W: Write> {
    out: W,
    pending: Vec<TracePacket>,
    described: HashSet<u64>,
    summary: PerfettoSummary,
}

impl<W: Write> Builder<W> {
    fn new(out: W) -> Self {
        Builder {
            out,
            pending: Vec::new(),
            described: HashSet::new(),
            summary: PerfettoSummary::default(),
        }
    }

    /// Writes the pending packets out: each as a trace of one packet (a Trace is only its
    /// repeated packets, so the file is one Trace holding them all).
    fn flush(&mut self) -> Result<()> {
        let mut one = Trace::new();
        for p in self.pending.drain(..) {
            one.packet.push(p);
            one.write_to_writer(&mut self.out)
                .context("cannot write the Perfetto trace")?;
            one.packet.clear();
        }
        Ok(())
    }

    /// Adds an event at `ts_ns`; its packet's index in `pending` (until the next flush).
    fn packet(&mut self, ts_ns: u64, event: TrackEvent) -> usize {
        let mut p = TracePacket::new();
        p.set_timestamp(ts_ns);
        p.set_trusted_packet_sequence_id(1);
        p.set_track_event(event);
        self.pending.push(p);
        self.pending.len() - 1
    }

    /// Describes `track` unless a track of its uuid was; whether it was new.
    fn describe(&mut self, track: TrackDescriptor) -> bool {
        let new = self.described.insert(track.uuid());
        if new {
            let mut p = TracePacket::new();
            p.set_trusted_packet_sequence_id(1);
            p.set_track_descriptor(track);
            self.pending.push(p);
        }
        new
    }

    /// A named track (a counter track with `counter`) under `parent`, described once.
    fn named(&mut self, uuid: u64, parent: Option<u64>, name: &str, counter: bool) -> u64 {
        if !self.described.contains(&uuid) {
            let mut t = TrackDescriptor::new();
            t.set_uuid(uuid);
            if let Some(parent) = parent {
                t.set_parent_uuid(parent);
            }
            t.set_name(name.to_string());
            if counter {
                t.counter = MessageField::some(CounterDescriptor::new());
            }
            self.describe(t);
        }
        uuid
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
        let mut begin = event(
            Type::TYPE_SLICE_BEGIN,
            track,
            Some(e.hook.name().to_string()),
        );
        let mut args = vec![
            ("pages", Arg::U(e.pages)),
            ("requested", Arg::U(e.requested)),
            ("gup_flags", Arg::S(format!("{:#x}", e.gup_flags))),
            ("fast_pages", Arg::U(e.path.fast_refs)),
            ("slow_pages", Arg::U(e.path.slow_refs)),
            ("mmap_lock_drops", Arg::U(u64::from(e.lock.drops))),
        ];
        if e.error != 0 {
            args.push(("error", Arg::I(i64::from(e.error))));
        }
        annotate(&mut begin, args);
        self.packet(e.ts_ns.saturating_sub(e.duration_ns), begin);
        self.packet(e.ts_ns, event(Type::TYPE_SLICE_END, track, None));
        self.summary.calls += 1;
    }

    /// GUP dropped mmap_lock (and took it again): an instant on the thread's track.
    fn lock_drop(&mut self, e: &TraceEvent) {
        let track = self.thread(e.tgid, e.tid, &e.comm.to_string());
        let mut i = event(
            Type::TYPE_INSTANT,
            track,
            Some("mmap_lock dropped".to_string()),
        );
        annotate(
            &mut i,
            vec![
                ("address", Arg::S(format!("{:#x}", e.start))),
                ("dropped_ns", Arg::U(e.duration_ns)),
            ],
        );
        self.packet(e.ts_ns, i);
        self.summary.lock_drops += 1;
    }

    /// A sample of a counter track.
    fn sample(&mut self, ts_ns: u64, track: u64, value: u64) {
        let mut c = event(Type::TYPE_COUNTER, track, None);
        c.set_counter_value(value as i64);
        self.packet(ts_ns, c);
        self.summary.counter_samples += 1;
    }

    /// A sample of the pages a process holds pinned.
    fn pinned(&mut self, ts_ns: u64, tgid: u32, comm: &str, pages: u64) {
        let parent = self.process(tgid, comm);
        let track = self.named(counter_uuid(tgid), Some(parent), "pinned pages", true);
        self.sample(ts_ns, track, pages);
    }

    /// A finding as an instant at its time, on the process it is about.
    fn finding(
        &mut self,
        f: &Finding,
        ts_ns: u64,
        state: &PinState,
        stacks: &HashMap<u32, CallStack>,
    ) -> Result<()> {
        let subject = FindingSubject::of(f, state);
        let track = match subject.process {
            Some(id) => {
                let p = &state.processes[id as usize];
                self.process(p.tgid, &p.comm.to_string())
            }
            None => self.named(FINDINGS_UUID, None, "gup-trace findings", false),
        };
        let mut i = event(
            Type::TYPE_INSTANT,
            track,
            Some(format!("finding: {}", f.kind())),
        );
        let mut args = vec![("kind", Arg::S(f.kind().to_string()))];
        let (owner, pages, stack) = match f {
            Finding::OrphanedPins(h) | Finding::LongHeldPin(h) => (
                Some((h.tgid, h.comm.clone())),
                Some(h.pages),
                h.stack_id.map(|id| (id, h.entry)),
            ),
            Finding::UnbalancedRelease(u) => (
                Some((u.tgid, u.comm.clone())),
                Some(u64::from(u.released)),
                None,
            ),
            Finding::BlockedMigration(b) => {
                let holder = b.holders.first();
                (
                    holder.map(|h| (h.tgid, h.comm.clone())),
                    Some(b.holders.iter().map(|h| h.pages).sum()),
                    holder.and_then(|h| h.stack_id.map(|id| (id, h.entry))),
                )
            }
            Finding::BiasAnomaly(b) => (None, Some(u64::from(b.refs)), None),
            Finding::CounterDrift(_) => (None, None, None),
        };
        if let Some((tgid, comm)) = owner {
            args.push(("owner", Arg::S(format!("pid {tgid} ({comm})"))));
        }
        if let Some(pages) = pages {
            args.push(("pages", Arg::U(pages)));
        }
        if let Some((id, hook)) = stack {
            args.push(("stack", Arg::S(stack_text(&stack_in(stacks, id), hook))));
        }
        args.push(("evidence", Arg::S(serde_json::to_string(f)?)));
        annotate(&mut i, args);
        self.packet(ts_ns, i);
        Ok(())
    }
}

/// A GUP call's batch of pins, as a slice on a lane of its owner's "pins held" tracks.
struct Batch {
    tgid: u32,
    lane: usize,
    /// Pages still held; the begin packet, whose pages and folios arguments grow as the
    /// batch's folios are taken.
    held: u64,
    begin: usize,
    pages: u64,
    folios: u64,
}

/// Pins followed from take to release, in batches, from the engine's [`HoldChange`] log.
#[derive(Default)]
struct PinSlices {
    /// The batches still held (a released one is forgotten), by id, and the next id.
    batches: HashMap<usize, Batch>,
    next: usize,
    /// The batch being filled: the owner and the time of the event taking its pins.
    filling: Option<(OwnerId, u64, usize)>,
    /// Per owner and folio, the batches holding pins on it, oldest first, with their pins.
    held: HashMap<(OwnerId, u64), VecDeque<(usize, u32)>>,
    /// Per process (tgid), which lanes hold an open slice.
    lanes: HashMap<u32, Vec<bool>>,
}

impl PinSlices {
    fn apply<W: Write>(
        &mut self,
        b: &mut Builder<W>,
        state: &PinState,
        stacks: &HashMap<u32, CallStack>,
    ) {
        let log = state.hold_log.as_ref().map_or(&[][..], |l| &l[..]);
        for c in log {
            if c.taken {
                self.take(b, state, stacks, c);
            } else {
                self.release(b, c);
            }
        }
    }

    fn take<W: Write>(
        &mut self,
        b: &mut Builder<W>,
        state: &PinState,
        stacks: &HashMap<u32, CallStack>,
        c: &HoldChange,
    ) {
        let id = match self.filling {
            Some((owner, ts, id)) if owner == c.owner && ts == c.ts_ns => id,
            _ => {
                let id = self.open(b, state, stacks, c);
                self.filling = Some((c.owner, c.ts_ns, id));
                id
            }
        };
        let batch = self
            .batches
            .get_mut(&id)
            .expect("a batch being filled is held");
        batch.held += u64::from(c.refs);
        batch.pages += u64::from(c.refs);
        let held = self.held.entry((c.owner, c.folio)).or_default();
        if held.back().is_some_and(|&(last, _)| last == id) {
            held.back_mut().expect("just seen").1 += c.refs;
        } else {
            batch.folios += 1;
            held.push_back((id, c.refs));
        }
        let (pages, folios, begin) = (batch.pages, batch.folios, batch.begin);
        let e = b.pending[begin].mut_track_event();
        for a in e.debug_annotations.iter_mut() {
            match a.name() {
                "pages" => a.set_uint_value(pages),
                "folios" => a.set_uint_value(folios),
                _ => {}
            }
        }
    }

    /// A new batch of `c.owner`'s: its slice begins on the owner's first free lane.
    fn open<W: Write>(
        &mut self,
        b: &mut Builder<W>,
        state: &PinState,
        stacks: &HashMap<u32, CallStack>,
        c: &HoldChange,
    ) -> usize {
        let owner = state.owners[c.owner as usize];
        let process = &state.processes[owner.process as usize];
        let site = &state.call_sites[owner.site as usize];
        let lanes = self.lanes.entry(process.tgid).or_default();
        let lane = lanes.iter().position(|busy| !busy).unwrap_or(lanes.len());
        if lane == lanes.len() {
            lanes.push(true);
        } else {
            lanes[lane] = true;
        }
        let parent = b.process(process.tgid, &process.comm.to_string());
        let track = b.named(
            lane_uuid(process.tgid, lane),
            Some(parent),
            "pins held",
            false,
        );
        let mut begin = event(
            Type::TYPE_SLICE_BEGIN,
            track,
            Some(format!("pinned through {}", site.entry.name())),
        );
        let mut args = vec![
            ("entry", Arg::S(site.entry.name().to_string())),
            ("pages", Arg::U(0)),
            ("folios", Arg::U(0)),
            ("longterm", Arg::B(owner.longterm)),
        ];
        if let Some(taker) = owner.taker {
            let t = &state.processes[taker as usize];
            args.push(("taken_by", Arg::S(format!("pid {} ({})", t.tgid, t.comm))));
        }
        if let Some(id) = site.stack_id {
            args.push((
                "stack",
                Arg::S(stack_text(&stack_in(stacks, id), site.entry)),
            ));
        }
        annotate(&mut begin, args);
        let begin = b.packet(c.ts_ns, begin);
        let id = self.next;
        self.next += 1;
        self.batches.insert(
            id,
            Batch {
                tgid: process.tgid,
                lane,
                held: 0,
                begin,
                pages: 0,
                folios: 0,
            },
        );
        b.summary.pin_slices += 1;
        id
    }

    /// Pins released: taken from the owner's oldest batches on the folio; a batch whose last
    /// page goes ends its slice and frees its lane.
    fn release<W: Write>(&mut self, b: &mut Builder<W>, c: &HoldChange) {
        self.filling = None;
        let Entry::Occupied(mut held) = self.held.entry((c.owner, c.folio)) else {
            return;
        };
        let mut left = c.refs;
        while left > 0
            && let Some((id, refs)) = held.get_mut().front_mut()
        {
            let n = left.min(*refs);
            *refs -= n;
            left -= n;
            let id = *id;
            if *refs == 0 {
                held.get_mut().pop_front();
            }
            let Entry::Occupied(mut batch) = self.batches.entry(id) else {
                continue;
            };
            batch.get_mut().held -= u64::from(n);
            if batch.get().held == 0 {
                let batch = batch.remove();
                let track = lane_uuid(batch.tgid, batch.lane);
                b.packet(c.ts_ns, event(Type::TYPE_SLICE_END, track, None));
                if let Some(lanes) = self.lanes.get_mut(&batch.tgid) {
                    lanes[batch.lane] = false;
                }
            }
            if held.get().is_empty() {
                held.remove();
                break;
            }
        }
    }
}

/// Pages pinned and released in each second of the recording (from the engine's ledger, the
/// counts `trace` compares with /proc/vmstat), as two counters: the sample at the start of a
/// second holds that second's pages; a sample is written when the figure changes.
struct Rates {
    second_ns: u64,
    at: (u64, u64),
    last: Option<(u64, u64)>,
}

impl Rates {
    fn sample<W: Write>(&mut self, b: &mut Builder<W>, totals: (u64, u64)) {
        let rate = (totals.0 - self.at.0, totals.1 - self.at.1);
        let last = self.last.unwrap_or((u64::MAX, u64::MAX));
        if rate.0 != last.0 {
            let track = b.named(PIN_RATE_UUID, None, "pages pinned per second", true);
            b.sample(self.second_ns, track, rate.0);
        }
        if rate.1 != last.1 {
            let track = b.named(RELEASE_RATE_UUID, None, "pages released per second", true);
            b.sample(self.second_ns, track, rate.1);
        }
        self.last = Some(rate);
        self.at = totals;
        self.second_ns += NS_PER_S;
    }
}

/// Replays `reader` in steps of `step_ns` of recording time and writes the trace to `out`.
pub fn perfetto_trace<R: std::io::Read, W: Write>(
    reader: RecordingReader<R>,
    rules: FindingRules,
    filter: ProcessFilter,
    step_ns: u64,
    out: W,
) -> Result<PerfettoSummary> {
    let mut replayer = Replayer::new(reader, rules).filtered(filter);
    replayer.applied = Some(Vec::new());
    replayer.engine.state.hold_log = Some(Vec::new());
    let mut b = Builder::new(out);
    let mut pins = PinSlices::default();
    // The pinned pages last sampled, per process record, and for the machine.
    let mut last: HashMap<usize, u64> = HashMap::new();
    let mut last_pinned = 0;
    let start_ns = replayer.meta().start_ns;
    let mut rates = Rates {
        second_ns: start_ns,
        at: (0, 0),
        last: None,
    };
    let mut until = start_ns;
    while !replayer.at_end() {
        // Steps stop at every whole second too, where the rates are read.
        until = until
            .saturating_add(step_ns.max(1))
            .min(rates.second_ns + NS_PER_S);
        replayer.advance(Some(until))?;
        for e in replayer
            .applied
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            match e.kind {
                EventKind::Call => b.call(&e),
                EventKind::MmapLockDrop => b.lock_drop(&e),
                _ => {}
            }
        }
        pins.apply(&mut b, &replayer.engine.state, &replayer.stacks);
        if let Some(log) = &mut replayer.engine.state.hold_log {
            log.clear();
        }
        let now = replayer.engine.newest_ns.min(until);
        let state = &replayer.engine.state;
        for (i, p) in state.processes.iter().enumerate() {
            let pages = p.outstanding();
            if last.get(&i).copied().unwrap_or(0) != pages {
                b.pinned(now, p.tgid, &p.comm.to_string(), pages);
                last.insert(i, pages);
            }
        }
        if state.pinned_now != last_pinned {
            let track = b.named(PINNED_UUID, None, "pinned pages (all processes)", true);
            b.sample(now, track, state.pinned_now);
            last_pinned = state.pinned_now;
        }
        let totals = &replayer.engine.ledger.totals;
        if until == rates.second_ns + NS_PER_S || replayer.at_end() {
            rates.sample(&mut b, (totals.pinned, totals.released));
        }
        // A batch is filled within one step (its call's folios come with the call): its
        // begin packet is complete here.
        pins.filling = None;
        b.flush()?;
    }
    b.summary.pins_open = pins.batches.len() as u64;
    let replay = replayer.into_replay();
    let end_ns = replay.end_ns();
    let findings = replay.findings();
    for f in &findings {
        let at = f.since_ns(&rules).unwrap_or(end_ns).min(end_ns);
        b.finding(f, at, &replay.engine.state, &replay.stacks)?;
    }
    b.summary.findings = findings.len();
    b.flush()?;
    b.out.flush().context("cannot write the Perfetto trace")?;
    Ok(b.summary)
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, process::Command};

    use super::*;
    use crate::recording::scenario::{MS, S, batches_scenario, scenario};
    use crate::recording::synthetic::START_NS;

    /// A message of protobuf's text format, as `protoc --decode` prints it: its fields in
    /// order, each a scalar (strings unquoted and unescaped, enums by name) or a message.
    #[derive(Debug, Default)]
    struct Msg(Vec<(String, Val)>);

    #[derive(Debug)]
    enum Val {
        Scalar(String),
        Msg(Msg),
    }

    impl Msg {
        fn msgs<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a Msg> + use<'a, 'n> {
            self.0.iter().filter_map(move |(n, v)| match v {
                Val::Msg(m) if n == name => Some(m),
                _ => None,
            })
        }
        fn msg(&self, name: &str) -> Option<&Msg> {
            self.msgs(name).next()
        }
        fn str(&self, name: &str) -> Option<&str> {
            self.0.iter().find_map(|(n, v)| match v {
                Val::Scalar(s) if n == name => Some(s.as_str()),
                _ => None,
            })
        }
        fn u64(&self, name: &str) -> Option<u64> {
            self.str(name).map(|s| s.parse().expect(name))
        }
        /// A debug annotation's value, by the annotation's name.
        fn arg(&self, name: &str) -> Option<&str> {
            self.msgs("debug_annotations")
                .find(|a| a.str("name") == Some(name))
                .and_then(|a| {
                    ["uint_value", "int_value", "string_value", "bool_value"]
                        .iter()
                        .find_map(|v| a.str(v))
                })
        }
    }

    /// Parses protobuf's text format (what protoc prints; no lists or maps in brackets).
    fn parse_text(text: &str) -> Msg {
        fn token(rest: &mut &[u8]) -> Option<Vec<u8>> {
            while rest.first().is_some_and(|c| c.is_ascii_whitespace()) {
                *rest = &rest[1..];
            }
            let &c = rest.first()?;
            if c == b'"' {
                let mut out = Vec::new();
                let mut i = 1;
                while rest[i] != b'"' {
                    if rest[i] == b'\\' {
                        i += 1;
                        match rest[i] {
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            d @ b'0'..=b'7' => {
                                let digits = rest[i..]
                                    .iter()
                                    .take(3)
                                    .take_while(|c| (b'0'..=b'7').contains(*c))
                                    .count();
                                let s = std::str::from_utf8(&rest[i..i + digits]).unwrap();
                                let _ = d;
                                out.push(u8::from_str_radix(s, 8).unwrap());
                                i += digits - 1;
                            }
                            other => out.push(other),
                        }
                    } else {
                        out.push(rest[i]);
                    }
                    i += 1;
                }
                *rest = &rest[i + 1..];
                let mut quoted = vec![b'"'];
                quoted.extend(out);
                return Some(quoted);
            }
            if matches!(c, b'{' | b'}' | b':') {
                *rest = &rest[1..];
                return Some(vec![c]);
            }
            let n = rest
                .iter()
                .take_while(|c| !c.is_ascii_whitespace() && !matches!(c, b'{' | b'}' | b':'))
                .count();
            let t = rest[..n].to_vec();
            *rest = &rest[n..];
            Some(t)
        }
        fn message(rest: &mut &[u8]) -> Msg {
            let mut m = Msg::default();
            while let Some(name) = token(rest) {
                if name == b"}" {
                    break;
                }
                let name = String::from_utf8(name).unwrap();
                let mut next = token(rest).expect("a value");
                if next == b":" {
                    next = token(rest).expect("a value");
                }
                let value = if next == b"{" {
                    Val::Msg(message(rest))
                } else {
                    let s = String::from_utf8_lossy(&next).into_owned();
                    Val::Scalar(s.strip_prefix('"').map(str::to_string).unwrap_or(s))
                };
                m.0.push((name, value));
            }
            m
        }
        message(&mut text.as_bytes())
    }

    /// Where Perfetto's own .proto files are (under `protos/`), as the perfetto_protos crate
    /// ships them: its source, which cargo unpacked to build it.
    fn perfetto_proto_dir() -> PathBuf {
        let out = Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--offline"])
            // Only this machine's dependencies: those cargo has unpacked.
            .arg("--filter-platform")
            .arg(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .expect("cargo metadata runs");
        assert!(out.status.success(), "cargo metadata failed: {out:?}");
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let manifest = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "perfetto_protos")
            .expect("perfetto_protos is a dependency")["manifest_path"]
            .as_str()
            .unwrap()
            .to_string();
        PathBuf::from(manifest).parent().unwrap().to_path_buf()
    }

    /// `trace` decoded by protoc against Perfetto's trace.proto.
    fn decode(trace: &[u8]) -> Msg {
        use std::io::Write as _;
        let dir = perfetto_proto_dir();
        let mut protoc = Command::new("protoc")
            .arg("--decode=perfetto.protos.Trace")
            .arg("-I")
            .arg(&dir)
            .arg("protos/perfetto/trace/trace.proto")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("protoc runs (Debian's protobuf-compiler: `cargo xtask setup` installs it)");
        let mut stdin = protoc.stdin.take().unwrap();
        let bytes = trace.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&bytes));
        let out = protoc.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "protoc could not decode the trace against {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_text(&String::from_utf8(out.stdout).unwrap())
    }

    /// The decoded trace: its tracks by uuid, and its events with their times, in file order.
    struct Decoded {
        tracks: HashMap<u64, Msg>,
        events: Vec<(u64, Msg)>,
    }

    impl Decoded {
        fn of(bytes: &[u8]) -> Decoded {
            let mut trace = decode(bytes);
            let mut tracks = HashMap::new();
            let mut events = Vec::new();
            for (name, packet) in trace.0.drain(..) {
                let Val::Msg(mut packet) = packet else {
                    continue;
                };
                assert_eq!(name, "packet");
                let ts = packet.u64("timestamp");
                for (field, value) in packet.0.drain(..) {
                    match (field.as_str(), value) {
                        ("track_descriptor", Val::Msg(t)) => {
                            let uuid = t.u64("uuid").unwrap();
                            assert!(
                                tracks.insert(uuid, t).is_none(),
                                "track {uuid} described twice"
                            );
                        }
                        ("track_event", Val::Msg(e)) => events.push((ts.expect("a timestamp"), e)),
                        _ => {}
                    }
                }
            }
            Decoded { tracks, events }
        }

        /// Tracks named `name`.
        fn named(&self, name: &str) -> Vec<u64> {
            let mut v: Vec<u64> = self
                .tracks
                .iter()
                .filter(|(_, t)| t.str("name") == Some(name))
                .map(|(&u, _)| u)
                .collect();
            v.sort();
            v
        }

        /// Events of type `ty` on the tracks `on`, in time order (the file's order at a tie).
        fn on(&self, on: &[u64], ty: &str) -> Vec<(u64, &Msg)> {
            let mut v: Vec<(u64, &Msg)> = self
                .events
                .iter()
                .filter(|(_, e)| {
                    e.str("type") == Some(ty) && on.contains(&e.u64("track_uuid").unwrap())
                })
                .map(|(ts, e)| (*ts, e))
                .collect();
            v.sort_by_key(|(ts, _)| *ts);
            v
        }

        /// A counter track's values in time order.
        fn counter(&self, name: &str) -> Vec<(u64, i64)> {
            let tracks = self.named(name);
            assert_eq!(tracks.len(), 1, "counter {name}");
            assert!(
                self.tracks[&tracks[0]].msg("counter").is_some(),
                "{name} is a counter track"
            );
            self.on(&tracks, "TYPE_COUNTER")
                .into_iter()
                .map(|(ts, e)| {
                    (
                        ts - START_NS,
                        e.str("counter_value").unwrap().parse().unwrap(),
                    )
                })
                .collect()
        }
    }

    fn trace_of(bytes: &[u8]) -> (Vec<u8>, PerfettoSummary) {
        let reader = RecordingReader::new(bytes).unwrap();
        let mut trace = Vec::new();
        let summary = perfetto_trace(
            reader,
            FindingRules::default(),
            ProcessFilter::default(),
            10 * MS,
            &mut trace,
        )
        .unwrap();
        (trace, summary)
    }

    #[test]
    fn overlapping_pin_batches_are_slices_on_lanes_from_pin_to_release_with_calls_drops_and_counters()
     {
        let (bytes, summary) = trace_of(&batches_scenario());
        let d = Decoded::of(&bytes);
        // The process, its thread under it.
        let fio = process_uuid(100);
        assert_eq!(
            d.tracks[&fio].msg("process").unwrap().str("process_name"),
            Some("fio")
        );
        let thread = &d.tracks[&thread_uuid(100)];
        assert_eq!(thread.u64("parent_uuid"), Some(fio));
        assert_eq!(thread.msg("thread").unwrap().u64("tid"), Some(100));
        // Three pin calls and three unpin calls, each a slice on the thread with its arguments.
        let begins = d.on(&[thread_uuid(100)], "TYPE_SLICE_BEGIN");
        let names: Vec<&str> = begins.iter().map(|(_, e)| e.str("name").unwrap()).collect();
        assert_eq!(
            names,
            [
                "pin_user_pages_fast",
                "pin_user_pages_fast",
                "unpin_user_pages",
                "pin_user_pages_fast",
                "unpin_user_pages",
                "unpin_user_pages"
            ]
        );
        assert_eq!(begins[0].1.arg("pages"), Some("2"));
        assert_eq!(begins[0].1.arg("fast_pages"), Some("1"));
        assert_eq!(begins[0].1.arg("slow_pages"), Some("1"));
        assert!(begins[0].1.arg("gup_flags").is_some());
        assert_eq!(d.on(&[thread_uuid(100)], "TYPE_SLICE_END").len(), 6);
        assert_eq!(summary.calls, 6);
        // The mmap_lock drop: an instant on the call's thread, with the address.
        let drops = d.on(&[thread_uuid(100)], "TYPE_INSTANT");
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].0, START_NS + 120 * MS);
        assert_eq!(drops[0].1.str("name"), Some("mmap_lock dropped"));
        assert_eq!(drops[0].1.arg("address"), Some("0x7f0000000000"));
        // Pins: [1, 2] from 100 to 300 ms and [4] from 350 ms to 1.5 s on one lane, [3] (taken
        // while [1, 2] were held) from 150 to 400 ms on a second one: both under fio.
        let lanes = d.named("pins held");
        assert_eq!(lanes, [lane_uuid(100, 0), lane_uuid(100, 1)]);
        for lane in &lanes {
            assert_eq!(d.tracks[lane].u64("parent_uuid"), Some(fio));
        }
        let slices = |lane: u64| -> Vec<(u64, u64, String)> {
            let begins = d.on(&[lane], "TYPE_SLICE_BEGIN");
            let ends = d.on(&[lane], "TYPE_SLICE_END");
            assert_eq!(begins.len(), ends.len(), "every batch was released");
            begins
                .iter()
                .zip(&ends)
                .map(|((b, e), (end, _))| {
                    assert!(b <= end, "a lane's slices do not overlap");
                    assert_eq!(e.arg("entry"), Some("pin_user_pages_fast"));
                    assert!(e.arg("stack").is_some_and(|s| !s.is_empty()));
                    (
                        (b - START_NS) / MS,
                        (end - START_NS) / MS,
                        e.arg("pages").unwrap().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(
            slices(lanes[0]),
            [(100, 300, "2".to_string()), (350, 1500, "1".to_string())]
        );
        assert_eq!(slices(lanes[1]), [(150, 400, "1".to_string())]);
        assert_eq!((summary.pin_slices, summary.pins_open), (3, 0));
        // Counters: fio's pinned pages and the machine's, at each change; the pages pinned and
        // released in each second.
        let changes = [(100, 2), (150, 3), (300, 1), (350, 2), (400, 1), (1500, 0)]
            .map(|(ms, v)| (ms * MS, v));
        assert_eq!(d.tracks[&counter_uuid(100)].u64("parent_uuid"), Some(fio));
        assert_eq!(d.counter("pinned pages"), changes);
        assert_eq!(d.counter("pinned pages (all processes)"), changes);
        assert_eq!(d.counter("pages pinned per second"), [(0, 4), (S, 0)]);
        assert_eq!(d.counter("pages released per second"), [(0, 3), (S, 1)]);
        assert_eq!(summary.findings, 0);
    }

    #[test]
    fn findings_are_instants_at_their_time_with_their_evidence_and_held_pins_stay_open() {
        let (bytes, summary) = trace_of(&scenario());
        let d = Decoded::of(&bytes);
        // fio (3 pinned, 1 released) and its child leaker (2, exits holding them): each batch
        // still held at the end is a slice left open on its owner's lane.
        for tgid in [100, 200] {
            let lane = [lane_uuid(tgid, 0)];
            assert_eq!(d.on(&lane, "TYPE_SLICE_BEGIN").len(), 1, "pid {tgid}");
            assert_eq!(d.on(&lane, "TYPE_SLICE_END").len(), 0, "pid {tgid}");
        }
        assert_eq!((summary.pin_slices, summary.pins_open), (2, 2));
        assert_eq!(
            d.on(&[lane_uuid(100, 0)], "TYPE_SLICE_BEGIN")[0]
                .1
                .arg("longterm"),
            Some("true")
        );
        // The orphaned pins: an instant on leaker's track when the grace period after its exit
        // (500 ms) ran out, with the owner, the pages, the stack and the whole finding.
        let findings = d.on(&[process_uuid(200)], "TYPE_INSTANT");
        assert_eq!(findings.len(), 1, "{summary:?}");
        let (ts, f) = &findings[0];
        assert_eq!(*ts, START_NS + 500 * MS + FindingRules::default().grace_ns);
        assert_eq!(f.str("name"), Some("finding: orphaned pins"));
        assert_eq!(f.arg("kind"), Some("orphaned pins"));
        assert_eq!(f.arg("owner"), Some("pid 200 (leaker)"));
        assert_eq!(f.arg("pages"), Some("2"));
        assert!(
            f.arg("stack").is_some_and(|s| s.lines().count() >= 2),
            "{f:?}"
        );
        assert!(
            f.arg("evidence").unwrap().contains("\"exited_ns\":"),
            "{f:?}"
        );
        assert_eq!(summary.findings, 1);
    }
}
