//! The summary `trace` and `selftest` print at the end: gup-trace's pin counts against
//! /proc/vmstat's, the folio checks, lost events and the processes holding pins.

use std::fmt::Write as _;

use crate::window::Summary;

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
