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
//! - `long held released`: dd reads one block with O_DIRECT from a scsi_debug disk that
//!   answers after ~12 s: its short-term pin is held that long, then released; `check
//!   --long-pin 5` exits 1 with a long-held finding naming dd and the hold time. Skipped
//!   where O_DIRECT takes FOLL_GET references instead of pins (nr_foll_pin_acquired does not
//!   move over an O_DIRECT read), which the guest measures first.
//! - `remote keep` (kernels the pinleak module builds for): a kworker pins the caller's pages
//!   with pin_user_pages_remote on its mm and keeps them: exit 1, orphaned pins owned by
//!   pinleak-user and taken by the kworker.
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
    vm_test,
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
    scenario remote_keep gup-trace check --json -- pinleak-user remote-keep 64
    pinleak-user release >/dev/null
else
    echo "GUPTRACE-NOMODULE"
fi
long_held_released() {
    M=/lib/modules/$(uname -r)
    for m in scsi_common scsi_mod sd_mod; do [ -f $M/$m.ko ] && insmod $M/$m.ko; done
    if ! insmod $M/scsi_debug.ko dev_size_mb=8 delay=0; then
        echo "GUPTRACE-SKIP long_held_released: scsi_debug does not load"; return
    fi
    D=""
    for i in $(seq 100); do
        D=$(ls /sys/bus/pseudo/drivers/scsi_debug/adapter0/host*/target*/*/block 2>/dev/null | head -n 1)
        [ -n "$D" ] && [ -b /dev/$D ] && break
        sleep 0.1
    done
    if [ -z "$D" ]; then echo "GUPTRACE-SKIP long_held_released: no scsi_debug disk appeared"; return; fi
    # Does O_DIRECT pin here? The kernel's own counter over a fast read of 1024 pages says
    # (per-CPU deltas reach /proc/vmstat in batches: one page could stay unseen for a while).
    before=$(awk '$1 == "nr_foll_pin_acquired" {print $2}' /proc/vmstat)
    dd if=/dev/$D of=/dev/null iflag=direct bs=1M count=4 2>/dev/null
    sleep 1
    after=$(awk '$1 == "nr_foll_pin_acquired" {print $2}' /proc/vmstat)
    if [ "$after" = "$before" ]; then
        echo "GUPTRACE-SKIP long_held_released: an O_DIRECT read of 1024 pages took no pin (nr_foll_pin_acquired stayed $before): this kernel's O_DIRECT takes FOLL_GET references"
        return
    fi
    echo @DELAY_JIFFIES@ > /sys/bus/pseudo/drivers/scsi_debug/delay
    scenario long_held_released gup-trace check --json --long-pin 5 -- dd if=/dev/$D of=/dev/null iflag=direct bs=4096 count=1
    echo 0 > /sys/bus/pseudo/drivers/scsi_debug/delay
}
long_held_released
gup-trace record -o /tmp/rec.gtr 2>/tmp/rec.err &
R=$!
while ! grep -q "recording to" /tmp/rec.err && kill -0 $R 2>/dev/null; do sleep 0.2; done
gup-trace workload --device /dev/nvme0n1 >/dev/null
kill -INT $R
wait $R
echo "GUPTRACE-REPORT $(gup-trace report --json /tmp/rec.gtr 2>&1 | tr -d '\n')"
"#;

/// How long scsi_debug delays the read of `long_held_released`: beyond its `--long-pin 5`.
const SLOW_DISK_SECONDS: u64 = 12;

/// What one scenario must end with.
struct Expected {
    name: &'static str,
    exit: i64,
    /// A function the stack of the orphaned pins must name.
    stack_function: Option<&'static str>,
    /// Which finding proves it (for exit 1).
    proof: Proof,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// Orphaned pins, at least 64 pages.
    Orphaned,
    /// Orphaned pins owned by pinleak-user, taken by a kworker.
    RemoteOrphaned,
    /// A long-held short-term pin, released, by dd, held at least 5 s.
    LongHeldReleased,
}

const SCENARIOS: [Expected; 7] = [
    Expected {
        name: "clean",
        exit: 0,
        stack_function: None,
        proof: Proof::Orphaned,
    },
    Expected {
        name: "handoff_held",
        exit: 1,
        stack_function: None,
        proof: Proof::Orphaned,
    },
    Expected {
        name: "handoff_closed",
        exit: 0,
        stack_function: None,
        proof: Proof::Orphaned,
    },
    Expected {
        name: "module_keep",
        exit: 1,
        stack_function: Some("pinleak_pin_and_keep"),
        proof: Proof::Orphaned,
    },
    Expected {
        name: "module_put_page",
        exit: 1,
        stack_function: Some("pinleak_pin_then_put_page"),
        proof: Proof::Orphaned,
    },
    Expected {
        name: "remote_keep",
        exit: 1,
        stack_function: Some("pinleak_remote_pin_and_keep"),
        proof: Proof::RemoteOrphaned,
    },
    Expected {
        name: "long_held_released",
        exit: 1,
        stack_function: None,
        proof: Proof::LongHeldReleased,
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
    match vm_test::package_modules(kernel, &vm_test::SCSI_DEBUG_MODULES) {
        Ok(modules) => files.extend(
            modules
                .into_iter()
                .map(|(name, path)| (path, format!("/lib/modules/{}/{name}.ko", kernel.release))),
        ),
        Err(e) => println!(
            "vm-test: {}: no scsi_debug module ({}): long_held_released is skipped",
            kernel.release,
            first_line(&format!("{e:#}"))
        ),
    }
    let script = match kernel_hz(kernel) {
        Ok(hz) => SCRIPT.replace("@DELAY_JIFFIES@", &(SLOW_DISK_SECONDS * hz).to_string()),
        Err(e) => {
            println!(
                "vm-test: {}: {e:#}: long_held_released is skipped",
                kernel.release
            );
            SCRIPT.replace(
                "long_held_released\n",
                "echo 'GUPTRACE-SKIP long_held_released: no CONFIG_HZ'\n",
            )
        }
    };
    let initramfs = vm_dir().join(format!("check-{}.cpio.gz", kernel.release));
    if let Err(e) = vm::build_initramfs(&initramfs, &files, &script) {
        row.failures.push(format!("{e:#}"));
        return row;
    }
    // Seven sessions load the programs, a minute each on 6.1 under TCG.
    let boot = Boot::new(kernel, initramfs, Duration::from_secs(1500));
    let (console, log) = match vm::boot_logged(kernel, &boot, logs, "check") {
        Ok(c) => c,
        Err(e) => {
            row.failures.push(format!("{e:#}"));
            return row;
        }
    };
    row.seconds = console.wall.as_secs_f64();
    for (i, expected) in SCENARIOS.iter().enumerate() {
        let module = expected.name.starts_with("module") || expected.name == "remote_keep";
        if let Some(why) = find_line(&console.text, &format!("GUPTRACE-SKIP {}: ", expected.name)) {
            println!(
                "vm-test: {}: {} skipped: {why}",
                kernel.release, expected.name
            );
            row.cells[i] = "skip".into();
            continue;
        }
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

/// The kernel's tick rate (CONFIG_HZ), which scsi_debug's `delay` counts in.
fn kernel_hz(kernel: &Kernel) -> Result<u64> {
    let path = kernel
        .config
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the kernel's .config is not known"))?;
    let config = fs::read_to_string(path)?;
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{} has no CONFIG_HZ", path.display()))
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
    if expected.proof == Proof::LongHeldReleased {
        return judge_long_held(&findings);
    }
    let mut orphaned: Vec<&Value> = findings
        .iter()
        .filter(|f| f["finding"] == "orphaned_pins")
        .collect();
    if expected.proof == Proof::RemoteOrphaned {
        // The pins are pinleak-user's memory, taken by the worker: only those count.
        orphaned.retain(|f| {
            f["comm"] == "pinleak-user"
                && f["taken_by"]["comm"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("kworker"))
        });
        if orphaned.is_empty() {
            bail!("no orphaned pins owned by pinleak-user and taken by a kworker: {findings:?}");
        }
    }
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

/// A released long-held short-term pin of dd, held at least the `--long-pin` of 5 s.
fn judge_long_held(findings: &[Value]) -> Result<String> {
    let held = findings.iter().find(|f| {
        f["finding"] == "long_held_pin"
            && f["released"] == true
            && f["comm"] == "dd"
            && f["held_ns"].as_u64().is_some_and(|ns| ns >= 5_000_000_000)
    });
    match held {
        Some(f) => Ok(format!(
            "1 ok (dd held {:.1} s)",
            f["held_ns"].as_u64().unwrap_or(0) as f64 / 1e9
        )),
        None => bail!("no released long-held pin of dd held >= 5 s: {findings:?}"),
    }
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
    let (pinned, released) = recorded_totals(json)?;
    Ok(format!("{pinned}/{released} = vmstat"))
}

/// The pages pinned and released in a recording of the selftest workload, from `report
/// --json`: the recording must be complete, without lost events, hold the workload's pins (over
/// 1024 pages), and its totals must equal /proc/vmstat's over the recording.
pub fn recorded_totals(json: &str) -> Result<(u64, u64)> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("report printed no JSON ({e}): {json:.300}"))?;
    let r = &v["recording"];
    if r["status"] != "complete" {
        bail!("recording status {}", r["status"]);
    }
    if r["lost_events"].as_u64().is_some_and(|n| n > 0) {
        bail!("the recording lost {} events", r["lost_events"]);
    }
    let (pinned, released) = (r["pinned"].as_u64(), r["released"].as_u64());
    let (acquired, freed) = (
        r["vmstat"]["acquired"].as_u64(),
        r["vmstat"]["released"].as_u64(),
    );
    let (Some(p), Some(rel)) = (pinned, released) else {
        bail!("report has no pinned/released totals: {json:.300}");
    };
    if pinned != acquired || released != freed {
        bail!("report says {p} pinned / {rel} released, vmstat {acquired:?} / {freed:?}");
    }
    if p < 1024 {
        bail!("only {p} pins recorded: the workload pins over 3000");
    }
    Ok((p, rel))
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
    fn a_remote_orphan_must_be_owned_by_the_caller_and_taken_by_a_kworker() {
        let remote = &SCENARIOS[5];
        let line = r#"1 {"verdict":1,"pins_taken":64,"pins_released":0,"pins_outstanding":64,"lost_events":0,"findings":[{"finding":"orphaned_pins","comm":"pinleak-user","taken_by":{"tgid":40,"comm":"kworker/0:1"},"pages":64,"stack":["pin_user_pages_remote+0x5","pinleak_remote_pin_and_keep+0x70 [pinleak]"]}]}"#;
        assert_eq!(
            judge(remote, line).unwrap(),
            "1 ok (64 p, pinleak_remote_pin_and_keep)"
        );
        // Credited to the worker itself (what a tracer without owners says): not enough.
        let by_worker = line.replace(
            r#""comm":"pinleak-user","taken_by":{"tgid":40,"comm":"kworker/0:1"}"#,
            r#""comm":"kworker/0:1""#,
        );
        assert!(judge(remote, &by_worker).is_err());
    }

    #[test]
    fn a_long_held_release_must_name_dd_and_a_hold_over_five_seconds() {
        let long = &SCENARIOS[6];
        let line = r#"1 {"verdict":1,"pins_taken":1,"pins_released":1,"pins_outstanding":0,"lost_events":0,"findings":[{"finding":"long_held_pin","comm":"dd","released":true,"held_ns":12004000000,"pages":1}]}"#;
        assert_eq!(judge(long, line).unwrap(), "1 ok (dd held 12.0 s)");
        let short = line.replace("12004000000", "4000000000");
        assert!(judge(long, &short).is_err());
        let still_held = line.replace(r#""released":true"#, r#""released":false"#);
        assert!(judge(long, &still_held).is_err());
        let passed = line.replace(r#"1 {"verdict":1"#, r#"0 {"verdict":0"#);
        assert!(judge(long, &passed).is_err(), "check must exit 1");
    }

    #[test]
    fn a_report_must_agree_with_vmstat() {
        let ok = r#"{"recording":{"status":"complete","pinned":3392,"released":3392,"vmstat":{"acquired":3392,"released":3392}}}"#;
        assert_eq!(judge_report(ok).unwrap(), "3392/3392 = vmstat");
        let off = ok.replace("\"released\":3392,\"vmstat", "\"released\":3000,\"vmstat");
        assert!(judge_report(&off).is_err());
    }
}
