//! The live pipeline on this machine's kernel. Its mmap_lock tracepoint fires here even where no
//! GUP function can be hooked: with the session limited to this test process and every release
//! made an event, what the pipeline takes in can be held against the kernel side's own count of
//! releases and lost events. Needs root, as every tracing command does.

mod host_support;

use gup_trace::{
    pipeline::{LivePipeline, Records, VmstatUse},
    session::{MmapLockMode, Session, SessionConfig, StackNames},
    window,
};
use gup_trace_common::EventKind;
use host_support::is_root;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Maps and unmaps a page `times` times: each mmap and each munmap releases mmap_lock at least
/// once. `paced`: a millisecond's pause after every ten.
fn churn(times: usize, paced: bool) {
    for i in 1..=times {
        // SAFETY: an anonymous private mapping of one page, unmapped right away.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            libc::munmap(page, 4096);
        }
        if paced && i % 10 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Runs `test` alone (both tests follow this process, so each would see the other's churn), on
/// a runtime, with a session whose events are this process's mmap_lock releases, every one of
/// them, through a ring buffer of `ring_kib` KiB.
fn with_own_releases<F: Future<Output = ()>>(ring_kib: u32, test: impl FnOnce(Session) -> F) {
    assert!(
        is_root(),
        "the host tests load eBPF programs: run them as root"
    );
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = SessionConfig {
        pid: Some(std::process::id()),
        mmap_lock: MmapLockMode::All,
        ring_buffer_kib: ring_kib,
        ..SessionConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { test(Session::start(&config).unwrap()).await });
}

#[test]
fn a_window_counts_what_happened_inside_it_including_what_the_final_drain_brings_in() {
    with_own_releases(4096, |session| async move {
        // Before the window: these wait in the ring buffer and must count nowhere.
        churn(200, false);
        let window = window::open(session, StackNames::NotRead).unwrap();
        // Far fewer events than wake the reader (an eighth of 4 MiB): they are still in the
        // ring buffer when the window closes, so only the final drain can bring them in.
        churn(500, false);
        let mut shown = 0u64;
        let (summary, _) = window::close(window, |e, _| {
            assert_eq!(e.kind, EventKind::MmapLockRelease, "{e:?}");
            shown += 1;
            Ok(())
        })
        .unwrap();
        let counted = summary.totals.mmap_lock_events;
        assert!(counted >= 1000, "500 mmap/munmap pairs, {counted} releases");
        assert_eq!(shown, counted, "the consumer sees what the window counts");
        // The kernel side counted every release from the window's opening to after the final
        // drain: at least the window's, and not the 400 from before it.
        assert!(
            counted <= summary.kernel.mmap_lock_releases,
            "{counted} counted, the kernel saw {}",
            summary.kernel.mmap_lock_releases
        );
        assert_eq!(summary.kernel.lost_events, 0);
    });
}

#[test]
fn records_flow_while_the_run_goes_on_and_none_is_lost() {
    // 256 KiB: the reader is woken every 32 KiB (~160 events), and the ring holds a third of
    // the churn's 4000 events: they are lost unless the pipeline takes them in while the churn
    // runs (paced, so that a reader kept waiting by a busy machine keeps up).
    with_own_releases(256, |session| async move {
        let mut pipeline =
            LivePipeline::open(session, StackNames::NotRead, VmstatUse::Skip, |_| Records).unwrap();
        let mut records = 0u64;
        let churned = pipeline
            .run_until(tokio::task::spawn_blocking(|| churn(2000, true)), |_, _| {
                records += 1;
                Ok(())
            })
            .await
            .unwrap();
        churned.unwrap();
        let during = records;
        let finished = pipeline
            .finish(|_, _| {
                records += 1;
                Ok(())
            })
            .unwrap();
        assert!(during > 0, "no record taken in while the churn ran");
        assert_eq!(finished.closing.lost_events(), 0, "{records} records taken");
        assert!(records >= 4000, "2000 mmap/munmap pairs, {records} records");
    });
}
