//! The screens, drawn from a [`DashboardSnapshot`] and the [`App`] state only. Laid out for an
//! 80x24 terminal first; taller terminals get both lists, a taller sparkline and more findings,
//! wider ones more columns.
//!
//! [`draw`] puts a title bar ([`title`]) on top and a status line ([`status`]) and the keys
//! ([`keys`]) below the screen on show: the [`overview`] with its [`lists`], or a drill-down
//! ([`process`], [`site`], [`finding`], each a [`detail`] page), and the [`help`] over it.
//! [`format`] and [`widgets`] are what they all share.

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
    text::Line,
};

use self::{
    detail::detail, finding::finding_lines, help::help, keys::key_line, overview::overview,
    process::process_lines, site::site_lines, status::status_line, title::title_bar,
};
use super::{
    app::{App, Screen},
    snapshot::DashboardSnapshot,
    theme::Theme,
};

pub fn draw(frame: &mut Frame, app: &App, snap: &DashboardSnapshot, theme: &Theme) {
    let area = frame.area();
    let [title, body, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    title_bar(frame, title, app, snap, theme);
    match app.screen() {
        Screen::Overview => overview(frame, body, app, snap, theme),
        Screen::Process(id) => {
            let lines = match snap.process(*id) {
                Some(p) => process_lines(p, snap, theme),
                None => vec![Line::styled(
                    "this process is not in the snapshot any more",
                    theme.dim(),
                )],
            };
            let name = snap.process(*id).map_or("process".to_string(), |p| {
                format!("process {} ({})", p.pid, p.comm)
            });
            detail(frame, body, &name, lines, app.scroll, theme);
        }
        Screen::Site(id) => {
            let lines = match snap.site(*id) {
                Some(s) => site_lines(s, snap, theme),
                None => vec![Line::styled("no such call site", theme.dim())],
            };
            let name = snap.site(*id).map_or("call site".to_string(), |s| {
                format!("call site {}", s.entry)
            });
            detail(frame, body, &name, lines, app.scroll, theme);
        }
        Screen::Finding(f) => {
            let lines = finding_lines(f, snap, theme);
            detail(frame, body, f.kind, lines, app.scroll, theme);
        }
    }
    status_line(frame, status, snap, theme);
    key_line(frame, keys, app, theme);
    if app.help {
        help(frame, area, app, theme);
    }
}
