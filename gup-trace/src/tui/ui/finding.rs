//! The finding screen: the headline, whether it is resolved, the evidence and its process.

use ratatui::text::Line;

use super::{
    super::{
        snapshot::{DashboardSnapshot, FindingRow},
        theme::Theme,
    },
    detail::Page,
    widgets::finding_style,
};

pub(super) fn page(f: &FindingRow, snap: &DashboardSnapshot, theme: &Theme) -> Page {
    Page {
        title: f.kind.to_string(),
        lines: lines(f, snap, theme),
    }
}

fn lines(f: &FindingRow, snap: &DashboardSnapshot, theme: &Theme) -> Vec<Line<'static>> {
    let current = snap.findings.iter().any(|g| g.key == f.key);
    let mut lines = vec![
        Line::styled(f.headline.clone(), finding_style(f.problem, theme)),
        Line::raw(""),
    ];
    if !current {
        lines.push(Line::styled(
            format!(
                "resolved: not found any more at {:.2} s (shown as last seen)",
                snap.elapsed_ns() as f64 / 1e9
            ),
            theme.good(),
        ));
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled("evidence:", theme.header()));
    for l in &f.evidence {
        lines.push(Line::raw(l.clone()));
    }
    if let Some(p) = f.process.and_then(|id| snap.process(id)) {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            format!(
                "Enter: process {} ({}), {} pins outstanding",
                p.pid, p.comm, p.outstanding
            ),
            theme.key(),
        ));
    }
    lines
}
