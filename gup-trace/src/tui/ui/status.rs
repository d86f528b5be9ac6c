//! The status line under every screen: lost events and missing hooks, what makes the view
//! incomplete.

use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::Paragraph,
};

use super::super::{snapshot::DashboardSnapshot, theme::Theme};

/// Lost events and missing hooks: always on screen, whatever the screen.
pub(super) fn draw(frame: &mut Frame, area: Rect, snap: &DashboardSnapshot, theme: &Theme) {
    let h = &snap.health;
    let src = &snap.source;
    let mut spans = Vec::new();
    match h.lost_events {
        Some(0) => spans.push(Span::styled("lost events: 0", theme.good())),
        Some(n) => spans.push(Span::styled(format!("LOST EVENTS: {n}"), theme.alert())),
        None => spans.push(Span::styled("lost events: unknown", theme.warn())),
    }
    spans.push(Span::raw(" | "));
    if src.blind {
        spans.push(Span::styled(
            format!(
                "NO GUP HOOK ATTACHED ({} missing): pins cannot be seen here",
                src.missing_hooks.len()
            ),
            theme.alert(),
        ));
    } else if src.missing_hooks.is_empty() {
        spans.push(Span::styled("hooks: all attached", theme.good()));
    } else {
        spans.push(Span::styled(
            format!(
                "hooks missing: {} ({})",
                src.missing_hooks.len(),
                src.missing_hooks.join(", ")
            ),
            theme.warn(),
        ));
    }
    if h.late_events > 0 {
        spans.push(Span::raw(format!(" | late: {}", h.late_events)));
    }
    if h.unitemized_releases > 0 {
        spans.push(Span::styled(
            format!(" | unitemized releases: {}", h.unitemized_releases),
            theme.warn(),
        ));
    }
    if !src.filters.is_empty() {
        spans.push(Span::raw(format!(" | traced: {}", src.filters)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
