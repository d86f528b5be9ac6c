//! The bottom line: the keys of the screen on show, or the filter being typed.

use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::Paragraph,
};

use super::super::{
    app::{App, Mode, Screen},
    theme::Theme,
};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(text) = &app.editing {
        let line = Line::from(vec![
            Span::styled(
                "filter (pid or name, Enter applies, Esc cancels): ",
                theme.key(),
            ),
            Span::raw(format!("{text}_")),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let keys: &[(&str, &str)] = match (app.mode, app.screen()) {
        (Mode::Live, Screen::Overview) => &[
            ("Tab", "panel"),
            ("↑↓", "select"),
            ("Enter", "open"),
            ("s", "sort"),
            ("/", "filter"),
            ("p", "pause"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (Mode::Replay, Screen::Overview) => &[
            ("←→", "step"),
            ("<>", "x10"),
            ("p", "play"),
            ("Tab", "panel"),
            ("Enter", "open"),
            ("s", "sort"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (_, Screen::Finding(_)) => &[
            ("Esc", "back"),
            ("↑↓", "scroll"),
            ("Enter", "its process"),
            ("p", "pause"),
            ("q", "quit"),
        ],
        _ => &[
            ("Esc", "back"),
            ("↑↓", "scroll"),
            ("p", "pause"),
            ("?", "help"),
            ("q", "quit"),
        ],
    };
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(*key, theme.key()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
