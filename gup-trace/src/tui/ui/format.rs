//! Numbers, times and names as the screens print them: short enough for a column.

use super::super::{
    app::App,
    snapshot::{DashboardSnapshot, ProcessRow, share},
};
use crate::output::duration;

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

/// How long before the snapshot `t_ns` was, as an [`age`].
pub(super) fn ago(snap: &DashboardSnapshot, t_ns: u64) -> String {
    age(snap.now_ns.saturating_sub(t_ns))
}

/// The share of pages grabbed on GUP's fast path, as a percentage (`-` before any).
pub(super) fn fast_pct(fast_refs: u64, slow_refs: u64) -> String {
    share(fast_refs, slow_refs).map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
}

/// `wait p50 4.1us p99 8.2us`: a lock time's median and 99th percentile.
pub(super) fn percentiles(what: &str, p50_ns: u64, p99_ns: u64) -> String {
    format!("{what} p50 {} p99 {}", duration(p50_ns), duration(p99_ns))
}

/// What a pin is: FOLL_LONGTERM or short-term.
pub(super) fn pin_kind(longterm: bool) -> &'static str {
    if longterm { "LONGTERM" } else { "short" }
}

pub(super) fn oldest(snap: &DashboardSnapshot, since: Option<u64>) -> String {
    since.map_or("-".into(), |t| ago(snap, t))
}

pub(super) fn process_state(p: &ProcessRow, snap: &DashboardSnapshot) -> String {
    match p.exited_ns {
        None => "running".into(),
        Some(t) => format!("exited {} ago", ago(snap, t)),
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
