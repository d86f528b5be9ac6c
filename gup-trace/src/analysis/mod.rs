//! The analysis layer: the one place that ranks and summarises the engine's state. From a
//! [`PinEngine`] at one moment it computes, once, what every consumer shows: processes (what
//! they did with pins, what they hold, mmap_lock inside their GUP calls), call sites with
//! their named stacks, holdings of outstanding pins, pinned pages by age, and who each finding
//! is about; each row type has orderings to rank it by. `gup-trace report` (text and JSON) and
//! the dashboard only select and format these views.
//!
//! It sits between the engine and the presentations. Like the engine it is pure: no I/O and no
//! clock reads; the moment and the stack names come from the caller.
//!
//! - [`held`]: one walk over the pinned folios: holdings, each process's oldest folios, ages.
//! - [`processes`], [`sites`], [`lock`]: the rows and their orders.
//! - [`findings`]: the key and the process record of a finding.

pub mod findings;
pub mod held;
pub mod lock;
pub mod processes;
pub mod sites;

use std::collections::HashMap;

pub use findings::FindingSubject;
pub use held::{AGE_BOUNDS_NS, AGE_LABELS, FOLIOS_PER_PROCESS, FolioRow, Holding, PinAges};
pub use lock::LockRow;
pub use processes::{ProcessRow, share};
pub use sites::{NO_STACK, SiteRow, SiteStacks};

use crate::{
    engine::{
        PinEngine,
        pins::{ProcessId, SiteId},
    },
    symbols::CallStack,
};

/// Pins taken so far by every process and call site at one moment: what rates are measured
/// from.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    pub ns: u64,
    /// The engine's pruning epoch: the ids below are void once it changed.
    epoch: u64,
    process_taken: Vec<u64>,
    site_taken: Vec<u64>,
}

impl Baseline {
    pub fn of(engine: &PinEngine, now_ns: u64) -> Baseline {
        let state = &engine.state;
        Baseline {
            ns: now_ns,
            epoch: state.epoch,
            process_taken: state.processes.iter().map(|p| p.pins_taken).collect(),
            site_taken: state.call_sites.iter().map(|s| s.pins_taken).collect(),
        }
    }
}

/// Per-second rates from a baseline to now (0 without one).
struct Rates<'a> {
    since: Option<&'a Baseline>,
    secs: Option<f64>,
}

impl Rates<'_> {
    /// No rates from a baseline taken before the engine renumbered its ids (`epoch`).
    fn new(since: Option<&Baseline>, now_ns: u64, epoch: u64) -> Rates<'_> {
        let since = since.filter(|b| b.epoch == epoch);
        let secs = since
            .map(|b| now_ns.saturating_sub(b.ns) as f64 / 1e9)
            .filter(|s| *s > 0.0);
        Rates { since, secs }
    }

    fn of(&self, taken: u64, before: impl Fn(&Baseline) -> Option<u64>) -> f64 {
        match (self.secs, self.since) {
            (Some(s), Some(b)) => taken.saturating_sub(before(b).unwrap_or(0)) as f64 / s,
            _ => 0.0,
        }
    }
}

/// The engine's state at one moment, ranked and summarised.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub now_ns: u64,
    /// Every process the engine knows, in its order (the index is the ProcessId).
    pub processes: Vec<ProcessRow>,
    /// Every call site, in the engine's order (the index is the SiteId).
    pub sites: Vec<SiteRow>,
    /// Outstanding pins, by holder: process, call site, FOLL_LONGTERM.
    pub holdings: Vec<Holding>,
    pub ages: PinAges,
    pub longterm_pages: u64,
    /// mmap_lock in the GUP calls of every process together.
    pub lock: LockRow,
    /// GUP pages from the lockless fast walk and from the slow one, every process together.
    pub fast_refs: u64,
    pub slow_refs: u64,
    /// Pins taken and released by entry point, every call site together (those pruned
    /// included): (entry, taken, released), in the order first seen.
    pub by_entry: Vec<(&'static str, u64, u64)>,
}

impl Analysis {
    /// The engine's state at `now_ns`. Rates are measured from `since`; `stacks` names the call
    /// sites' stacks, reading those it has not named yet with `lookup`.
    pub fn new(
        engine: &PinEngine,
        now_ns: u64,
        since: Option<&Baseline>,
        stacks: &mut SiteStacks,
        lookup: &mut dyn FnMut(u32) -> CallStack,
    ) -> Analysis {
        let state = &engine.state;
        let rates = Rates::new(since, now_ns, state.epoch);
        let mut held = held::walk(state, now_ns);

        let mut sites_of: HashMap<ProcessId, Vec<SiteId>> = HashMap::new();
        for owner in &state.owners {
            let sites = sites_of.entry(owner.process).or_default();
            if !sites.contains(&owner.site) {
                sites.push(owner.site);
            }
        }

        // What pruned processes did counts in the totals still.
        let mut lock = lock::LockTotals::default();
        let retired = &state.retired.processes;
        lock.add(&retired.lock);
        let (mut fast_refs, mut slow_refs) = (retired.fast_refs, retired.slow_refs);
        let mut holdings = Vec::new();
        let mut processes = Vec::with_capacity(state.processes.len());
        for (i, p) in state.processes.iter().enumerate() {
            let id = i as ProcessId;
            lock.add(&p.lock);
            fast_refs = p.fast_refs.saturating_add(fast_refs);
            slow_refs = p.slow_refs.saturating_add(slow_refs);
            let h = held.processes[i].take().unwrap_or_default();
            processes.push(ProcessRow {
                id,
                pid: p.tgid,
                comm: p.comm.to_string(),
                parent: p.parent,
                outstanding: p.outstanding(),
                taken: p.pins_taken,
                released: p.pins_released,
                releases_made: p.releases_made,
                rate: rates.of(p.pins_taken, |b| b.process_taken.get(i).copied()),
                oldest_ns: h.oldest_ns,
                first_ns: p.first_ns,
                exited_ns: p.exited_ns,
                cgroup_id: p.cgroup_id,
                pin_calls: p.pin_calls,
                failed_pin_calls: p.failed_pin_calls,
                get_calls: p.get_calls,
                fast_refs: p.fast_refs,
                slow_refs: p.slow_refs,
                lock: LockRow::of(&p.lock),
                holdings: h
                    .holdings
                    .iter()
                    .map(|h| (h.site, h.longterm, h.pages))
                    .collect(),
                taken_by: takers(state, &h.holdings),
                sites: sites_of.remove(&id).unwrap_or_default(),
                folios: h.folios,
                folio_count: h.folio_count,
            });
            holdings.extend(h.holdings);
        }

        let mut by_entry: Vec<(&'static str, u64, u64)> = Vec::new();
        let mut add_entry = |entry: &'static str, taken: u64, released: u64| match by_entry
            .iter_mut()
            .find(|e| e.0 == entry)
        {
            Some(e) => (e.1, e.2) = (e.1 + taken, e.2 + released),
            None => by_entry.push((entry, taken, released)),
        };
        for &(entry, taken, released) in &state.retired.by_entry {
            add_entry(entry.name(), taken, released);
        }
        for s in &state.call_sites {
            add_entry(s.entry.name(), s.pins_taken, s.pins_released);
        }

        let sites = state
            .call_sites
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (caller, frames) = stacks.name(s.stack_id, s.entry, lookup);
                SiteRow {
                    id: i as SiteId,
                    entry: s.entry.name(),
                    stack_id: s.stack_id,
                    taken: s.pins_taken,
                    released: s.pins_released,
                    outstanding: s.outstanding(),
                    rate: rates.of(s.pins_taken, |b| b.site_taken.get(i).copied()),
                    oldest_ns: held.site_oldest[i],
                    caller,
                    frames,
                }
            })
            .collect();

        Analysis {
            now_ns,
            processes,
            sites,
            holdings,
            ages: held.ages,
            longterm_pages: held.longterm_pages,
            lock: lock.row(),
            fast_refs,
            slow_refs,
            by_entry,
        }
    }

    pub fn process(&self, id: ProcessId) -> &ProcessRow {
        &self.processes[id as usize]
    }

    pub fn site(&self, id: SiteId) -> &SiteRow {
        &self.sites[id as usize]
    }

    /// Who holds pins taken through `site`, the most pages first.
    pub fn holders(&self, site: SiteId) -> Vec<&Holding> {
        let mut holders: Vec<&Holding> = self.holdings.iter().filter(|h| h.site == site).collect();
        holders.sort_by(|a, b| b.pages.cmp(&a.pages));
        holders
    }

    /// Processes whose GUP calls took or dropped mmap_lock, the most time in it first.
    pub fn lock_users(&self) -> Vec<&ProcessRow> {
        let mut users: Vec<&ProcessRow> = self.processes.iter().filter(|p| p.lock.used()).collect();
        users.sort_by(|a, b| LockRow::most_time_first(&a.lock, &b.lock));
        users
    }
}

#[cfg(test)]
mod tests;

/// The processes that took a process's held pins on its memory, with the pages each took,
/// most first.
fn takers(state: &crate::engine::PinState, holdings: &[Holding]) -> Vec<(u32, String, u64)> {
    let mut out: Vec<(u32, String, u64)> = Vec::new();
    for h in holdings {
        let Some(taker) = h.taker.map(|t| &state.processes[t as usize]) else {
            continue;
        };
        match out.iter_mut().find(|t| t.0 == taker.tgid) {
            Some(t) => t.2 += h.pages,
            None => out.push((taker.tgid, taker.comm.to_string(), h.pages)),
        }
    }
    out.sort_by(|a, b| b.2.cmp(&a.2));
    out
}
