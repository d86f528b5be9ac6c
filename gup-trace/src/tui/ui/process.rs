//! The process screen: its pins, calls and mmap_lock figures, the pins it holds by call site,
//! its oldest pinned folios and the stacks it pinned through.

use ratatui::text::{Line, Span};

use super::{
    super::{
        snapshot::{DashboardSnapshot, LockRow, ProcessRow},
        theme::Theme,
    },
    detail::{Page, fields, push_stack},
    format::{ago, fast_pct, percentiles, pin_kind, process_state, rate},
    widgets::process_state_style,
};
use crate::{engine::pins::ProcessId, output::duration};

pub(super) fn page(id: ProcessId, snap: &DashboardSnapshot, theme: &Theme) -> Page {
    match snap.process(id) {
        Some(p) => Page {
            title: format!("process {} ({})", p.pid, p.comm),
            lines: lines(p, snap, theme),
        },
        None => Page::gone(
            "process",
            "this process is not in the snapshot any more",
            theme,
        ),
    }
}

fn lock_line(l: &LockRow) -> String {
    format!(
        "{} calls, {}, {}, {} drops ({})",
        l.calls,
        percentiles("wait", l.wait_p50, l.wait_p99),
        percentiles("hold", l.hold_p50, l.hold_p99),
        l.drops,
        duration(l.dropped_ns)
    )
}

fn lines(p: &ProcessRow, snap: &DashboardSnapshot, theme: &Theme) -> Vec<Line<'static>> {
    let h = theme.header();
    let mut who = fields(
        [
            ("pid ", format!("{}  ", p.pid)),
            ("comm ", format!("{}  ", p.comm)),
            (
                "parent ",
                format!("{}  ", p.parent.map_or("-".into(), |pp| pp.to_string())),
            ),
        ],
        theme,
    );
    who.push_span(Span::styled(
        process_state(p, snap),
        process_state_style(p, theme),
    ));
    let pins = format!(
        "taken {}, released {}, outstanding {} in {} folios; unpinned by it {}",
        p.taken, p.released, p.outstanding, p.folio_count, p.releases_made
    );
    let calls = format!(
        "{} pin ({} failed), {} get; fast path {} ({} fast, {} slow pages); {}/s",
        p.pin_calls,
        p.failed_pin_calls,
        p.get_calls,
        fast_pct(p.fast_refs, p.slow_refs),
        p.fast_refs,
        p.slow_refs,
        rate(p.rate)
    );
    let mut lines = vec![
        who,
        fields([("pins ", pins)], theme),
        fields([("calls ", calls)], theme),
        fields([("mmap_lock ", lock_line(&p.lock))], theme),
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
                pin_kind(*longterm),
                s.map_or(String::new(), |s| s.caller.clone())
            )));
        }
        lines.push(Line::raw(""));
    }
    if !p.taken_by.is_empty() {
        lines.push(Line::styled("pins on its memory taken by others:", h));
        for (pid, comm, pages) in &p.taken_by {
            lines.push(Line::raw(format!(
                "  pid {pid:<7} {comm:<16} {pages:>7} pages"
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
                ago(snap, f.since_ns),
                pin_kind(f.longterm),
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
            push_stack(&mut lines, s, theme);
        }
    }
    lines
}
