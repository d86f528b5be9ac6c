//! The screens, drawn from a [`DashboardSnapshot`] and the [`App`] state only. Laid out for an
//! 80x24 terminal first; taller terminals get both lists, a taller sparkline and more findings,
//! wider ones more columns.
//!
//! [`draw`] puts the title bar ([`title`]) above the screen on show and the status line
//! ([`status`]) and the keys ([`keys`]) below it. The screen is the [`overview`] with its
//! [`lists`], or a drill-down page ([`process`], [`site`], [`finding`]) that [`detail`] draws;
//! [`help`] goes over it. [`format`] and [`widgets`] are what they all share.

mod detail;
mod finding;
mod format;
mod help;
mod keys;
mod lists;
mod overview;
mod process;
mod site;
mod status;
mod title;
mod widgets;

use ratatui::{
    Frame,
    layout::{Constraint, Layout},
};

use super::{
    app::{App, Screen},
    snapshot::DashboardSnapshot,
    theme::Theme,
};

pub fn draw(frame: &mut Frame, app: &App, snap: &DashboardSnapshot, theme: &Theme) {
    let area = frame.area();
    let [title_row, body, status_row, keys_row] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    title::draw(frame, title_row, app, snap, theme);
    let page = match app.screen() {
        Screen::Overview => None,
        Screen::Process(id) => Some(process::page(*id, snap, theme)),
        Screen::Site(id) => Some(site::page(*id, snap, theme)),
        Screen::Finding(f) => Some(finding::page(f, snap, theme)),
    };
    match page {
        None => overview::draw(frame, body, app, snap, theme),
        Some(page) => detail::draw(frame, body, page, app.scroll, theme),
    }
    status::draw(frame, status_row, snap, theme);
    keys::draw(frame, keys_row, app, theme);
    if app.help {
        help::draw(frame, area, app, theme);
    }
}
