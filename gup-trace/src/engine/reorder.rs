//! Puts events back in time order. The ring buffer is shared by all CPUs and a record becomes
//! readable only when committed, so two events from different CPUs can arrive swapped by a few
//! microseconds (a release read before the pin it drops). The engine holds each event until
//! nothing older can still arrive, judged by event time only: no clock is read.

use std::collections::VecDeque;

use crate::events::TraceEvent;

pub struct ReorderBuffer {
    /// Sorted by `ts_ns`; events with equal times keep their arrival order (a release record's
    /// folio events share its call's time and must stay in front of it).
    queue: VecDeque<TraceEvent>,
    /// How far behind the newest event an event may arrive.
    hold_ns: u64,
    newest_ns: u64,
    /// Events that arrived later than `hold_ns` behind the newest, applied as they came.
    pub late: u64,
    /// The newest time handed out: anything older arriving now is late.
    released_ns: u64,
}

impl ReorderBuffer {
    pub fn new(hold_ns: u64) -> ReorderBuffer {
        ReorderBuffer {
            queue: VecDeque::new(),
            hold_ns,
            newest_ns: 0,
            late: 0,
            released_ns: 0,
        }
    }

    /// Takes `event` in and passes on, in time order, every event nothing can precede any more.
    pub fn push(&mut self, event: TraceEvent, mut out: impl FnMut(TraceEvent)) {
        if event.ts_ns < self.released_ns {
            // Older than what was already applied: apply it now rather than lose it.
            self.late += 1;
            return out(event);
        }
        self.newest_ns = self.newest_ns.max(event.ts_ns);
        // Events arrive almost sorted: the insertion point is nearly always at the back.
        if self.queue.back().is_none_or(|e| e.ts_ns <= event.ts_ns) {
            self.queue.push_back(event);
        } else {
            let at = self
                .queue
                .iter()
                .rposition(|e| e.ts_ns <= event.ts_ns)
                .map_or(0, |i| i + 1);
            self.queue.insert(at, event);
        }
        let horizon = self.newest_ns.saturating_sub(self.hold_ns);
        while self.queue.front().is_some_and(|e| e.ts_ns < horizon) {
            let e = self.queue.pop_front().expect("front exists");
            self.released_ns = e.ts_ns;
            out(e);
        }
    }

    /// Passes on everything still held (the end of the stream).
    pub fn flush(&mut self, mut out: impl FnMut(TraceEvent)) {
        while let Some(e) = self.queue.pop_front() {
            self.released_ns = e.ts_ns;
            out(e);
        }
    }

    pub fn held(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use gup_trace_common::{EventKind, Hook};

    use super::*;

    fn ev(ts_ns: u64, pages: u64) -> TraceEvent {
        TraceEvent::sample(EventKind::Call, Hook::PinUserPagesFast, ts_ns, 1, pages)
    }

    fn order(buffer: &mut ReorderBuffer, input: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for &(ts, pages) in input {
            buffer.push(ev(ts, pages), |e| out.push((e.ts_ns, e.pages)));
        }
        buffer.flush(|e| out.push((e.ts_ns, e.pages)));
        out
    }

    #[test]
    fn swapped_events_come_out_in_time_order_and_ties_keep_arrival_order() {
        let mut b = ReorderBuffer::new(100);
        let out = order(
            &mut b,
            &[(10, 1), (30, 2), (20, 3), (30, 4), (500, 5), (25, 6)],
        );
        assert_eq!(out, [(10, 1), (20, 3), (30, 2), (30, 4), (25, 6), (500, 5)]);
        assert_eq!(
            b.late, 1,
            "25 arrived after 30 was applied: late, but not lost"
        );
    }

    #[test]
    fn events_are_held_only_for_the_hold_time() {
        let mut b = ReorderBuffer::new(100);
        let mut out = Vec::new();
        for ts in [10, 50, 120, 300] {
            b.push(ev(ts, 0), |e| out.push(e.ts_ns));
        }
        assert_eq!(
            out,
            [10, 50, 120],
            "300 - 100 = 200: everything before is final"
        );
        assert_eq!(b.held(), 1);
    }
}
