//! The call-site screen: its pins, the processes holding them, its kernel stack.

use std::cmp::Reverse;

use ratatui::text::Line;

use super::{
    super::{
        snapshot::{DashboardSnapshot, ProcessRow, SiteRow},
        theme::Theme,
    },
    detail::{Page, fields, push_stack},
    format::{oldest, pin_kind, process_state, rate},
};
use crate::engine::pins::SiteId;

pub(super) fn page(id: SiteId, snap: &DashboardSnapshot, theme: &Theme) -> Page {
    match snap.site(id) {
        Some(s) => Page {
            title: format!("call site {}", s.entry),
            lines: lines(s, snap, theme),
        },
        None => Page::gone("call site", "no such call site", theme),
    }
}

fn lines(s: &SiteRow, snap: &DashboardSnapshot, theme: &Theme) -> Vec<Line<'static>> {
    let h = theme.header();
    let pins = format!(
        "taken {}, released {}, outstanding {}; {}/s; oldest held {}",
        s.taken,
        s.released,
        s.outstanding,
        rate(s.rate),
        oldest(snap, s.oldest_ns)
    );
    let mut lines = vec![
        fields(
            [
                ("entry ", format!("{}  ", s.entry)),
                (
                    "stack id ",
                    s.stack_id.map_or("-".into(), |id| id.to_string()),
                ),
            ],
            theme,
        ),
        fields([("pins ", pins)], theme),
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
    holders.sort_by_key(|holder| Reverse(holder.2));
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
            pin_kind(longterm),
            process_state(p, snap)
        )));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("kernel stack (top first):", h));
    push_stack(&mut lines, s, theme);
    lines
}
