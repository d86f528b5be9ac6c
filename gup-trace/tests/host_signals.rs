//! SIGINT and SIGTERM end the tracing commands promptly at any moment, while the eBPF
//! programs are still loading included (issue 13: a `kill -INT` then was lost and the tracer
//! ran on). The children start with both signals ignored, as a background job of a
//! non-interactive shell inherits SIGINT: only a handler of gup-trace's own hears them.

mod host_support;

use std::{
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use host_support::is_root;

/// Long enough for the summary, far below "ran on until killed".
const PROMPT: Duration = Duration::from_secs(15);

#[test]
fn a_stop_at_any_moment_ends_trace_and_record_promptly() {
    assert!(
        is_root(),
        "the host tests load eBPF programs: run them as root"
    );
    let file = std::env::temp_dir().join(format!("gup-trace-signals-{}.gtr", std::process::id()));
    let file = file.to_str().unwrap().to_string();
    let commands: [Vec<&str>; 2] = [vec!["trace"], vec!["record", "-o", &file]];
    let mut outcomes = Vec::new();
    for args in &commands {
        for (after_ms, signal) in [
            (50, libc::SIGINT),
            (200, libc::SIGTERM),
            (1000, libc::SIGINT),
            (3000, libc::SIGINT),
        ] {
            // stdout into a file: a pipe nobody reads fills up with trace lines and blocks
            // the tracer in write(), which is not what is tested here.
            let stdout_path = format!("{file}.out");
            let stdout = std::fs::File::create(&stdout_path).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_gup-trace"));
            cmd.args(args).stdout(stdout).stderr(Stdio::piped());
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    libc::signal(libc::SIGTERM, libc::SIG_IGN);
                    Ok(())
                });
            }
            let mut child = cmd.spawn().expect("run gup-trace");
            sleep(Duration::from_millis(after_ms));
            // SAFETY: a plain kill of our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let sent = Instant::now();
            while child.try_wait().unwrap().is_none() && sent.elapsed() < PROMPT {
                sleep(Duration::from_millis(20));
            }
            let ended = child.try_wait().unwrap().is_some();
            if !ended {
                let _ = child.kill();
            }
            let out = child.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_file(&stdout_path);
            let what = format!("{} with signal {signal} after {after_ms} ms", args[0]);
            assert!(ended, "{what}: still running {PROMPT:?} later:\n{said}");
            match out.status.code() {
                // Stopped after loading: the normal end, with the summary.
                Some(0) => assert!(said.contains("vmstat"), "{what}: no summary:\n{said}"),
                // Stopped while loading: nothing was traced, and it says so.
                Some(2) => assert!(said.contains("while loading"), "{what}:\n{said}"),
                other => panic!("{what}: exit {other:?}:\n{said}"),
            }
            outcomes.push((what, out.status.code()));
        }
    }
    let _ = std::fs::remove_file(&file);
    eprintln!("{outcomes:?}");
}
