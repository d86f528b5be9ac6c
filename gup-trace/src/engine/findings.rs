//! What is wrong, with the evidence: pins left behind by processes that exited, releases of
//! pins never taken, short-term pins held for too long, counts that break the pin bias rule,
//! and totals that drift from the kernel's own counters.

use std::collections::HashMap;

use gup_trace_common::Hook;
use serde::Serialize;

use super::{
    ledger::BiasAnomaly,
    pins::{OwnerId, PinState, UnbalancedRelease},
};

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// Pins a process took and still held a grace period after it exited.
    OrphanedPins(HeldPins),
    /// A release call dropped more pins on a folio than the folio's counts say it had (e.g.
    /// unpin_user_page on a page taken with get_user_pages).
    UnbalancedRelease(UnbalancedRelease),
    /// Pins taken without FOLL_LONGTERM and held longer than the threshold: they block
    /// migration and compaction the way long-term pins do, without saying so.
    LongHeldPin(HeldPins),
    /// Reference counts that moved otherwise than GUP_PIN_COUNTING_BIAS says.
    BiasAnomaly(BiasAnomaly),
    /// gup-trace's totals differ from /proc/vmstat's over the same run: it missed events (lost,
    /// or from a hook that is not attached), so its other findings may be incomplete.
    CounterDrift(CounterDrift),
    /// The kernel could not isolate or migrate a pfn range (memory offline, ...): the pinned
    /// and referenced folios in it, with their holders.
    BlockedMigration(super::blocking::BlockedMigration),
}

impl Finding {
    /// Whether the traced program did something wrong (a leak or a pin held too long), as
    /// opposed to the tool telling that its own view is incomplete.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Finding::OrphanedPins(_)
                | Finding::UnbalancedRelease(_)
                | Finding::LongHeldPin(_)
                | Finding::BlockedMigration(_)
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Finding::OrphanedPins(_) => "orphaned pins",
            Finding::UnbalancedRelease(_) => "unbalanced release",
            Finding::LongHeldPin(_) => "long-held short-term pin",
            Finding::BiasAnomaly(_) => "bias anomaly",
            Finding::CounterDrift(_) => "counter drift",
            Finding::BlockedMigration(_) => "blocked migration",
        }
    }

    /// When the finding came to be, under `rules`: orphaned pins a grace period after the
    /// exit, a short-term pin once held past the long-pin threshold, a blocked migration at
    /// its first failure, an unbalanced release or a bias anomaly at its event. None for a
    /// counter drift, which is known only at the end.
    pub fn since_ns(&self, rules: &FindingRules) -> Option<u64> {
        match self {
            Finding::OrphanedPins(h) => h.exited_ns.map(|e| e.saturating_add(rules.grace_ns)),
            Finding::LongHeldPin(h) => Some(h.oldest_ns.saturating_add(rules.long_pin_ns)),
            Finding::UnbalancedRelease(u) => Some(u.ts_ns),
            Finding::BiasAnomaly(b) => Some(b.ts_ns),
            Finding::BlockedMigration(b) => Some(b.first_ns),
            Finding::CounterDrift(_) => None,
        }
    }
}

/// Pins one owner (a process, through one call site) still holds, or (`released`) held too
/// long before releasing them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldPins {
    /// The process whose memory is pinned.
    pub tgid: u32,
    pub comm: String,
    pub exited_ns: Option<u64>,
    /// The process that took the pins, when it is not the owner (a kernel worker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<Taker>,
    /// The GUP entry point (or grab function) that took them, and its kernel stack.
    #[serde(serialize_with = "super::pins::hook_name")]
    pub entry: Hook,
    pub stack_id: Option<u32>,
    pub longterm: bool,
    pub pages: u64,
    pub folios: u64,
    /// When the oldest of them was taken.
    pub oldest_ns: u64,
    /// How long the oldest was held: until now, or (released) until its release.
    pub held_ns: u64,
    /// The pins were released, after being held longer than allowed.
    pub released: bool,
    /// A few of the folios, oldest first.
    pub examples: Vec<HeldFolio>,
}

/// The process that took pins on another's memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Taker {
    pub tgid: u32,
    pub comm: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeldFolio {
    #[serde(serialize_with = "crate::hex::address")]
    pub folio: u64,
    pub pfn: u64,
    pub order: u8,
    pub refs: u32,
    pub since_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CounterDrift {
    pub pinned: u64,
    pub vmstat_acquired: u64,
    pub released: u64,
    pub vmstat_released: u64,
}

/// Thresholds of the findings.
#[derive(Clone, Copy, Debug)]
pub struct FindingRules {
    /// How long after its exit a process's pins count as orphaned (io_uring releases its
    /// buffers at ring teardown, asynchronously).
    pub grace_ns: u64,
    /// How long a pin without FOLL_LONGTERM may be held.
    pub long_pin_ns: u64,
}

impl Default for FindingRules {
    fn default() -> Self {
        FindingRules {
            grace_ns: 2_000_000_000,
            long_pin_ns: 10_000_000_000,
        }
    }
}

const EXAMPLES: usize = 4;

/// Orphaned and long-held pins at `now_ns`, grouped by owner, most pages first.
pub fn held_pin_findings(state: &PinState, rules: &FindingRules, now_ns: u64) -> Vec<Finding> {
    let mut orphaned: HashMap<OwnerId, HeldPins> = HashMap::new();
    let mut long_held: HashMap<OwnerId, HeldPins> = HashMap::new();
    for (&address, folio) in &state.folios {
        for hold in &folio.holds {
            let owner = state.owners[hold.owner as usize];
            let process = &state.processes[owner.process as usize];
            let gone = process
                .exited_ns
                .is_some_and(|exit| now_ns >= exit.saturating_add(rules.grace_ns));
            let too_long =
                !owner.longterm && now_ns.saturating_sub(hold.since_ns) > rules.long_pin_ns;
            let group = if gone {
                &mut orphaned
            } else if too_long {
                &mut long_held
            } else {
                continue;
            };
            let held = group
                .entry(hold.owner)
                .or_insert_with(|| held_pins(state, hold.owner, hold.since_ns));
            held.pages += u64::from(hold.refs);
            held.folios += 1;
            held.oldest_ns = held.oldest_ns.min(hold.since_ns);
            held.held_ns = now_ns.saturating_sub(held.oldest_ns);
            held.examples.push(HeldFolio {
                folio: address,
                pfn: folio.pfn,
                order: folio.order,
                refs: hold.refs,
                since_ns: hold.since_ns,
            });
            if held.examples.len() > 2 * EXAMPLES {
                trim_examples(&mut held.examples);
            }
        }
    }
    let finish = |group: HashMap<OwnerId, HeldPins>, wrap: fn(HeldPins) -> Finding| {
        let mut all: Vec<HeldPins> = group
            .into_values()
            .map(|mut h| {
                trim_examples(&mut h.examples);
                h
            })
            .collect();
        all.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.oldest_ns.cmp(&b.oldest_ns)));
        all.into_iter().map(wrap)
    };
    let released = state.long_releases.iter().map(|(&owner, long)| {
        let mut held = held_pins(state, owner, long.oldest_ns);
        held.pages = long.pages;
        held.folios = long.folios;
        held.held_ns = long.longest_ns;
        held.released = true;
        held.examples = long.examples.clone();
        (owner, held)
    });
    let mut released: Vec<HeldPins> = released.map(|(_, h)| h).collect();
    released.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.oldest_ns.cmp(&b.oldest_ns)));
    finish(orphaned, Finding::OrphanedPins)
        .chain(finish(long_held, Finding::LongHeldPin))
        .chain(released.into_iter().map(Finding::LongHeldPin))
        .collect()
}

/// An empty group of `owner`'s pins: who holds them, who took them, through which call site.
fn held_pins(state: &PinState, owner: OwnerId, since_ns: u64) -> HeldPins {
    let owner = state.owners[owner as usize];
    let process = &state.processes[owner.process as usize];
    let site = &state.call_sites[owner.site as usize];
    HeldPins {
        tgid: process.tgid,
        comm: process.comm.to_string(),
        exited_ns: process.exited_ns,
        taken_by: owner.taker.map(|p| {
            let taker = &state.processes[p as usize];
            Taker {
                tgid: taker.tgid,
                comm: taker.comm.to_string(),
            }
        }),
        entry: site.entry,
        stack_id: site.stack_id,
        longterm: owner.longterm,
        pages: 0,
        folios: 0,
        oldest_ns: since_ns,
        held_ns: 0,
        released: false,
        examples: Vec::new(),
    }
}

fn trim_examples(examples: &mut Vec<HeldFolio>) {
    examples.sort_by_key(|f| (f.since_ns, f.pfn));
    examples.truncate(EXAMPLES);
}

/// Totals against the kernel's counters over the same run.
pub fn counter_drift(
    pinned: u64,
    released: u64,
    vmstat_acquired: u64,
    vmstat_released: u64,
) -> Option<Finding> {
    (pinned != vmstat_acquired || released != vmstat_released).then_some(Finding::CounterDrift(
        CounterDrift {
            pinned,
            vmstat_acquired,
            released,
            vmstat_released,
        },
    ))
}
