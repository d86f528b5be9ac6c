//! Pieces every screen is built of: number cells, bordered blocks, table headers.

use ratatui::{
    layout::Alignment,
    text::Line,
    widgets::{Block, Cell, Row},
};

use super::super::theme::Theme;

/// A number column: right-aligned.
pub(super) fn num(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

pub(super) fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered().title(title).border_style(if focused {
        theme.focused_border()
    } else {
        theme.border()
    })
}

pub(super) fn header_row<'a>(cells: &[&'a str], theme: &Theme) -> Row<'a> {
    Row::new(cells.iter().map(|c| Cell::from(*c))).style(theme.header())
}
