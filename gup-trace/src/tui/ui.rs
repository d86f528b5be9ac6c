//! The screens, drawn from a [`DashboardSnapshot`] and the [`App`] state only. Laid out for an
//! 80x24 terminal first; taller terminals get both lists, a taller sparkline and more findings,
//! wider ones more columns.

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{
        Block, Cell, Clear, Paragraph, RenderDirection, Row, Sparkline, Table, TableState, Wrap,
    },
};

use super::{
    app::{App, Mode, Panel, Screen},
    snapshot::{AGE_LABELS, DashboardSnapshot, FindingRow, ProcessRow, SiteRow, share},
    theme::Theme,
};
use crate::output::duration;

/// Terminals at least this tall show the process and call-site lists together.
const TALL: u16 = 36;
/// Terminals at least this wide get the extra columns.
const WIDE: u16 = 110;

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

// ---------------------------------------------------------------------------------------------
// Formatting.

/// 1234 -> 1234, 12345 -> 12.3k, 1234567 -> 1.2M.
pub fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

fn rate(r: f64) -> String {
    if r <= 0.0 {
        "0".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else {
        count(r.round() as u64)
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A short age: `850ms`, `3.2s`, `12m`, `5h`.
pub fn age(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 1.0 {
        format!("{:.0}ms", s * 1e3)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.0}h", s / 3600.0)
    }
}

fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
}

fn oldest(snap: &DashboardSnapshot, since: Option<u64>) -> String {
    since.map_or("-".into(), |t| age(snap.now_ns.saturating_sub(t)))
}

fn process_state(p: &ProcessRow, snap: &DashboardSnapshot) -> String {
    match p.exited_ns {
        None => "running".into(),
        Some(t) => format!("exited {} ago", age(snap.now_ns.saturating_sub(t))),
    }
}

/// At most `max` characters of a name, its end kept (file names differ at the end).
fn short_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n - max + 1).collect();
    format!("…{tail}")
}

fn matching(app: &App) -> String {
    if app.filter.is_empty() {
        String::new()
    } else {
        format!(", matching \"{}\"", app.filter)
    }
}

/// A number column: right-aligned.
fn num(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered().title(title).border_style(if focused {
        theme.focused_border()
    } else {
        theme.border()
    })
}

// ---------------------------------------------------------------------------------------------
// The frame around every screen.

fn title_bar(frame: &mut Frame, area: Rect, app: &App, snap: &DashboardSnapshot, theme: &Theme) {
    let src = &snap.source;
    // 6.12.117+deb12-cloud-amd64 is 6.12.117 on a narrow terminal.
    let kernel = if area.width >= 100 {
        src.kernel.as_str()
    } else {
        src.kernel.split(['+', '-']).next().unwrap_or_default()
    };
    let left = match app.mode {
        Mode::Live => format!(
            " gup-trace top | {} | {} | {}",
            if kernel.is_empty() {
                "live".to_string()
            } else {
                format!("Linux {kernel}")
            },
            age(snap.elapsed_ns()),
            if app.paused { "PAUSED" } else { "live" }
        ),
        Mode::Replay => format!(
            " gup-trace report | {} | {:.2}/{:.2}s | {}",
            short_name(&src.source, if area.width >= 100 { 48 } else { 20 }),
            snap.elapsed_ns() as f64 / 1e9,
            src.end_ns
                .map_or(0.0, |e| e.saturating_sub(src.start_ns) as f64 / 1e9),
            if app.paused { "paused" } else { "PLAYING" }
        ),
    };
    let problems = snap.problems();
    let right = if problems > 0 {
        format!(
            " {} FINDING{} | ?:help ",
            problems,
            if problems == 1 { "" } else { "S" }
        )
    } else {
        " ?:help q:quit ".to_string()
    };
    let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(right.len() as u16)])
        .areas(area);
    frame.render_widget(Paragraph::new(left).style(theme.title()), l);
    frame.render_widget(
        Paragraph::new(right).style(if problems > 0 {
            theme.alert()
        } else {
            theme.title()
        }),
        r,
    );
}

/// Lost events and missing hooks: always on screen, whatever the screen.
fn status_line(frame: &mut Frame, area: Rect, snap: &DashboardSnapshot, theme: &Theme) {
    let h = &snap.health;
    let src = &snap.source;
    let mut spans = Vec::new();
    match h.lost_events {
        Some(0) => spans.push(Span::styled("lost events: 0", theme.good())),
        Some(n) => spans.push(Span::styled(format!("LOST EVENTS: {n}"), theme.alert())),
        None => spans.push(Span::styled("lost events: unknown", theme.warn())),
    }
    spans.push(Span::raw(" | "));
    if src.blind {
        spans.push(Span::styled(
            format!(
                "NO GUP HOOK ATTACHED ({} missing): pins cannot be seen here",
                src.missing_hooks.len()
            ),
            theme.alert(),
        ));
    } else if src.missing_hooks.is_empty() {
        spans.push(Span::styled("hooks: all attached", theme.good()));
    } else {
        spans.push(Span::styled(
            format!(
                "hooks missing: {} ({})",
                src.missing_hooks.len(),
                src.missing_hooks.join(", ")
            ),
            theme.warn(),
        ));
    }
    if h.late_events > 0 {
        spans.push(Span::raw(format!(" | late: {}", h.late_events)));
    }
    if h.unitemized_releases > 0 {
        spans.push(Span::styled(
            format!(" | unitemized releases: {}", h.unitemized_releases),
            theme.warn(),
        ));
    }
    if !src.filters.is_empty() {
        spans.push(Span::raw(format!(" | traced: {}", src.filters)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn key_line(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(text) = &app.editing {
        let line = Line::from(vec![
            Span::styled(
                "filter (pid or name, Enter applies, Esc cancels): ",
                theme.key(),
            ),
            Span::raw(format!("{text}_")),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let keys: &[(&str, &str)] = match (app.mode, app.screen()) {
        (Mode::Live, Screen::Overview) => &[
            ("Tab", "panel"),
            ("↑↓", "select"),
            ("Enter", "open"),
            ("s", "sort"),
            ("/", "filter"),
            ("p", "pause"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (Mode::Replay, Screen::Overview) => &[
            ("←→", "step"),
            ("<>", "x10"),
            ("p", "play"),
            ("Tab", "panel"),
            ("Enter", "open"),
            ("s", "sort"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (_, Screen::Finding(_)) => &[
            ("Esc", "back"),
            ("↑↓", "scroll"),
            ("Enter", "its process"),
            ("p", "pause"),
            ("q", "quit"),
        ],
        _ => &[
            ("Esc", "back"),
            ("↑↓", "scroll"),
            ("p", "pause"),
            ("?", "help"),
            ("q", "quit"),
        ],
    };
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(*key, theme.key()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

// ---------------------------------------------------------------------------------------------
// The overview.

fn overview(frame: &mut Frame, area: Rect, app: &App, snap: &DashboardSnapshot, theme: &Theme) {
    let tall = area.height + 3 >= TALL;
    let spark_rows = match area.height {
        0..28 => 2,
        28..38 => 3,
        _ => 5,
    };
    let findings_rows = if tall {
        (snap.findings.len() as u16 + 2).clamp(4, 10)
    } else {
        4
    };
    let [summary, spark, lists, middle, findings] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(spark_rows),
        Constraint::Fill(1),
        Constraint::Length(5),
        Constraint::Length(findings_rows),
    ])
    .areas(area);
    summary_line(frame, summary, snap, theme);
    sparkline(frame, spark, snap, theme);
    if tall {
        let [top, bottom] =
            Layout::vertical([Constraint::Fill(3), Constraint::Fill(2)]).areas(lists);
        process_table(frame, top, app, snap, theme);
        site_table(frame, bottom, app, snap, theme);
    } else if app.table == Panel::Sites {
        site_table(frame, lists, app, snap, theme);
    } else {
        process_table(frame, lists, app, snap, theme);
    }
    let [ages, lock] =
        Layout::horizontal([Constraint::Length(50), Constraint::Fill(1)]).areas(middle);
    ages_panel(frame, ages, snap, theme);
    lock_panel(frame, lock, snap, theme);
    findings_panel(frame, findings, app, snap, theme);
}

fn summary_line(frame: &mut Frame, area: Rect, snap: &DashboardSnapshot, theme: &Theme) {
    let line = Line::from(vec![
        Span::styled("pinned ", theme.header()),
        Span::styled(
            format!(
                "{} pages {} in {} folios ({} LT)",
                count(snap.pinned_pages),
                bytes(snap.pinned_pages * snap.source.page_size),
                count(snap.pinned_folios),
                count(snap.longterm_pages)
            ),
            Style::new(),
        ),
        Span::styled("  pins/s ", theme.header()),
        Span::raw(rate(snap.pins_per_s)),
        Span::styled("  unpins/s ", theme.header()),
        Span::raw(rate(snap.unpins_per_s)),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn sparkline(frame: &mut Frame, area: Rect, snap: &DashboardSnapshot, theme: &Theme) {
    let [label, spark] =
        Layout::horizontal([Constraint::Length(11), Constraint::Fill(1)]).areas(area);
    let shown = (spark.width as usize).min(snap.history.len());
    let data: Vec<u64> = snap.history.iter().rev().take(shown).copied().collect();
    let max = data.iter().copied().max().unwrap_or(0);
    let span = if snap.history.len() >= 2 {
        format!("last {}", age(snap.tick_ns * (shown as u64 - 1)))
    } else {
        "no history".into()
    };
    let mut lines = vec![Line::styled(format!("peak {}", count(max)), theme.dim())];
    if area.height > 1 {
        lines.push(Line::styled(span, theme.dim()));
    }
    frame.render_widget(Paragraph::new(lines), label);
    frame.render_widget(
        Sparkline::default()
            .data(data)
            .max(max.max(1))
            .direction(RenderDirection::RightToLeft)
            .style(theme.spark()),
        spark,
    );
}

fn header_row<'a>(cells: &[&'a str], theme: &Theme) -> Row<'a> {
    Row::new(cells.iter().map(|c| Cell::from(*c))).style(theme.header())
}

fn process_table(
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
            num(pct(share(p.fast_refs, p.slow_refs))),
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
        let state = process_state(p, snap);
        let orphan = p.exited_ns.is_some() && p.outstanding > 0;
        cells.push(Cell::from(state).style(if orphan { theme.alert() } else { Style::new() }));
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
        .block(block(title, focused, theme))
        .row_highlight_style(if focused {
            theme.selected()
        } else {
            Style::new()
        });
    let mut state = TableState::default().with_selected(Some(app.selection(Panel::Processes)));
    if rows.is_empty() {
        state.select(None);
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn site_table(frame: &mut Frame, area: Rect, app: &App, snap: &DashboardSnapshot, theme: &Theme) {
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
        ))
        .row_highlight_style(if focused {
            theme.selected()
        } else {
            Style::new()
        });
    let mut state = TableState::default().with_selected(Some(app.selection(Panel::Sites)));
    if rows.is_empty() {
        state.select(None);
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn ages_panel(frame: &mut Frame, area: Rect, snap: &DashboardSnapshot, theme: &Theme) {
    let mut head = format!("{:<6}", "");
    for label in AGE_LABELS {
        head.push_str(&format!("{label:>6}"));
    }
    let row = |name: &str, values: &[u64; 7]| {
        let mut s = format!("{name:<6}");
        for v in values {
            s.push_str(&format!("{:>6}", count(*v)));
        }
        s
    };
    let lines = vec![
        Line::styled(head, theme.header()),
        Line::raw(row("short", &snap.ages_short)),
        Line::styled(row("LONG", &snap.ages_long), theme.longterm()),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(block(" pinned pages by age ", false, theme)),
        area,
    );
}

fn lock_panel(frame: &mut Frame, area: Rect, snap: &DashboardSnapshot, theme: &Theme) {
    let l = &snap.lock;
    let lines = if l.calls == 0 && l.drops == 0 {
        vec![
            Line::styled("no GUP call took it yet", theme.dim()),
            Line::raw(""),
            Line::raw(format!(
                "fast path: {}",
                pct(share(snap.fast_refs, snap.slow_refs))
            )),
        ]
    } else {
        vec![
            Line::raw(format!(
                "wait p50 {} p99 {}",
                duration(l.wait_p50),
                duration(l.wait_p99)
            )),
            Line::raw(format!(
                "hold p50 {} p99 {}",
                duration(l.hold_p50),
                duration(l.hold_p99)
            )),
            Line::from(vec![
                Span::styled(
                    format!("drops {} ({})", count(l.drops), duration(l.dropped_ns)),
                    if l.drops > 0 {
                        theme.warn()
                    } else {
                        Style::new()
                    },
                ),
                Span::raw(format!(
                    "  fast {}",
                    pct(share(snap.fast_refs, snap.slow_refs))
                )),
            ]),
        ]
    };
    frame.render_widget(
        Paragraph::new(lines).block(block(" mmap_lock in GUP ", false, theme)),
        area,
    );
}

fn findings_panel(
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
        } else if focused {
            theme.focused_border()
        } else {
            theme.border()
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
    let table_rows = rows.iter().map(|f| {
        Row::new([Cell::from(f.headline.clone())]).style(if f.problem {
            theme.alert()
        } else {
            theme.warn()
        })
    });
    let table = Table::new(table_rows, [Constraint::Fill(1)])
        .block(block)
        .row_highlight_style(if focused {
            theme.selected()
        } else {
            Style::new()
        });
    let mut state = TableState::default().with_selected(Some(app.selection(Panel::Findings)));
    frame.render_stateful_widget(table, area, &mut state);
}

// ---------------------------------------------------------------------------------------------
// Drill-downs: lines of text, scrolled.

fn detail(
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

fn lock_line(l: &super::snapshot::LockRow) -> String {
    format!(
        "{} calls, wait p50 {} p99 {}, hold p50 {} p99 {}, {} drops ({})",
        l.calls,
        duration(l.wait_p50),
        duration(l.wait_p99),
        duration(l.hold_p50),
        duration(l.hold_p99),
        l.drops,
        duration(l.dropped_ns)
    )
}

fn process_lines(p: &ProcessRow, snap: &DashboardSnapshot, theme: &Theme) -> Vec<Line<'static>> {
    let h = theme.header();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("pid ", h),
            Span::raw(format!("{}  ", p.pid)),
            Span::styled("comm ", h),
            Span::raw(format!("{}  ", p.comm)),
            Span::styled("parent ", h),
            Span::raw(format!(
                "{}  ",
                p.parent.map_or("-".into(), |pp| pp.to_string())
            )),
            Span::styled(
                process_state(p, snap),
                if p.exited_ns.is_some() && p.outstanding > 0 {
                    theme.alert()
                } else {
                    Style::new()
                },
            ),
        ]),
        Line::from(vec![
            Span::styled("pins ", h),
            Span::raw(format!(
                "taken {}, released {}, outstanding {} in {} folios; unpinned by it {}",
                p.taken, p.released, p.outstanding, p.folio_count, p.releases_made
            )),
        ]),
        Line::from(vec![
            Span::styled("calls ", h),
            Span::raw(format!(
                "{} pin ({} failed), {} get; fast path {} ({} fast, {} slow pages); {}/s",
                p.pin_calls,
                p.failed_pin_calls,
                p.get_calls,
                pct(share(p.fast_refs, p.slow_refs)),
                p.fast_refs,
                p.slow_refs,
                rate(p.rate)
            )),
        ]),
        Line::from(vec![
            Span::styled("mmap_lock ", h),
            Span::raw(lock_line(&p.lock)),
        ]),
        Line::raw(""),
    ];
    if !p.holdings.is_empty() {
        lines.push(Line::styled("pins held, by call site:", h));
        for (site, longterm, pages) in &p.holdings {
            let s = snap.site(*site);
            lines.push(Line::raw(format!(
                "  {:<22} {:>7} pages {:<9} {}",
                s.map_or("?", |s| s.entry),
                pages,
                if *longterm { "LONGTERM" } else { "short" },
                s.map_or(String::new(), |s| s.caller.clone())
            )));
        }
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled(
        format!(
            "pinned folios ({} of {}, oldest first):",
            p.folios.len(),
            p.folio_count
        ),
        h,
    ));
    if p.folios.is_empty() {
        lines.push(Line::styled("  none", theme.dim()));
    } else {
        lines.push(Line::styled(
            format!(
                "  {:<18} {:>12} {:>3} {:>4} {:>7}  KIND",
                "FOLIO", "PFN", "ORD", "PINS", "AGE"
            ),
            theme.dim(),
        ));
        for f in &p.folios {
            lines.push(Line::raw(format!(
                "  {:<#18x} {:>#12x} {:>3} {:>4} {:>7}  {}",
                f.folio,
                f.pfn,
                f.order,
                f.refs,
                age(snap.now_ns.saturating_sub(f.since_ns)),
                if f.longterm { "LONGTERM" } else { "short" },
            )));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("call sites and their kernel stacks:", h));
    if p.sites.is_empty() {
        lines.push(Line::styled("  none: it took no pins", theme.dim()));
    }
    for id in &p.sites {
        if let Some(s) = snap.site(*id) {
            lines.push(Line::raw(format!(
                "  {}: {} taken, {} released, {} outstanding (all processes)",
                s.entry, s.taken, s.released, s.outstanding
            )));
            stack(&mut lines, s, theme);
        }
    }
    lines
}

fn stack(lines: &mut Vec<Line<'static>>, s: &SiteRow, theme: &Theme) {
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

fn site_lines(s: &SiteRow, snap: &DashboardSnapshot, theme: &Theme) -> Vec<Line<'static>> {
    let h = theme.header();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("entry ", h),
            Span::raw(format!("{}  ", s.entry)),
            Span::styled("stack id ", h),
            Span::raw(s.stack_id.map_or("-".into(), |id| id.to_string())),
        ]),
        Line::from(vec![
            Span::styled("pins ", h),
            Span::raw(format!(
                "taken {}, released {}, outstanding {}; {}/s; oldest held {}",
                s.taken,
                s.released,
                s.outstanding,
                rate(s.rate),
                oldest(snap, s.oldest_ns)
            )),
        ]),
        Line::raw(""),
        Line::styled("holders:", h),
    ];
    let mut holders: Vec<(&ProcessRow, bool, u64)> = snap
        .processes
        .iter()
        .flat_map(|p| {
            p.holdings
                .iter()
                .filter(|(site, _, _)| *site == s.id)
                .map(move |(_, lt, pages)| (p, *lt, *pages))
        })
        .collect();
    holders.sort_by(|a, b| b.2.cmp(&a.2));
    if holders.is_empty() {
        lines.push(Line::styled(
            "  none: every pin taken here was released",
            theme.dim(),
        ));
    }
    for (p, longterm, pages) in holders {
        lines.push(Line::raw(format!(
            "  pid {:<7} {:<16} {:>7} pages {:<8} {}",
            p.pid,
            p.comm,
            pages,
            if longterm { "LONGTERM" } else { "short" },
            process_state(p, snap)
        )));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("kernel stack (top first):", h));
    stack(&mut lines, s, theme);
    lines
}

fn finding_lines(f: &FindingRow, snap: &DashboardSnapshot, theme: &Theme) -> Vec<Line<'static>> {
    let current = snap.findings.iter().any(|g| g.key == f.key);
    let mut lines = vec![
        Line::styled(
            f.headline.clone(),
            if f.problem {
                theme.alert()
            } else {
                theme.warn()
            },
        ),
        Line::raw(""),
    ];
    if !current {
        lines.push(Line::styled(
            format!(
                "resolved: not found any more at {:.2} s (shown as last seen)",
                snap.elapsed_ns() as f64 / 1e9
            ),
            theme.good(),
        ));
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled("evidence:", theme.header()));
    for l in &f.evidence {
        lines.push(Line::raw(l.clone()));
    }
    if let Some(p) = f.process.and_then(|id| snap.process(id)) {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            format!(
                "Enter: process {} ({}), {} pins outstanding",
                p.pid, p.comm, p.outstanding
            ),
            theme.key(),
        ));
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Help.

fn help(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut keys: Vec<(&str, &str)> = vec![
        (
            "Tab/S-Tab",
            "next/previous list: processes, call sites, findings",
        ),
        ("↑ ↓ j k", "select a row (scroll on a detail screen)"),
        ("PgUp PgDn", "ten rows"),
        ("Enter", "open: a process (its folios, ages, stacks),"),
        ("", "a call site (holders, stack), a finding (evidence)"),
        ("Esc", "back (on the overview: clear the filter)"),
        ("s", "sort by outstanding pins, pin rate, oldest pin"),
        ("/", "filter by pid or name (sites: entry or frame)"),
    ];
    match app.mode {
        Mode::Live => keys.push(("p", "pause the screen (events are still taken in)")),
        Mode::Replay => {
            keys.push(("← → h l", "time cursor one step back/forward"));
            keys.push(("< > H L", "ten steps; Home/End: start/end"));
            keys.push(("p space", "play/stop: one step per interval"));
        }
    }
    keys.push(("?", "this help"));
    keys.push(("q Ctrl-C", "quit"));
    let mut lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<10}"), theme.key()),
                Span::raw(format!(" {what}")),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "LT: FOLL_LONGTERM pins. Ages, OLDEST: since the pin was taken.",
        theme.dim(),
    ));
    let width = area.width.min(66);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .alignment(Alignment::Left)
            .block(block(" keys (any key closes) ", true, theme)),
        popup,
    );
}
