//! The engine driven by synthetic event sequences, one rule per test.

use gup_trace_common::{EventKind, Hook, folio_bit};

use super::{synthetic::*, *};

fn problems(engine: &PinEngine, now: u64) -> Vec<Finding> {
    engine
        .findings(now, None, true)
        .into_iter()
        .filter(Finding::is_problem)
        .collect()
}

#[test]
fn pins_released_before_exit_leave_nothing_behind() {
    let mut e = engine();
    run(&mut e, pin_call(10 * MS, 100, &[F1, F2], 0, 7));
    run(
        &mut e,
        unpin_call(
            20 * MS,
            100,
            &[(F1, small(1), small(0)), (F2, small(1), small(0))],
        ),
    );
    run(&mut e, [exit(30 * MS, 100)]);
    assert!(problems(&e, 60 * S).is_empty());
    assert!(e.state.folios.is_empty(), "released folios are forgotten");
    let p = &e.state.processes[0];
    assert_eq!((p.pins_taken, p.pins_released, p.outstanding()), (2, 2, 0));
}

#[test]
fn pins_held_after_exit_are_orphaned_once_the_grace_period_is_over() {
    let mut e = engine();
    run(&mut e, pin_call(10 * MS, 100, &[F1, F2], LONGTERM, 7));
    run(&mut e, [exit(1 * S, 100)]);
    assert!(
        problems(&e, 2 * S).is_empty(),
        "within the grace period io_uring may still release"
    );
    let found = problems(&e, 3 * S + 1);
    let [Finding::OrphanedPins(held)] = found.as_slice() else {
        panic!("expected one orphaned-pins finding, got {found:?}");
    };
    assert_eq!((held.tgid, held.comm.as_str()), (100, "proc100"));
    assert_eq!((held.pages, held.folios), (2, 2));
    assert_eq!(held.entry.name(), "pin_user_pages_fast");
    assert_eq!(held.stack_id, Some(7));
    assert!(held.longterm);
    assert_eq!(held.exited_ns, Some(1 * S));
    assert_eq!(held.oldest_ns, 10 * MS - 1);
}

#[test]
fn a_teardown_release_by_another_task_after_exit_clears_the_orphan() {
    // io_uring drops a ring's buffers from a kworker after the process is gone.
    let mut e = engine();
    run(&mut e, pin_call(10 * MS, 100, &[F1], LONGTERM, 7));
    run(&mut e, [exit(1 * S, 100)]);
    run(
        &mut e,
        unpin_call(1 * S + 500 * MS, 55, &[(F1, small(1), small(0))]),
    );
    assert!(problems(&e, 10 * S).is_empty());
    let owner = &e.state.processes[0];
    assert_eq!(owner.pins_released, 1, "the pin was the exited process's");
    assert_eq!(
        e.state.processes[1].releases_made, 1,
        "and the kworker made the release"
    );
}

#[test]
fn releasing_more_pins_than_a_folio_has_is_unbalanced_pre_existing_pins_are_not() {
    let mut e = engine();
    run(&mut e, pin_call(10 * MS, 100, &[F1], 0, 7));
    run(
        &mut e,
        unpin_call(20 * MS, 100, &[(F1, small(1), small(0))]),
    );
    // F2 carried a pin from before tracing began; releasing it is no finding.
    run(
        &mut e,
        unpin_call(30 * MS, 100, &[(F2, small(1), small(0))]),
    );
    assert!(problems(&e, 40 * MS).is_empty());
    assert_eq!(e.state.pre_existing_releases, 1);

    // A driver unpins a page it got with get_user_pages (a plain reference, no pin).
    run(&mut e, unpin_call(50 * MS, 300, &[(F2, small(0), (0, 0))]));
    // And a batch lists F1 twice while it carries one pin: the counts were read at the call's
    // entry, so only the two entries together show the second release is one too many.
    run(&mut e, pin_call(60 * MS, 100, &[F1], 0, 7));
    run(
        &mut e,
        unpin_call(
            70 * MS,
            100,
            &[(F1, small(1), small(-1)), (F1, small(1), small(-1))],
        ),
    );
    let found = problems(&e, 80 * MS);
    let [
        Finding::UnbalancedRelease(get),
        Finding::UnbalancedRelease(twice),
    ] = found.as_slice()
    else {
        panic!("expected two unbalanced releases, got {found:?}");
    };
    assert_eq!(
        (get.folio, get.tgid, get.pins_before, get.released),
        (F2, 300, 0, 1)
    );
    assert_eq!((twice.folio, twice.pins_before, twice.released), (F1, 1, 2));
    assert_eq!(e.state.unbalanced_pins, 2);
    assert_eq!(
        e.state.processes[0].outstanding(),
        0,
        "the one real pin was released"
    );
}

#[test]
fn short_term_pins_held_past_the_threshold_are_reported_long_term_ones_are_not() {
    let mut e = engine();
    run(&mut e, pin_call(1 * S, 100, &[F1], 0, 7));
    run(&mut e, pin_call(1 * S, 100, &[F2], LONGTERM, 8));
    assert!(problems(&e, 11 * S - 2).is_empty());
    let found = problems(&e, 12 * S);
    let [Finding::LongHeldPin(held)] = found.as_slice() else {
        panic!("expected one long-held pin, got {found:?}");
    };
    assert_eq!(
        (held.stack_id, held.longterm, held.pages),
        (Some(7), false, 1)
    );
    assert_eq!(held.examples[0].folio, F1);
}

#[test]
fn large_folio_pins_are_owned_per_folio_with_their_refs() {
    let mut e = engine();
    let large = folio_bit::PIN | folio_bit::LARGE;
    let mut events = vec![grab(
        5,
        100,
        transition(HUGE, 512, large, (3, 0), (515, 512)),
    )];
    let mut call = event(EventKind::Call, Hook::PinUserPagesFast, 6, 100);
    call.pages = 512;
    call.stack_id = Some(9);
    events.push(call);
    run(&mut e, events);
    assert_eq!(e.state.pinned_now, 512);
    let f = &e.state.folios[&HUGE];
    assert_eq!(f.pre_existing, 0, "pincount 0 before the grab");
    assert_eq!((f.order, f.outstanding()), (9, 512));
    // io_uring drops 511 of them in one call, then the last.
    let mut release = event(EventKind::Folio, Hook::UnpinUserPages, 10, 100);
    release.folio = Some(transition(
        HUGE,
        511,
        large | folio_bit::RELEASE,
        (515, 512),
        (4, 1),
    ));
    let mut call = event(EventKind::Call, Hook::UnpinUserPages, 10, 100);
    call.pages = 511;
    run(&mut e, [release, call]);
    assert_eq!(e.state.folios[&HUGE].outstanding(), 1);
    assert_eq!(e.ledger.folios.bias_anomalies, 0);
}

#[test]
fn interleaved_processes_keep_their_own_pins_and_a_release_prefers_the_releasers() {
    let mut e = engine();
    // Both pin F1, A first; then B releases one pin: B's own, not A's older one.
    let mut a = pin_call(10, 100, &[F1], 0, 1);
    let mut b = pin_call(20, 200, &[F1], 0, 2);
    b[0].folio = Some(transition(F1, 1, folio_bit::PIN, small(1), small(2)));
    a[0].tid = 100;
    b[0].tid = 200;
    // Interleave the two calls' events as two CPUs would.
    run(
        &mut e,
        [a[0].clone(), b[0].clone(), a[1].clone(), b[1].clone()],
    );
    run(&mut e, unpin_call(30, 200, &[(F1, small(2), small(1))]));
    let by_tgid = |tgid: u32| e.state.processes.iter().find(|p| p.tgid == tgid).unwrap();
    assert_eq!(by_tgid(100).outstanding(), 1);
    assert_eq!(by_tgid(200).outstanding(), 0);
    let holds: Vec<_> = e.state.holds_of(0).collect();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].1.since_ns, 9);
}

#[test]
fn a_reused_pid_is_a_new_process_and_does_not_inherit_the_old_ones_pins() {
    let mut e = engine();
    run(&mut e, pin_call(10 * MS, 100, &[F1], 0, 7));
    run(&mut e, [exit(20 * MS, 100)]);
    // Much later, pid 100 is handed to a new process which pins and releases F2 cleanly.
    run(&mut e, [fork(50 * S, 1, 100)]);
    run(&mut e, pin_call(50 * S + 10, 100, &[F2], 0, 8));
    run(
        &mut e,
        unpin_call(50 * S + 20, 100, &[(F2, small(1), small(0))]),
    );
    assert_eq!(e.state.processes.len(), 2, "the old 100 and the new 100");
    let found = problems(&e, 60 * S);
    let [Finding::OrphanedPins(held)] = found.as_slice() else {
        panic!("expected the old process's pin only, got {found:?}");
    };
    assert_eq!((held.pages, held.exited_ns), (1, Some(20 * MS)));
    assert_eq!(e.state.processes[1].parent, Some(1));
    assert_eq!(e.state.processes[1].outstanding(), 0);
}

#[test]
fn a_release_that_arrives_before_its_pin_is_put_back_in_order() {
    let mut e = engine();
    let pin = pin_call(10 * MS, 100, &[F1], 0, 7);
    let release = unpin_call(11 * MS, 100, &[(F1, small(1), small(0))]);
    // The release was committed to the ring buffer first (another CPU).
    run(&mut e, release.into_iter().chain(pin));
    assert_eq!(e.late_events(), 0);
    assert!(e.state.folios.is_empty());
    assert_eq!(e.state.pre_existing_releases, 0);
    assert_eq!(e.state.processes[0].outstanding(), 0);
    assert!(problems(&e, 1000 * S).is_empty());
}

#[test]
fn grabs_take_the_owner_of_the_call_that_follows_them_on_their_thread() {
    let mut e = engine();
    let mut events = pin_call(10, 100, &[F1], LONGTERM, 7);
    // Another thread's get_user_pages call in between must not adopt the grab.
    let mut other = event(EventKind::Call, Hook::GetUserPagesRemote, 9, 100);
    other.tid = 101;
    other.stack_id = Some(99);
    events.insert(1, other);
    run(&mut e, events);
    let site = &e.state.call_sites[0];
    assert_eq!(
        (site.stack_id, site.entry, site.pins_taken),
        (Some(7), Hook::PinUserPagesFast, 1)
    );
    assert!(e.state.owners[0].longterm);
}

#[test]
fn counter_drift_is_reported_against_the_matching_totals() {
    let mut e = engine();
    run(&mut e, pin_call(10, 100, &[F1, F2], 0, 7));
    assert!(e.findings(20, Some((2, 0)), true).is_empty());
    let found = e.findings(20, Some((3, 0)), true);
    assert!(
        matches!(found.as_slice(), [Finding::CounterDrift(d)] if d.pinned == 2 && d.vmstat_acquired == 3),
        "{found:?}"
    );
    assert!(
        !found[0].is_problem(),
        "drift says the view is incomplete, not that the program leaks"
    );
}

#[test]
fn zero_page_and_failed_grabs_are_no_pins_to_hold() {
    let mut e = engine();
    let zero = transition(F1, 1, folio_bit::PIN | folio_bit::ZERO_PAGE, (5, 0), (5, 0));
    let failed = transition(
        F2,
        1,
        folio_bit::PIN | folio_bit::FAILED,
        small(0),
        small(0),
    );
    let mut call = event(EventKind::Call, Hook::PinUserPagesFast, 10, 100);
    call.pages = 1;
    run(&mut e, [grab(8, 100, zero), grab(9, 100, failed), call]);
    run(&mut e, [exit(20, 100)]);
    assert!(e.state.folios.is_empty());
    assert!(problems(&e, 100 * S).is_empty());
}

#[test]
fn pins_outside_a_gup_call_belong_to_the_grab_function() {
    // io_uring's folio_add_pin on a folio it pinned before: no GUP call around it.
    let mut e = engine();
    let mut add = event(EventKind::Folio, Hook::FolioAddPin, 10, 100);
    add.folio = Some(transition(F1, 1, folio_bit::PIN, small(1), small(2)));
    run(&mut e, [add, exit(20, 100)]);
    let found = problems(&e, 10 * S);
    let [Finding::OrphanedPins(held)] = found.as_slice() else {
        panic!("{found:?}");
    };
    assert_eq!(held.entry.name(), "folio_add_pin");
    assert_eq!(e.state.folios[&F1].pre_existing, 1);
}

#[test]
fn lock_and_path_figures_add_up_per_process() {
    let mut e = engine();
    let mut call = pin_call(10, 100, &[F1], 0, 7);
    let c = call.last_mut().unwrap();
    c.path.fast_refs = 0;
    c.path.slow_refs = 1;
    c.lock.acquisitions = 2;
    c.lock.wait_ns = 3000;
    c.lock.hold_ns = 900;
    let mut drop = event(
        EventKind::MmapLockDrop,
        Hook::MmapLockAcquireReturned,
        9,
        100,
    );
    drop.duration_ns = 2500;
    call.insert(1, drop);
    run(&mut e, call);
    let p = &e.state.processes[0];
    assert_eq!((p.fast_refs, p.slow_refs, p.pin_calls), (0, 1, 1));
    assert_eq!(
        (
            p.lock.wait_ns,
            p.lock.hold_ns,
            p.lock.drops,
            p.lock.dropped_ns
        ),
        (3000, 900, 1, 2500)
    );
    assert_eq!(
        p.lock.wait.percentile(50.0),
        4095,
        "3000 ns lies in the 2048..4095 bucket"
    );
}

#[test]
fn the_peak_counts_pins_taken_and_released_between_two_looks() {
    let mut e = engine();
    run(&mut e, pin_call(10, 100, &[F1, F2], 0, 7));
    run(
        &mut e,
        unpin_call(
            20,
            100,
            &[(F1, small(1), small(0)), (F2, small(1), small(0))],
        ),
    );
    assert_eq!(e.state.pinned_now, 0);
    assert_eq!(e.state.take_peak(), 2);
    assert_eq!(e.state.take_peak(), 0, "a new period starts at each look");
    run(&mut e, pin_call(30, 100, &[F1], 0, 7));
    assert_eq!(e.state.take_peak(), 1);
    assert_eq!(e.state.take_peak(), 1, "still pinned");
}

#[test]
fn a_remote_pin_is_held_by_the_owner_of_the_memory_and_taken_by_the_worker() {
    // A kernel worker pins process 100's pages (pin_user_pages_remote on its mm) and keeps
    // them; 100 exits: the orphans are 100's, taken by the worker.
    let mut e = engine();
    run(&mut e, [fork(1 * MS, 1, 100)]);
    run(&mut e, remote_pin_call(10 * MS, 55, 100, &[F1, F2]));
    run(&mut e, [exit(1 * S, 100)]);
    let found = problems(&e, 4 * S);
    let [Finding::OrphanedPins(held)] = found.as_slice() else {
        panic!("expected one orphaned-pins finding, got {found:?}");
    };
    assert_eq!((held.tgid, held.comm.as_str()), (100, "proc100"));
    let taker = held.taken_by.as_ref().expect("the worker is named");
    assert_eq!((taker.tgid, taker.comm.as_str()), (55, "kworker/u8:1"));
    assert_eq!(
        (held.pages, held.entry.name()),
        (2, "pin_user_pages_remote")
    );
    let owner = e.state.processes.iter().find(|p| p.tgid == 100).unwrap();
    let worker = e.state.processes.iter().find(|p| p.tgid == 55).unwrap();
    assert_eq!((owner.pins_taken, worker.pins_taken), (2, 0));
    assert_eq!(worker.pin_calls, 1, "the call is the worker's");
}

#[test]
fn a_pin_on_the_callers_own_memory_has_no_taker() {
    let mut e = engine();
    let mut call = pin_call(10 * MS, 100, &[F1], 0, 7);
    for ev in &mut call {
        ev.owner_tgid = 100;
        ev.owner_bits = gup_trace_common::owner_bit::KNOWN;
    }
    run(&mut e, call);
    run(&mut e, [exit(1 * S, 100)]);
    let found = problems(&e, 4 * S);
    let [Finding::OrphanedPins(held)] = found.as_slice() else {
        panic!("expected one orphaned-pins finding, got {found:?}");
    };
    assert_eq!((held.tgid, held.taken_by.clone()), (100, None));
}

fn long_pin_engine(long_pin_ns: u64) -> PinEngine {
    PinEngine::new(
        0,
        LONGTERM,
        FindingRules {
            long_pin_ns,
            ..FindingRules::default()
        },
    )
}

#[test]
fn a_short_term_pin_released_after_the_threshold_is_a_finding_with_its_hold_time() {
    // O_DIRECT from a slow device: pinned at 1 s, released at 13 s; --long-pin 5.
    let mut e = long_pin_engine(5 * S);
    run(&mut e, pin_call(1 * S, 100, &[F1], 0, 7));
    run(&mut e, unpin_call(13 * S, 100, &[(F1, small(1), small(0))]));
    run(&mut e, [exit(14 * S, 100)]);
    assert!(e.state.folios.is_empty(), "nothing is held any more");
    let found = problems(&e, 20 * S);
    let [Finding::LongHeldPin(held)] = found.as_slice() else {
        panic!("expected one long-held finding, got {found:?}");
    };
    assert!(held.released);
    assert_eq!((held.tgid, held.pages, held.folios), (100, 1, 1));
    assert_eq!(held.held_ns, 12 * S + 1, "from the grab to the release");
    assert_eq!(held.examples.len(), 1);
}

#[test]
fn pins_released_within_the_threshold_or_longterm_are_no_finding() {
    let mut e = long_pin_engine(5 * S);
    run(&mut e, pin_call(1 * S, 100, &[F1], 0, 7));
    run(&mut e, unpin_call(4 * S, 100, &[(F1, small(1), small(0))]));
    run(&mut e, pin_call(5 * S, 100, &[F2], LONGTERM, 7));
    run(&mut e, unpin_call(30 * S, 100, &[(F2, small(1), small(0))]));
    assert!(problems(&e, 40 * S).is_empty());
}

#[test]
fn a_short_term_pin_still_held_says_how_long_so_far() {
    let mut e = long_pin_engine(5 * S);
    run(&mut e, pin_call(1 * S, 100, &[F1], 0, 7));
    let found = problems(&e, 8 * S);
    let [Finding::LongHeldPin(held)] = found.as_slice() else {
        panic!("expected one long-held finding, got {found:?}");
    };
    assert!(!held.released);
    assert_eq!(held.held_ns, 7 * S + 1);
}

/// 100 pins F1 and releases it, 200 pins F2 for the long term and keeps it (orphaned): both
/// exit at 10 s; 300 keeps running and pins F1 through another stack at 19 s.
fn churned(retention: Option<u64>) -> PinEngine {
    let mut e = engine();
    e.set_retention(retention);
    let events = [
        pin_call(9 * S, 100, &[F1], 0, 7),
        unpin_call(9 * S + 100 * MS, 100, &[(F1, small(1), small(0))]),
        pin_call(9 * S + 200 * MS, 200, &[F2], LONGTERM, 8),
        vec![exit(10 * S, 100), exit(10 * S, 200)],
        pin_call(19 * S, 300, &[F1], 0, 9),
    ];
    run(&mut e, events.into_iter().flatten());
    e
}

#[test]
fn pruning_forgets_exited_processes_without_pins_and_never_orphaned_pins() {
    let mut e = churned(Some(10 * S));
    assert_eq!(
        e.state.pruned,
        Pruned::default(),
        "nothing ended 10 s ago yet"
    );
    // Any event past the next pruning time prunes; the reorder buffer holds it 20 ms.
    run(
        &mut e,
        [event(
            EventKind::MmapLockDrop,
            Hook::MmapLockReleased,
            22 * S,
            300,
        )],
    );
    let pids: Vec<u32> = e.state.processes.iter().map(|p| p.tgid).collect();
    assert_eq!(pids, [200, 300], "100 exited 12 s ago holding nothing");
    assert_eq!(e.state.pruned.processes, 1);
    // 100's stack 7 took no pins for 13 s and none are held: forgotten with its owner.
    let stacks: Vec<_> = e.state.call_sites.iter().map(|s| s.stack_id).collect();
    assert_eq!(stacks, [Some(8), Some(9)]);
    assert_eq!((e.state.pruned.sites, e.state.pruned.owners), (1, 1));
    assert_eq!(e.state.epoch, 1);
    // The orphan is still a finding, with its process, site and FOLL_LONGTERM after
    // renumbering.
    let found = problems(&e, 23 * S);
    let [Finding::OrphanedPins(held)] = found.as_slice() else {
        panic!("expected the orphaned pins, got {found:?}");
    };
    assert_eq!((held.tgid, held.comm.as_str()), (200, "proc200"));
    assert_eq!(
        (held.stack_id, held.longterm, held.pages),
        (Some(8), true, 1)
    );
    // 300's pin on F1 is matched to 300 (its own record, its own site).
    let holds: Vec<_> = e.state.holds_of(1).map(|(f, h)| (f.pfn, h.refs)).collect();
    assert_eq!(holds, [(F1 >> 6, 1)]);
    // What was forgotten still counts in the totals.
    assert_eq!(e.state.retired.processes.pins_taken, 1);
    assert_eq!(e.state.retired.by_entry, [(Hook::PinUserPagesFast, 1, 1)]);
    let mut lookup = |id: u32| -> crate::symbols::CallStack { Err(format!("no stack {id}")) };
    let a = crate::analysis::Analysis::new(
        &e,
        23 * S,
        None,
        &mut crate::analysis::SiteStacks::new(1),
        &mut lookup,
    );
    assert_eq!(a.by_entry, [("pin_user_pages_fast", 3, 1)]);
    assert_eq!(a.fast_refs, 3);
}

#[test]
fn without_a_retention_nothing_is_forgotten() {
    let mut e = churned(None);
    run(
        &mut e,
        [event(
            EventKind::MmapLockDrop,
            Hook::MmapLockReleased,
            1000 * S,
            300,
        )],
    );
    assert_eq!(e.state.processes.len(), 3);
    assert_eq!(e.state.call_sites.len(), 3);
    assert_eq!((e.state.pruned, e.state.epoch), (Pruned::default(), 0));
}

#[test]
fn a_reused_pid_starts_clean_and_the_old_lifetime_keeps_its_orphans() {
    let mut e = churned(Some(10 * S));
    // pid 200 comes back as a new process, forked by 300, and pins F1 once.
    run(&mut e, [fork(20 * S, 300, 200)]);
    run(
        &mut e,
        pin_call(21 * S, 200, &[0xffff_ea00_0000_3000], 0, 9),
    );
    run(
        &mut e,
        [event(
            EventKind::MmapLockDrop,
            Hook::MmapLockReleased,
            40 * S,
            300,
        )],
    );
    let lifetimes: Vec<_> = e
        .state
        .processes
        .iter()
        .filter(|p| p.tgid == 200)
        .map(|p| (p.exited_ns, p.pins_taken, p.outstanding()))
        .collect();
    assert_eq!(
        lifetimes,
        [(Some(10 * S), 1, 1), (None, 1, 1)],
        "the new 200 holds its own pin only; the old one its orphan"
    );
    let orphans: Vec<_> = problems(&e, 41 * S)
        .into_iter()
        .filter_map(|f| match f {
            Finding::OrphanedPins(h) => Some((h.tgid, h.exited_ns, h.pages)),
            _ => None,
        })
        .collect();
    assert_eq!(orphans, [(200, Some(10 * S), 1)]);
    // Once the orphan is released (a late teardown), the old lifetime goes too.
    run(&mut e, unpin_call(50 * S, 300, &[(F2, small(1), small(0))]));
    run(
        &mut e,
        [event(
            EventKind::MmapLockDrop,
            Hook::MmapLockReleased,
            70 * S,
            300,
        )],
    );
    let lifetimes = e.state.processes.iter().filter(|p| p.tgid == 200).count();
    assert_eq!(lifetimes, 1);
    let orphaned = |f: &Finding| matches!(f, Finding::OrphanedPins(_));
    assert!(!problems(&e, 71 * S).iter().any(orphaned));
}

#[test]
fn a_process_takes_the_cgroup_of_its_own_tasks_not_of_a_worker_pinning_for_it() {
    let mut e = engine();
    let mut own = pin_call(10 * MS, 100, &[F1], 0, 7);
    own.iter_mut().for_each(|ev| ev.cgroup_id = 42);
    let mut remote = remote_pin_call(20 * MS, 7, 200, &[F2]);
    remote.iter_mut().for_each(|ev| ev.cgroup_id = 1);
    run(&mut e, own.into_iter().chain(remote));
    let cgroup = |tgid| {
        e.state
            .processes
            .iter()
            .find(|p| p.tgid == tgid)
            .map(|p| p.cgroup_id)
    };
    assert_eq!(cgroup(100), Some(42));
    assert_eq!(cgroup(200), Some(0), "only the kworker's cgroup was seen");
    assert_eq!(cgroup(7), Some(1));
}
