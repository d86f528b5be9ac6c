//! The dashboard's state and its keys, as plain state transitions: a key and the snapshot on
//! screen in, the new state and what the caller must do (quit, move the time cursor) out. No
//! terminal involved, so every key is testable.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::snapshot::{DashboardSnapshot, FindingRow, ProcessRow, SiteRow};
use crate::engine::pins::{ProcessId, SiteId};

/// Where the events come from: the live kernel, or a recording with a time cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

/// What the screen shows. Drill-downs stack on the overview; Esc pops them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Process(ProcessId),
    Site(SiteId),
    /// The finding as last seen: it stays readable after it is resolved.
    Finding(Box<FindingRow>),
}

/// The lists of the overview that take the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Processes,
    Sites,
    Findings,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Most pins outstanding first.
    Outstanding,
    /// Most pins taken per second first.
    Rate,
    /// Oldest pin held first.
    Oldest,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Outstanding => "outstanding",
            SortKey::Rate => "rate",
            SortKey::Oldest => "oldest pin",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Outstanding => SortKey::Rate,
            SortKey::Rate => SortKey::Oldest,
            SortKey::Oldest => SortKey::Outstanding,
        }
    }
}

/// What the caller does after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Replay: move the time cursor by this many steps.
    Step(i64),
    /// Replay: to the start or the end of the recording.
    ToStart,
    ToEnd,
}

#[derive(Clone, Debug)]
pub struct App {
    pub mode: Mode,
    pub screens: Vec<Screen>,
    /// The list that takes ↑/↓ and Enter on the overview.
    pub focus: Panel,
    /// The list the main table shows when there is room for one only.
    pub table: Panel,
    pub selected: [usize; 3],
    pub sort: SortKey,
    pub filter: String,
    /// The filter being typed after `/`.
    pub editing: Option<String>,
    /// Live: the screen is frozen (events are still taken in). Replay: playing.
    pub paused: bool,
    pub help: bool,
    /// Lines scrolled down on a drill-down screen.
    pub scroll: u16,
}

impl App {
    pub fn new(mode: Mode) -> App {
        App {
            mode,
            screens: vec![Screen::Overview],
            focus: Panel::Processes,
            table: Panel::Processes,
            selected: [0; 3],
            sort: SortKey::Outstanding,
            filter: String::new(),
            editing: None,
            // A replay starts still; a live dashboard starts running.
            paused: mode == Mode::Replay,
            help: false,
            scroll: 0,
        }
    }

    pub fn screen(&self) -> &Screen {
        self.screens.last().unwrap_or(&Screen::Overview)
    }

    fn panel_index(panel: Panel) -> usize {
        match panel {
            Panel::Processes => 0,
            Panel::Sites => 1,
            Panel::Findings => 2,
        }
    }

    pub fn selection(&self, panel: Panel) -> usize {
        self.selected[Self::panel_index(panel)]
    }

    /// Processes as the overview lists them: those that did anything with pins (with a filter:
    /// every one that matches), sorted.
    pub fn processes<'a>(&self, snap: &'a DashboardSnapshot) -> Vec<&'a ProcessRow> {
        let mut rows: Vec<&ProcessRow> = snap
            .processes
            .iter()
            .filter(|p| self.matches_process(p) && (p.active() || !self.filter.is_empty()))
            .collect();
        match self.sort {
            SortKey::Outstanding => rows.sort_by(|a, b| {
                (b.outstanding, b.taken, a.pid).cmp(&(a.outstanding, a.taken, b.pid))
            }),
            SortKey::Rate => rows.sort_by(|a, b| {
                b.rate
                    .total_cmp(&a.rate)
                    .then((b.outstanding, a.pid).cmp(&(a.outstanding, b.pid)))
            }),
            SortKey::Oldest => rows.sort_by(|a, b| {
                let key = |p: &ProcessRow| p.oldest_ns.unwrap_or(u64::MAX);
                key(a)
                    .cmp(&key(b))
                    .then((b.outstanding, a.pid).cmp(&(a.outstanding, b.pid)))
            }),
        }
        rows
    }

    pub fn sites<'a>(&self, snap: &'a DashboardSnapshot) -> Vec<&'a SiteRow> {
        let mut rows: Vec<&SiteRow> = snap.sites.iter().filter(|s| self.matches_site(s)).collect();
        match self.sort {
            SortKey::Outstanding => rows.sort_by(|a, b| {
                (b.outstanding, b.taken, a.id).cmp(&(a.outstanding, a.taken, b.id))
            }),
            SortKey::Rate => rows.sort_by(|a, b| {
                b.rate
                    .total_cmp(&a.rate)
                    .then((b.outstanding, a.id).cmp(&(a.outstanding, b.id)))
            }),
            SortKey::Oldest => rows.sort_by(|a, b| {
                let key = |s: &SiteRow| s.oldest_ns.unwrap_or(u64::MAX);
                key(a)
                    .cmp(&key(b))
                    .then((b.outstanding, a.id).cmp(&(a.outstanding, b.id)))
            }),
        }
        rows
    }

    /// Findings, problems first (the filter applies to them too).
    pub fn findings<'a>(&self, snap: &'a DashboardSnapshot) -> Vec<&'a FindingRow> {
        let mut rows: Vec<&FindingRow> = snap
            .findings
            .iter()
            .filter(|f| self.filter.is_empty() || contains(&f.headline, &self.filter))
            .collect();
        rows.sort_by_key(|f| !f.problem);
        rows
    }

    /// Processes left out of the list for doing nothing with pins.
    pub fn idle_hidden(&self, snap: &DashboardSnapshot) -> usize {
        if self.filter.is_empty() {
            snap.processes.iter().filter(|p| !p.active()).count()
        } else {
            0
        }
    }

    /// A process matches the filter by its pid, its name or its parent's pid (`12` or `fio`).
    fn matches_process(&self, p: &ProcessRow) -> bool {
        let f = self.filter.trim();
        f.is_empty()
            || contains(&p.comm, f)
            || f.parse::<u32>()
                .is_ok_and(|pid| p.pid == pid || p.parent == Some(pid))
    }

    /// A call site matches by its entry point or any frame of its stack.
    fn matches_site(&self, s: &SiteRow) -> bool {
        let f = self.filter.trim();
        f.is_empty()
            || contains(s.entry, f)
            || s.frames
                .as_ref()
                .is_ok_and(|frames| frames.iter().any(|fr| contains(fr, f)))
    }

    fn list_len(&self, panel: Panel, snap: &DashboardSnapshot) -> usize {
        match panel {
            Panel::Processes => self.processes(snap).len(),
            Panel::Sites => self.sites(snap).len(),
            Panel::Findings => self.findings(snap).len(),
        }
    }

    /// Keeps selections inside their lists (a new snapshot may be shorter).
    pub fn clamp(&mut self, snap: &DashboardSnapshot) {
        for panel in [Panel::Processes, Panel::Sites, Panel::Findings] {
            let len = self.list_len(panel, snap);
            let i = Self::panel_index(panel);
            self.selected[i] = self.selected[i].min(len.saturating_sub(1));
        }
    }

    /// A new snapshot arrived: a finding on screen is refreshed while it lasts.
    pub fn refresh(&mut self, snap: &DashboardSnapshot) {
        for screen in &mut self.screens {
            if let Screen::Finding(seen) = screen
                && let Some(now) = snap.findings.iter().find(|f| f.key == seen.key)
            {
                **seen = now.clone();
            }
        }
        self.clamp(snap);
    }

    pub fn handle_key(&mut self, key: KeyEvent, snap: &DashboardSnapshot) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Action::Quit;
        }
        if let Some(text) = &mut self.editing {
            match key.code {
                KeyCode::Enter => {
                    self.filter = text.trim().to_string();
                    self.editing = None;
                    self.selected = [0; 3];
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => {}
            }
            return Action::None;
        }
        if self.help {
            // Any key closes the help, and `q` still quits.
            self.help = false;
            return match key.code {
                KeyCode::Char('q') => Action::Quit,
                _ => Action::None,
            };
        }
        let replay = self.mode == Mode::Replay;
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.selected[0] = 0;
                self.selected[1] = 0;
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Esc => {
                if self.screens.len() > 1 {
                    self.screens.pop();
                    self.scroll = 0;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                }
            }
            KeyCode::Left | KeyCode::Char('h') if replay => return Action::Step(-1),
            KeyCode::Right | KeyCode::Char('l') if replay => return Action::Step(1),
            KeyCode::Char('<') | KeyCode::Char('H') if replay => return Action::Step(-10),
            KeyCode::Char('>') | KeyCode::Char('L') if replay => return Action::Step(10),
            KeyCode::Home if replay => return Action::ToStart,
            KeyCode::End if replay => return Action::ToEnd,
            _ => {
                if matches!(self.screen(), Screen::Overview) {
                    self.overview_key(key.code, snap);
                } else {
                    self.detail_key(key.code, snap);
                }
            }
        }
        Action::None
    }

    fn overview_key(&mut self, code: KeyCode, snap: &DashboardSnapshot) {
        let i = Self::panel_index(self.focus);
        let len = self.list_len(self.focus, snap);
        match code {
            KeyCode::Tab => self.cycle_focus(true),
            KeyCode::BackTab => self.cycle_focus(false),
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected[i] = self.selected[i].saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected[i] = (self.selected[i] + 1).min(len.saturating_sub(1))
            }
            KeyCode::PageUp => self.selected[i] = self.selected[i].saturating_sub(10),
            KeyCode::PageDown => {
                self.selected[i] = (self.selected[i] + 10).min(len.saturating_sub(1))
            }
            KeyCode::Enter => {
                let sel = self.selected[i];
                let next = match self.focus {
                    Panel::Processes => {
                        self.processes(snap).get(sel).map(|p| Screen::Process(p.id))
                    }
                    Panel::Sites => self.sites(snap).get(sel).map(|s| Screen::Site(s.id)),
                    Panel::Findings => self
                        .findings(snap)
                        .get(sel)
                        .map(|f| Screen::Finding(Box::new((*f).clone()))),
                };
                if let Some(screen) = next {
                    self.screens.push(screen);
                    self.scroll = 0;
                }
            }
            _ => {}
        }
    }

    fn cycle_focus(&mut self, forward: bool) {
        self.focus = match (self.focus, forward) {
            (Panel::Processes, true) | (Panel::Findings, false) => Panel::Sites,
            (Panel::Sites, true) | (Panel::Processes, false) => Panel::Findings,
            (Panel::Findings, true) | (Panel::Sites, false) => Panel::Processes,
        };
        if self.focus != Panel::Findings {
            self.table = self.focus;
        }
    }

    fn detail_key(&mut self, code: KeyCode, snap: &DashboardSnapshot) {
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_add(1),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_add(10),
            KeyCode::Backspace => {
                self.screens.pop();
                self.scroll = 0;
            }
            // From a finding to the process it is about.
            KeyCode::Enter => {
                if let Screen::Finding(f) = self.screen()
                    && let Some(id) = f.process
                    && snap.process(id).is_some()
                {
                    self.screens.push(Screen::Process(id));
                    self.scroll = 0;
                }
            }
            _ => {}
        }
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}
