//! CMA allocation events as `trace` prints them: the detail after the common columns of a
//! line, and the `cma` object of `trace --json`. The engine's readers (`CmaStep`, `CmaEnd`)
//! are the one place that decodes the event fields.

use serde::Serialize;

use crate::{
    engine::blocking::{CmaEnd, CmaStep},
    events::{Comm, TraceEvent},
};

/// The `cma` object of a `trace --json` line.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CmaRecord {
    pub area: Comm,
    /// Busy ranges: how many retries on the range the event sums up. Ends: the busy retries
    /// the allocation went through.
    pub busy_retries: u32,
    /// Busy ranges: the range that could not be allocated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_start_pfn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_end_pfn: Option<u64>,
    /// Ends: the first pfn allocated, 0 or a negative errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pfn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<i32>,
}

impl CmaRecord {
    pub fn of(e: &TraceEvent) -> Option<CmaRecord> {
        if let Some(s) = CmaStep::of(e) {
            return Some(CmaRecord {
                area: s.area,
                busy_retries: s.retries,
                busy_start_pfn: Some(s.start_pfn),
                busy_end_pfn: Some(s.end_pfn),
                pfn: None,
                error: None,
            });
        }
        CmaEnd::of(e).map(|end| CmaRecord {
            area: end.area,
            busy_retries: end.retries,
            busy_start_pfn: None,
            busy_end_pfn: None,
            pfn: end.pfn,
            error: Some(end.error),
        })
    }
}

/// `hugetlb0 busy pfn 0x40000-0x80000 x3`, `hugetlb0 pfn 0x40000`, `hugetlb0 error -16
/// after 1 busy retry`.
pub fn detail(e: &TraceEvent) -> String {
    let Some(r) = CmaRecord::of(e) else {
        return String::new();
    };
    match (r.busy_start_pfn, r.busy_end_pfn, r.pfn, r.error) {
        (Some(start), Some(end), _, _) => {
            format!(
                "{} busy pfn {start:#x}-{end:#x} x{}",
                r.area, r.busy_retries
            )
        }
        (_, _, Some(pfn), _) => format!(
            "{} pfn {pfn:#x} after {} busy retries",
            r.area, r.busy_retries
        ),
        (_, _, None, error) => format!(
            "{} error {} after {} busy retries",
            r.area,
            error.unwrap_or(0),
            r.busy_retries
        ),
    }
}

#[cfg(test)]
mod tests {
    use gup_trace_common::{CallPath, EventKind, Hook, cma_event::AREA_NAME_LEN};

    use super::*;

    fn named(kind: EventKind, hook: Hook) -> TraceEvent {
        let mut e = TraceEvent::sample(kind, hook, 1, 40, 262_144);
        let mut name = [0u8; AREA_NAME_LEN];
        name[..8].copy_from_slice(b"hugetlb0");
        e.path = CallPath::with_name(name);
        e
    }

    #[test]
    fn busy_ranges_and_ends_read_as_the_kernel_said() {
        let mut busy = named(EventKind::CmaBusy, Hook::CmaAllocBusyRetry);
        busy.start = 0x40000;
        busy.requested = 0x80000;
        busy.folio = Some(gup_trace_common::FolioTransition {
            refs: 3,
            ..gup_trace_common::FolioTransition::ZERO
        });
        assert_eq!(detail(&busy), "hugetlb0 busy pfn 0x40000-0x80000 x3");
        let mut end = named(EventKind::CmaAllocEnd, Hook::CmaAllocFinish);
        end.error = -16;
        end.folio = Some(gup_trace_common::FolioTransition {
            refs: 1,
            ..gup_trace_common::FolioTransition::ZERO
        });
        assert_eq!(detail(&end), "hugetlb0 error -16 after 1 busy retries");
        end.error = 0;
        end.start = 0x40000;
        let r = CmaRecord::of(&end).unwrap();
        assert_eq!((r.pfn, r.error), (Some(0x40000), Some(0)));
    }
}
