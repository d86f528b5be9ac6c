//! The title bar on top of every screen: the command, the kernel or the recording, the time,
//! and the findings count.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    widgets::Paragraph,
};

use super::{
    super::{
        app::{App, Mode},
        snapshot::DashboardSnapshot,
        theme::Theme,
    },
    format::{age, short_name},
};

pub(super) fn draw(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
) {
    let src = &snap.source;
    // 6.12.117+deb12-cloud-amd64 is 6.12.117 on a narrow terminal.
    let kernel = if area.width >= 100 {
        src.kernel.as_str()
    } else {
        src.kernel.split(['+', '-']).next().unwrap_or_default()
    };
    let left = match app.mode {
        Mode::Live => format!(
            " gup-trace top | {} | {} | {}",
            if kernel.is_empty() {
                "live".to_string()
            } else {
                format!("Linux {kernel}")
            },
            age(snap.elapsed_ns()),
            if app.paused { "PAUSED" } else { "live" }
        ),
        Mode::Replay => format!(
            " gup-trace report | {} | {:.2}/{:.2}s | {}",
            short_name(&src.source, if area.width >= 100 { 48 } else { 20 }),
            snap.elapsed_ns() as f64 / 1e9,
            src.end_ns
                .map_or(0.0, |e| e.saturating_sub(src.start_ns) as f64 / 1e9),
            if app.paused { "paused" } else { "PLAYING" }
        ),
    };
    let problems = snap.problems();
    let right = if problems > 0 {
        format!(
            " {} FINDING{} | ?:help ",
            problems,
            if problems == 1 { "" } else { "S" }
        )
    } else {
        " ?:help q:quit ".to_string()
    };
    let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(right.len() as u16)])
        .areas(area);
    frame.render_widget(Paragraph::new(left).style(theme.title()), l);
    frame.render_widget(
        Paragraph::new(right).style(if problems > 0 {
            theme.alert()
        } else {
            theme.title()
        }),
        r,
    );
}
