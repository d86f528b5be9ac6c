//! The kernel's own pin counters, the oracle every gup-trace total is checked against.

use std::fs;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinCounters {
    /// `nr_foll_pin_acquired`: pages pinned with FOLL_PIN, ever.
    pub acquired: u64,
    /// `nr_foll_pin_released`: pages unpinned, ever.
    pub released: u64,
}

impl PinCounters {
    /// Reads both counters. Per-CPU counter deltas are folded in first (`stat_refresh`, root
    /// only), otherwise the values can lag by up to the per-CPU thresholds.
    pub fn read() -> Result<PinCounters> {
        let _ = fs::write("/proc/sys/vm/stat_refresh", "1");
        let text = fs::read_to_string("/proc/vmstat").context("cannot read /proc/vmstat")?;
        parse(&text)
    }

    pub fn delta_since(&self, earlier: &PinCounters) -> PinCounters {
        PinCounters {
            acquired: self.acquired.wrapping_sub(earlier.acquired),
            released: self.released.wrapping_sub(earlier.released),
        }
    }
}

fn parse(text: &str) -> Result<PinCounters> {
    let mut acquired = None;
    let mut released = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("nr_foll_pin_acquired", v)) => acquired = v.trim().parse().ok(),
            Some(("nr_foll_pin_released", v)) => released = v.trim().parse().ok(),
            _ => {}
        }
    }
    match (acquired, released) {
        (Some(acquired), Some(released)) => Ok(PinCounters { acquired, released }),
        _ => bail!(
            "/proc/vmstat has no nr_foll_pin_acquired/nr_foll_pin_released (kernel older than 5.7?)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_counters_among_others() {
        let text =
            "nr_free_pages 10\nnr_foll_pin_acquired 1152\nnr_foll_pin_released 1088\npgfault 3\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c,
            PinCounters {
                acquired: 1152,
                released: 1088
            }
        );
        let later = PinCounters {
            acquired: 1200,
            released: 1200,
        };
        assert_eq!(
            later.delta_since(&c),
            PinCounters {
                acquired: 48,
                released: 112
            }
        );
    }

    #[test]
    fn missing_counters_are_an_error_that_names_them() {
        let err = parse("nr_free_pages 10\n").unwrap_err().to_string();
        assert!(err.contains("nr_foll_pin_acquired"), "{err}");
    }
}
