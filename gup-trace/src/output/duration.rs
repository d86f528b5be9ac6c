//! Durations as every presentation prints them: `-` for none, then ns, us, ms or s.

pub fn duration(ns: u64) -> String {
    match ns {
        0 => "-".to_string(),
        1..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}
