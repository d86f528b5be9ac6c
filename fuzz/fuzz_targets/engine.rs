//! The pin engine on arbitrary event sequences, built with `arbitrary` as the kernel side
//! would write them (GUP calls after their grabs, release calls with their folios behind
//! them, io_uring's added pins, forks, exits, the migration and CMA events, and raw events
//! with any field the decoder lets through), from a few processes on a few folios so that
//! pins and releases meet. Every record goes through the real decoder, as in a session.
//!
//! After every event: the ledger's per-process totals add up to its global ones, the pins
//! outstanding per folio, per process and per call site all add up to the pages pinned now,
//! and no process or site has released more than it took. At the end: findings, the analysis
//! and its rankings, without a panic.

#![no_main]

use arbitrary::Arbitrary;
use gup_trace::{
    analysis::{Analysis, sites::SiteStacks},
    engine::{FindingRules, PinEngine},
    events::TraceEvent,
    recording::synthetic::{
        FOLL_LONGTERM, START_NS, comm, event, folio_of, pin_transition, put_event, put_folio,
    },
};
use gup_trace_common::{
    CallPath, EventKind, FolioTransition, Hook, HookClass, LockStats, NO_CALL, folio_bit, owner_bit,
};
use libfuzzer_sys::fuzz_target;

/// Processes and folios the events draw from: few, so that they meet.
const PROCESSES: u32 = 5;
const FOLIOS: u64 = 12;

#[derive(Arbitrary, Debug)]
struct Step {
    /// Time since the previous event; `late`: that far behind it instead (another CPU's
    /// record committed later).
    dt: u16,
    late: bool,
    /// Which process, and which of its two threads.
    who: u8,
    what: What,
}

#[derive(Arbitrary, Debug)]
enum What {
    /// A GUP call: its grabs (folio events while it runs), then the call.
    Call {
        hook: u8,
        grabs: Vec<Grab>,
        error: bool,
        longterm: bool,
        stack: u8,
        /// Taken for another process (`*_remote`, a kernel worker).
        owner: Option<u8>,
        lock: Option<(u16, u16)>,
    },
    /// A release call's record: its folios behind it (none: not itemized).
    Release {
        hook: u8,
        folios: Vec<Grab>,
        extra_pages: u8,
    },
    /// A grab outside any GUP call (io_uring's folio_add_pin(s)).
    AddPin(Grab),
    Exit,
    Fork {
        child: u8,
    },
    LockDrop {
        duration: u16,
    },
    /// A migration, isolation, offline or CMA event on a folio's range.
    Blocking {
        kind: u8,
        folio: u8,
        count: u8,
        error: bool,
    },
    /// Any event the decoder accepts, every field chosen.
    Raw(Raw),
}

#[derive(Arbitrary, Debug)]
struct Grab {
    folio: u8,
    refs: u8,
    large: bool,
    /// Counts that break the bias rule (or tell of pins from before tracing).
    skew: Option<(i16, i16)>,
    /// Extra `folio_bit`s: failed, zero page, truncated, FOLL_GET.
    bits: u8,
}

#[derive(Arbitrary, Debug)]
struct Raw {
    kind: u8,
    hook: u8,
    call_hook: Option<u8>,
    pages: u64,
    duration_ns: u64,
    error: i32,
    gup_flags: u32,
    start: u64,
    stack_id: i32,
    owner: u8,
    owner_bits: u8,
    path: (u64, u64, u32, u32),
    lock: (u64, u64, u32, u32),
    folio: FolioTransition8,
    trailing: Vec<FolioTransition8>,
}

/// A folio transition with every field chosen, on one of the few folios.
#[derive(Arbitrary, Debug)]
struct FolioTransition8 {
    folio: u8,
    refs: u32,
    bits: u32,
    order: u32,
    counts: (i32, i32, i32, i32),
}

impl FolioTransition8 {
    fn get(&self) -> FolioTransition {
        let pfn = pfn(self.folio);
        FolioTransition {
            folio: folio_of(pfn),
            pfn,
            refs: self.refs,
            bits: self.bits,
            order: self.order,
            refcount_before: self.counts.0,
            refcount_after: self.counts.1,
            pincount_before: self.counts.2,
            pincount_after: self.counts.3,
            _pad: 0,
        }
    }
}

fn pfn(folio: u8) -> u64 {
    0x4_0000 + u64::from(folio) % FOLIOS * 512
}

fn hook_of(class: HookClass, pick: u8) -> Hook {
    let hooks: Vec<Hook> = Hook::ALL
        .iter()
        .copied()
        .filter(|h| h.class() == class)
        .collect();
    hooks[usize::from(pick) % hooks.len()]
}

impl Grab {
    fn transition(&self, release: bool) -> FolioTransition {
        let refs = u32::from(self.refs % 32).max(1);
        let mut t = pin_transition(pfn(self.folio), refs, self.large, release);
        if let Some((rc, pc)) = self.skew {
            t.refcount_before += i32::from(rc);
            t.pincount_before += i32::from(pc);
        }
        let extra = [
            folio_bit::FAILED,
            folio_bit::ZERO_PAGE,
            folio_bit::TRUNCATED,
        ];
        for (i, bit) in extra.into_iter().enumerate() {
            if self.bits & (1 << i) != 0 {
                t.bits |= bit;
            }
        }
        if self.bits & 0x8 != 0 {
            t.bits &= !folio_bit::PIN;
        }
        t
    }
}

struct Gen {
    now: u64,
    records: Vec<Vec<u8>>,
}

impl Gen {
    fn base(&self, kind: EventKind, hook: Hook, who: u8) -> gup_trace_common::Event {
        let tgid = 100 + u32::from(who) % PROCESSES;
        let tid = tgid + u32::from(who / 16 % 2) * 1000;
        let mut e = event(kind, hook, self.now, tgid, tid, comm(&format!("p{tgid}")));
        e.cgroup_id = u64::from(who % 3);
        e
    }

    fn push(&mut self, head: &gup_trace_common::Event, folios: &[FolioTransition]) {
        let mut r = Vec::new();
        put_event(&mut r, head);
        for t in folios {
            put_folio(&mut r, t);
        }
        self.records.push(r);
    }

    fn step(&mut self, s: &Step) {
        let dt = u64::from(s.dt) * 1000;
        self.now = if s.late {
            self.now.saturating_sub(dt)
        } else {
            self.now + dt
        };
        match &s.what {
            What::Call {
                hook,
                grabs,
                error,
                longterm,
                stack,
                owner,
                lock,
            } => {
                let get = hook & 0x80 != 0;
                let hook = hook_of(if get { HookClass::Get } else { HookClass::Pin }, *hook);
                let mut pages = 0;
                for g in grabs {
                    let mut t = g.transition(false);
                    if get {
                        t.bits &= !folio_bit::PIN;
                    }
                    let grab = hook_of(HookClass::Grab, g.folio);
                    let mut e = self.base(EventKind::Folio, grab, s.who);
                    e.call_hook = hook as u32;
                    e.pages = u64::from(t.refs);
                    e.folio = t;
                    self.push(&e, &[]);
                    pages += u64::from(t.refs);
                }
                let mut e = self.base(EventKind::Call, hook, s.who);
                e.pages = if *error { 0 } else { pages };
                e.requested = pages.max(1);
                e.error = if *error { -14 } else { 0 };
                e.gup_flags = if *longterm { FOLL_LONGTERM } else { 0 };
                e.stack_id = i32::from(*stack % 4) - 1;
                e.duration_ns = 5_000;
                e.path = CallPath {
                    fast_refs: pages / 2,
                    slow_refs: pages - pages / 2,
                    slow_walks: 1,
                    walked: 0,
                };
                if let Some((wait, hold)) = lock {
                    e.lock = LockStats {
                        wait_ns: u64::from(*wait),
                        hold_ns: u64::from(*hold),
                        acquisitions: 1,
                        drops: 0,
                    };
                }
                if let Some(o) = owner {
                    let tgid = 100 + u32::from(*o) % PROCESSES;
                    e.owner_tgid = tgid;
                    e.owner_comm = comm(&format!("p{tgid}"));
                    e.owner_bits = owner_bit::KNOWN | owner_bit::REMOTE_MM;
                }
                self.push(&e, &[]);
            }
            What::Release {
                hook,
                folios,
                extra_pages,
            } => {
                let hook = hook_of(HookClass::Unpin, *hook);
                let folios: Vec<FolioTransition> =
                    folios.iter().map(|g| g.transition(true)).collect();
                let mut e = self.base(EventKind::Call, hook, s.who);
                e.pages =
                    folios.iter().map(|t| u64::from(t.refs)).sum::<u64>() + u64::from(*extra_pages);
                e.path.walked = folios.len() as u32;
                e.duration_ns = 1_000;
                self.push(&e, &folios);
            }
            What::AddPin(g) => {
                let t = g.transition(false);
                let mut e = self.base(
                    EventKind::Folio,
                    hook_of(HookClass::Grab, 3 + g.folio % 2),
                    s.who,
                );
                e.pages = u64::from(t.refs);
                e.folio = t;
                self.push(&e, &[]);
            }
            What::Exit => {
                let e = self.base(EventKind::ProcessExit, Hook::SchedProcessExit, s.who);
                self.push(&e, &[]);
            }
            What::Fork { child } => {
                let mut e = self.base(EventKind::ProcessFork, Hook::TaskNewtask, s.who);
                e.start = u64::from(100 + u32::from(*child) % (PROCESSES + 2));
                self.push(&e, &[]);
            }
            What::LockDrop { duration } => {
                let mut e = self.base(EventKind::MmapLockDrop, Hook::MmapLockReleased, s.who);
                e.duration_ns = u64::from(*duration);
                e.call_hook = Hook::PinUserPages as u32;
                self.push(&e, &[]);
            }
            What::Blocking {
                kind,
                folio,
                count,
                error,
            } => {
                let kinds = [
                    (EventKind::Migration, Hook::MmMigratePages),
                    (EventKind::Isolation, Hook::TestPagesIsolated),
                    (EventKind::OfflineEnd, Hook::OfflinePages),
                    (EventKind::CmaBusy, Hook::CmaAllocBusyRetry),
                    (EventKind::CmaAllocEnd, Hook::CmaAllocFinish),
                ];
                let (k, h) = kinds[usize::from(*kind) % kinds.len()];
                let mut e = self.base(k, h, s.who);
                let p = pfn(*folio);
                e.start = p;
                e.requested = u64::from(*count) + 1;
                e.pages = u64::from(*count);
                e.error = if *error { -16 } else { 0 };
                e.folio = FolioTransition {
                    folio: folio_of(p),
                    pfn: p,
                    refs: u32::from(*count),
                    order: 9,
                    ..FolioTransition::ZERO
                };
                if kind & 0x80 != 0 {
                    e.call_hook = Hook::PinUserPages as u32;
                }
                self.push(&e, &[]);
            }
            What::Raw(r) => {
                let mut e = self.base(EventKind::Call, Hook::PinUserPages, s.who);
                e.kind = u32::from(r.kind % 11);
                e.hook = u32::from(r.hook) % Hook::ALL.len() as u32;
                e.call_hook = r
                    .call_hook
                    .map_or(NO_CALL, |h| u32::from(h) % Hook::ALL.len() as u32);
                e.pages = r.pages % (gup_trace::events::MAX_USER_PAGES + 1);
                e.duration_ns = r.duration_ns;
                e.error = r.error;
                e.gup_flags = r.gup_flags;
                e.start = r.start;
                e.requested = r.pages;
                e.stack_id = r.stack_id;
                e.owner_tgid = 100 + u32::from(r.owner) % PROCESSES;
                e.owner_bits = u32::from(r.owner_bits);
                e.path = CallPath {
                    fast_refs: r.path.0,
                    slow_refs: r.path.1,
                    slow_walks: r.path.2,
                    walked: r.path.3,
                };
                e.lock = LockStats {
                    wait_ns: r.lock.0,
                    hold_ns: r.lock.1,
                    acquisitions: r.lock.2,
                    drops: r.lock.3,
                };
                e.folio = r.folio.get();
                let trailing: Vec<FolioTransition> =
                    r.trailing.iter().map(FolioTransition8::get).collect();
                self.push(&e, &trailing);
            }
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut g = Gen {
        now: START_NS,
        records: Vec::new(),
    };
    for s in &steps {
        g.step(s);
    }
    let mut engine = PinEngine::new(START_NS, FOLL_LONGTERM, FindingRules::default());
    let mut events = Vec::new();
    for r in &g.records {
        events.clear();
        if TraceEvent::decode_record(r, &mut events).is_err() {
            continue;
        }
        for e in events.drain(..) {
            engine.push(e);
            check(&engine);
        }
    }
    engine.flush();
    check(&engine);
    let now = engine.newest_ns.saturating_add(60_000_000_000);
    let l = &engine.ledger;
    for vmstat in [
        None,
        Some((l.totals.pinned, l.totals.released)),
        Some((0, u64::MAX)),
    ] {
        for folio_level in [false, true] {
            for f in engine.findings(now, vmstat, folio_level) {
                let _ = (f.is_problem(), f.kind());
            }
        }
    }
    let mut lookup =
        |id: u32| -> gup_trace::symbols::CallStack { Err(format!("stack {id} not kept")) };
    let a = Analysis::new(&engine, now, None, &mut SiteStacks::new(8), &mut lookup);
    let held: u64 = a.processes.iter().map(|p| p.outstanding).sum();
    assert_eq!(
        held, engine.state.pinned_now,
        "the analysis's pins held add up"
    );
});

/// The invariants that hold after every event.
fn check(engine: &PinEngine) {
    let l = &engine.ledger;
    let pinned: u64 = l.processes.values().map(|p| p.pinned).sum();
    let released: u64 = l.processes.values().map(|p| p.released).sum();
    assert_eq!(
        (pinned, released),
        (l.totals.pinned, l.totals.released),
        "per-process totals add up to the global ones"
    );
    let s = &engine.state;
    let on_folios: u64 = s.folios.values().map(|f| f.outstanding()).sum();
    assert_eq!(
        on_folios, s.pinned_now,
        "pins held on folios add up to the pages pinned now"
    );
    held_adds_up(
        "process",
        s.processes.iter().map(|p| (p.pins_taken, p.pins_released)),
        s.pinned_now,
    );
    held_adds_up(
        "call site",
        s.call_sites.iter().map(|c| (c.pins_taken, c.pins_released)),
        s.pinned_now,
    );
}

/// Pins held per holder (process or call site): none released more than it took, and they
/// add up to the pages pinned now.
fn held_adds_up(what: &str, holders: impl Iterator<Item = (u64, u64)>, pinned_now: u64) {
    let mut held = 0u64;
    for (taken, released) in holders {
        assert!(
            released <= taken,
            "a {what} released {released} of {taken} pins taken"
        );
        held += taken - released;
    }
    assert_eq!(
        held, pinned_now,
        "pins held per {what} add up to the pages pinned now"
    );
}
