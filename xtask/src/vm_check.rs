//! The leak scenarios of `cargo xtask vm-test`: `gup-trace check` over programs that leak pins
//! and programs that do not, and `record` then `report` of the clean workload, each kernel in
//! a guest of its own. What must happen:
//!
//! - `clean`: the selftest workload under check exits 0 with no finding.
//! - `handoff held`: an io_uring's fixed-buffer pins outlive the process that took them (the
//!   ring goes to a child that keeps it past the grace period): exit 1, orphaned pins.
//! - `handoff closed`: the same, but the child closes the ring at once: exit 0.
//! - `module keep` / `module put_page` (kernels the pinleak module builds for): a driver pins
//!   pages and never unpins them, or drops them with put_page: exit 1, orphaned pins, and the
//!   module's function named in the kernel stack that took them.
//! - `record/report`: a recording of the workload reads back with the pin totals of
//!   /proc/vmstat over the same time.

use std::{fs, path::Path, time::Duration};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::{
    kernels::Kernel,
    kmod,
    paths::vm_dir,
    vm::{self, Boot, find_line},
};

const SCRIPT: &str = r#"
echo "uname: $(uname -r)"
scenario() {
    name=$1; shift
    "$@" >/tmp/out 2>/tmp/err; code=$?
    # The command's own output comes first; check's JSON verdict is the last line.
    echo "GUPTRACE-CHECK $name $code $(tail -n 1 /tmp/out)"
    if [ $code -eq 2 ]; then tail -5 /tmp/err; fi
}
scenario clean gup-trace check --json -- gup-trace workload --device /dev/nvme0n1
scenario handoff_held gup-trace check --json --grace 2 -- gup-trace workload ring-handoff --hold 8
sleep 8
scenario handoff_closed gup-trace check --json --grace 2 -- gup-trace workload ring-handoff --hold 0
if [ -f /root/pinleak.ko ] && insmod /root/pinleak.ko; then
    scenario module_keep gup-trace check --json -- pinleak-user keep 64
    scenario module_put_page gup-trace check --json -- pinleak-user put-page 64
    pinleak-user release >/dev/null
else
    echo "GUPTRACE-NOMODULE"
fi
gup-trace record -o /tmp/rec.gtr 2>/tmp/rec.err &
R=$!
while ! grep -q "recording to" /tmp/rec.err && kill -0 $R 2>/dev/null; do sleep 0.2; done
gup-trace workload --device /dev/nvme0n1 >/dev/null
kill -INT $R
wait $R
echo "GUPTRACE-REPORT $(gup-trace report --json /tmp/rec.gtr 2>&1 | tr -d '\n')"
"#;

/// What one scenario must end with.
struct Expected {
    name: &'static str,
    exit: i64,
    /// A function the stack of the orphaned pins must name.
    stack_function: Option<&'static str>,
}

const SCENARIOS: [Expected; 5] = [
    Expected {
        name: "clean",
        exit: 0,
        stack_function: None,
    },
    Expected {
        name: "handoff_held",
        exit: 1,
        stack_function: None,
    },
    Expected {
        name: "handoff_closed",
        exit: 0,
        stack_function: None,
    },
    Expected {
        name: "module_keep",
        exit: 1,
        stack_function: Some("pinleak_pin_and_keep"),
    },
    Expected {
        name: "module_put_page",
        exit: 1,
        stack_function: Some("pinleak_pin_then_put_page"),
    },
];

/// One kernel's results: a cell per scenario, the record/report cell, and what failed.
pub struct CheckRow {
    pub release: String,
    pub cells: Vec<String>,
    pub report: String,
    /// Whether the module scenarios ran (the module builds for this kernel).
    pub module: bool,
    /// Why not, when it is the one accepted reason: the kernel's headers are not to be had.
    pub no_headers: bool,
    pub seconds: f64,
    pub failures: Vec<String>,
}

pub fn headers() -> Vec<String> {
    SCENARIOS
        .iter()
        .map(|s| s.name.replace('_', " "))
        .chain(["record/report".to_string()])
        .collect()
}

/// Boots `kernel` with gup-trace (and the pinleak module where it builds) and runs the
/// scenarios.
pub fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> CheckRow {
    let mut row = CheckRow {
        release: kernel.release.clone(),
        cells: vec!["-".into(); SCENARIOS.len()],
        report: "-".into(),
        module: false,
        no_headers: false,
        seconds: 0.0,
        failures: Vec::new(),
    };
    let mut files = vec![(binary.to_path_buf(), "/bin/gup-trace".to_string())];
    match kmod::guest_files(kernel) {
        Ok(extra) => {
            files.extend(extra);
            row.module = true;
        }
        Err(e) => {
            row.no_headers = kmod::NoHeaders::is_cause_of(&e);
            println!(
                "vm-test: {}: no pinleak module ({}): its scenarios are skipped",
                kernel.release,
                first_line(&format!("{e:#}"))
            )
        }
    }
    let initramfs = vm_dir().join(format!("check-{}.cpio.gz", kernel.release));
    if let Err(e) = vm::build_initramfs(&initramfs, &files, SCRIPT) {
        row.failures.push(format!("{e:#}"));
        return row;
    }
    // Seven sessions load the programs, a minute each on 6.1 under TCG.
    let console = match vm::boot(&Boot::new(kernel, initramfs, Duration::from_secs(1500))) {
        Ok(c) => c,
        Err(e) => {
            row.failures.push(format!("{e:#}"));
            return row;
        }
    };
    row.seconds = console.wall.as_secs_f64();
    let log = logs.join(format!("{}-check.log", kernel.release));
    let _ = fs::write(&log, &console.text);
    if let Err(e) = console.ran(kernel) {
        row.failures.push(format!("{e:#}"));
        return row;
    }
    for (i, expected) in SCENARIOS.iter().enumerate() {
        let module = expected.name.starts_with("module");
        let line = find_line(&console.text, &format!("GUPTRACE-CHECK {} ", expected.name));
        match (line, module && !row.module) {
            (None, true) => row.cells[i] = "n/a".into(),
            (None, false) => row.failures.push(format!(
                "{}: the guest never ran it (console: {})",
                expected.name,
                log.display()
            )),
            (Some(line), _) => match judge(expected, line) {
                Ok(cell) => row.cells[i] = cell,
                Err(e) => {
                    row.cells[i] = "FAIL".into();
                    row.failures.push(format!("{}: {e:#}", expected.name));
                }
            },
        }
    }
    match find_line(&console.text, "GUPTRACE-REPORT ").map(judge_report) {
        Some(Ok(cell)) => row.report = cell,
        Some(Err(e)) => {
            row.report = "FAIL".into();
            row.failures.push(format!("record/report: {e:#}"));
        }
        None => row.failures.push(format!(
            "record/report never ran (console: {})",
            log.display()
        )),
    }
    row
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// `<exit code> <check --json>` against what the scenario must give; the table cell.
fn judge(expected: &Expected, line: &str) -> Result<String> {
    let (code, json) = line.split_once(' ').unwrap_or((line, ""));
    let code: i64 = code.parse()?;
    let v: Value = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("check printed no JSON verdict ({e}): {json:.300}"))?;
    if code != expected.exit || v["verdict"].as_i64() != Some(expected.exit) {
        bail!(
            "exit {code}, expected {}: {}",
            expected.exit,
            summary(&v).unwrap_or_else(|| json.chars().take(600).collect())
        );
    }
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    if expected.exit == 0 {
        return Ok(format!("0 ok ({} pins)", v["pins_taken"]));
    }
    let orphaned: Vec<&Value> = findings
        .iter()
        .filter(|f| f["finding"] == "orphaned_pins")
        .collect();
    let pages: u64 = orphaned.iter().filter_map(|f| f["pages"].as_u64()).sum();
    if pages < 64 {
        bail!("{pages} orphaned pages, expected at least the 64 left behind: {findings:?}");
    }
    if let Some(function) = expected.stack_function {
        let named = orphaned.iter().any(|f| {
            f["stack"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|fr| fr.as_str().is_some_and(|fr| fr.contains(function)))
            })
        });
        if !named {
            bail!("no orphaned-pins stack names {function}: {orphaned:?}");
        }
        return Ok(format!("1 ok ({pages} p, {function})"));
    }
    Ok(format!("1 ok ({pages} orphaned)"))
}

fn summary(v: &Value) -> Option<String> {
    Some(format!(
        "pins taken {} released {} outstanding {}, lost {}, findings {}",
        v.get("pins_taken")?,
        v.get("pins_released")?,
        v.get("pins_outstanding")?,
        v.get("lost_events")?,
        v.get("findings")?
    ))
}

/// The report of the recorded workload: complete, and its pin totals equal /proc/vmstat's.
fn judge_report(json: &str) -> Result<String> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("report printed no JSON ({e}): {json:.300}"))?;
    let r = &v["recording"];
    if r["status"] != "complete" {
        bail!("recording status {}", r["status"]);
    }
    let (pinned, released) = (r["pinned"].as_u64(), r["released"].as_u64());
    let (acquired, freed) = (
        r["vmstat"]["acquired"].as_u64(),
        r["vmstat"]["released"].as_u64(),
    );
    if pinned.is_none() || pinned != acquired || released != freed {
        bail!(
            "report says {pinned:?} pinned / {released:?} released, vmstat {acquired:?} / {freed:?}"
        );
    }
    if pinned < Some(1024) {
        bail!("only {pinned:?} pins recorded: the workload pins over 3000");
    }
    Ok(format!(
        "{}/{} = vmstat",
        pinned.unwrap_or(0),
        released.unwrap_or(0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_must_name_the_modules_function() {
        let line = r#"1 {"verdict":1,"pins_taken":64,"pins_released":0,"pins_outstanding":64,"lost_events":0,"findings":[{"finding":"orphaned_pins","pages":64,"stack":["pin_user_pages_fast+0x5","pinleak_pin_and_keep+0x70 [pinleak]"]}]}"#;
        assert_eq!(
            judge(&SCENARIOS[3], line).unwrap(),
            "1 ok (64 p, pinleak_pin_and_keep)"
        );
        let err = judge(&SCENARIOS[4], line).unwrap_err();
        assert!(
            format!("{err}").contains("pinleak_pin_then_put_page"),
            "{err}"
        );
        assert!(
            judge(&SCENARIOS[0], line).is_err(),
            "a leak fails the clean scenario"
        );
    }

    #[test]
    fn a_report_must_agree_with_vmstat() {
        let ok = r#"{"recording":{"status":"complete","pinned":3392,"released":3392,"vmstat":{"acquired":3392,"released":3392}}}"#;
        assert_eq!(judge_report(ok).unwrap(), "3392/3392 = vmstat");
        let off = ok.replace("\"released\":3392,\"vmstat", "\"released\":3000,\"vmstat");
        assert!(judge_report(&off).is_err());
    }
}
