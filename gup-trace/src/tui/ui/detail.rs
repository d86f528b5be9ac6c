//! What the drill-down screens (process, call site, finding) share: the [`Page`] each builds,
//! drawn as bordered text that scrolls, lines of labelled values, and a call site's kernel
//! stack as lines.

use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::{Paragraph, Wrap},
};

use super::{
    super::{snapshot::SiteRow, theme::Theme},
    widgets::block,
};

/// A drill-down screen's content: its title and its lines.
pub(super) struct Page {
    pub title: String,
    pub lines: Vec<Line<'static>>,
}

impl Page {
    /// The page of something no longer in the snapshot: `why`, dimmed.
    pub fn gone(title: &str, why: &'static str, theme: &Theme) -> Page {
        Page {
            title: title.to_string(),
            lines: vec![Line::styled(why, theme.dim())],
        }
    }
}

pub(super) fn draw(frame: &mut Frame, area: Rect, page: Page, scroll: u16, theme: &Theme) {
    let Page { title, lines } = page;
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

/// A line of labelled values, each label in the header style and its value plain after it.
pub(super) fn fields(
    pairs: impl IntoIterator<Item = (&'static str, String)>,
    theme: &Theme,
) -> Line<'static> {
    let spans: Vec<Span> = pairs
        .into_iter()
        .flat_map(|(label, value)| [Span::styled(label, theme.header()), Span::raw(value)])
        .collect();
    Line::from(spans)
}

/// A call site's kernel stack, one indented frame a line, or why there is none.
pub(super) fn push_stack(lines: &mut Vec<Line<'static>>, s: &SiteRow, theme: &Theme) {
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
