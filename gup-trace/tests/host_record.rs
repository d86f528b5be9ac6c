//! `record` on this machine's kernel, then `report` of what it wrote. The process tracepoints
//! fire here even where no GUP function can be hooked, so the children this test starts while
//! recording must come back out of the report. Needs root, as `record` does.

mod host_support;

use std::io::Read as _;

use host_support::{gup_trace, is_root, short_lived_children, start_gup_trace};

#[test]
fn record_then_report_shows_the_children_started_while_recording() {
    assert!(
        is_root(),
        "record loads eBPF programs: run the host tests as root"
    );
    let dir = std::env::temp_dir().join(format!("gup-trace-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("host.gtr");
    let path = file.to_str().unwrap();
    // Start the children once the programs are attached: record says "recording to" then.
    let mut record = start_gup_trace(&["record", "-o", path, "--duration", "3"], "recording to");
    let pids = short_lived_children(3);
    record.stderr.read_to_string(&mut record.said).unwrap();
    let said = record.said;
    let status = record.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{said}");
    // The final line, always; no progress lines when stderr is not a terminal.
    let last = said
        .lines()
        .find(|l| l.starts_with("recorded "))
        .unwrap_or_else(|| panic!("no final line:\n{said}"));
    assert!(
        last.contains("lost events: 0") && last.contains(path),
        "{last}"
    );
    assert!(!said.contains('\r'), "progress shown on a pipe:\n{said}");

    let out = gup_trace(&["report", path, "--json", "--top", "100000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(report["recording"]["status"], "complete", "{stdout:.2000}");
    assert!(report["recording"]["events"].as_u64().unwrap() >= 6);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["recording"]["kernel"], kernel.trim());
    let processes = report["processes"]["rows"].as_array().unwrap();
    let me = std::process::id();
    for pid in &pids {
        let row = processes
            .iter()
            .find(|p| p["pid"] == *pid)
            .unwrap_or_else(|| panic!("child {pid} not in the report: {stdout:.3000}"));
        assert_eq!(row["comm"], "sleep", "{row}");
        assert_eq!(row["parent"], me, "{row}");
        assert!(row["exited_s"].as_f64().is_some(), "{row}");
    }

    let out = gup_trace(&["report", path, "--top", "100000"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for section in [
        "recording by gup-trace",
        "processes (",
        "findings",
        "mmap_lock",
    ] {
        assert!(text.contains(section), "no {section:?} in:\n{text}");
    }
    for pid in &pids {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{pid} ")) && l.contains("sleep")),
            "child {pid} not in the text report:\n{text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_refuses_a_file_that_is_not_a_recording() {
    let dir = std::env::temp_dir().join(format!("gup-trace-notrec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not.gtr");
    std::fs::write(&file, "hello, world\n").unwrap();
    let out = gup_trace(&["report", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a gup-trace recording"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A full file system ends `record` with exit 2 and the path beside "No space left on
/// device", and what it managed to write reads back as a truncated recording (issue 13).
#[test]
fn record_onto_a_full_file_system_stops_and_the_file_reads_back_truncated() {
    assert!(
        is_root(),
        "record loads eBPF programs and this test mounts a tmpfs: run the host tests as root"
    );
    let dir = std::env::temp_dir().join(format!("gup-trace-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "gup-trace-full"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mount.success(), "cannot mount a 64 KiB tmpfs on {dir:?}");
    let file = dir.join("full.gtr");
    let path = file.to_str().unwrap();
    // mmap_lock traffic of our own, so events keep coming until 64 KiB are written.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // mmap/munmap directly: malloc soon serves 1 MiB from its heap without them.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: an anonymous mapping of our own, touched once, then unmapped.
                unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        1 << 20,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    assert_ne!(p, libc::MAP_FAILED);
                    p.cast::<u8>().write_volatile(1);
                    libc::munmap(p, 1 << 20);
                }
            }
        })
    };
    let out = gup_trace(&[
        "record",
        "-o",
        path,
        "--mmap-lock",
        "all",
        "--duration",
        "120",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    let said = host_support::text(&out);
    let report = gup_trace(&["report", path, "--json"]);
    let _ = std::process::Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(out.status.code(), Some(2), "{said}");
    let error = said
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no 'No space left on device':\n{said}"));
    assert!(
        error.contains(path),
        "the error must name the file: {error}"
    );
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap_or_else(|e| {
        panic!(
            "report printed no JSON ({e}): {}",
            host_support::text(&report)
        )
    });
    assert_eq!(json["recording"]["status"], "truncated", "{json}");
}
