//! Everything printed for humans: event lines, stacks, the capability report, summaries. JSON
//! output goes through serde on the same types (`trace --json` events through `EventRecord`).

mod findings;
mod junit;
pub mod report;

pub use findings::{FindingRecord, StackLookup, finding_text, findings_text};
pub use junit::junit_xml;

use std::{fmt::Write as _, sync::Arc};

use gup_trace_common::{EventKind, FolioTransition, Hook, HookClass, folio_bit};
use serde::Serialize;

use crate::{
    events::{Comm, TraceEvent},
    kernel::{Capabilities, FollFlags, HookStatus},
    symbols::StackFrame,
    window::Summary,
    workload::{StepOutcome, StepReport},
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
        (EventKind::MmapLockDrop, _) => {
            let _ = write!(line, "  {:#014x}  dropped during", e.start);
        }
        (EventKind::ProcessFork, _) => {
            let _ = write!(line, "  child {}", e.start);
        }
        _ if is_gup_call(e) => {
            let _ = write!(line, "  {:#014x}  {}", e.start, foll.describe(e.gup_flags));
            let _ = write!(line, "{}", call_detail(e));
        }
        _ => {}
    }
    if let Some(call) = e.call_hook.filter(|_| e.kind != EventKind::Call) {
        let _ = write!(line, " {}", call.name());
    }
    line
}

fn folio_verb(f: &FolioTransition) -> &'static str {
    let release = f.bits & folio_bit::RELEASE != 0;
    let pin = f.bits & folio_bit::PIN != 0;
    match (release, pin, f.bits & folio_bit::FAILED != 0) {
        (true, _, _) => "-pin",
        (false, _, true) => "grab!",
        (false, true, false) => "+pin",
        (false, false, false) => "+ref",
    }
}

/// `folio 0xffffea0004a1b2c0 pfn 0x1286cb order 9 ref 1->513 pincount 0->512`
pub fn folio_detail(f: &FolioTransition) -> String {
    let mut out = format!(
        "folio {:#x} pfn {:#x} ref {}->{}",
        f.folio, f.pfn, f.refcount_before, f.refcount_after
    );
    if f.bits & folio_bit::LARGE != 0 {
        let _ = write!(
            out,
            " pincount {}->{} order {}",
            f.pincount_before, f.pincount_after, f.order
        );
    }
    for (bit, label) in [
        (folio_bit::ZERO_PAGE, " zero-page"),
        (folio_bit::TRUNCATED, " batch-truncated"),
    ] {
        if f.bits & bit != 0 {
            out.push_str(label);
        }
    }
    out
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

/// A GUP call's kernel stack as `--stacks` shows it: the frames, or why there are none.
pub type CallStack = Result<Arc<[StackFrame]>, String>;

/// The module kallsyms gives BPF programs and trampolines.
const BPF_MODULE: &str = "bpf";

/// The frames worth showing: the GUP call's path, without the tracer's own frames on top
/// (gup-trace's eBPF program and the fentry trampoline that runs it). An fentry trampoline
/// also hides the hooked function's own frame, so such a stack starts at its caller; where the
/// hooked function's frame is present (a kprobe hook), the stack starts at it.
pub fn call_frames(frames: &[StackFrame], hook: Hook) -> &[StackFrame] {
    if let Some(top) = frames
        .iter()
        .position(|f| f.function() == Some(hook.name()))
    {
        return &frames[top..];
    }
    let tracer = frames
        .iter()
        .take_while(|f| {
            f.symbol
                .as_ref()
                .is_some_and(|s| s.module.as_deref() == Some(BPF_MODULE))
        })
        .count();
    &frames[tracer..]
}

const STACK_INDENT: &str = "        ";

/// The stack under an event line: one indented frame per line, top first, at most `depth`.
pub fn stack_lines(stack: &CallStack, hook: Hook, depth: usize) -> String {
    let frames = match stack {
        Ok(frames) => call_frames(frames, hook),
        Err(why) => return format!("{STACK_INDENT}(no stack: {why})\n"),
    };
    if frames.is_empty() {
        return format!("{STACK_INDENT}(no stack: the kernel recorded no frames)\n");
    }
    let mut out = String::new();
    for frame in frames.iter().take(depth) {
        let _ = writeln!(out, "{STACK_INDENT}{frame}");
    }
    if frames.len() > depth {
        let _ = writeln!(
            out,
            "{STACK_INDENT}... {} more frame{} (--stack-depth {} shows all)",
            frames.len() - depth,
            if frames.len() - depth == 1 { "" } else { "s" },
            frames.len()
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
    /// Fork events: the new process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<u32>,
    /// Folio and mmap_lock drop events: the GUP entry point in progress on the thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub during: Option<&'static str>,
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

#[derive(Debug, Serialize)]
pub struct FolioRecord {
    #[serde(serialize_with = "crate::hex::address")]
    pub folio: u64,
    pub pfn: u64,
    pub refs: u32,
    pub order: u32,
    /// FOLL_PIN (else a FOLL_GET reference).
    pub pin: bool,
    pub release: bool,
    pub large: bool,
    pub zero_page: bool,
    pub failed: bool,
    /// A release batch longer than the in-kernel walk: the call released more than shown.
    pub truncated: bool,
    pub refcount_before: i32,
    pub refcount_after: i32,
    pub pincount_before: i32,
    pub pincount_after: i32,
}

impl From<&FolioTransition> for FolioRecord {
    fn from(f: &FolioTransition) -> FolioRecord {
        let bit = |b: u32| f.bits & b != 0;
        FolioRecord {
            folio: f.folio,
            pfn: f.pfn,
            refs: f.refs,
            order: f.order,
            pin: bit(folio_bit::PIN),
            release: bit(folio_bit::RELEASE),
            large: bit(folio_bit::LARGE),
            zero_page: bit(folio_bit::ZERO_PAGE),
            failed: bit(folio_bit::FAILED),
            truncated: bit(folio_bit::TRUNCATED),
            refcount_before: f.refcount_before,
            refcount_after: f.refcount_after,
            pincount_before: f.pincount_before,
            pincount_after: f.pincount_after,
        }
    }
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
            folio: e.folio.as_ref().map(FolioRecord::from),
            child: (e.kind == EventKind::ProcessFork).then_some(e.start as u32),
            during: e
                .call_hook
                .filter(|_| e.kind != EventKind::Call)
                .map(Hook::name),
        }
    }
}

/// One workload step: what it asked the kernel for, or why it was skipped.
pub fn workload_step(step: &StepReport) -> String {
    match &step.outcome {
        StepOutcome::Ran => format!(
            "{:<28} {:>6} pages {}",
            step.name,
            step.pages,
            if step.pins() {
                "pinned"
            } else {
                "referenced (FOLL_GET)"
            }
        ),
        StepOutcome::Skipped(why) => format!("{:<28} skipped: {why}", step.name),
    }
}

pub fn duration(ns: u64) -> String {
    match ns {
        0 => "-".to_string(),
        1..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// The capability report, hooks with the same outcome grouped so that a kernel which refuses a
/// method says it once, not once per hook.
pub fn capabilities(caps: &Capabilities, verbose: bool) -> String {
    let mut groups: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for report in &caps.hooks {
        let key = match &report.status {
            HookStatus::Attached { kind } => format!("attached via {kind}"),
            HookStatus::NotInKernel => "not in this kernel (nothing lost)".to_string(),
            HookStatus::Failed { reasons } => format!("NOT attached: {}", reasons.join("; ")),
        };
        let group = match groups.iter().position(|g| g.0 == key) {
            Some(i) => &mut groups[i],
            None => {
                groups.push((key, Vec::new(), Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        group.1.push(report.hook.name());
        if let Some(cost) = report.cost.filter(|c| !group.2.contains(c)) {
            group.2.push(cost);
        }
    }
    let mut out = format!(
        "gup-trace on Linux {} (FOLL_PIN = {:#x}, from {})\n",
        caps.kernel, caps.foll_pin.value, caps.foll_pin.source
    );
    for (key, hooks, costs) in &groups {
        let _ = writeln!(out, "  {key}:");
        let _ = writeln!(out, "      {}", hooks.join(", "));
        for cost in costs {
            let _ = writeln!(out, "      cost: {cost}");
        }
    }
    let pins = caps.attached(HookClass::Pin);
    let unpins = caps.attached(HookClass::Unpin);
    if pins == 0 && unpins == 0 {
        out.push_str(
            "  no GUP function can be hooked on this kernel: still traced are the mmap_lock \
             tracepoint and the /proc/vmstat pin totals\n",
        );
    } else if verbose {
        let _ = writeln!(out, "  {pins} pin and {unpins} unpin hooks live");
    }
    out
}

pub fn summary(s: &Summary, top: usize) -> String {
    let mark = |ok: bool| if ok { "match" } else { "DIFFER" };
    let mut out = String::new();
    let _ = writeln!(out, "summary over {:.2} s", s.seconds);
    let _ = writeln!(out, "                            gup-trace  /proc/vmstat");
    let f = &s.folios;
    let rows = [
        (
            "pinned pages",
            s.totals.pinned,
            s.vmstat.acquired,
            s.pins_match(),
        ),
        (
            "released pages",
            s.totals.released,
            s.vmstat.released,
            s.releases_match(),
        ),
        (
            "  per folio: pinned",
            f.pinned,
            s.vmstat.acquired,
            s.folio_pins_match(),
        ),
        (
            "  per folio: released",
            f.released,
            s.vmstat.released,
            s.folio_releases_match(),
        ),
    ];
    for (what, seen, kernel, same) in rows {
        let _ = writeln!(out, "  {what:<22}{seen:>12}  {kernel:>12}  {}", mark(same));
    }
    let _ = writeln!(
        out,
        "  folios: {} transitions checked against GUP_PIN_COUNTING_BIAS, {} anomalies; {} large-folio pins; {} FOLL_GET refs; {} failed grabs",
        f.bias_checked, f.bias_anomalies, f.large_folio_pins, f.referenced, f.failed_grabs
    );
    if f.zero_page_pins + f.added_pins + f.truncated_releases > 0 {
        let _ = writeln!(
            out,
            "  not in vmstat's pin count: {} zero-page pins (the kernel skips them), {} pins added by folio_add_pin(s); {} release folio events from batches longer than the in-kernel walk",
            f.zero_page_pins, f.added_pins, f.truncated_releases
        );
    }
    for a in &f.anomaly_examples {
        let _ = writeln!(
            out,
            "  ANOMALY {} pid {} folio {:#x} pfn {:#x}{} refs {}: refcount {:+} (expected {:+}), pincount {:+} (expected {:+})",
            a.hook,
            a.tgid,
            a.folio,
            a.pfn,
            if a.large { " (large)" } else { "" },
            a.refs,
            a.refcount_delta,
            a.expected_refcount_delta,
            a.pincount_delta,
            a.expected_pincount_delta
        );
    }
    let _ = writeln!(
        out,
        "  calls: {} pin ({} failed), {} unpin, {} FOLL_GET ({} pages referenced); mmap_lock: {} releases, {} reported as events",
        s.totals.pin_calls,
        s.totals.failed_pin_calls,
        s.totals.unpin_calls,
        s.totals.get_calls,
        s.totals.referenced,
        s.kernel.mmap_lock_releases,
        s.totals.mmap_lock_events
    );
    let _ = writeln!(
        out,
        "  lost events: {}{}",
        s.kernel.lost_events,
        if s.kernel.lost_events > 0 {
            "  (raise --ring-buffer-kib)"
        } else {
            ""
        }
    );
    let k = &s.kernel;
    if k.unmatched_exits > 0 || k.thread_map_full > 0 || k.stale_calls > 0 {
        let _ = writeln!(
            out,
            "  untracked calls: {} returns without their entry, {} with the thread map full, {} \
             whose return was lost (kretprobe misses)",
            k.unmatched_exits, k.thread_map_full, k.stale_calls
        );
    }
    if !s.processes.is_empty() {
        let _ = writeln!(
            out,
            "  processes          PID  COMM              PINNED  RELEASED  NET"
        );
        for (pid, p) in s.processes.iter().take(top) {
            let _ = writeln!(
                out,
                "                 {pid:>7}  {:<16} {:>7}  {:>8}  {:+}",
                p.comm,
                p.pinned,
                p.released,
                p.outstanding()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use gup_trace_common::Hook;

    use super::*;
    use crate::kernel::{AttachKind, FlagValue, HookReport};

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

    /// A fentry stack as the kernel records it: the tracer's program and trampoline on top, and
    /// no frame of the hooked function (the trampoline skips it), then its callers.
    fn recorded_stack() -> CallStack {
        let symbols = crate::symbols::KernelSymbols::parse(
            "ffffffff81234000 T pin_user_pages_fast\n\
             ffffffff81300000 t io_sqe_buffer_register\n\
             ffffffff81310000 T __x64_sys_io_uring_register\n\
             ffffffffc0a03000 t bpf_prog_6deef7357e7b4530_gup_enter\t[bpf]\n\
             ffffffffc0a04000 t bpf_trampoline_6442512345\t[bpf]\n",
        )
        .unwrap();
        Ok(symbols
            .stack(&[
                0xffffffffc0a03040,
                0xffffffffc0a04030,
                0xffffffff813001a3,
                0xffffffff81310022,
            ])
            .into())
    }

    #[test]
    fn stacks_leave_out_the_tracers_frames_and_respect_the_depth() {
        let text = stack_lines(&recorded_stack(), Hook::PinUserPagesFast, 12);
        assert_eq!(
            text,
            "        io_sqe_buffer_register+0x1a3\n\
             \x20       __x64_sys_io_uring_register+0x22\n"
        );
        let short = stack_lines(&recorded_stack(), Hook::PinUserPagesFast, 1);
        assert_eq!(
            short,
            "        io_sqe_buffer_register+0x1a3\n\
             \x20       ... 1 more frame (--stack-depth 2 shows all)\n"
        );
        let missing = stack_lines(&Err("not recorded".into()), Hook::PinUserPages, 12);
        assert_eq!(missing, "        (no stack: not recorded)\n");
    }

    #[test]
    fn a_stack_holding_the_hooked_function_starts_at_it() {
        let symbols = crate::symbols::KernelSymbols::parse(
            "ffffffff81234000 T pin_user_pages_remote\n\
             ffffffff81240000 t kprobe_handler_like\n\
             ffffffff81300000 t process_vm_rw_core\n",
        )
        .unwrap();
        let frames: Arc<[StackFrame]> = symbols
            .stack(&[0xffffffff81240010, 0xffffffff81234001, 0xffffffff81300208])
            .into();
        let shown: Vec<String> = call_frames(&frames, Hook::PinUserPagesRemote)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["pin_user_pages_remote+0x1", "process_vm_rw_core+0x208"]
        );
        // Without the hooked function or tracer frames, nothing is left out.
        assert_eq!(call_frames(&frames, Hook::PinUserPages).len(), 3);
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
    }

    #[test]
    fn capability_report_groups_hooks_refused_for_the_same_reason() {
        let failed = |hook| HookReport {
            hook,
            status: HookStatus::Failed {
                reasons: vec!["fentry refused: EPERM".into()],
            },
            cost: Some("pins are not seen"),
        };
        let caps = Capabilities {
            kernel: "6.18.0".into(),
            foll_pin: FlagValue {
                value: 0x80000,
                source: "BTF",
            },
            foll: FollFlags {
                source: "BTF",
                flags: Vec::new(),
            },
            hooks: vec![
                failed(Hook::PinUserPages),
                failed(Hook::UnpinUserPage),
                HookReport {
                    hook: Hook::MmapLockReleased,
                    status: HookStatus::Attached {
                        kind: AttachKind::Tracepoint,
                    },
                    cost: None,
                },
            ],
        };
        let text = capabilities(&caps, false);
        assert_eq!(text.matches("fentry refused: EPERM").count(), 1, "{text}");
        assert!(text.contains("pin_user_pages, unpin_user_page"), "{text}");
        assert!(text.contains("attached via tracepoint"), "{text}");
        assert!(text.contains("FOLL_PIN = 0x80000"), "{text}");
    }
}
