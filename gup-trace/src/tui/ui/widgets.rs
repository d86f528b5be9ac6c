//! Pieces every screen is built of: number cells, bordered blocks, table headers, and the
//! styles that mark a state the same way wherever it shows.

use ratatui::{
    layout::Alignment,
    style::Style,
    text::Line,
    widgets::{Block, Cell, Row},
};

use super::super::{snapshot::ProcessRow, theme::Theme};

/// A number column: right-aligned.
pub(super) fn num(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

pub(super) fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .title(title)
        .border_style(border(focused, theme))
}

/// A panel's border: marked while the panel has the focus.
pub(super) fn border(focused: bool, theme: &Theme) -> Style {
    if focused {
        theme.focused_border()
    } else {
        theme.border()
    }
}

pub(super) fn header_row<'a>(cells: &[&'a str], theme: &Theme) -> Row<'a> {
    Row::new(cells.iter().map(|c| Cell::from(*c))).style(theme.header())
}

/// A finding: an alert when it is a problem in the traced programs, a warning when it is
/// about gup-trace's own view.
pub(super) fn finding_style(problem: bool, theme: &Theme) -> Style {
    if problem { theme.alert() } else { theme.warn() }
}

/// A process's state: an alert when it exited holding pins (an orphan).
pub(super) fn process_state_style(p: &ProcessRow, theme: &Theme) -> Style {
    if p.exited_ns.is_some() && p.outstanding > 0 {
        theme.alert()
    } else {
        Style::new()
    }
}
