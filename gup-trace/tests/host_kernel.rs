//! Runs the real binary on this machine's kernel. The kernel this project is developed and
//! tested on (and CI's) refuses fentry and has no kprobes, so these tests check what a user of
//! such a kernel sees: an exact capability report, a working mmap_lock tracepoint, exit 0.
//! They need root, as the tool does.

mod host_support;

use std::process::Command;

use host_support::{gup_trace, is_root, short_lived_children, start_gup_trace, text};

#[test]
fn trace_loads_the_tracepoint_and_reports_every_hook_on_this_kernel() {
    assert!(
        is_root(),
        "the host tests load eBPF programs: run them as root"
    );
    // Make mmap_lock traffic of our own while tracing: every mmap/munmap pair takes and
    // releases the lock.
    let churn = std::thread::spawn(|| {
        for _ in 0..300 {
            let _ = std::fs::read("/proc/self/maps");
            let v = vec![0u8; 1 << 20];
            std::hint::black_box(v);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let out = gup_trace(&[
        "trace",
        "--duration",
        "2",
        "--mmap-lock",
        "all",
        "--verbose",
    ]);
    churn.join().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The report names each hook and the method that attached it or why none did.
    assert!(
        all.contains("attached via tracepoint:\n      mmap_lock_released"),
        "{all}"
    );
    for hook in ["pin_user_pages_fast", "unpin_user_pages", "gup_put_folio"] {
        assert!(all.contains(hook), "report must mention {hook}:\n{all}");
    }
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if !kprobes {
        assert!(all.contains("kernel built without CONFIG_KPROBES"), "{all}");
        assert!(
            all.contains("no GUP function can be hooked on this kernel"),
            "{all}"
        );
    }
    // The tracepoint really fired, and aya-log carried the eBPF side's first-fire message.
    assert!(
        all.contains("first event from hook mmap_lock_released"),
        "{all}"
    );
    let events = all
        .lines()
        .filter(|l| l.contains(" mmap ") && l.contains("mmap_lock_released"))
        .count();
    assert!(events > 0, "no mmap_lock event lines:\n{all}");
    assert!(all.contains("pinned pages"), "summary missing:\n{all}");
    assert!(all.contains("lost events: 0"), "{all}");
}

#[test]
fn without_root_the_error_is_one_line_that_says_what_to_do() {
    assert!(
        is_root(),
        "this test drops privileges with setpriv, which needs root"
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_gup-trace"))
        .args(["trace", "--duration", "1"])
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("sudo gup-trace trace"),
        "{stderr}"
    );
}

#[test]
fn selftest_on_a_kernel_without_gup_hooks_says_it_cannot_verify() {
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if kprobes {
        // On a kernel that can hook GUP the selftest is a real comparison; the VM tests run it.
        return;
    }
    let out = gup_trace(&["selftest"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("selftest cannot compare anything"), "{all}");
}

#[test]
fn kernel_symbols_name_this_kernels_own_functions() {
    assert!(is_root(), "kallsyms shows addresses to root only");
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let address = kallsyms
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] == "T" && f[2] == "pin_user_pages_fast")
                .then(|| u64::from_str_radix(f[0], 16).unwrap())
        })
        .expect("pin_user_pages_fast in /proc/kallsyms");
    let symbols = gup_trace::symbols::KernelSymbols::load().unwrap();
    let frames = symbols.stack(&[address + 0x10, address + 0x20]);
    assert_eq!(frames[0].to_string(), "pin_user_pages_fast+0x10");
    assert_eq!(frames[1].to_string(), "pin_user_pages_fast+0x20");
}

#[test]
fn trace_json_with_stacks_is_one_object_per_line_then_the_summary() {
    assert!(is_root(), "trace loads eBPF programs");
    let out = gup_trace(&[
        "trace",
        "--stacks",
        "--json",
        "--duration",
        "1",
        "--mmap-lock",
        "all",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, events) = lines.split_last().expect("at least the summary line");
    assert!(summary["summary"]["vmstat"].is_object(), "{summary}");
    for e in events {
        assert!(e["hook"].is_string() && e["pid"].is_u64(), "{e}");
        // Only GUP calls carry a stack; this kernel lets gup-trace hook none of them.
        if e["event"] == "mmap_lock" {
            assert!(
                e.get("stack").is_none() && e.get("address").is_none(),
                "{e}"
            );
        }
    }
}

#[test]
fn trace_sees_a_child_process_created_and_ended() {
    use std::io::Read;
    assert!(is_root(), "trace loads eBPF programs");
    // Start the children only once the programs are attached: gup-trace says "tracing for ..."
    // then.
    let mut trace = start_gup_trace(
        &["trace", "--duration", "4", "--json", "--processes"],
        "tracing for",
    );
    // A thread is no process: it must not show up as a fork.
    let thread_tid = std::thread::spawn(|| unsafe { libc::gettid() } as u32)
        .join()
        .unwrap();
    let pids = short_lived_children(3);
    let mut stdout = String::new();
    trace
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    trace.stderr.read_to_string(&mut trace.said).unwrap();
    let status = trace.child.wait().unwrap();
    let all = format!("{stdout}{}", trace.said);
    assert_eq!(status.code(), Some(0), "{all}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let me = std::process::id();
    for pid in pids {
        assert!(
            events.iter().any(|e| e["event"] == "fork"
                && e["child"] == pid
                && e["pid"] == me
                && e["hook"] == "task_newtask"),
            "no fork event for child {pid}:\n{all}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "exit" && e["pid"] == pid && e["comm"] == "sleep"),
            "no exit event for child {pid}:\n{all}"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "fork" && e["child"] == thread_tid),
        "thread {thread_tid} reported as a process:\n{all}"
    );
}

#[test]
fn check_refuses_to_vouch_for_a_command_on_a_kernel_without_gup_hooks() {
    assert!(is_root(), "check loads eBPF programs");
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if kprobes {
        // Where GUP can be hooked, check really judges; the VM tests run it.
        return;
    }
    let out = gup_trace(&["check", "--", "true"]);
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "2 means gup-trace could not tell:\n{all}"
    );
    assert!(
        all.contains("cannot check for pin leaks on this kernel"),
        "{all}"
    );
    assert!(
        all.contains("fentry refused: EPERM") || all.contains("EPERM"),
        "{all}"
    );
}

/// The floor (`gup-trace bench --modes floor`): the same tracepoints attached, each program only
/// counting its run. It loads, counts the process and mmap_lock traffic we make, and a normal session beside
/// it counts no floor runs.
#[test]
fn a_floor_session_counts_program_runs_and_a_normal_one_does_not() {
    use gup_trace::session::{Session, SessionConfig};
    use std::time::Instant;
    assert!(
        is_root(),
        "the host tests load eBPF programs: run them as root"
    );
    // The session's ring-buffer reader registers with a tokio reactor.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _reactor = runtime.enter();
    let started = Instant::now();
    let full = Session::start(&SessionConfig::default()).expect("the full session starts");
    let full_load = started.elapsed();
    let started = Instant::now();
    let floor = Session::start(&SessionConfig {
        floor: true,
        ..SessionConfig::default()
    })
    .expect("the floor session starts");
    let floor_load = started.elapsed();
    eprintln!("load: full {full_load:?}, floor {floor_load:?}");
    // 20 processes: each forks, maps its program (mmap_lock) and exits.
    for _ in 0..20 {
        Command::new("true").status().expect("true runs");
    }
    let runs = floor.floor_runs().expect("the floor counter reads");
    assert!(
        runs >= 60,
        "the floor counted {runs} runs over 20 processes created, mapped and ended"
    );
    assert_eq!(full.floor_runs().expect("the counter reads"), 0);
}
