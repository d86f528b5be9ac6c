//! A recording replayed through the pin engine: step by step ([`Replayer`], the time cursor of
//! `report --tui`) or to its end ([`Replay`], what `gup-trace report` states). Only the events a
//! [`ProcessFilter`] keeps are applied.

use std::{
    collections::{HashMap, VecDeque},
    io::Read,
};

use anyhow::Result;
use gup_trace_common::HookClass;

use super::{
    CounterSnapshot, EndTotals, Item, Metadata, ProcessFilter, ReadStatus, RecordingReader,
};
use crate::{
    engine::{Finding, FindingRules, PinEngine, REORDER_HOLD_NS},
    events::TraceEvent,
    session::KernelCounters,
    symbols::CallStack,
    vmstat::PinCounters,
};

/// A recording, replayed.
pub struct Replay {
    pub meta: Metadata,
    pub engine: PinEngine,
    pub stacks: HashMap<u32, CallStack>,
    pub start: Option<CounterSnapshot>,
    pub end: Option<CounterSnapshot>,
    pub end_totals: Option<EndTotals>,
    pub status: ReadStatus,
    pub records: u64,
    pub events: u64,
    /// Records this build could not decode, and the first reason.
    pub undecodable: u64,
    pub decode_error: Option<String>,
}

/// A recording replayed step by step: the engine's state at any time of the recording, reached
/// by applying its events up to that time ([`Replayer::advance`]). `report --tui` moves a time
/// cursor with it; [`Replay::read`] runs it to the end.
pub struct Replayer<R: Read> {
    reader: RecordingReader<R>,
    pub engine: PinEngine,
    pub stacks: HashMap<u32, CallStack>,
    pub start: Option<CounterSnapshot>,
    pub end: Option<CounterSnapshot>,
    pub end_totals: Option<EndTotals>,
    pub undecodable: u64,
    pub decode_error: Option<String>,
    /// Events read but later than the time reached, in reading order.
    ahead: VecDeque<TraceEvent>,
    batch: Vec<TraceEvent>,
    filter: ProcessFilter,
    /// When set, every event applied is also kept here, in the order applied (what a
    /// timeline is drawn from); the caller takes them out between steps.
    pub applied: Option<Vec<TraceEvent>>,
}

impl<R: Read> Replayer<R> {
    pub fn new(reader: RecordingReader<R>, rules: FindingRules) -> Replayer<R> {
        let meta = &reader.meta;
        let engine = PinEngine::new(meta.start_ns, meta.foll_longterm, rules);
        Replayer {
            reader,
            engine,
            stacks: HashMap::new(),
            start: None,
            end: None,
            end_totals: None,
            undecodable: 0,
            decode_error: None,
            ahead: VecDeque::new(),
            batch: Vec::new(),
            filter: ProcessFilter::default(),
            applied: None,
        }
    }

    /// Applies only the events `filter` keeps.
    pub fn filtered(mut self, filter: ProcessFilter) -> Replayer<R> {
        self.filter = filter;
        self
    }

    pub fn meta(&self) -> &Metadata {
        &self.reader.meta
    }

    /// Whether every item has been read and applied.
    pub fn at_end(&self) -> bool {
        self.ahead.is_empty() && self.reader.status != ReadStatus::Reading
    }

    /// Applies every event up to `until_ns` (all of them with None), then flushes the engine:
    /// its state is the recording's at that time. Records arrive nearly in time order, so
    /// reading goes on until an event is [`REORDER_HOLD_NS`] past `until_ns`; the events past
    /// `until_ns` wait for the next step.
    pub fn advance(&mut self, until_ns: Option<u64>) -> Result<()> {
        let until = until_ns.unwrap_or(u64::MAX);
        let stop_after = until.saturating_add(REORDER_HOLD_NS);
        // What an earlier step read ahead first, in its order.
        let mut kept = VecDeque::new();
        let mut past_stop = false;
        while let Some(e) = self.ahead.pop_front() {
            past_stop |= e.ts_ns > stop_after;
            if e.ts_ns <= until {
                self.apply(e);
            } else {
                kept.push_back(e);
            }
        }
        self.ahead = kept;
        while !past_stop {
            let Some(item) = self.reader.next_item()? else {
                break;
            };
            match item {
                Item::Record(bytes) => match TraceEvent::decode_record(bytes, &mut self.batch) {
                    Ok(()) => {
                        for e in self.batch.drain(..).filter(|e| self.filter.keeps(e)) {
                            past_stop |= e.ts_ns > stop_after;
                            if e.ts_ns <= until {
                                if let Some(applied) = &mut self.applied {
                                    applied.push(e.clone());
                                }
                                self.engine.push(e);
                            } else {
                                self.ahead.push_back(e);
                            }
                        }
                    }
                    Err(e) => {
                        self.batch.clear();
                        self.undecodable += 1;
                        self.decode_error.get_or_insert_with(|| e.to_string());
                    }
                },
                Item::Stack(id, stack) => {
                    self.stacks.insert(id, stack);
                }
                Item::Counters(c) if c.end => {
                    // The kernel's counters were read here: later events are outside the
                    // window they cover (they still count for who holds what).
                    self.engine.ledger.close(c.ts_ns);
                    self.end = Some(c);
                }
                Item::Counters(c) => self.start = Some(c),
                Item::End(e) => self.end_totals = Some(e),
            }
        }
        self.engine.flush();
        Ok(())
    }

    fn apply(&mut self, e: TraceEvent) {
        if let Some(applied) = &mut self.applied {
            applied.push(e.clone());
        }
        self.engine.push(e);
    }

    /// Records and events read so far.
    pub fn read_so_far(&self) -> (u64, u64) {
        (self.reader.records, self.reader.events)
    }

    pub fn status(&self) -> &ReadStatus {
        &self.reader.status
    }

    /// The replay as far as it went (all of it after `advance(None)`).
    pub fn into_replay(self) -> Replay {
        Replay {
            meta: self.reader.meta.clone(),
            engine: self.engine,
            stacks: self.stacks,
            start: self.start,
            end: self.end,
            end_totals: self.end_totals,
            status: self.reader.status.clone(),
            records: self.reader.records,
            events: self.reader.events,
            undecodable: self.undecodable,
            decode_error: self.decode_error,
        }
    }
}

impl Replay {
    /// Reads the whole recording and applies its events to a fresh engine, in order.
    pub fn read<R: Read>(reader: RecordingReader<R>, rules: FindingRules) -> Result<Replay> {
        Replay::read_filtered(reader, rules, &ProcessFilter::default())
    }

    /// [`Replay::read`], keeping only the events `filter` keeps.
    pub fn read_filtered<R: Read>(
        reader: RecordingReader<R>,
        rules: FindingRules,
        filter: &ProcessFilter,
    ) -> Result<Replay> {
        let mut replayer = Replayer::new(reader, rules).filtered(filter.clone());
        replayer.advance(None)?;
        Ok(replayer.into_replay())
    }

    /// When the recording ended: its end marker, else its last counters, else its newest
    /// event (a truncated recording).
    pub fn end_ns(&self) -> u64 {
        self.end_totals
            .map(|e| e.end_ns)
            .or(self.end.map(|c| c.ts_ns))
            .unwrap_or(self.engine.newest_ns)
            .max(self.meta.start_ns)
    }

    /// The kernel's counters over the recording, when both ends were recorded.
    pub fn kernel_delta(&self) -> Option<KernelCounters> {
        Some(self.end?.kernel.delta_since(&self.start?.kernel))
    }

    pub fn vmstat_delta(&self) -> Option<PinCounters> {
        Some(self.end?.vmstat?.delta_since(&self.start?.vmstat?))
    }

    /// Events lost: from the end marker, else from the counters.
    pub fn lost_events(&self) -> Option<u64> {
        self.end_totals
            .map(|e| e.lost_events)
            .or(self.kernel_delta().map(|k| k.lost_events))
    }

    /// Whether the recorder traced only some processes.
    fn filtered(&self) -> bool {
        self.meta.filters.processes.is_set()
    }

    /// Whether the per-folio (grab) hooks were attached: then the per-folio totals are the
    /// exact ones.
    pub fn folio_level(&self) -> bool {
        self.meta.attached(HookClass::Grab) > 0
    }

    /// The findings at the recording's end: vmstat is compared only when nothing was filtered
    /// (it counts the whole machine).
    pub fn findings(&self) -> Vec<Finding> {
        let vmstat = if self.filtered() {
            None
        } else {
            self.vmstat_delta().map(|v| (v.acquired, v.released))
        };
        self.engine
            .findings(self.end_ns(), vmstat, self.folio_level())
    }

    pub fn stack(&self, id: u32) -> CallStack {
        stack_in(&self.stacks, id)
    }
}

/// Stack `id` as a recording has it, or why it cannot say.
pub fn stack_in(stacks: &HashMap<u32, CallStack>, id: u32) -> CallStack {
    stacks
        .get(&id)
        .cloned()
        .unwrap_or_else(|| Err(format!("stack {id} is not in the recording")))
}

#[cfg(test)]
mod tests;
