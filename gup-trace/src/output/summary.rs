//! The summary `trace` and `selftest` print at the end: gup-trace's pin counts against
//! /proc/vmstat's, the folio checks, lost events and the processes holding pins.
//!
//! Where the per-folio (grab) hooks are attached, the per-folio counts lead: they are the exact
//! comparison, and a difference there is a real one (DIFFER). The per-call counts (pages the
//! pin and unpin calls returned or were given) then follow, and where they differ from vmstat
//! the line says by how much and why, from what the per-folio hooks counted: zero-page pins
//! and releases the kernel does not count, releases made inside pin calls, releases outside
//! any unpin call. A difference those do not account for says UNEXPLAINED.

use std::fmt::Write as _;

use crate::{engine::FolioTotals, window::Summary};

/// How a per-call total compares with vmstat's.
#[derive(Debug, PartialEq, Eq)]
pub enum PerCall {
    Match,
    /// It differs, for these reasons, which account for the whole difference.
    Explained(String),
    /// It differs by more (or otherwise) than the per-folio counts account for.
    Unexplained(String),
}

impl PerCall {
    fn text(&self) -> String {
        match self {
            PerCall::Match => "match".into(),
            PerCall::Explained(why) => why.clone(),
            PerCall::Unexplained(why) => format!("UNEXPLAINED: {why}"),
        }
    }
}

fn signed(n: i128) -> String {
    format!("{n:+}")
}

/// Per-call pins against vmstat: a call's pages include zero-page pins (the kernel takes and
/// counts no pin on the shared zero page) and the releases made while it ran (its own pins
/// given back, which vmstat counted acquired as well, or an I/O completion in interrupt
/// context on its thread, which makes the per-call count run high by up to that many).
pub fn explain_pins(per_call: u64, vmstat: u64, f: &FolioTotals) -> PerCall {
    let diff = i128::from(per_call) - i128::from(vmstat);
    if diff == 0 {
        return PerCall::Match;
    }
    let zero = i128::from(f.zero_page_pins);
    let rest = diff - zero;
    let in_pin = i128::from(f.released_in_pin_calls);
    let zero_part = format!(
        "{zero} zero-page pins (pages the calls returned that the kernel neither pins nor counts)"
    );
    if rest == 0 {
        return PerCall::Explained(format!("{}: {zero_part}", signed(diff)));
    }
    if rest > 0 && rest <= in_pin {
        let mut parts = Vec::new();
        if zero > 0 {
            parts.push(zero_part);
        }
        parts.push(format!(
            "{rest} of the {in_pin} releases made inside pin calls (I/O completions in interrupt \
             context on the pinning thread) counted with the call's pins"
        ));
        return PerCall::Explained(format!("{}: {}", signed(diff), parts.join(", ")));
    }
    PerCall::Unexplained(format!(
        "{} beyond {zero} zero-page pins and {in_pin} releases inside pin calls",
        signed(diff)
    ))
}

/// Per-call releases against vmstat: unpin calls count the zero-page pins they drop (vmstat
/// does not), and vmstat counts releases outside any unpin call (a pin call giving back its
/// own pins, `gup_put_folio` called directly), which the per-call count has not.
pub fn explain_releases(per_call: u64, vmstat: u64, f: &FolioTotals) -> PerCall {
    let diff = i128::from(per_call) - i128::from(vmstat);
    if diff == 0 {
        return PerCall::Match;
    }
    let zero = i128::from(f.zero_page_releases);
    let outside = i128::from(f.released) - i128::from(f.released_in_unpin_calls);
    if diff != zero - outside || outside < 0 {
        return PerCall::Unexplained(format!(
            "{} where {zero} zero-page releases and {outside} releases outside unpin calls \
             make {}",
            signed(diff),
            signed(zero - outside)
        ));
    }
    let mut parts = Vec::new();
    if zero > 0 {
        parts.push(format!(
            "{zero} zero-page releases (unpinned pages the kernel never counted)"
        ));
    }
    if outside > 0 {
        parts.push(format!(
            "{outside} releases outside any unpin call (pins a pin call gave back, or \
             gup_put_folio called directly), which vmstat counts"
        ));
    }
    PerCall::Explained(format!("{}: {}", signed(diff), parts.join(", ")))
}

/// `per_folio`: the grab hooks are attached, so the per-folio counts exist and lead.
pub fn summary(s: &Summary, top: usize, per_folio: bool) -> String {
    let mark = |ok: bool| if ok { "match" } else { "DIFFER" };
    let mut out = String::new();
    let _ = writeln!(out, "summary over {:.2} s", s.seconds);
    let f = &s.folios;
    if per_folio {
        let _ = writeln!(out, "  per folio (exact)         gup-trace  /proc/vmstat");
        for (what, seen, kernel, same) in [
            (
                "pinned pages",
                f.pinned,
                s.vmstat.acquired,
                s.folio_pins_match(),
            ),
            (
                "released pages",
                f.released,
                s.vmstat.released,
                s.folio_releases_match(),
            ),
        ] {
            let _ = writeln!(out, "  {what:<22}{seen:>12}  {kernel:>12}  {}", mark(same));
        }
        let _ = writeln!(out, "  per call");
        for (what, seen, kernel, why) in [
            (
                "pinned pages",
                s.totals.pinned,
                s.vmstat.acquired,
                explain_pins(s.totals.pinned, s.vmstat.acquired, f),
            ),
            (
                "released pages",
                s.totals.released,
                s.vmstat.released,
                explain_releases(s.totals.released, s.vmstat.released, f),
            ),
        ] {
            let _ = writeln!(out, "  {what:<22}{seen:>12}  {kernel:>12}  {}", why.text());
        }
    } else {
        // Without the grab hooks only the per-call counts exist, and nothing to explain a
        // difference with.
        let _ = writeln!(out, "  per call                  gup-trace  /proc/vmstat");
        for (what, seen, kernel, same) in [
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
        ] {
            let _ = writeln!(out, "  {what:<22}{seen:>12}  {kernel:>12}  {}", mark(same));
        }
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
    use super::*;

    fn folios(zero_pins: u64, in_pin: u64, zero_releases: u64) -> FolioTotals {
        FolioTotals {
            pinned: 3392,
            released: 3520,
            zero_page_pins: zero_pins,
            released_in_pin_calls: in_pin,
            zero_page_releases: zero_releases,
            released_in_unpin_calls: 3520,
            ..FolioTotals::default()
        }
    }

    #[test]
    fn per_call_pins_over_by_the_zero_page_pins_are_explained() {
        // vm-test on 6.12 and 7.3: 3456 per call, 3392 per folio and in vmstat, 64 zero-page.
        let f = folios(64, 0, 64);
        assert_eq!(
            explain_pins(3456, 3392, &f),
            PerCall::Explained(
                "+64: 64 zero-page pins (pages the calls returned that the kernel neither pins \
                 nor counts)"
                    .into()
            )
        );
        assert_eq!(explain_pins(3392, 3392, &f), PerCall::Match);
    }

    #[test]
    fn interrupt_releases_inside_pin_calls_explain_up_to_their_number() {
        // An earlier 7.3 run: 3776 per call against 3264, 64 zero-page pins, 512 releases
        // inside pin calls.
        let f = folios(64, 512, 0);
        let PerCall::Explained(why) = explain_pins(3776, 3328, &f) else {
            panic!("{:?}", explain_pins(3776, 3328, &f));
        };
        assert!(why.starts_with("+448: 64 zero-page pins"), "{why}");
        assert!(
            why.contains("384 of the 512 releases made inside pin calls"),
            "{why}"
        );
        // More than they can account for.
        assert!(matches!(
            explain_pins(3392 + 64 + 513, 3392, &f),
            PerCall::Unexplained(_)
        ));
        // Fewer per-call pins than vmstat: nothing here explains that.
        assert!(matches!(
            explain_pins(3000, 3392, &f),
            PerCall::Unexplained(_)
        ));
    }

    #[test]
    fn per_call_releases_add_zero_page_releases_and_miss_those_outside_unpin_calls() {
        let f = folios(64, 0, 64);
        assert_eq!(
            explain_releases(3584, 3520, &f),
            PerCall::Explained(
                "+64: 64 zero-page releases (unpinned pages the kernel never counted)".into()
            )
        );
        // 32 pins given back inside a pin call: vmstat counts their release, no unpin call has
        // them.
        let f = FolioTotals {
            released_in_unpin_calls: 3520 - 32,
            ..folios(64, 32, 64)
        };
        let PerCall::Explained(why) = explain_releases(3552, 3520, &f) else {
            panic!("{:?}", explain_releases(3552, 3520, &f));
        };
        assert!(why.starts_with("+32: 64 zero-page releases"), "{why}");
        assert!(why.contains("32 releases outside any unpin call"), "{why}");
        assert!(matches!(
            explain_releases(3600, 3520, &f),
            PerCall::Unexplained(_)
        ));
    }

    #[test]
    fn the_per_folio_comparison_leads_and_no_bare_differ_follows() {
        let mut f = folios(64, 0, 64);
        f.released_in_unpin_calls = 3520;
        let s = Summary {
            seconds: 1.0,
            totals: crate::engine::PinTotals {
                pinned: 3456,
                released: 3584,
                ..Default::default()
            },
            folios: f,
            vmstat: crate::vmstat::PinCounters {
                acquired: 3392,
                released: 3520,
            },
            kernel: Default::default(),
            processes: Vec::new(),
        };
        let text = summary(&s, 5, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("per folio"), "{text}");
        assert!(
            lines[2].ends_with("match") && lines[3].ends_with("match"),
            "{text}"
        );
        assert!(
            !text.contains("DIFFER") && !text.contains("UNEXPLAINED"),
            "{text}"
        );
        assert!(lines[5].contains("+64: 64 zero-page pins"), "{text}");
        // Without the grab hooks, the per-call comparison is all there is.
        assert!(summary(&s, 5, false).contains("DIFFER"));
    }
}
