//! The report as text: a heading on the recording, then one table per view.

use std::fmt::Write as _;

use super::Report;
use crate::output;

/// `2026-11-21 10:00:00 UTC` from seconds since the epoch.
pub fn utc(unix_s: f64) -> String {
    let secs = unix_s as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
}

fn of(table_total: usize, shown: usize) -> String {
    if table_total > shown {
        format!("{shown} of {table_total}")
    } else {
        format!("{table_total}")
    }
}

/// The report as text. `findings_text` is `output::findings_text` of the same findings.
pub fn text(report: &Report, findings_text: &str) -> String {
    let r = &report.recording;
    let mut out = String::new();
    if let Some(d) = &r.damaged {
        let _ = writeln!(
            out,
            "DAMAGED recording: chunk {} at byte offset {}: {}; reported up to there ({} \
             events), nothing after it is read",
            d.chunk, d.offset, d.reason, r.events
        );
    }
    let _ = writeln!(
        out,
        "recording by gup-trace {} on Linux {}, started {}, {:.2} s",
        r.gup_trace_version,
        r.kernel,
        utc(r.start_unix_s),
        r.seconds
    );
    let _ = writeln!(
        out,
        "  {} events in {} records; lost events: {}; {} kernel stacks; {}",
        r.events,
        r.records,
        r.lost_events
            .map_or("unknown (no end counters)".into(), |n| n.to_string()),
        r.stacks,
        match r.status.as_str() {
            _ if r.damaged.is_some() => "DAMAGED (see above)".to_string(),
            "truncated" => format!(
                "TRUNCATED after {} events (the recorder did not finish: killed, or the disk \
                 filled)",
                r.events
            ),
            other => other.to_string(),
        }
    );
    let f = &r.filters;
    let filters = f.processes.describe();
    let _ = writeln!(
        out,
        "  filters: {}{}; mmap_lock events: {}",
        if filters.is_empty() {
            "none".to_string()
        } else {
            filters.join(", ")
        },
        if f.all_releases {
            " (releases by any task)"
        } else {
            ""
        },
        f.mmap_lock
    );
    if r.missing_hooks.is_empty() {
        out.push_str("  hooks: every hook this kernel has was attached\n");
    } else {
        let mut groups: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
        for h in &r.missing_hooks {
            let why = h.reasons.join("; ");
            let i = match groups.iter().position(|g| g.0 == why) {
                Some(i) => i,
                None => {
                    groups.push((why, Vec::new(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[i].1.push(&h.hook);
            if let Some(cost) = h.cost.as_deref().filter(|c| !groups[i].2.contains(c)) {
                groups[i].2.push(cost);
            }
        }
        let _ = writeln!(out, "  hooks NOT attached: {}", r.missing_hooks.len());
        for (why, hooks, costs) in &groups {
            let _ = writeln!(out, "      {}: {why}", hooks.join(", "));
            for cost in costs {
                let _ = writeln!(out, "        cost: {cost}");
            }
        }
    }
    let _ = write!(
        out,
        "  pages pinned/released: {} / {} seen",
        r.pinned, r.released
    );
    match r.vmstat {
        Some(v) => {
            let _ = writeln!(
                out,
                ", /proc/vmstat {} / {}{}",
                v.acquired,
                v.released,
                if filters.is_empty() {
                    ""
                } else {
                    " (whole machine)"
                }
            );
        }
        None => out.push_str(", /proc/vmstat not recorded\n"),
    }
    if r.late_events + r.undecodable_records > 0 {
        let _ = writeln!(
            out,
            "  {} events arrived too late to be put in order; {} records could not be decoded",
            r.late_events, r.undecodable_records
        );
    }

    let _ = writeln!(
        out,
        "\nprocesses ({}, by pins taken; RELEASED: of its pins, by anyone; UNPINNED: pins it \
         released, its own or others')",
        of(report.processes.total, report.processes.rows.len())
    );
    if report.processes.rows.is_empty() {
        out.push_str("  none seen\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:>9} {:>9} {:>11} {:>9} {:>5} {:>9} {:>9}  STATE",
            "PID",
            "COMM",
            "TAKEN",
            "RELEASED",
            "OUTSTANDING",
            "UNPINNED",
            "FAST",
            "PINCALLS",
            "GETCALLS"
        );
        for p in &report.processes.rows {
            let _ = writeln!(
                out,
                "  {:>7}  {:<16} {:>9} {:>9} {:>11} {:>9} {:>5} {:>9} {:>9}  {}",
                p.pid,
                p.comm,
                p.pins_taken,
                p.pins_released,
                p.outstanding,
                p.releases_made,
                pct(p.fast_share),
                p.pin_calls,
                p.get_calls,
                p.exited_s
                    .map_or("running".into(), |t| format!("exited at {t:.2} s"))
            );
        }
    }

    let _ = writeln!(
        out,
        "\ncall sites ({}, by pins taken)",
        of(report.call_sites.total, report.call_sites.rows.len())
    );
    if report.call_sites.rows.is_empty() {
        out.push_str("  none: no pins were taken\n");
    }
    for s in &report.call_sites.rows {
        let _ = writeln!(
            out,
            "  {}: {} taken, {} released, {} outstanding",
            s.entry, s.pins_taken, s.pins_released, s.outstanding
        );
        for frame in &s.stack {
            let _ = writeln!(out, "        {frame}");
        }
        if let Some(why) = &s.stack_error {
            let _ = writeln!(out, "        (no stack: {why})");
        }
    }

    let _ = writeln!(
        out,
        "\noutstanding pins at the end ({} holders, oldest first)",
        of(report.outstanding.total, report.outstanding.rows.len())
    );
    if report.outstanding.rows.is_empty() {
        out.push_str("  none: every pin taken while recording was released\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:>7} {:>7} {:>10} {:>9}  ENTRY",
            "PID", "COMM", "PAGES", "FOLIOS", "SINCE", "AGE"
        );
        for h in &report.outstanding.rows {
            let _ = writeln!(
                out,
                "  {:>7}  {:<16} {:>7} {:>7} {:>8.2} s {:>7.2} s  {}{}{}{}",
                h.pid,
                h.comm,
                h.pages,
                h.folios,
                h.oldest_s,
                h.age_s,
                h.entry,
                if h.longterm { " LONGTERM" } else { "" },
                h.exited_s
                    .map_or(String::new(), |t| format!(" (exited at {t:.2} s)")),
                h.taken_by.as_ref().map_or(String::new(), |t| format!(
                    " taken by pid {} ({})",
                    t.pid, t.comm
                ))
            );
        }
    }

    out.push('\n');
    out.push_str(findings_text);

    let _ = writeln!(
        out,
        "\nmmap_lock inside GUP calls, per process ({})",
        of(report.mmap_lock.total, report.mmap_lock.rows.len())
    );
    if report.mmap_lock.rows.is_empty() {
        out.push_str("  no GUP call took mmap_lock while recording\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9}",
            "PID", "COMM", "CALLS", "WAIT p50", "p99", "HOLD p50", "p99", "DROPS", "DROPPED"
        );
        for l in &report.mmap_lock.rows {
            let _ = writeln!(
                out,
                "  {:>7}  {:<16} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9}",
                l.pid,
                l.comm,
                l.calls,
                output::duration(l.wait_p50_ns),
                output::duration(l.wait_p99_ns),
                output::duration(l.hold_p50_ns),
                output::duration(l.hold_p99_ns),
                l.drops,
                output::duration(l.dropped_ns)
            );
        }
        out.push_str("  (percentiles are upper bounds of power-of-two buckets)\n");
    }
    longterm_text(&mut out, &report.longterm_migrations);
    out
}

/// The FOLL_LONGTERM calls that migrated memory first, one line each.
pub(super) fn longterm_text(out: &mut String, l: &super::LongtermSection) {
    let _ = writeln!(
        out,
        "\nFOLL_LONGTERM calls that migrated movable memory first ({} calls: {} folios migrated, \
         {} failed, {} migrations; {} failed with -ENOMEM after failed migration)",
        l.totals.calls, l.totals.migrated, l.totals.failed, l.totals.retries, l.totals.enomem_calls
    );
    for row in &l.rows {
        let c = &row.call;
        let _ = writeln!(
            out,
            "  {:>8.3} s  pid {} ({}) {}: {} migrated, {} failed, {} migration{} in {}; {}",
            row.time_s,
            c.tgid,
            c.comm,
            c.entry.name(),
            c.migrated,
            c.failed,
            c.retries,
            if c.retries == 1 { "" } else { "s" },
            output::duration(c.duration_ns),
            if c.enomem_after_failed_migration {
                "FAILED -ENOMEM after failed migration (what ibv_reg_mr and io_uring buffer \
                 registration report)"
                    .to_string()
            } else if c.error < 0 {
                format!("failed {}", c.error)
            } else {
                format!("{} pins taken for {} pages asked", c.pages, c.requested)
            }
        );
    }
}
