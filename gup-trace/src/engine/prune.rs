//! Forgetting what no longer matters, for a tracer that runs for weeks (`serve`): exited
//! processes without pins, with their holders (process, call site, FOLL_LONGTERM, taker); call
//! sites without pins that took none within the retention; long-held short-term pins released
//! longer ago than it; grabs whose GUP call never came (its event lost).
//!
//! Pins still held are never forgotten, an exited process's (orphaned pins, a finding) least of
//! all: the process, the call site and the taker of a held pin stay while it is held. What is
//! forgotten is counted ([`Pruned`]) and its totals kept ([`Retired`]), so that sums over the
//! state (pins by entry point, fast-path pages, mmap_lock) never go back.
//!
//! Ids are indexes into the state's vectors: pruning renumbers processes, call sites and owners,
//! and bumps [`PinState::epoch`].

use gup_trace_common::Hook;
use serde::Serialize;

use super::{PinState, ProcessRecord};

/// Exited processes kept at most, however recently they exited: a fork storm within the
/// retention cannot grow the state without end. Those holding pins are kept beyond it.
pub const EXITED_KEPT: usize = 16_384;

/// What pruning forgot so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Exited processes without pins.
    pub processes: u64,
    /// Call sites without pins that took none within the retention.
    pub sites: u64,
    /// Holders (process, call site, FOLL_LONGTERM, taker) of forgotten processes or sites.
    pub owners: u64,
    /// Long-held short-term pins released longer ago than the retention (findings that ended).
    pub long_releases: u64,
    /// Threads' grabs that waited longer than the retention for their GUP call's event.
    pub stale_grabs: u64,
    /// FOLL_GET references taken longer ago than the retention (their release is not traced;
    /// the blocking view names them as holders of blocked ranges while it remembers them).
    pub get_refs: u64,
}

impl Pruned {
    /// Each kind with its count, named as `serve` labels them.
    pub fn by_kind(&self) -> [(&'static str, u64); 6] {
        [
            ("processes", self.processes),
            ("sites", self.sites),
            ("owners", self.owners),
            ("long_releases", self.long_releases),
            ("stale_grabs", self.stale_grabs),
            ("get_refs", self.get_refs),
        ]
    }
}

/// The totals of forgotten processes and call sites.
#[derive(Clone, Debug, Default)]
pub struct Retired {
    /// Every forgotten process's figures summed (its identity fields unused).
    pub processes: ProcessRecord,
    /// Pins taken and released through forgotten call sites, by entry point.
    pub by_entry: Vec<(Hook, u64, u64)>,
}

impl Retired {
    fn process(&mut self, p: &ProcessRecord) {
        let t = &mut self.processes;
        t.pins_taken += p.pins_taken;
        t.pins_released += p.pins_released;
        t.releases_made += p.releases_made;
        t.pin_calls += p.pin_calls;
        t.failed_pin_calls += p.failed_pin_calls;
        t.get_calls += p.get_calls;
        t.fast_refs += p.fast_refs;
        t.slow_refs += p.slow_refs;
        t.lock.merge(&p.lock);
    }

    fn site(&mut self, entry: Hook, taken: u64, released: u64) {
        match self.by_entry.iter_mut().find(|e| e.0 == entry) {
            Some(e) => {
                e.1 += taken;
                e.2 += released;
            }
            None => self.by_entry.push((entry, taken, released)),
        }
    }
}

/// How much the state holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateSize {
    /// Process records, and how many of them exited.
    pub processes: usize,
    pub exited: usize,
    pub sites: usize,
    pub owners: usize,
    /// Folios with pins outstanding.
    pub folios: usize,
    /// Threads with grabs or releases waiting for their call's event.
    pub threads: usize,
    pub long_releases: usize,
    /// FOLL_GET references the blocking view remembers (bounded on its own: see
    /// [`super::super::blocking::BlockingState::remembered_gets`]); filled by
    /// [`crate::engine::PinEngine::size`].
    pub get_refs: usize,
}

impl StateSize {
    /// Each part with its size, named as `serve` labels them.
    pub fn by_kind(&self) -> [(&'static str, usize); 8] {
        [
            ("processes", self.processes),
            ("exited_processes", self.exited),
            ("sites", self.sites),
            ("owners", self.owners),
            ("folios", self.folios),
            ("threads", self.threads),
            ("long_releases", self.long_releases),
            ("get_refs", self.get_refs),
        ]
    }

    /// Records of every kind together (what must stay flat under churn).
    pub fn records(&self) -> usize {
        self.processes
            + self.sites
            + self.owners
            + self.folios
            + self.threads
            + self.long_releases
            + self.get_refs
    }
}

/// New ids for the kept entries of `keep` (`u32::MAX` for the others).
fn renumber(keep: &[bool]) -> Vec<u32> {
    let mut next = 0;
    keep.iter()
        .map(|&k| {
            if k {
                next += 1;
                next - 1
            } else {
                u32::MAX
            }
        })
        .collect()
}

/// Keeps the entries of `v` that `keep` says, in order; `forget` sees the others.
fn retain_by<T>(v: &mut Vec<T>, keep: &[bool], mut forget: impl FnMut(&T)) -> u64 {
    let (mut i, mut forgotten) = (0, 0);
    v.retain(|item| {
        let k = keep[i];
        i += 1;
        if !k {
            forget(item);
            forgotten += 1;
        }
        k
    });
    forgotten
}

impl PinState {
    pub fn size(&self) -> StateSize {
        StateSize {
            processes: self.processes.len(),
            exited: self
                .processes
                .iter()
                .filter(|p| p.exited_ns.is_some())
                .count(),
            sites: self.call_sites.len(),
            owners: self.owners.len(),
            folios: self.folios.len(),
            threads: self.pending.len() + self.releasing.len(),
            long_releases: self.long_releases.len(),
            get_refs: 0,
        }
    }

    /// Forgets, at `now_ns`, what ended more than `retention_ns` before (see the module's
    /// documentation). Returns whether ids were renumbered.
    pub fn prune(&mut self, now_ns: u64, retention_ns: u64) -> bool {
        let cutoff = now_ns.saturating_sub(retention_ns);
        let before = self.long_releases.len();
        self.long_releases.retain(|_, l| l.released_ns >= cutoff);
        self.pruned.long_releases += (before - self.long_releases.len()) as u64;
        let before = self.pending.len();
        self.pending
            .retain(|_, grabs| grabs.iter().any(|&(_, ts)| ts >= cutoff));
        self.pruned.stale_grabs += (before - self.pending.len()) as u64;

        // Owners with pins held, or whose long-held pins are still a finding.
        let mut held = vec![false; self.owners.len()];
        for folio in self.folios.values() {
            for h in &folio.holds {
                held[h.owner as usize] = true;
            }
        }
        for &o in self.long_releases.keys() {
            held[o as usize] = true;
        }
        let exit_cutoff = self.exit_cutoff(cutoff);
        let mut keep_process: Vec<bool> = self
            .processes
            .iter()
            .map(|p| p.exited_ns.is_none_or(|t| t >= exit_cutoff))
            .collect();
        let mut keep_site: Vec<bool> = self
            .call_sites
            .iter()
            .map(|s| s.last_ns >= cutoff)
            .collect();
        for (o, owner) in self.owners.iter().enumerate() {
            if held[o] {
                keep_process[owner.process as usize] = true;
                if let Some(t) = owner.taker {
                    keep_process[t as usize] = true;
                }
                keep_site[owner.site as usize] = true;
            }
        }
        let keep_owner: Vec<bool> = self
            .owners
            .iter()
            .enumerate()
            .map(|(o, w)| {
                held[o]
                    || (keep_process[w.process as usize]
                        && keep_site[w.site as usize]
                        && w.taker.is_none_or(|t| keep_process[t as usize]))
            })
            .collect();
        if [&keep_process, &keep_site, &keep_owner]
            .iter()
            .all(|keep| keep.iter().all(|&k| k))
        {
            return false;
        }

        let process_id = renumber(&keep_process);
        let site_id = renumber(&keep_site);
        let owner_id = renumber(&keep_owner);
        let retired = &mut self.retired;
        self.pruned.processes +=
            retain_by(&mut self.processes, &keep_process, |p| retired.process(p));
        self.pruned.sites += retain_by(&mut self.call_sites, &keep_site, |s| {
            retired.site(s.entry, s.pins_taken, s.pins_released)
        });
        self.pruned.owners += retain_by(&mut self.owners, &keep_owner, |_| {});
        self.live.retain(|_, id| {
            *id = process_id[*id as usize];
            *id != u32::MAX
        });
        self.site_ids.retain(|_, id| {
            *id = site_id[*id as usize];
            *id != u32::MAX
        });
        self.owner_ids.clear();
        for (o, owner) in self.owners.iter_mut().enumerate() {
            owner.process = process_id[owner.process as usize];
            owner.site = site_id[owner.site as usize];
            owner.taker = owner.taker.map(|t| process_id[t as usize]);
            self.owner_ids.insert(*owner, o as u32);
        }
        for folio in self.folios.values_mut() {
            for h in &mut folio.holds {
                h.owner = owner_id[h.owner as usize];
            }
        }
        let long = std::mem::take(&mut self.long_releases);
        self.long_releases
            .extend(long.into_iter().map(|(o, l)| (owner_id[o as usize], l)));
        self.epoch += 1;
        true
    }

    /// Exited processes are forgotten when they exited before this: the retention's cutoff,
    /// or later when more than [`EXITED_KEPT`] exited since.
    fn exit_cutoff(&self, cutoff: u64) -> u64 {
        let mut exits: Vec<u64> = self
            .processes
            .iter()
            .filter_map(|p| p.exited_ns.filter(|&t| t >= cutoff))
            .collect();
        if exits.len() <= EXITED_KEPT {
            return cutoff;
        }
        let nth = exits.len() - EXITED_KEPT;
        *exits.select_nth_unstable(nth).1
    }
}
