//! The views over a small engine state: 100 pins F1 and F2 and releases F1; 200 pins F1 for
//! the long term, twice, and exits.

use super::*;
use crate::engine::{
    FindingRules,
    synthetic::{F1, F2, LONGTERM, MS, S, exit, pin_call, small, unpin_call},
};

fn engine() -> PinEngine {
    let mut engine = PinEngine::new(0, LONGTERM, FindingRules::default());
    let events = [
        pin_call(100 * MS, 100, &[F1, F2], 0, 8),
        unpin_call(200 * MS, 100, &[(F1, small(1), small(0))]),
        pin_call(300 * MS, 200, &[F1], LONGTERM, 7),
        pin_call(400 * MS, 200, &[F1], LONGTERM, 7),
        vec![exit(500 * MS, 200)],
    ];
    for e in events.into_iter().flatten() {
        engine.push(e);
    }
    engine.flush();
    engine
}

fn analyse(engine: &PinEngine, now: u64, since: Option<&Baseline>) -> Analysis {
    let mut lookup = |id: u32| -> CallStack { Err(format!("no stack {id}")) };
    Analysis::new(engine, now, since, &mut SiteStacks::new(4), &mut lookup)
}

#[test]
fn processes_sites_and_holdings_are_ranked_by_the_key_asked_for() {
    let engine = engine();
    let a = analyse(&engine, 2 * S, None);
    let mut by_taken: Vec<&ProcessRow> = a.processes.iter().collect();
    by_taken.sort_by(|x, y| ProcessRow::most_taken_first(x, y));
    let taken: Vec<_> = by_taken.iter().map(|p| (p.pid, p.taken)).collect();
    assert_eq!(taken, [(100, 2), (200, 2)], "a tie goes to the first seen");

    let mut holdings: Vec<&Holding> = a.holdings.iter().collect();
    holdings.sort_by(|x, y| Holding::oldest_first(x, y));
    let held: Vec<_> = holdings
        .iter()
        .map(|h| (a.process(h.process).pid, h.longterm, h.pages, h.folios))
        .collect();
    assert_eq!(
        held,
        [(100, false, 1, 1), (200, true, 2, 1)],
        "2 pins on one folio"
    );
    let io_uring: Vec<_> = a.holders(1).iter().map(|h| h.pages).collect();
    assert_eq!(io_uring, [2], "the call site of stack 7 has one holder");
    assert_eq!(a.longterm_pages, 2);
    assert_eq!(a.ages.long[3], 2, "1 to 10 s old");

    let sites: Vec<_> = a
        .sites
        .iter()
        .map(|s| (s.stack_id, s.taken, s.frames.clone()))
        .collect();
    assert_eq!(
        sites,
        [
            (Some(8), 2, Err("no stack 8".to_string())),
            (Some(7), 2, Err("no stack 7".to_string()))
        ]
    );
}

#[test]
fn rates_are_measured_from_the_baseline() {
    let engine = engine();
    let before = Baseline::of(&engine, S);
    let a = analyse(&engine, 2 * S, Some(&before));
    assert!(a.processes.iter().all(|p| p.rate == 0.0), "nothing new");
    let fresh = analyse(&engine, 2 * S, None);
    assert!(fresh.processes.iter().all(|p| p.rate == 0.0), "no baseline");
    let empty = Baseline::default();
    let from_start = analyse(&engine, S, Some(&empty));
    assert_eq!(from_start.process(0).rate, 2.0, "2 pins in 1 s");
}

#[test]
fn pins_a_worker_took_on_a_process_memory_are_held_by_the_process_and_name_the_worker() {
    let mut engine = PinEngine::new(0, LONGTERM, FindingRules::default());
    for e in crate::engine::synthetic::remote_pin_call(100 * MS, 55, 300, &[F1, F2]) {
        engine.push(e);
    }
    engine.flush();
    let a = analyse(&engine, 1 * S, None);
    let owner = a.processes.iter().find(|p| p.pid == 300).unwrap();
    let worker = a.processes.iter().find(|p| p.pid == 55).unwrap();
    assert_eq!((owner.outstanding, worker.outstanding), (2, 0));
    assert_eq!(owner.taken_by, [(55, "kworker/u8:1".to_string(), 2)]);
    let [held] = a.holdings.as_slice() else {
        panic!("one holding: {:?}", a.holdings);
    };
    assert_eq!(a.process(held.taker.unwrap()).pid, 55);
}

#[test]
fn figures_a_damaged_recording_makes_up_saturate_and_still_add_up() {
    // Found by the engine fuzz target: pins on one folio, lock times and fast/slow counts
    // summed from records overflowed (a panic in debug builds, wrapped figures in release).
    let mut engine = PinEngine::new(0, LONGTERM, FindingRules::default());
    for (ts, tgid) in [(10 * MS, 100), (20 * MS, 100), (30 * MS, 200)] {
        let mut call = pin_call(ts, tgid, &[F1], 0, 7);
        for e in &mut call {
            if let Some(t) = &mut e.folio {
                t.refs = u32::MAX;
            }
            e.lock.acquisitions = 1;
            e.lock.wait_ns = u64::MAX;
            e.lock.hold_ns = u64::MAX;
            e.path.fast_refs = u64::MAX;
            e.path.slow_refs = u64::MAX;
        }
        for e in call {
            engine.push(e);
        }
    }
    engine.flush();
    let s = &engine.state;
    let held: u64 = s.folios.values().map(|f| f.outstanding()).sum();
    assert_eq!(
        s.pinned_now,
        2 * u64::from(u32::MAX),
        "one hold of each process, full"
    );
    assert_eq!(held, s.pinned_now, "what the folios hold is what is pinned");
    let taken: Vec<u64> = s.processes.iter().map(|p| p.pins_taken).collect();
    assert_eq!(taken, [u64::from(u32::MAX); 2]);
    assert_eq!(s.processes[0].lock.wait_ns, u64::MAX);
    let a = analyse(&engine, 2 * S, None);
    assert_eq!(a.lock.wait_total_ns, u64::MAX);
    assert_eq!(
        a.lock.total_ns(),
        u64::MAX,
        "the lock ranking's key saturates too"
    );
    assert_eq!(a.fast_refs, u64::MAX);
    assert_eq!(a.processes[0].fast_share(), Some(0.5));
}
