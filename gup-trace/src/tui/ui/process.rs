//! The process screen: its pins, calls and mmap_lock figures, the pins it holds by call site,
//! its oldest pinned folios and the stacks it pinned through.

use ratatui::{
    style::Style,
    text::{Line, Span},
};

use super::{
    super::{
        snapshot::{DashboardSnapshot, LockRow, ProcessRow, share},
        theme::Theme,
    },
    detail::stack,
    format::{age, pct, process_state, rate},
};
use crate::output::duration;

pub(super) fn lock_line(l: &LockRow) -> String {
    format!(
        "{} calls, wait p50 {} p99 {}, hold p50 {} p99 {}, {} drops ({})",
        l.calls,
        duration(l.wait_p50),
        duration(l.wait_p99),
        duration(l.hold_p50),
        duration(l.hold_p99),
        l.drops,
        duration(l.dropped_ns)
    )
}

pub(super) fn process_lines(
    p: &ProcessRow,
    snap: &DashboardSnapshot,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let h = theme.header();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("pid ", h),
            Span::raw(format!("{}  ", p.pid)),
            Span::styled("comm ", h),
            Span::raw(format!("{}  ", p.comm)),
            Span::styled("parent ", h),
            Span::raw(format!(
                "{}  ",
                p.parent.map_or("-".into(), |pp| pp.to_string())
            )),
            Span::styled(
                process_state(p, snap),
                if p.exited_ns.is_some() && p.outstanding > 0 {
                    theme.alert()
                } else {
                    Style::new()
                },
            ),
        ]),
        Line::from(vec![
            Span::styled("pins ", h),
            Span::raw(format!(
                "taken {}, released {}, outstanding {} in {} folios; unpinned by it {}",
                p.taken, p.released, p.outstanding, p.folio_count, p.releases_made
            )),
        ]),
        Line::from(vec![
            Span::styled("calls ", h),
            Span::raw(format!(
                "{} pin ({} failed), {} get; fast path {} ({} fast, {} slow pages); {}/s",
                p.pin_calls,
                p.failed_pin_calls,
                p.get_calls,
                pct(share(p.fast_refs, p.slow_refs)),
                p.fast_refs,
                p.slow_refs,
                rate(p.rate)
            )),
        ]),
        Line::from(vec![
            Span::styled("mmap_lock ", h),
            Span::raw(lock_line(&p.lock)),
        ]),
        Line::raw(""),
    ];
    if !p.holdings.is_empty() {
        lines.push(Line::styled("pins held, by call site:", h));
        for (site, longterm, pages) in &p.holdings {
            let s = snap.site(*site);
            lines.push(Line::raw(format!(
                "  {:<22} {:>7} pages {:<9} {}",
                s.map_or("?", |s| s.entry),
                pages,
                if *longterm { "LONGTERM" } else { "short" },
                s.map_or(String::new(), |s| s.caller.clone())
            )));
        }
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled(
        format!(
            "pinned folios ({} of {}, oldest first):",
            p.folios.len(),
            p.folio_count
        ),
        h,
    ));
    if p.folios.is_empty() {
        lines.push(Line::styled("  none", theme.dim()));
    } else {
        lines.push(Line::styled(
            format!(
                "  {:<18} {:>12} {:>3} {:>4} {:>7}  KIND",
                "FOLIO", "PFN", "ORD", "PINS", "AGE"
            ),
            theme.dim(),
        ));
        for f in &p.folios {
            lines.push(Line::raw(format!(
                "  {:<#18x} {:>#12x} {:>3} {:>4} {:>7}  {}",
                f.folio,
                f.pfn,
                f.order,
                f.refs,
                age(snap.now_ns.saturating_sub(f.since_ns)),
                if f.longterm { "LONGTERM" } else { "short" },
            )));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("call sites and their kernel stacks:", h));
    if p.sites.is_empty() {
        lines.push(Line::styled("  none: it took no pins", theme.dim()));
    }
    for id in &p.sites {
        if let Some(s) = snap.site(*id) {
            lines.push(Line::raw(format!(
                "  {}: {} taken, {} released, {} outstanding (all processes)",
                s.entry, s.taken, s.released, s.outstanding
            )));
            stack(&mut lines, s, theme);
        }
    }
    lines
}
