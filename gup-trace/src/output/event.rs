//! A trace event as `trace` prints it: one text line under `EVENT_HEADER`, or one JSON object
//! (`EventRecord`) with `--json`.

use std::fmt::Write as _;

use gup_trace_common::{EventKind, Hook, HookClass, owner_bit};
use serde::Serialize;

use super::{
    FolioRecord, duration,
    folio::{folio_detail, folio_verb},
};
use crate::{
    events::{Comm, TraceEvent},
    kernel::FollFlags,
    symbols::{CallStack, call_frames},
};

pub const EVENT_HEADER: &str = "    TIME(s)     PID     TID  COMM             EVENT  HOOK                                 PAGES  DURATION  ADDRESS         FLAGS";

fn seconds_into_trace(e: &TraceEvent, start_ns: u64) -> f64 {
    e.ts_ns.saturating_sub(start_ns) as f64 / 1e9
}

/// Whether the event is a GUP call (pin or FOLL_GET), the events that carry an address, flags
/// and a kernel stack.
pub fn is_gup_call(e: &TraceEvent) -> bool {
    e.kind == EventKind::Call && matches!(e.hook.class(), HookClass::Pin | HookClass::Get)
}

/// One line per event; `start_ns` is the trace start, so times read as seconds into the trace.
pub fn event_line(e: &TraceEvent, start_ns: u64, foll: &FollFlags) -> String {
    let secs = seconds_into_trace(e, start_ns);
    let (what, pages, hook) = match (e.kind, &e.folio) {
        (EventKind::Folio, Some(f)) => (folio_verb(f), f.refs.to_string(), e.hook.name()),
        (EventKind::MmapLockDrop, _) => ("drop", "-".to_string(), "mmap_lock"),
        (EventKind::MmapLockRelease, _) => ("mmap", "-".to_string(), e.hook.name()),
        (EventKind::ProcessExit, _) => ("exit", "-".to_string(), e.hook.name()),
        (EventKind::ProcessFork, _) => ("fork", "-".to_string(), e.hook.name()),
        (EventKind::Migration, _) => (
            if e.requested > 0 { "migr!" } else { "migr" },
            format!("{}/{}", e.pages, e.pages + e.requested),
            e.hook.name(),
        ),
        (EventKind::Isolation, _) => (
            if e.error < 0 { "isol!" } else { "isol" },
            "-".to_string(),
            e.hook.name(),
        ),
        (EventKind::OfflineEnd, _) => (
            if e.error < 0 { "offl!" } else { "offl" },
            "-".to_string(),
            e.hook.name(),
        ),
        (EventKind::CmaBusy, _) => ("cma!", e.pages.to_string(), e.hook.name()),
        (EventKind::CmaAllocEnd, _) => (
            if e.error < 0 { "cma!" } else { "cma" },
            e.pages.to_string(),
            e.hook.name(),
        ),
        _ => {
            let (what, pages) = match e.hook.class() {
                HookClass::Pin if e.error < 0 => ("pin!", format!("err {}", e.error)),
                HookClass::Pin => ("pin", format!("{}/{}", e.pages, e.requested)),
                HookClass::Get if e.error < 0 => ("get!", format!("err {}", e.error)),
                HookClass::Get => ("get", format!("{}/{}", e.pages, e.requested)),
                _ => ("unpin", e.pages.to_string()),
            };
            (what, pages, e.hook.name())
        }
    };
    let mut line = format!(
        "{secs:11.6} {:>7} {:>7}  {:<16} {:<6} {:<32} {:>9}  {:>8}",
        e.tgid,
        e.tid,
        e.comm,
        what,
        hook,
        pages,
        duration(e.duration_ns)
    );
    match (e.kind, &e.folio) {
        (EventKind::Folio, Some(f)) => {
            let _ = write!(line, "  {}", folio_detail(f));
        }
        (EventKind::Migration | EventKind::Isolation | EventKind::OfflineEnd, _) => {
            let _ = write!(line, "  {}", super::migration::detail(e));
        }
        (EventKind::CmaBusy | EventKind::CmaAllocEnd, _) => {
            let _ = write!(line, "  {}", super::cma::detail(e));
        }
        (EventKind::MmapLockDrop, _) => {
            let _ = write!(line, "  {:#014x}  dropped during", e.start);
        }
        (EventKind::ProcessFork, _) => {
            let _ = write!(line, "  child {}", e.start);
        }
        _ if is_gup_call(e) => {
            let _ = write!(line, "  {:#014x}  {}", e.start, foll.describe(e.gup_flags));
            let _ = write!(line, "{}", call_detail(e));
            if let Some((tgid, comm)) = e.taken_for() {
                let _ = write!(line, "  on the memory of pid {tgid} ({comm})");
            }
        }
        _ => {}
    }
    if let Some(call) = e.call_hook.filter(|_| e.kind != EventKind::Call) {
        let _ = write!(line, " {}", call.name());
    }
    line
}

/// ` fast 60 slow 4 | mmap_lock wait 1.2ms hold 3.0ms drops 1` for a GUP call.
fn call_detail(e: &TraceEvent) -> String {
    let p = &e.path;
    let mut out = String::new();
    if p.fast_refs + p.slow_refs > 0 || p.slow_walks > 0 {
        let _ = write!(out, "  fast {} slow {}", p.fast_refs, p.slow_refs);
    }
    let l = &e.lock;
    if l.acquisitions > 0 || l.drops > 0 {
        let _ = write!(
            out,
            "  mmap_lock wait {} hold {} drops {}",
            duration(l.wait_ns),
            duration(l.hold_ns),
            l.drops
        );
    }
    out
}

/// One `trace --json` line.
#[derive(Debug, Serialize)]
pub struct EventRecord<'a> {
    /// Seconds since the trace started.
    pub time_s: f64,
    pub pid: u32,
    pub tid: u32,
    pub comm: &'a Comm,
    /// `pin`, `get` (FOLL_GET references), `unpin`, `folio` (one folio's transition),
    /// `mmap_lock_drop` (GUP dropped and retook the lock; `address` is where), `mmap_lock`,
    /// `exit` (a process ended) or `fork` (a process was created: `child` is its pid).
    pub event: &'static str,
    pub hook: &'static str,
    pub pages: u64,
    pub duration_ns: u64,
    pub cgroup_id: u64,
    /// GUP calls only: pages asked for, negative errno (0 on success), start address, gup_flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gup_flags: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// With --stacks, GUP calls only: `function+0xoffset [module]` frames, top first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<Vec<String>>,
    /// With --stacks, when a GUP call has no stack: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_error: Option<String>,
    /// GUP calls: references grabbed on the fast and the slow path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRecord>,
    /// GUP calls that took mmap_lock or dropped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap_lock: Option<LockRecord>,
    /// Folio events: the folio and its counts before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folio: Option<FolioRecord>,
    /// Migration, isolation and offline events: what the kernel moved or could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<super::migration::MigrationRecord>,
    /// CMA busy ranges and allocation ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cma: Option<super::cma::CmaRecord>,
    /// Fork events: the new process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<u32>,
    /// Folio and mmap_lock drop events: the GUP entry point in progress on the thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub during: Option<&'static str>,
    /// GUP calls and their grabs: the process whose memory they pin (it holds the pins;
    /// `pid` took them), when the kernel let it be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerRecord>,
}

#[derive(Debug, Serialize)]
pub struct OwnerRecord {
    pub pid: u32,
    pub comm: Comm,
    /// The mm came from the call's argument (`*_remote`), not the caller's own.
    pub remote_mm: bool,
    /// The caller is a kernel thread.
    pub kthread_caller: bool,
}

#[derive(Debug, Serialize)]
pub struct PathRecord {
    pub fast_refs: u64,
    pub slow_refs: u64,
    pub slow_walks: u32,
}

#[derive(Debug, Serialize)]
pub struct LockRecord {
    pub wait_ns: u64,
    pub hold_ns: u64,
    pub acquisitions: u32,
    pub drops: u32,
}

impl<'a> EventRecord<'a> {
    /// `stack` is given for GUP calls when --stacks asked for them.
    pub fn new(
        e: &'a TraceEvent,
        start_ns: u64,
        foll: &FollFlags,
        stack: Option<&CallStack>,
        depth: usize,
    ) -> EventRecord<'a> {
        let call = is_gup_call(e);
        let (stack, stack_error) = match stack {
            None => (None, None),
            Some(Ok(frames)) => (
                Some(
                    call_frames(frames, e.hook)
                        .iter()
                        .take(depth)
                        .map(ToString::to_string)
                        .collect(),
                ),
                None,
            ),
            Some(Err(why)) => (None, Some(why.clone())),
        };
        EventRecord {
            time_s: seconds_into_trace(e, start_ns),
            pid: e.tgid,
            tid: e.tid,
            comm: &e.comm,
            event: match (e.kind, e.hook.class()) {
                (EventKind::Folio, _) => "folio",
                (EventKind::Migration, _) => "migration",
                (EventKind::Isolation, _) => "isolation",
                (EventKind::OfflineEnd, _) => "offline_end",
                (EventKind::CmaBusy, _) => "cma_busy",
                (EventKind::CmaAllocEnd, _) => "cma_alloc",
                (EventKind::MmapLockDrop, _) => "mmap_lock_drop",
                (EventKind::MmapLockRelease, _) => "mmap_lock",
                (EventKind::ProcessExit, _) => "exit",
                (EventKind::ProcessFork, _) => "fork",
                (_, HookClass::Pin) => "pin",
                (_, HookClass::Get) => "get",
                _ => "unpin",
            },
            hook: e.hook.name(),
            pages: e.pages,
            duration_ns: e.duration_ns,
            cgroup_id: e.cgroup_id,
            requested: call.then_some(e.requested),
            error: call.then_some(e.error),
            address: (call || e.kind == EventKind::MmapLockDrop).then_some(e.start),
            gup_flags: call.then_some(e.gup_flags),
            flags: call.then(|| foll.describe(e.gup_flags)),
            stack,
            stack_error,
            path: call.then_some(PathRecord {
                fast_refs: e.path.fast_refs,
                slow_refs: e.path.slow_refs,
                slow_walks: e.path.slow_walks,
            }),
            mmap_lock: (call && (e.lock.acquisitions > 0 || e.lock.drops > 0)).then_some(
                LockRecord {
                    wait_ns: e.lock.wait_ns,
                    hold_ns: e.lock.hold_ns,
                    acquisitions: e.lock.acquisitions,
                    drops: e.lock.drops,
                },
            ),
            folio: e
                .folio
                .as_ref()
                .filter(|_| e.kind == EventKind::Folio)
                .map(FolioRecord::from),
            migration: super::migration::MigrationRecord::of(e),
            cma: super::cma::CmaRecord::of(e),
            child: (e.kind == EventKind::ProcessFork).then_some(e.start as u32),
            during: e
                .call_hook
                .filter(|_| e.kind != EventKind::Call)
                .map(Hook::name),
            owner: e.owner().map(|(pid, comm)| OwnerRecord {
                pid,
                comm,
                remote_mm: e.owner_bits & owner_bit::REMOTE_MM != 0,
                kthread_caller: e.kthread_caller(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use gup_trace_common::Hook;

    use super::*;
    use crate::output::stack::tests::recorded_stack;

    #[test]
    fn event_lines_show_time_task_hook_and_pages() {
        let mut e = TraceEvent::sample(
            EventKind::Call,
            Hook::PinUserPagesFast,
            1_500_000_000,
            42,
            64,
        );
        e.tid = 43;
        e.duration_ns = 12_300;
        e.start = 0x7f00_1000;
        e.gup_flags = 0x10001;
        e.comm = "fio".into();
        let foll = FollFlags {
            source: "test",
            flags: vec![("FOLL_WRITE".into(), 1), ("FOLL_LONGTERM".into(), 0x10000)],
        };
        let line = event_line(&e, 500_000_000, &foll);
        assert!(
            line.starts_with("   1.000000      42      43  fio"),
            "{line}"
        );
        assert!(line.contains("pin_user_pages_fast"), "{line}");
        assert!(line.contains("64/64    12.3us"), "{line}");
        assert!(line.ends_with("0x00007f001000  WRITE|LONGTERM"), "{line}");
    }

    fn pin_event(stack_id: Option<u32>) -> TraceEvent {
        TraceEvent {
            duration_ns: 5_000,
            tid: 8,
            start: 0x7f00_2000,
            gup_flags: 1,
            stack_id,
            cgroup_id: 1,
            comm: "fio".into(),
            ..TraceEvent::sample(
                EventKind::Call,
                Hook::PinUserPagesFast,
                2_000_000_000,
                7,
                16,
            )
        }
    }

    #[test]
    fn json_events_carry_a_stack_only_when_asked() {
        let foll = FollFlags {
            source: "test",
            flags: vec![("FOLL_WRITE".into(), 1)],
        };
        let e = pin_event(Some(3));
        let with = serde_json::to_value(EventRecord::new(
            &e,
            1_000_000_000,
            &foll,
            Some(&recorded_stack()),
            2,
        ))
        .unwrap();
        assert_eq!(
            with["stack"],
            serde_json::json!([
                "io_sqe_buffer_register+0x1a3",
                "__x64_sys_io_uring_register+0x22"
            ])
        );
        assert_eq!(
            (with["event"].as_str(), with["flags"].as_str()),
            (Some("pin"), Some("WRITE"))
        );
        assert_eq!(with["time_s"], 1.0);
        let without = serde_json::to_value(EventRecord::new(&e, 0, &foll, None, 12)).unwrap();
        assert!(without.get("stack").is_none() && without.get("stack_error").is_none());
        let failed = serde_json::to_value(EventRecord::new(
            &e,
            0,
            &foll,
            Some(&Err("not recorded".into())),
            12,
        ))
        .unwrap();
        assert_eq!(failed["stack_error"], "not recorded");
        assert!(without.get("owner").is_none(), "no owner read, none shown");
    }

    #[test]
    fn a_call_on_another_process_memory_names_its_owner() {
        let foll = FollFlags {
            source: "test",
            flags: vec![],
        };
        let mut e = pin_event(None);
        e.hook = Hook::PinUserPagesRemote;
        (e.tgid, e.comm) = (40, "kworker/0:1".into());
        (e.owner_tgid, e.owner_comm) = (311, "pinleak-user".into());
        e.owner_bits = owner_bit::KNOWN | owner_bit::REMOTE_MM | owner_bit::KTHREAD_CALLER;
        let line = event_line(&e, 0, &foll);
        assert!(
            line.contains("kworker/0:1")
                && line.ends_with("on the memory of pid 311 (pinleak-user)"),
            "{line}"
        );
        let v = serde_json::to_value(EventRecord::new(&e, 0, &foll, None, 8)).unwrap();
        assert_eq!(v["pid"], 40);
        assert_eq!(
            v["owner"],
            serde_json::json!({"pid": 311, "comm": "pinleak-user", "remote_mm": true, "kthread_caller": true})
        );
        // Its own memory: the owner is in the JSON, the line says nothing more.
        (e.owner_tgid, e.owner_comm) = (40, "kworker/0:1".into());
        assert!(!event_line(&e, 0, &foll).contains("memory of"));
    }
}
