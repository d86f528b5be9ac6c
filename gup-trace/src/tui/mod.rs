//! The dashboard: `gup-trace top` (live) and `gup-trace report --tui` (a recording, with a
//! time cursor).
//!
//! - [`snapshot`]: a small [`snapshot::DashboardSnapshot`] built from the engine at each tick;
//!   the screens are drawn from it alone.
//! - [`app`]: the screen state and the keys, as pure state transitions.
//! - [`ui`]: the screens (overview, process, call site, finding, help).
//! - [`theme`]: colours, or none with NO_COLOR.
//! - [`live`]: the live loop (event intake apart from drawing), and the headless capture mode.
//! - [`replay`]: the time cursor over a recording.
//! - [`term`]: the terminal itself: raw mode, the alternate screen, keys.

pub mod app;
pub mod live;
pub mod replay;
pub mod snapshot;
pub mod term;
pub mod theme;
pub mod ui;

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use self::{app::App, snapshot::DashboardSnapshot, theme::Theme};

/// The text of a screen: one line per row, trailing blanks trimmed.
pub fn buffer_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::with_capacity(usize::from(area.width + 1) * usize::from(area.height));
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Draws the screen `app` is on into an off-screen buffer of `width` x `height`: what a
/// terminal of that size would show.
pub fn render(
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
    width: u16,
    height: u16,
) -> Buffer {
    let mut terminal =
        Terminal::new(TestBackend::new(width, height)).expect("a test backend always starts");
    terminal
        .draw(|frame| ui::draw(frame, app, snap, theme))
        .expect("drawing into memory cannot fail");
    terminal.backend().buffer().clone()
}

pub fn render_text(
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
    width: u16,
    height: u16,
) -> String {
    buffer_text(&render(app, snap, theme, width, height))
}

#[cfg(test)]
mod tests;
