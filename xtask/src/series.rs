//! The `--kernel SERIES` flag of the tasks that boot guests, declared once: one kernel (demo,
//! vm-run, bench) or a list of them (test, vm-test, vm-boot, kmod). Above [`kernels`], which
//! turns a series into a kernel ready to boot.

use anyhow::Result;

use crate::kernels::{self, Kernel};

/// `--kernel SERIES` for a task that boots one kernel.
#[derive(clap::Args, Debug)]
pub struct KernelSeries {
    /// Kernel series: 6.1, 6.12, 6.18, another major.minor, an exact release, or
    /// "newest".
    #[arg(long = "kernel", value_name = "SERIES", default_value = "newest")]
    pub series: String,
}

impl KernelSeries {
    /// The kernel of this series, downloaded unless cached.
    pub fn resolve(&self) -> Result<Kernel> {
        kernels::resolve_one(&self.series)
    }
}

/// `--kernel SERIES`, repeatable, for a task that goes through several kernels.
#[derive(clap::Args, Debug)]
pub struct KernelSeriesList {
    /// Kernel series: 6.1, 6.12, 6.18, another major.minor, an exact release, or
    /// "newest". Repeatable; default: 6.1 6.12 6.18 newest.
    #[arg(long = "kernel", value_name = "SERIES")]
    series: Vec<String>,
}

impl KernelSeriesList {
    /// The series asked for, or [`kernels::DEFAULT_SERIES`] when none was.
    pub fn series(&self) -> Vec<&str> {
        if self.is_default() {
            kernels::DEFAULT_SERIES.to_vec()
        } else {
            self.series.iter().map(String::as_str).collect()
        }
    }

    /// Whether no series was asked for: the task covers the default ones, the whole matrix.
    pub fn is_default(&self) -> bool {
        self.series.is_empty()
    }
}
