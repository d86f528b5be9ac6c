//! The call-site screen: its pins, the processes holding them, its kernel stack.

use ratatui::text::{Line, Span};

use super::{
    super::{
        snapshot::{DashboardSnapshot, ProcessRow, SiteRow},
        theme::Theme,
    },
    detail::stack,
    format::{oldest, process_state, rate},
};

pub(super) fn site_lines(
    s: &SiteRow,
    snap: &DashboardSnapshot,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let h = theme.header();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("entry ", h),
            Span::raw(format!("{}  ", s.entry)),
            Span::styled("stack id ", h),
            Span::raw(s.stack_id.map_or("-".into(), |id| id.to_string())),
        ]),
        Line::from(vec![
            Span::styled("pins ", h),
            Span::raw(format!(
                "taken {}, released {}, outstanding {}; {}/s; oldest held {}",
                s.taken,
                s.released,
                s.outstanding,
                rate(s.rate),
                oldest(snap, s.oldest_ns)
            )),
        ]),
        Line::raw(""),
        Line::styled("holders:", h),
    ];
    let mut holders: Vec<(&ProcessRow, bool, u64)> = snap
        .processes
        .iter()
        .flat_map(|p| {
            p.holdings
                .iter()
                .filter(|(site, _, _)| *site == s.id)
                .map(move |(_, lt, pages)| (p, *lt, *pages))
        })
        .collect();
    holders.sort_by(|a, b| b.2.cmp(&a.2));
    if holders.is_empty() {
        lines.push(Line::styled(
            "  none: every pin taken here was released",
            theme.dim(),
        ));
    }
    for (p, longterm, pages) in holders {
        lines.push(Line::raw(format!(
            "  pid {:<7} {:<16} {:>7} pages {:<8} {}",
            p.pid,
            p.comm,
            pages,
            if longterm { "LONGTERM" } else { "short" },
            process_state(p, snap)
        )));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("kernel stack (top first):", h));
    stack(&mut lines, s, theme);
    lines
}
