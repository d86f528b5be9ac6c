//! The terminal: raw mode and the alternate screen (restored on exit and on panic), keys, and
//! the loop that draws whatever snapshot a [`Feed`] hands over. Drawing happens when something
//! changed (a new snapshot, a key, a resize), never per event.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use ratatui::{
    DefaultTerminal,
    crossterm::event::{self, Event},
};

use super::{
    app::{Action, App},
    snapshot::DashboardSnapshot,
    theme::Theme,
    ui,
};

/// Where snapshots come from: the live intake, or a recording's time cursor.
pub trait Feed {
    /// A newer snapshot to show, if there is one (called between keys, about every 50 ms).
    fn poll(&mut self, app: &App) -> Result<Option<Arc<DashboardSnapshot>>>;
    /// A key asked for another moment (the time cursor of a recording).
    fn act(&mut self, action: Action) -> Result<Option<Arc<DashboardSnapshot>>>;
    /// The source ended (SIGTERM, or the intake failed): the loop returns.
    fn stopped(&self) -> bool;
}

/// Takes the terminal, runs the dashboard until `q` (or the feed stops), and gives the
/// terminal back as it was.
pub fn run(feed: &mut dyn Feed, mut app: App, first: Arc<DashboardSnapshot>) -> Result<()> {
    let theme = Theme::from_env();
    let mut terminal = ratatui::try_init()?;
    let result = ui_loop(&mut terminal, feed, &mut app, first, &theme);
    ratatui::try_restore()?;
    result
}

fn ui_loop(
    terminal: &mut DefaultTerminal,
    feed: &mut dyn Feed,
    app: &mut App,
    first: Arc<DashboardSnapshot>,
    theme: &Theme,
) -> Result<()> {
    let mut snap = first;
    let mut dirty = true;
    loop {
        if dirty {
            app.clamp(&snap);
            terminal.draw(|frame| ui::draw(frame, app, &snap, theme))?;
            dirty = false;
        }
        if feed.stopped() {
            return Ok(());
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(key) => {
                    dirty = true;
                    match app.handle_key(key, &snap) {
                        Action::Quit => return Ok(()),
                        Action::None => {}
                        action => {
                            if let Some(next) = feed.act(action)? {
                                snap = next;
                                app.refresh(&snap);
                            }
                        }
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        if let Some(next) = feed.poll(app)? {
            snap = next;
            app.refresh(&snap);
            dirty = true;
        }
    }
}
