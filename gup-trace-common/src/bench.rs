//! The measuring flags of the bench, declared once for both binaries: `gup-trace bench` takes
//! them and `cargo xtask bench` takes them too, to pass on to it in the guest. Only with the
//! `cli` feature: the eBPF crate builds this crate without features, and without clap.

use std::{format, string::String, vec::Vec};

/// How many rounds the bench runs, how long each lasts, how many pages a pin call takes.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct BenchRounds {
    /// Untraced and traced rounds of each workload (as many of each, alternating). Under
    /// instruction time rounds repeat within 0.1%: 3 is enough, and each round of the
    /// external tracers (record, serve) costs a program load (~40 guest s on 7.3).
    #[arg(long = "rounds", value_name = "ROUNDS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// How long one round of one workload should last, untraced, in ms; sets the operation
    /// counts. 200 ms of guest time gave ±0.02% on 7.3's pin/unpin loop.
    #[arg(long, default_value_t = 200, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..))]
    pub round_ms: u64,
    /// Pages per process_vm_readv call in the pin/unpin loop.
    #[arg(long, default_value_t = 1, value_name = "PAGES",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub pin_pages: u64,
    /// Only these workloads (comma-separated names, e.g. pin_unpin,o_direct_read; default:
    /// all). For a quick look at one workload: every workload adds its rounds to every mode.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub workloads: Vec<String>,
}

impl BenchRounds {
    /// The same flags on a command line, as `gup-trace bench` takes them.
    pub fn to_flags(&self) -> String {
        let mut flags = format!(
            "--rounds {} --round-ms {} --pin-pages {}",
            self.count, self.round_ms, self.pin_pages
        );
        if !self.workloads.is_empty() {
            flags += &format!(" --workloads {}", self.workloads.join(","));
        }
        flags
    }
}
