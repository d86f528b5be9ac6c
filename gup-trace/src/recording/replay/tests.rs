use super::*;
use crate::recording::{
    Compression,
    scenario::{MS, replay_with, scenario},
    synthetic::{START_NS, write_recording},
};

#[test]
fn a_replay_in_steps_reaches_the_state_of_a_replay_in_one_go() {
    let (bytes, _) = write_recording(Vec::new(), 5, 30_000, Compression::Lz4).unwrap();
    let rules = FindingRules::default();
    let whole = replay_with(&bytes, rules);
    let mut steps = Replayer::new(RecordingReader::new(&bytes[..]).unwrap(), rules);
    let mut t = START_NS;
    let mut pinned_before = Vec::new();
    while !steps.at_end() {
        t += MS;
        steps.advance(Some(t)).unwrap();
        assert!(
            steps.engine.newest_ns <= t,
            "nothing past the cursor is applied"
        );
        pinned_before.push(steps.engine.state.pinned_now);
    }
    steps.advance(None).unwrap();
    let stepped = steps.into_replay();
    assert!(pinned_before.len() > 10, "the recording spans many steps");
    assert_eq!(stepped.events, whole.events);
    let (a, b) = (&stepped.engine, &whole.engine);
    assert_eq!(a.state.pinned_now, b.state.pinned_now);
    assert_eq!(a.state.folios.len(), b.state.folios.len());
    assert_eq!(a.state.processes.len(), b.state.processes.len());
    assert_eq!(a.ledger.totals, b.ledger.totals);
    assert_eq!(a.ledger.folios, b.ledger.folios);
    assert_eq!(a.late_events(), b.late_events());
}

#[test]
fn a_pid_filter_keeps_that_process_and_every_release() {
    let bytes = scenario();
    let filter = ProcessFilter {
        pid: Some(100),
        ..ProcessFilter::default()
    };
    let replay = Replay::read_filtered(
        RecordingReader::new(&bytes[..]).unwrap(),
        FindingRules::default(),
        &filter,
    )
    .unwrap();
    let tgids: Vec<u32> = replay
        .engine
        .state
        .processes
        .iter()
        .map(|p| p.tgid)
        .collect();
    // 200 appears only as the child of 100's fork (forks always pass): it pinned nothing.
    assert!(tgids.contains(&100), "{tgids:?}");
    let leaker = replay.engine.state.processes.iter().find(|p| p.tgid == 200);
    assert!(leaker.is_none_or(|p| p.pins_taken == 0), "{leaker:?}");
    let fio = replay
        .engine
        .state
        .processes
        .iter()
        .find(|p| p.tgid == 100)
        .unwrap();
    assert_eq!((fio.pins_taken, fio.pins_released), (3, 1));
    assert!(
        replay.findings().iter().all(|f| !f.is_problem()),
        "the leaker's orphaned pins are filtered out"
    );
}
