//! What the drill-down screens share: a bordered page of text lines that scrolls, and a call
//! site's kernel stack as lines.

use ratatui::{
    Frame,
    layout::Rect,
    text::Line,
    widgets::{Paragraph, Wrap},
};

use super::{
    super::{snapshot::SiteRow, theme::Theme},
    widgets::block,
};

pub(super) fn detail(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    scroll: u16,
    theme: &Theme,
) {
    // Long lines wrap; the scroll stops once the last line is in view.
    let inner = usize::from(area.width.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let max = (rows as u16).saturating_sub(area.height.saturating_sub(2));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block(format!(" {title} "), true, theme))
            .wrap(Wrap { trim: false })
            .scroll((scroll.min(max), 0)),
        area,
    );
}

pub(super) fn stack(lines: &mut Vec<Line<'static>>, s: &SiteRow, theme: &Theme) {
    match &s.frames {
        Ok(frames) if frames.is_empty() => lines.push(Line::styled(
            "      (the kernel recorded no frames)",
            theme.dim(),
        )),
        Ok(frames) => {
            for f in frames {
                lines.push(Line::raw(format!("      {f}")));
            }
        }
        Err(why) => lines.push(Line::styled(
            format!("      (no stack: {why})"),
            theme.dim(),
        )),
    }
}
