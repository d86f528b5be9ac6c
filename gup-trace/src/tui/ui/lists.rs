//! The overview's lists, the ones the selection moves in: processes, call sites, findings.

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState},
};

use super::{
    super::{
        app::{App, Panel},
        snapshot::DashboardSnapshot,
        theme::Theme,
    },
    format::{count, fast_pct, matching, oldest, process_state, rate},
    widgets::{block, border, finding_style, header_row, num, process_state_style},
};
use crate::output::duration;

/// Terminals at least this wide get the extra columns.
pub(super) const WIDE: u16 = 110;

pub(super) fn processes(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
) {
    let rows = app.processes(snap);
    let wide = area.width >= WIDE;
    let mut header = vec![
        "    PID", "COMM", "  OUTST", "  TAKEN", "RATE/s", "OLDEST", "FAST",
    ];
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(4),
    ];
    if wide {
        header.extend(["RELEASED", "UNPINNED", "  CALLS", "WAIT p99", "DROPS"]);
        widths.extend([
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(5),
        ]);
    }
    header.push("STATE");
    widths.push(Constraint::Fill(1));
    let table_rows = rows.iter().map(|p| {
        let mut cells = vec![
            num(p.pid.to_string()),
            Cell::from(p.comm.clone()),
            num(count(p.outstanding)),
            num(count(p.taken)),
            num(rate(p.rate)),
            num(oldest(snap, p.oldest_ns)),
            num(fast_pct(p.fast_refs, p.slow_refs)),
        ];
        if wide {
            cells.extend([
                num(count(p.released)),
                num(count(p.releases_made)),
                num(count(p.pin_calls + p.get_calls)),
                num(duration(p.lock.wait_p99)),
                num(count(p.lock.drops)),
            ]);
        }
        cells.push(Cell::from(process_state(p, snap)).style(process_state_style(p, theme)));
        Row::new(cells)
    });
    let focused = app.focus == Panel::Processes;
    let idle = app.idle_hidden(snap);
    let title = format!(
        " processes {} by {}{}{}{} ",
        rows.len(),
        app.sort.name(),
        matching(app),
        if idle > 0 {
            format!(" (+{idle} idle)")
        } else {
            String::new()
        },
        if snap.processes_omitted > 0 {
            format!(" ({} more not kept)", snap.processes_omitted)
        } else {
            String::new()
        }
    );
    let table = Table::new(table_rows, widths)
        .header(header_row(&header, theme))
        .block(block(title, focused, theme));
    render_with_selection(frame, area, table, app, Panel::Processes, rows.len(), theme);
}

pub(super) fn sites(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
) {
    let rows = app.sites(snap);
    let header = ["ENTRY", "  OUTST", "  TAKEN", "RATE/s", "OLDEST", "CALLER"];
    let widths = [
        Constraint::Length(22),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let table_rows = rows.iter().map(|s| {
        Row::new([
            Cell::from(s.entry),
            num(count(s.outstanding)),
            num(count(s.taken)),
            num(rate(s.rate)),
            num(oldest(snap, s.oldest_ns)),
            Cell::from(if s.caller.is_empty() {
                "-".to_string()
            } else {
                s.caller.clone()
            }),
        ])
    });
    let focused = app.focus == Panel::Sites;
    let table = Table::new(table_rows, widths)
        .header(header_row(&header, theme))
        .block(block(
            format!(
                " call sites {} by {}{} ",
                rows.len(),
                app.sort.name(),
                matching(app)
            ),
            focused,
            theme,
        ));
    render_with_selection(frame, area, table, app, Panel::Sites, rows.len(), theme);
}

pub(super) fn findings(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
) {
    let rows = app.findings(snap);
    let problems = snap.problems();
    let focused = app.focus == Panel::Findings;
    let (title, style) = if problems > 0 {
        (
            format!(
                " FINDINGS: {problems} problem{} ",
                if problems == 1 { "" } else { "s" }
            ),
            theme.alert(),
        )
    } else if !snap.findings.is_empty() {
        (
            format!(" findings: {} about gup-trace's view ", snap.findings.len()),
            theme.warn(),
        )
    } else {
        (" findings: none ".to_string(), theme.border())
    };
    let block = Block::bordered()
        .title(Span::styled(title, style))
        .border_style(if problems > 0 {
            theme.alert()
        } else {
            border(focused, theme)
        });
    if rows.is_empty() {
        let text = if snap.findings.is_empty() {
            "none: no orphaned pins, unbalanced releases or long-held pins"
        } else {
            "none matches the filter"
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, theme.dim())).block(block),
            area,
        );
        return;
    }
    let table_rows = rows
        .iter()
        .map(|f| Row::new([Cell::from(f.headline.clone())]).style(finding_style(f.problem, theme)));
    let table = Table::new(table_rows, [Constraint::Fill(1)]).block(block);
    render_with_selection(frame, area, table, app, Panel::Findings, rows.len(), theme);
}

/// Draws `panel`'s list with its selected row, marked while the list has the focus; an empty
/// list has no selection.
fn render_with_selection(
    frame: &mut Frame,
    area: Rect,
    table: Table,
    app: &App,
    panel: Panel,
    rows: usize,
    theme: &Theme,
) {
    let table = table.row_highlight_style(if app.focus == panel {
        theme.selected()
    } else {
        Style::new()
    });
    let mut state = TableState::default().with_selected((rows > 0).then(|| app.selection(panel)));
    frame.render_stateful_widget(table, area, &mut state);
}
