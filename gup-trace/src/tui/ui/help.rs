//! The help overlay: the keys of the mode on show, over the screen.

use ratatui::{
    Frame,
    layout::{Alignment, Rect},
    text::{Line, Span},
    widgets::{Clear, Paragraph, Wrap},
};

use super::{
    super::{
        app::{App, Mode},
        theme::Theme,
    },
    widgets::block,
};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut keys: Vec<(&str, &str)> = vec![
        (
            "Tab/S-Tab",
            "next/previous list: processes, call sites, findings",
        ),
        ("↑ ↓ j k", "select a row (scroll on a detail screen)"),
        ("PgUp PgDn", "ten rows"),
        ("Enter", "open: a process (its folios, ages, stacks),"),
        ("", "a call site (holders, stack), a finding (evidence)"),
        ("Esc", "back (on the overview: clear the filter)"),
        ("s", "sort by outstanding pins, pin rate, oldest pin"),
        ("/", "filter by pid or name (sites: entry or frame)"),
    ];
    match app.mode {
        Mode::Live => keys.push(("p", "pause the screen (events are still taken in)")),
        Mode::Replay => {
            keys.push(("← → h l", "time cursor one step back/forward"));
            keys.push(("< > H L", "ten steps; Home/End: start/end"));
            keys.push(("p space", "play/stop: one step per interval"));
        }
    }
    keys.push(("?", "this help"));
    keys.push(("q Ctrl-C", "quit"));
    let mut lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<10}"), theme.key()),
                Span::raw(format!(" {what}")),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "LT: FOLL_LONGTERM pins. Ages, OLDEST: since the pin was taken.",
        theme.dim(),
    ));
    let width = area.width.min(66);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .alignment(Alignment::Left)
            .block(block(" keys (any key closes) ", true, theme)),
        popup,
    );
}
