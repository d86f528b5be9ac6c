//! Which processes a session traced, or a replay keeps: by tgid, task name and cgroup v2. The
//! recorder writes it into the recording's metadata, `report --pid/--comm/--cgroup` replays
//! through it, and every screen and report names it the same way ([`describe`]).

use std::fmt::Display;

use gup_trace_common::{EventKind, HookClass, folio_bit};
use serde::{Deserialize, Serialize};

use crate::events::TraceEvent;

/// The process filters of a session or a replay (None: every process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFilter {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// A cgroup v2 id: the inode number of its directory.
    pub cgroup_id: Option<u64>,
}

impl ProcessFilter {
    /// Whether any filter is set.
    pub fn is_set(&self) -> bool {
        self.pid.is_some() || self.comm.is_some() || self.cgroup_id.is_some()
    }

    /// The filters in use, as `pid 12`, `comm fio`, `cgroup 3`.
    pub fn describe(&self) -> Vec<String> {
        describe(
            self.pid,
            self.comm.as_deref(),
            self.cgroup_id.as_ref().map(|id| id as &dyn Display),
        )
    }

    /// Whether a replay applies `e`. Releases pass whoever made them, as in a live session: a
    /// pin is often released by another task, and without the release it would look held. A
    /// GUP call passes when its caller or the owner of the memory it works on does (a kernel
    /// worker pinning a process's pages), as in the kernel side; the cgroup is the caller's.
    pub fn keeps(&self, e: &TraceEvent) -> bool {
        let release = e.hook.class() == HookClass::Unpin
            || e.folio.is_some_and(|f| f.bits & folio_bit::RELEASE != 0);
        // Forks keep pid reuse visible whoever the parent is.
        if release || e.kind == EventKind::ProcessFork {
            return true;
        }
        let caller = self.pid.is_none_or(|p| p == e.tgid)
            && self.comm.as_deref().is_none_or(|c| e.comm == c)
            && self.cgroup_id.is_none_or(|c| c == e.cgroup_id);
        caller
            || e.owner().is_some_and(|(tgid, comm)| {
                self.cgroup_id.is_none()
                    && self.pid.is_none_or(|p| p == tgid)
                    && self.comm.as_deref().is_none_or(|c| comm == c)
            })
    }
}

/// Process filters as every screen and report names them: `pid 12`, `comm fio`, `cgroup 3`.
/// `cgroup` is shown as given: a live session names it as the user did (a path or an id).
pub fn describe(pid: Option<u32>, comm: Option<&str>, cgroup: Option<&dyn Display>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(pid) = pid {
        out.push(format!("pid {pid}"));
    }
    if let Some(comm) = comm {
        out.push(format!("comm {comm}"));
    }
    if let Some(cgroup) = cgroup {
        out.push(format!("cgroup {cgroup}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use gup_trace_common::owner_bit;

    use super::*;
    use crate::engine::synthetic::{pin_call, remote_pin_call};

    /// A worker's pin of a followed process's memory passes a filter on that process, as in
    /// the kernel side; a pin of someone else's memory does not.
    #[test]
    fn a_call_passes_when_its_caller_or_its_memorys_owner_does() {
        let by_pid = ProcessFilter {
            pid: Some(100),
            ..ProcessFilter::default()
        };
        let by_comm = ProcessFilter {
            comm: Some("proc100".into()),
            ..ProcessFilter::default()
        };
        for filter in [&by_pid, &by_comm] {
            assert!(
                remote_pin_call(1, 55, 100, &[1])
                    .iter()
                    .all(|e| filter.keeps(e))
            );
            assert!(
                !remote_pin_call(1, 55, 200, &[1])
                    .iter()
                    .any(|e| filter.keeps(e))
            );
            assert!(pin_call(1, 100, &[1], 0, 1).iter().all(|e| filter.keeps(e)));
        }
        // The owner's cgroup is not read: with --cgroup, the caller decides alone.
        let by_cgroup = ProcessFilter {
            cgroup_id: Some(7),
            ..ProcessFilter::default()
        };
        let mut call = remote_pin_call(1, 55, 100, &[1]);
        call[0].owner_bits = owner_bit::KNOWN;
        assert!(!by_cgroup.keeps(&call[0]));
    }
}
