//! One module per subcommand.

pub mod assets;
pub mod bench;
mod bench_tracer;
pub mod check;
pub mod probe;
pub mod record;
pub mod report;
pub mod selftest;
pub mod serve;
pub mod top;
pub mod trace;
pub mod workload;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::session::{MmapLockMode, SessionConfig};

/// Loading eBPF programs needs root (or CAP_BPF + CAP_PERFMON); say so before trying.
pub fn require_root(command: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`gup-trace {command}` loads eBPF programs and needs root: run `sudo gup-trace {command}`"
        );
    }
    Ok(())
}

/// Options shared by every command that traces.
#[derive(Args, Clone, Debug)]
pub struct SessionArgs {
    /// Trace only this process (tgid). `check`, `record` and `top` still see every release,
    /// whoever makes it (io_uring teardown runs in a kworker, block I/O completes in interrupt
    /// context); `trace` filters releases too, and misses those.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Trace only tasks with this name (as in /proc/PID/comm).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Trace only tasks in this cgroup v2: its directory (e.g.
    /// /sys/fs/cgroup/system.slice/foo.service) or its numeric id.
    #[arg(long, value_name = "PATH|ID")]
    pub cgroup: Option<String>,
    /// Which mmap_lock releases to report as events.
    #[arg(long, value_enum, default_value_t = MmapLockMode::Auto, value_name = "MODE")]
    pub mmap_lock: MmapLockMode,
    /// Size of the kernel-to-user ring buffer in KiB (power of two). Raise it when the
    /// summary reports lost events.
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    pub ring_buffer_kib: u32,
}

impl SessionArgs {
    pub fn config(&self) -> Result<SessionConfig> {
        if let Some(pid) = self.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!("--pid {pid}: no such process (see `ps -e`); start it first, or use --comm NAME")
        }
        Ok(SessionConfig {
            pid: self.pid,
            comm: self.comm.clone(),
            cgroup_id: self.cgroup.as_deref().map(cgroup_id).transpose()?,
            mmap_lock: self.mmap_lock,
            ring_buffer_kib: self.ring_buffer_kib,
            follow_tree: false,
            all_releases: false,
            floor: false,
        })
    }
}

/// Creates (or empties) an output file before the slow part of a command (loading the
/// programs, running the checked command), so a path in a missing or read-only directory is
/// an error at once, not after the work it was meant to keep.
pub fn create_output(path: &std::path::Path, what: &str) -> Result<std::fs::File> {
    std::fs::File::create(path)
        .with_context(|| format!("cannot create the {what} {}", path.display()))
}

/// `--duration SECS`: a positive, finite number of seconds (0 would trace nothing).
pub fn positive_seconds(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        Ok(_) => {
            Err("give a number of seconds above 0 (or leave it out to run until Ctrl-C)".into())
        }
        Err(e) => Err(format!("{e}: give a number of seconds, e.g. 10 or 0.5")),
    }
}

/// A cgroup v2 id is the inode number of the cgroup's directory.
fn cgroup_id(arg: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(id) = arg.parse() {
        return Ok(id);
    }
    let meta = std::fs::metadata(arg)
        .with_context(|| format!("--cgroup {arg}: not a cgroup directory nor a number"))?;
    if !meta.is_dir() {
        bail!("--cgroup {arg}: not a directory (give a cgroup v2 directory under /sys/fs/cgroup)");
    }
    Ok(meta.ino())
}

/// A duration given in seconds on the command line.
pub fn seconds(secs: f64, flag: &str) -> Result<std::time::Duration> {
    if !(secs >= 0.0 && secs.is_finite()) {
        bail!("{flag} {secs}: give a number of seconds, 0 or more");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The thresholds of the findings, shared by every command that judges pins.
#[derive(Args, Clone, Debug)]
pub struct FindingArgs {
    /// Seconds a process's pins may outlive it before they count as orphaned. io_uring
    /// releases a ring's buffers asynchronously at teardown, so give it a moment.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub grace: f64,
    /// Seconds a pin taken without FOLL_LONGTERM may be held before it is reported: such pins
    /// block page migration and compaction without saying so.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub long_pin: f64,
}

impl FindingArgs {
    pub fn rules(&self) -> Result<crate::engine::FindingRules> {
        Ok(crate::engine::FindingRules {
            grace_ns: seconds(self.grace, "--grace")?.as_nanos() as u64,
            long_pin_ns: seconds(self.long_pin, "--long-pin")?.as_nanos() as u64,
        })
    }
}
