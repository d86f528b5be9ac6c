//! The open-file limit a session needs. Every loaded program and every link is a file
//! descriptor (a kprobe's link holds a perf event too), so a session with all its hooks holds
//! a few hundred; a soft RLIMIT_NOFILE of a few dozen would otherwise surface as a map that
//! cannot be created or, worse, as hooks that look refused by the kernel. Locked memory needs
//! nothing: since Linux 5.11 BPF maps are charged to the memory cgroup, not RLIMIT_MEMLOCK, and
//! gup-trace supports 6.1 onwards.

use gup_trace_common::HOOK_COUNT;

/// Descriptors a session may hold at once: per function hook two programs and two links, a
/// perf event each under kprobes; the maps; and the runtime's own (epoll, stdio, /proc files).
pub const SESSION_FDS: u64 = 6 * HOOK_COUNT as u64 + 64;

/// Why a session cannot start under this process's limits.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "gup-trace needs up to {needed} open files (one per eBPF program, link and map), but \
         RLIMIT_NOFILE allows {soft} (hard limit {hard}): raise it, e.g. `ulimit -n 4096` in \
         the shell or LimitNOFILE=4096 in a systemd unit"
    )]
    OpenFiles { needed: u64, soft: u64, hard: u64 },
    #[error("cannot read RLIMIT_NOFILE: {0}")]
    Unreadable(std::io::Error),
}

/// Raises the soft open-file limit towards the hard one where it is below what a session
/// needs (asking for no more than that), then says whether a session fits. Called before the
/// async runtime starts, which needs descriptors of its own.
pub fn ensure_open_files() -> Result<(), LimitError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(LimitError::Unreadable(std::io::Error::last_os_error()));
    }
    if limit.rlim_cur < SESSION_FDS {
        let raised = libc::rlimit {
            rlim_cur: SESSION_FDS.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given; lowering nothing, raising the soft
        // limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur < SESSION_FDS {
        return Err(LimitError::OpenFiles {
            needed: SESSION_FDS,
            soft: limit.rlim_cur,
            hard: limit.rlim_max,
        });
    }
    Ok(())
}
