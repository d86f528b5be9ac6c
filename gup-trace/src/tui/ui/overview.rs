//! The overview: the summary line, the pin-rate sparkline, the lists, pinned pages by age,
//! mmap_lock figures and the findings, laid out by the terminal's height.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, RenderDirection, Sparkline},
};

use super::{
    super::{
        app::{App, Panel},
        snapshot::{AGE_LABELS, DashboardSnapshot},
        theme::Theme,
    },
    format::{age, bytes, count, fast_pct, percentiles, rate},
    lists,
    widgets::block,
};
use crate::output::duration;

/// Terminals at least this tall show the process and call-site lists together.
const TALL: u16 = 36;

pub(super) fn draw(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    snap: &DashboardSnapshot,
    theme: &Theme,
) {
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
    let [summary, spark, lists_area, middle, findings] = Layout::vertical([
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
            Layout::vertical([Constraint::Fill(3), Constraint::Fill(2)]).areas(lists_area);
        lists::processes(frame, top, app, snap, theme);
        lists::sites(frame, bottom, app, snap, theme);
    } else if app.table == Panel::Sites {
        lists::sites(frame, lists_area, app, snap, theme);
    } else {
        lists::processes(frame, lists_area, app, snap, theme);
    }
    let [ages, lock] =
        Layout::horizontal([Constraint::Length(50), Constraint::Fill(1)]).areas(middle);
    ages_panel(frame, ages, snap, theme);
    lock_panel(frame, lock, snap, theme);
    lists::findings(frame, findings, app, snap, theme);
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
    let fast = fast_pct(snap.fast_refs, snap.slow_refs);
    let lines = if l.calls == 0 && l.drops == 0 {
        vec![
            Line::styled("no GUP call took it yet", theme.dim()),
            Line::raw(""),
            Line::raw(format!("fast path: {fast}")),
        ]
    } else {
        vec![
            Line::raw(percentiles("wait", l.wait_p50, l.wait_p99)),
            Line::raw(percentiles("hold", l.hold_p50, l.hold_p99)),
            Line::from(vec![
                Span::styled(
                    format!("drops {} ({})", count(l.drops), duration(l.dropped_ns)),
                    if l.drops > 0 {
                        theme.warn()
                    } else {
                        Style::new()
                    },
                ),
                Span::raw(format!("  fast {fast}")),
            ]),
        ]
    };
    frame.render_widget(
        Paragraph::new(lines).block(block(" mmap_lock in GUP ", false, theme)),
        area,
    );
}
