//! Migration, isolation and memory-offline events as `trace` prints them: the detail after
//! the common columns of a line, and the JSON part of `trace --json`. Which event field
//! carries what is `gup_trace_common::migration_event`'s; the engine's readers of them
//! (`MigrationStep`, `IsolationStep`) are the one place that decodes them.

use gup_trace_common::EventKind;
use serde::Serialize;

use crate::{
    engine::blocking::{IsolationStep, MigrationStep},
    events::TraceEvent,
};

/// The `migration` object of a `trace --json` line.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MigrationRecord {
    /// `enum migrate_reason` value (migration events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// How many kernel attempts the event sums up.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_pfn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_pfn: Option<u64>,
    /// Isolation: the first pfn that could not be isolated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_pfn: Option<u64>,
    /// Isolation and offline: 0 or a negative errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<i32>,
}

impl MigrationRecord {
    pub fn of(e: &TraceEvent) -> Option<MigrationRecord> {
        if let Some(m) = MigrationStep::of(e) {
            return Some(MigrationRecord {
                reason: Some(m.reason),
                migrated: Some(m.migrated),
                failed: Some(m.failed),
                attempts: m.firings,
                start_pfn: m.range.map(|r| r.0),
                end_pfn: m.range.map(|r| r.1),
                busy_pfn: None,
                error: None,
            });
        }
        if let Some(i) = IsolationStep::of(e) {
            return Some(MigrationRecord {
                reason: None,
                migrated: None,
                failed: None,
                attempts: i.attempts,
                start_pfn: Some(i.start_pfn),
                end_pfn: Some(i.end_pfn),
                busy_pfn: i.busy().then_some(i.fin_pfn),
                error: Some(e.error),
            });
        }
        (e.kind == EventKind::OfflineEnd).then_some(MigrationRecord {
            reason: None,
            migrated: None,
            failed: None,
            attempts: 1,
            start_pfn: Some(e.start),
            end_pfn: Some(e.requested),
            busy_pfn: None,
            error: Some(e.error),
        })
    }
}

/// `failed 2 reason 2 x14 pfn 0x38000-0x40000` and the like.
pub fn detail(e: &TraceEvent) -> String {
    let Some(r) = MigrationRecord::of(e) else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let (Some(failed), Some(reason)) = (r.failed, r.reason) {
        parts.push(format!("failed {failed} reason {reason} x{}", r.attempts));
    } else if e.kind == EventKind::Isolation {
        parts.push(format!("x{}", r.attempts));
    }
    if let (Some(start), Some(end)) = (r.start_pfn, r.end_pfn) {
        parts.push(format!("pfn {start:#x}-{end:#x}"));
    }
    if let Some(busy) = r.busy_pfn {
        parts.push(format!("busy at pfn {busy:#x}"));
    }
    if let Some(error) = r.error.filter(|&e| e != 0) {
        parts.push(format!("error {error}"));
    } else if e.kind == EventKind::OfflineEnd {
        parts.push("offlined".into());
    }
    parts.join(" ")
}
