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
