//! Numbers, times and names as the screens print them: short enough for a column.

use super::super::{
    app::App,
    snapshot::{DashboardSnapshot, ProcessRow},
};

/// 1234 -> 1234, 12345 -> 12.3k, 1234567 -> 1.2M.
pub(super) fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

pub(super) fn rate(r: f64) -> String {
    if r <= 0.0 {
        "0".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else {
        count(r.round() as u64)
    }
}

pub(super) fn bytes(n: u64) -> String {
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
pub(super) fn age(ns: u64) -> String {
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

pub(super) fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
}

pub(super) fn oldest(snap: &DashboardSnapshot, since: Option<u64>) -> String {
    since.map_or("-".into(), |t| age(snap.now_ns.saturating_sub(t)))
}

pub(super) fn process_state(p: &ProcessRow, snap: &DashboardSnapshot) -> String {
    match p.exited_ns {
        None => "running".into(),
        Some(t) => format!("exited {} ago", age(snap.now_ns.saturating_sub(t))),
    }
}

/// At most `max` characters of a name, its end kept (file names differ at the end).
pub(super) fn short_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n - max + 1).collect();
    format!("…{tail}")
}

pub(super) fn matching(app: &App) -> String {
    if app.filter.is_empty() {
        String::new()
    } else {
        format!(", matching \"{}\"", app.filter)
    }
}
