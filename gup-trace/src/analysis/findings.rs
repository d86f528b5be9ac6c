//! Who and what a finding is about: a key that stays the same while the finding lasts, and
//! the process record it concerns.

use crate::engine::{Finding, PinState, pins::ProcessId};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindingSubject {
    /// Stable across moments while the finding lasts: kind, process, call site.
    pub key: String,
    pub pid: Option<u32>,
    /// The process record: the newest lifetime of that pid that fits.
    pub process: Option<ProcessId>,
}

impl FindingSubject {
    pub fn of(f: &Finding, state: &PinState) -> FindingSubject {
        let (pid, key) = match f {
            Finding::OrphanedPins(h) => (
                Some(h.tgid),
                format!("orphaned/{}/{}/{:?}", h.tgid, h.entry.name(), h.stack_id),
            ),
            Finding::LongHeldPin(h) => (
                Some(h.tgid),
                format!("long/{}/{}/{:?}", h.tgid, h.entry.name(), h.stack_id),
            ),
            Finding::UnbalancedRelease(u) => (
                Some(u.tgid),
                format!("unbalanced/{}/{:#x}/{}", u.tgid, u.folio, u.ts_ns),
            ),
            Finding::BiasAnomaly(b) => (
                Some(b.tgid),
                format!("bias/{}/{:#x}/{}", b.tgid, b.folio, b.ts_ns),
            ),
            Finding::CounterDrift(_) => (None, "drift".to_string()),
            // About the holder the most pages in the range, when one is known.
            Finding::BlockedMigration(b) => (
                b.holders.first().map(|h| h.tgid),
                format!("blocked/{:?}/{}", b.blocked, b.first_ns),
            ),
        };
        let exited = match f {
            Finding::OrphanedPins(h) => h.exited_ns,
            _ => None,
        };
        let process = pid.and_then(|pid| {
            state
                .processes
                .iter()
                .enumerate()
                .rev()
                .find(|(_, p)| p.tgid == pid && (exited.is_none() || p.exited_ns == exited))
                .map(|(i, _)| i as ProcessId)
        });
        FindingSubject { key, pid, process }
    }
}
