//! Bad input to every command: one line that says what is wrong and what to do, and exit 2,
//! before anything slow happens (issue 13, item 5). One table, the real binary. Needs root
//! (the tracing commands check their arguments after the root check).

mod host_support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use host_support::{gup_trace, is_root, text};

#[test]
fn bad_arguments_and_files_give_one_line_and_exit_2() {
    assert!(is_root(), "run the host tests as root");
    let dir = std::env::temp_dir().join(format!("gup-trace-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.gtr");
    std::fs::write(&garbage, "not a recording at all\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let dir_s = dir.to_str().unwrap();
    let out = dir.join("out.gtr");
    let out = out.to_str().unwrap();
    // (arguments, what the error line must say). Rows that would trace if the argument were
    // taken carry a --duration, so a regression fails the row instead of hanging the test.
    let table: &[(&[&str], &str)] = &[
        (
            &["report", "/nonexistent/pins.gtr"],
            "cannot open /nonexistent/pins.gtr",
        ),
        (&["report", garbage], "not a gup-trace recording"),
        (&["report", dir_s], "Is a directory"),
        (
            &["report", garbage, "--perfetto", "/nonexistent/x.pftrace"],
            "not a gup-trace recording",
        ),
        (
            &["trace", "--duration", "0"],
            "give a number of seconds above 0",
        ),
        (&["trace", "--duration", "ten"], "give a number of seconds"),
        (
            &["record", "-o", "/nonexistent/dir/x.gtr", "--duration", "3"],
            "cannot create the recording /nonexistent/dir/x.gtr",
        ),
        (
            &["check", "--junit", "/nonexistent/dir/x.xml", "--", "true"],
            "cannot create the JUnit report",
        ),
        (
            &["trace", "--pid", "4000000", "--duration", "3"],
            "--pid 4000000: no such process",
        ),
        (
            &["record", "-o", out, "--pid", "4000000", "--duration", "3"],
            "no such process",
        ),
        (
            &[
                "trace",
                "--cgroup",
                "/nonexistent/cgroup",
                "--duration",
                "3",
            ],
            "--cgroup /nonexistent/cgroup",
        ),
        (&["trace", "--comm", "", "--duration", "3"], "1 to 15 bytes"),
        (
            &["trace", "--ring-buffer-kib", "3", "--duration", "3"],
            "not a power of two",
        ),
        (
            &[
                "trace",
                "--ring-buffer-kib",
                "99999999999",
                "--duration",
                "3",
            ],
            "--ring-buffer-kib",
        ),
        (&["serve", "--listen", "nonsense"], "--listen"),
    ];
    let mut wrong = Vec::new();
    for (args, says) in table {
        let started = Instant::now();
        let out = gup_trace(args);
        let all = text(&out);
        let first = all.lines().next().unwrap_or_default();
        // Before anything slow: no program was loaded, no command was run.
        let quick = started.elapsed() < Duration::from_secs(5);
        if out.status.code() != Some(2) || !first.contains(says) || !quick {
            wrong.push(format!(
                "gup-trace {}: exit {:?} in {:?}, first line {first:?} (wanted {says:?})",
                args.join(" "),
                out.status.code(),
                started.elapsed()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A low open-file limit is raised where the hard limit allows, and refused in one line that
/// says how to raise it where it does not; RLIMIT_MEMLOCK does not matter (maps are charged to
/// the memory cgroup on every supported kernel). `prlimit` is util-linux's.
#[test]
fn low_resource_limits_are_raised_or_named() {
    assert!(is_root(), "run the host tests as root");
    let run = |limit: &str| {
        Command::new("prlimit")
            .arg(limit)
            .arg(env!("CARGO_BIN_EXE_gup-trace"))
            .args(["trace", "--duration", "1"])
            .output()
            .expect("run prlimit (util-linux)")
    };
    let refused = run("--nofile=16:16");
    let first = text(&refused)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        first.contains("RLIMIT_NOFILE allows 16 (hard limit 16)") && first.contains("ulimit -n"),
        "{first}"
    );
    for limit in ["--nofile=16:4096", "--memlock=0:0"] {
        let out = run(limit);
        assert_eq!(out.status.code(), Some(0), "{limit}: {}", text(&out));
    }
}
