//! The dashboard over engine states built from synthetic events: snapshots, screens drawn into
//! ratatui's TestBackend at 80x24 and larger, keys as state transitions, the time cursor over
//! a synthetic recording, and the headless capture.

use std::{path::PathBuf, sync::Arc};

use gup_trace_common::{EventKind, Hook, folio_bit};
use ratatui::{
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::Color,
};

use super::{
    app::{Action, App, Mode, Panel, Screen, SortKey},
    live::{Capture, CaptureWriter, milestones},
    render, render_text,
    replay::ReplayFeed,
    snapshot::{DashboardSnapshot, History, Moment, SnapshotBuilder, SourceInfo},
    term::Feed,
    theme::Theme,
};
use crate::{
    engine::{
        FindingRules, PinEngine,
        synthetic::{self, F1, F2, LONGTERM, MS, S, event, exit, small, transition},
    },
    events::TraceEvent,
    symbols::{CallStack, FrameSymbol, StackFrame},
};

const F3: u64 = 0xffff_ea00_0000_3000;

// ---------------------------------------------------------------------------------------------
// Synthetic events: the engine's own (`engine::synthetic`), with a slow-path page and an
// mmap_lock acquisition in every pin call, so the dashboard has something to show for them.

fn pin_call(ts: u64, tgid: u32, folios: &[u64], flags: u32, stack: u32) -> Vec<TraceEvent> {
    let mut out = synthetic::pin_call(ts, tgid, folios, flags, stack);
    let call = out.last_mut().expect("the call event comes last");
    call.path.fast_refs = folios.len() as u64 - 1;
    call.path.slow_refs = 1;
    call.lock.acquisitions = 1;
    call.lock.wait_ns = 3_000;
    call.lock.hold_ns = 120_000;
    out
}

/// One pin released on each of `folios`, each of which had one.
fn unpin_call(ts: u64, tgid: u32, folios: &[u64]) -> Vec<TraceEvent> {
    let batch: Vec<_> = folios.iter().map(|&f| (f, small(1), small(0))).collect();
    synthetic::unpin_call(ts, tgid, &batch)
}

fn frame(function: &str, offset: u64, module: Option<&str>) -> StackFrame {
    StackFrame {
        address: 0xffff_ffff_8100_0000 + offset,
        symbol: Some(FrameSymbol {
            function: function.into(),
            offset,
            module: module.map(Into::into),
        }),
    }
}

/// Stack 7: io_uring registering buffers; stack 8: a driver ioctl; anything else unknown.
fn stacks(id: u32) -> CallStack {
    match id {
        7 => Ok(vec![
            frame("bpf_prog_6deef7357e7b4530_gup_fentry", 0x4c, Some("bpf")),
            frame("pin_user_pages_fast", 0x1f, None),
            frame("__gup_longterm_locked", 0x2e0, None),
            frame("io_sqe_buffer_register", 0x1f2, None),
            frame("__io_uring_register", 0x5a, None),
            frame("do_syscall_64", 0x7e, None),
        ]
        .into()),
        8 => Ok(vec![
            frame("pin_user_pages_fast", 0x1f, None),
            frame("pinleak_ioctl", 0x44, Some("pinleak")),
            frame("__x64_sys_ioctl", 0x90, None),
        ]
        .into()),
        _ => Err(format!("stack {id} unknown")),
    }
}

fn source() -> SourceInfo {
    SourceInfo {
        source: "live".into(),
        kernel: "6.12.117+deb12-cloud-amd64".into(),
        start_ns: 0,
        end_ns: None,
        filters: String::new(),
        missing_hooks: Vec::new(),
        blind: false,
        folio_level: true,
        page_size: 4096,
    }
}

/// The engine and what a live intake keeps beside it.
struct Fixture {
    engine: PinEngine,
    builder: SnapshotBuilder,
    history: History,
    source: SourceInfo,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            engine: PinEngine::new(0, LONGTERM, FindingRules::default()),
            builder: SnapshotBuilder::new(),
            history: History::default(),
            source: source(),
        }
    }

    fn run(&mut self, events: impl IntoIterator<Item = TraceEvent>) {
        for e in events {
            self.engine.push(e);
        }
        self.engine.flush();
    }

    /// A tick at `now`.
    fn snapshot(&mut self, now: u64) -> DashboardSnapshot {
        self.history.sample(&mut self.engine, true, now);
        self.builder.build(
            &self.engine,
            &self.source,
            &Moment {
                now_ns: now,
                lost_events: Some(0),
            },
            &self.history,
            &mut stacks,
        )
    }
}

/// Two processes: 100 (fio) pins F1 and F2 short-term and releases F1; 200 registers F3 as
/// long-term io_uring buffers. Snapshots at 1 s and 2 s.
fn busy() -> (Fixture, DashboardSnapshot) {
    let mut fx = Fixture::new();
    fx.snapshot(0);
    fx.run(pin_call(100 * MS, 100, &[F1, F2], 0, 8));
    fx.run(pin_call(200 * MS, 200, &[F3], LONGTERM, 7));
    fx.snapshot(S);
    fx.run(unpin_call(1500 * MS, 100, &[F1]));
    let snap = fx.snapshot(2 * S);
    (fx, snap)
}

/// `busy`, then 200 exits and its pins stay: orphaned once the grace period is over.
fn leaking() -> (Fixture, DashboardSnapshot) {
    let (mut fx, _) = busy();
    fx.run([exit(2500 * MS, 200)]);
    let snap = fx.snapshot(5 * S);
    (fx, snap)
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn keys(app: &mut App, snap: &DashboardSnapshot, codes: &[KeyCode]) -> Vec<Action> {
    codes
        .iter()
        .map(|&c| app.handle_key(key(c), snap))
        .collect()
}

fn chars(s: &str) -> Vec<KeyCode> {
    s.chars().map(KeyCode::Char).collect()
}

fn screen(app: &App, snap: &DashboardSnapshot, w: u16, h: u16) -> String {
    render_text(app, snap, &Theme::mono(), w, h)
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Snapshots.

#[test]
fn a_snapshot_holds_the_pin_state_ages_rates_and_stacks() {
    let (_, snap) = busy();
    assert_eq!((snap.pinned_pages, snap.pinned_folios), (2, 2));
    assert_eq!(snap.longterm_pages, 1);
    // F2 (short-term, taken at ~0.1 s) and F3 (long-term, ~0.2 s) are both 1 to 10 s old.
    assert_eq!(snap.ages_short, [0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(snap.ages_long, [0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        snap.history,
        [0, 3, 3],
        "the most pages pinned at once in each tick"
    );
    assert_eq!(snap.unpins_per_s, 1.0, "one release in the last second");
    assert_eq!(snap.pins_per_s, 0.0);
    assert_eq!((snap.fast_refs, snap.slow_refs), (1, 2));

    let fio = snap.processes.iter().find(|p| p.pid == 100).unwrap();
    assert_eq!((fio.taken, fio.released, fio.outstanding), (2, 1, 1));
    assert_eq!(fio.oldest_ns, Some(100 * MS - 1));
    assert_eq!(fio.folios.len(), 1);
    assert_eq!(fio.folios[0].folio, F2);
    assert_eq!(fio.lock.calls, 1);
    assert_eq!(
        fio.lock.wait_p50, 4095,
        "3 us lies in the 2048..4095 bucket"
    );

    let uring = snap.site(snap.processes[1].holdings[0].0).unwrap();
    assert_eq!(uring.entry, "pin_user_pages_fast");
    assert_eq!(
        uring.caller, "io_sqe_buffer_register",
        "the first frame below GUP's own code"
    );
    let frames = uring.frames.as_ref().unwrap();
    assert_eq!(
        frames[0], "pin_user_pages_fast+0x1f",
        "the tracer's frames are left out"
    );
    let driver = snap.sites.iter().find(|s| s.stack_id == Some(8)).unwrap();
    assert_eq!(driver.caller, "pinleak_ioctl");
    assert!(snap.findings.is_empty());
}

#[test]
fn rates_are_measured_between_snapshots() {
    let mut fx = Fixture::new();
    fx.snapshot(0);
    fx.run(pin_call(300 * MS, 100, &[F1, F2], 0, 8));
    let snap = fx.snapshot(S / 2);
    assert_eq!(snap.pins_per_s, 4.0, "2 pages in half a second");
    assert_eq!(snap.processes[0].rate, 4.0);
    assert_eq!(snap.sites[0].rate, 4.0);
    let later = fx.snapshot(S);
    assert_eq!(later.processes[0].rate, 0.0, "nothing new since");
}

#[test]
fn an_orphan_becomes_a_finding_with_its_evidence_and_process() {
    let (_, snap) = leaking();
    assert_eq!(snap.problems(), 1);
    let f = &snap.findings[0];
    assert_eq!(f.kind, "orphaned pins");
    assert_eq!(
        f.headline,
        "ORPHANED pid 200 proc200: 1 page pinned, exited 2.5s ago (LONGTERM)"
    );
    assert_eq!(f.pid, Some(200));
    assert_eq!(snap.process(f.process.unwrap()).unwrap().pid, 200);
    let evidence = f.evidence.join("\n");
    assert!(evidence.contains("ORPHANED PINS: pid 200 (proc200) exited at 2.50 s"));
    assert!(
        evidence.contains("io_sqe_buffer_register+0x1f2"),
        "{evidence}"
    );
}

// ---------------------------------------------------------------------------------------------
// Screens.

#[test]
fn the_overview_fits_an_80x24_terminal() {
    let (_, snap) = busy();
    let app = App::new(Mode::Live);
    let text = screen(&app, &snap, 80, 24);
    assert_eq!(text.lines().count(), 24);
    let title = text.lines().next().unwrap();
    assert!(
        title.starts_with(" gup-trace top | Linux 6.12.117 | 2.0s | live"),
        "{title}"
    );
    let wide = screen(&app, &snap, 120, 24);
    assert!(wide.starts_with(" gup-trace top | Linux 6.12.117+deb12-cloud-amd64 | 2.0s"));
    assert!(title.ends_with("?:help q:quit"), "{title}");
    assert!(
        text.contains("pinned 2 pages 8.0 KiB in 2 folios (1 LT)  pins/s 0  unpins/s 1.0"),
        "{text}"
    );
    assert!(text.contains("peak 3"), "the sparkline's scale: {text}");
    assert!(text.contains("last 2.0s"), "and the time it spans: {text}");
    assert!(text.contains("processes 2 by outstanding"), "{text}");
    let header = line_with(&text, "PID");
    for col in [
        "COMM", "OUTST", "TAKEN", "RATE/s", "OLDEST", "FAST", "STATE",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let fio = line_with(&text, "proc100");
    assert!(fio.contains("running"), "{fio}");
    assert!(fio.contains("1.9s"), "the oldest pin's age: {fio}");
    assert!(fio.contains("50%"), "fast-path share: {fio}");
    assert!(text.contains("pinned pages by age"));
    let short = line_with(&text, "short ");
    assert!(short.contains("     1"), "{short}");
    assert!(text.contains("mmap_lock in GUP"));
    assert!(text.contains("wait p50 4.1us p99 4.1us"), "{text}");
    assert!(text.contains("fast 33%"), "{text}");
    assert!(text.contains("findings: none"));
    assert!(text.contains("none: no orphaned pins, unbalanced releases or long-held pins"));
    let status = text.lines().nth(22).unwrap();
    assert_eq!(status, "lost events: 0 | hooks: all attached");
    let keys = text.lines().nth(23).unwrap();
    assert!(
        keys.starts_with("Tab panel  ↑↓ select  Enter open  s sort"),
        "{keys}"
    );
}

#[test]
fn a_large_terminal_shows_both_lists_and_more_columns() {
    let (_, snap) = leaking();
    let app = App::new(Mode::Live);
    let text = screen(&app, &snap, 132, 43);
    assert_eq!(text.lines().count(), 43);
    assert!(text.contains("processes 2 by outstanding"));
    assert!(
        text.contains("call sites 2 by outstanding"),
        "both lists at once: {text}"
    );
    let header = line_with(&text, "PID");
    for col in ["RELEASED", "UNPINNED", "CALLS", "WAIT p99", "DROPS"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(line_with(&text, "io_sqe_buffer_register").contains("pin_user_pages_fast"));
    // The findings panel grows with the findings.
    assert!(text.contains("FINDINGS: 1 problem"));
}

#[test]
fn the_findings_panel_lights_up_when_a_leak_appears() {
    let (mut fx, before) = busy();
    let app = App::new(Mode::Live);
    let quiet = screen(&app, &before, 80, 24);
    assert!(quiet.contains("findings: none"));
    fx.run([exit(2500 * MS, 200)]);
    // Within the grace period io_uring may still release: nothing yet.
    let within = fx.snapshot(4 * S);
    assert!(screen(&app, &within, 80, 24).contains("findings: none"));
    let snap = fx.snapshot(5 * S);
    let text = screen(&app, &snap, 80, 24);
    assert!(text.contains("FINDINGS: 1 problem"), "{text}");
    // Long enough names still fit on one line of an 80-column panel.
    let mut long = snap.clone();
    long.findings[0].headline = long.findings[0].headline.replace(
        "pid 200 proc200: 1 page",
        "pid 12345 pinleak-user: 1024 pages",
    );
    let fits = screen(&app, &long, 80, 24);
    assert!(
        fits.contains(
            "ORPHANED pid 12345 pinleak-user: 1024 pages pinned, exited 2.5s ago (LONGTERM)│"
        ),
        "{fits}"
    );
    assert!(
        text.contains("ORPHANED pid 200 proc200: 1 page pinned, exited 2.5s ago"),
        "{text}"
    );
    assert!(
        text.lines().next().unwrap().ends_with("1 FINDING | ?:help"),
        "the title bar says so too"
    );
    assert!(line_with(&text, "proc200").contains("exited 2.5s ago"));

    // In colour, the panel's border and title turn red; with NO_COLOR, they are reversed.
    let findings_row = text.lines().position(|l| l.contains("FINDINGS:")).unwrap() as u16;
    let lit = render(&app, &snap, &Theme::colour(), 80, 24);
    assert_eq!(lit[(0, findings_row)].fg, Color::LightRed);
    let dark = render(&app, &before, &Theme::colour(), 80, 24);
    assert_ne!(dark[(0, findings_row)].fg, Color::LightRed);
    let mono = render(&app, &snap, &Theme::mono(), 80, 24);
    assert!(
        mono.content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "NO_COLOR: not one cell coloured"
    );
    assert!(
        mono[(0, findings_row)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
}

#[test]
fn unbalanced_and_long_held_pins_show_as_findings_too() {
    let mut fx = Fixture::new();
    fx.run(pin_call(100 * MS, 100, &[F1], 0, 8));
    // 300 drops a pin on F2, which has none: a FOLL_GET page released as a pin.
    let mut bad = unpin_call(200 * MS, 300, &[F2]);
    bad[0].folio = Some(transition(
        F2,
        1,
        folio_bit::PIN | folio_bit::RELEASE,
        small(0),
        (0, 0),
    ));
    fx.run(bad);
    let snap = fx.snapshot(12 * S);
    let text = screen(&App::new(Mode::Live), &snap, 140, 24);
    assert!(text.contains("FINDINGS: 2 problems"), "{text}");
    assert!(text.contains(&format!(
        "UNBALANCED pid 300 proc300: unpin_user_pages dropped 1 pin(s) on pfn {:#x}, which had 0",
        F2 >> 6
    )));
    assert!(text.contains("LONG-HELD pid 100 proc100: 1 page without FOLL_LONGTERM for 12s"));
}

#[test]
fn enter_drills_into_a_process_its_folios_ages_and_stacks() {
    let (_, snap) = leaking();
    let mut app = App::new(Mode::Live);
    // Sorted by outstanding: both hold one pin; pid 100 sorts first on ties (more taken).
    assert_eq!(
        app.processes(&snap)
            .iter()
            .map(|p| p.pid)
            .collect::<Vec<_>>(),
        [100, 200]
    );
    keys(&mut app, &snap, &[KeyCode::Down, KeyCode::Enter]);
    let Screen::Process(id) = app.screen() else {
        panic!("{:?}", app.screen())
    };
    assert_eq!(snap.process(*id).unwrap().pid, 200);
    for (w, h) in [(80, 24), (132, 43)] {
        let text = screen(&app, &snap, w, h);
        assert!(text.contains("process 200 (proc200)"), "{text}");
        assert!(line_with(&text, "pid 200").contains("exited 2.5s ago"));
        assert!(text.contains("taken 1, released 0, outstanding 1 in 1 folios"));
        assert!(
            text.contains("pinned folios (1 of 1, oldest first):"),
            "{text}"
        );
        let folio = line_with(&text, &format!("{F3:#x}"));
        assert!(folio.contains(&format!("{:#x}", F3 >> 6)), "{folio}");
        assert!(folio.contains("4.8s"), "its age: {folio}");
        assert!(folio.contains("LONGTERM"), "{folio}");
        assert!(text.contains("Esc back"));
        if h > 24 {
            assert!(text.contains("io_sqe_buffer_register+0x1f2"), "{text}");
        }
    }
    // The stacks are further down at 80x24: scrolling brings them in.
    keys(&mut app, &snap, &[KeyCode::PageDown]);
    let scrolled = screen(&app, &snap, 80, 24);
    assert!(
        scrolled.contains("io_sqe_buffer_register+0x1f2"),
        "{scrolled}"
    );
    keys(&mut app, &snap, &[KeyCode::Esc]);
    assert_eq!(app.screen(), &Screen::Overview);
    assert_eq!(app.scroll, 0);
}

#[test]
fn enter_on_a_finding_shows_its_evidence_and_leads_to_its_process() {
    let (mut fx, snap) = leaking();
    let mut app = App::new(Mode::Live);
    keys(&mut app, &snap, &[KeyCode::Tab, KeyCode::Tab]);
    assert_eq!(app.focus, Panel::Findings);
    keys(&mut app, &snap, &[KeyCode::Enter]);
    assert!(matches!(app.screen(), Screen::Finding(_)));
    let text = screen(&app, &snap, 80, 24);
    assert!(text.contains(" orphaned pins "), "{text}");
    assert!(text.contains("evidence:"));
    assert!(text.contains("ORPHANED PINS: pid 200 (proc200) exited at 2.50 s and still holds"));
    assert!(text.contains("taken through pin_user_pages_fast (FOLL_LONGTERM)"));
    let tall = screen(&app, &snap, 100, 40);
    assert!(tall.contains("io_sqe_buffer_register+0x1f2"), "{tall}");
    assert!(tall.contains("Enter: process 200 (proc200), 1 pins outstanding"));

    // The pins are released (io_uring teardown by a kworker): the finding is resolved, and
    // its screen still shows what it was.
    fx.run(unpin_call(6 * S, 55, &[F3]));
    let later = fx.snapshot(7 * S);
    app.refresh(&later);
    let resolved = screen(&app, &later, 80, 24);
    assert!(
        resolved.contains("resolved: not found any more at 7.00 s"),
        "{resolved}"
    );
    assert!(resolved.contains("findings") || resolved.contains("orphaned pins"));

    keys(&mut app, &snap, &[KeyCode::Enter]);
    let Screen::Process(id) = app.screen() else {
        panic!("Enter on a finding opens its process: {:?}", app.screen())
    };
    assert_eq!(snap.process(*id).unwrap().pid, 200);
    keys(&mut app, &snap, &[KeyCode::Esc, KeyCode::Esc]);
    assert_eq!(app.screen(), &Screen::Overview);
}

#[test]
fn a_call_site_screen_lists_its_holders_and_its_stack() {
    let (_, snap) = leaking();
    let mut app = App::new(Mode::Live);
    keys(&mut app, &snap, &[KeyCode::Tab]);
    assert_eq!((app.focus, app.table), (Panel::Sites, Panel::Sites));
    let list = screen(&app, &snap, 80, 24);
    assert!(list.contains("call sites 2 by outstanding"), "{list}");
    let row = line_with(&list, "io_sqe_buffer_register");
    assert!(row.starts_with("│pin_user_pages_fast"), "{row}");
    // Both sites hold one page; stack 8 was seen first and sorts first on the tie.
    keys(&mut app, &snap, &[KeyCode::Down, KeyCode::Enter]);
    let text = screen(&app, &snap, 80, 24);
    assert!(text.contains("call site pin_user_pages_fast"), "{text}");
    assert!(text.contains("holders:"));
    assert!(line_with(&text, "pid 200").contains("LONGTERM"));
    assert!(text.contains("kernel stack (top first):"));
    assert!(text.contains("__io_uring_register+0x5a"), "{text}");
}

#[test]
fn keys_sort_filter_pause_and_help() {
    let mut fx = Fixture::new();
    fx.snapshot(0);
    fx.run(pin_call(100 * MS, 100, &[F1, F2], 0, 8));
    fx.snapshot(S);
    fx.run(pin_call(1100 * MS, 200, &[F3], LONGTERM, 7));
    let snap = fx.snapshot(2 * S);
    let mut app = App::new(Mode::Live);
    let order = |app: &App| -> Vec<u32> { app.processes(&snap).iter().map(|p| p.pid).collect() };
    assert_eq!(order(&app), [100, 200], "by outstanding");
    keys(&mut app, &snap, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortKey::Rate);
    assert_eq!(order(&app), [200, 100], "200 pinned in the last second");
    assert!(screen(&app, &snap, 80, 24).contains("processes 2 by rate"));
    keys(&mut app, &snap, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortKey::Oldest);
    assert_eq!(order(&app), [100, 200]);
    keys(&mut app, &snap, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortKey::Outstanding);

    // `/` then a name: only matching rows; Esc clears it.
    keys(&mut app, &snap, &[KeyCode::Char('/')]);
    keys(&mut app, &snap, &chars("proc2"));
    assert!(
        screen(&app, &snap, 80, 24)
            .contains("filter (pid or name, Enter applies, Esc cancels): proc2_")
    );
    keys(&mut app, &snap, &[KeyCode::Enter]);
    assert_eq!(order(&app), [200]);
    let filtered = screen(&app, &snap, 80, 24);
    assert!(filtered.contains("processes 1 by outstanding, matching \"proc2\""));
    keys(&mut app, &snap, &[KeyCode::Char('/'), KeyCode::Backspace]);
    keys(&mut app, &snap, &chars("100"));
    keys(&mut app, &snap, &[KeyCode::Enter]);
    assert_eq!(order(&app), [100], "a pid matches too");
    keys(&mut app, &snap, &[KeyCode::Esc]);
    assert_eq!(order(&app), [100, 200]);

    keys(&mut app, &snap, &[KeyCode::Char('p')]);
    assert!(app.paused);
    assert!(
        screen(&app, &snap, 80, 24)
            .lines()
            .next()
            .unwrap()
            .contains("PAUSED")
    );
    keys(&mut app, &snap, &[KeyCode::Char('p')]);
    assert!(!app.paused);

    keys(&mut app, &snap, &[KeyCode::Char('?')]);
    let help = screen(&app, &snap, 80, 24);
    assert!(help.contains("keys (any key closes)"), "{help}");
    for line in [
        "Enter      open: a process (its folios, ages, stacks),",
        "s          sort by outstanding pins, pin rate, oldest pin",
        "p          pause the screen (events are still taken in)",
        "q Ctrl-C   quit",
    ] {
        assert!(help.contains(line), "{line:?} in\n{help}");
    }
    assert_eq!(keys(&mut app, &snap, &[KeyCode::Esc]), [Action::None]);
    assert!(!app.help);
    assert_eq!(keys(&mut app, &snap, &[KeyCode::Char('q')]), [Action::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl_c, &snap), Action::Quit);
}

#[test]
fn processes_that_did_nothing_with_pins_are_hidden_unless_asked_for() {
    let (mut fx, _) = busy();
    let mut fork = event(EventKind::ProcessFork, Hook::TaskNewtask, 2100 * MS, 1);
    fork.start = 400;
    fx.run([fork, exit(2200 * MS, 400)]);
    let snap = fx.snapshot(3 * S);
    let mut app = App::new(Mode::Live);
    let pids = |app: &App| -> Vec<u32> { app.processes(&snap).iter().map(|p| p.pid).collect() };
    assert_eq!(pids(&app), [100, 200]);
    assert!(screen(&app, &snap, 80, 24).contains("processes 2 by outstanding (+1 idle)"));
    app.filter = "400".into();
    assert_eq!(pids(&app), [400], "a filter finds it");
}

#[test]
fn selection_stays_inside_a_shrinking_list() {
    let (_, snap) = busy();
    let mut app = App::new(Mode::Live);
    keys(
        &mut app,
        &snap,
        &[KeyCode::Down, KeyCode::Down, KeyCode::Down],
    );
    assert_eq!(app.selection(Panel::Processes), 1);
    let mut one = snap.clone();
    one.processes.truncate(1);
    app.refresh(&one);
    assert_eq!(app.selection(Panel::Processes), 0);
    // Enter on an empty list does nothing.
    let empty = DashboardSnapshot::default();
    app.refresh(&empty);
    keys(&mut app, &empty, &[KeyCode::Enter]);
    assert_eq!(app.screen(), &Screen::Overview);
    assert!(screen(&app, &empty, 80, 24).contains("processes 0 by outstanding"));
}

#[test]
fn missing_hooks_and_lost_events_are_always_on_screen() {
    let (mut fx, _) = busy();
    fx.source.missing_hooks = vec!["unpin_user_page".into(), "gup_put_folio".into()];
    let mut snap = fx.snapshot(3 * S);
    snap.health.lost_events = Some(42);
    let mut app = App::new(Mode::Live);
    for screen_keys in [vec![], vec![KeyCode::Enter]] {
        keys(&mut app, &snap, &screen_keys);
        let text = screen(&app, &snap, 80, 24);
        let status = text.lines().nth(22).unwrap();
        assert!(
            status.starts_with("LOST EVENTS: 42 | hooks missing: 2 (unpin_user_page, gup_put"),
            "{status}"
        );
    }
    // A kernel where no GUP hook attaches (this machine's own) says so.
    fx.source.blind = true;
    let blind = fx.snapshot(4 * S);
    let text = screen(&App::new(Mode::Live), &blind, 80, 24);
    assert!(text.contains("NO GUP HOOK ATTACHED (2 missing)"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The headless capture.

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gup-trace-tui-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_capture_keeps_the_frames_worth_reading() {
    let dir = temp_dir("capture");
    std::fs::create_dir_all(&dir).unwrap();
    let mut writer = CaptureWriter::new(Capture {
        dir: dir.clone(),
        sizes: vec![(80, 24), (120, 40)],
        frames: 3,
    });
    let (mut fx, first) = busy();
    assert!(!writer.frame(&first).unwrap());
    fx.run([exit(2500 * MS, 200)]);
    assert!(!writer.frame(&fx.snapshot(5 * S)).unwrap());
    assert!(
        writer.frame(&fx.snapshot(6 * S)).unwrap(),
        "3 frames asked for"
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let frames = read("frames.txt");
    assert_eq!(frames.matches("--- frame ").count(), 3);
    assert!(frames.contains("--- frame 2 at 5.0 s ---"));
    let finding = read("first-finding.txt");
    for title in [
        "=== frame 2 at 5.0 s: overview 80x24 ===",
        "=== frame 2 at 5.0 s: process 200 80x24 ===",
        "=== frame 2 at 5.0 s: call site 80x24 ===",
        "=== frame 2 at 5.0 s: finding 80x24 ===",
        "=== frame 2 at 5.0 s: finding 120x40 ===",
    ] {
        assert!(finding.contains(title), "{title} in\n{finding}");
    }
    assert!(finding.contains("FINDINGS: 1 problem"));
    assert!(finding.contains("ORPHANED PINS: pid 200 (proc200)"));
    assert!(read("last.txt").contains("=== frame 3 at 6.0 s: overview 80x24 ==="));
    assert!(read("help.txt").contains("keys (any key closes)"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn milestones_without_pins_show_the_overview_only() {
    let snap = DashboardSnapshot::default();
    let text = milestones(&snap, &[(80, 24)], &Theme::mono(), 1);
    assert_eq!(text.matches("=== frame").count(), 1, "{text}");
}

// ---------------------------------------------------------------------------------------------
// The time cursor over a recording.

#[test]
fn the_time_cursor_steps_through_a_recording() {
    use crate::recording::{Compression, synthetic};
    let dir = temp_dir("replay");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("synthetic.gtr");
    let file = std::fs::File::create(&path).unwrap();
    synthetic::write_recording(file, 9, 40_000, Compression::Lz4).unwrap();
    let rules = FindingRules {
        grace_ns: 0,
        ..FindingRules::default()
    };
    let step = std::time::Duration::from_millis(5);
    let mut feed = ReplayFeed::open(&path, rules, Default::default(), step, step).unwrap();
    let (at, last) = feed.position();
    assert_eq!(at, last, "it opens at the end");
    assert!(last >= 5, "the recording spans several steps: {last}");
    let end = feed.current();
    assert!(end.pinned_pages > 0, "one exit in ten leaves pins behind");
    assert!(end.problems() > 0);

    let mut app = App::new(Mode::Replay);
    assert!(app.paused, "a replay opens still");
    let text = screen(&app, &end, 80, 24);
    let title = text.lines().next().unwrap();
    assert!(
        title.starts_with(" gup-trace report | synthetic.gtr | 0.03/0.03s | paused"),
        "{title}"
    );
    assert!(title.contains("paused"));
    assert!(text.contains("←→ step"), "{text}");

    // Back to the start: nothing yet.
    let action = app.handle_key(key(KeyCode::Home), &end);
    assert_eq!(action, Action::ToStart);
    let start = feed.act(action).unwrap().unwrap();
    assert_eq!(feed.position().0, 0);
    assert_eq!(start.elapsed_ns(), 0);
    assert!(start.processes.iter().all(|p| p.taken == 0));
    // Forward one step at a time: time moves, rates come.
    let action = app.handle_key(key(KeyCode::Right), &start);
    let one = feed.act(action).unwrap().unwrap();
    assert_eq!(one.elapsed_ns(), 5 * MS);
    assert!(one.pins_per_s > 0.0);
    assert_eq!(one.history.len(), 2);
    // Ten back from step 1 is the start again; back at the start, a step back is nothing.
    let back = feed
        .act(app.handle_key(key(KeyCode::Char('<')), &one))
        .unwrap();
    assert_eq!(back.map(|s| s.elapsed_ns()), Some(0));
    assert!(feed.act(Action::Step(-1)).unwrap().is_none());
    // Reached step by step or in one go, the end is the same.
    let again = feed.act(Action::ToEnd).unwrap().unwrap();
    assert_eq!(again.pinned_pages, end.pinned_pages);
    assert_eq!(again.findings, end.findings);
    assert_eq!(again.history, end.history);
    // Playing: a step per interval.
    feed.act(Action::Step(-3)).unwrap();
    app.paused = false;
    std::thread::sleep(step);
    let played = feed.poll(&app).unwrap().expect("a step was due");
    assert_eq!(feed.position().0, last - 2);
    assert!(played.now_ns > start.now_ns);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Arc::strong_count(&played);
}
