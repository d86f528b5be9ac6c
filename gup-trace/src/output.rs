//! Everything printed for humans: event lines, the capability report, summaries. JSON output
//! goes through serde on the same types.

use std::fmt::Write as _;

use gup_trace_common::{EventKind, FolioTransition, HookClass, folio_bit};

use crate::{
    events::TraceEvent,
    kernel::{Capabilities, FollFlags, HookStatus},
    window::Summary,
    workload::{StepOutcome, StepReport},
};

pub const EVENT_HEADER: &str = "    TIME(s)     PID     TID  COMM             EVENT  HOOK                                 PAGES  DURATION  ADDRESS         FLAGS";

/// One line per event; `start_ns` is the trace start, so times read as seconds into the trace.
pub fn event_line(e: &TraceEvent, start_ns: u64, foll: &FollFlags) -> String {
    let secs = e.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
    let (what, pages, hook) = match (e.kind, &e.folio) {
        (EventKind::Folio, Some(f)) => (folio_verb(f), f.refs.to_string(), e.hook.name()),
        (EventKind::MmapLockDrop, _) => ("drop", "-".to_string(), "mmap_lock"),
        (EventKind::MmapLockRelease, _) => ("mmap", "-".to_string(), e.hook.name()),
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
        _ if matches!(e.hook.class(), HookClass::Pin | HookClass::Get) => {
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
    if s.kernel.unmatched_exits > 0 || s.kernel.thread_map_full > 0 {
        let _ = writeln!(
            out,
            "  untracked calls: {} returns without their entry, {} with the thread map full",
            s.kernel.unmatched_exits, s.kernel.thread_map_full
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
