//! The "what pins block" scenarios of `cargo xtask vm-test` (issue 10, item 3), one guest per
//! kernel booted with a movable zone (`movablecore=`), everything under one `gup-trace record`:
//!
//! - `longterm`: io_uring fixed-buffer registration (`gup-trace workload ring-handoff`) pins
//!   freshly faulted memory, which sits in ZONE_MOVABLE, with FOLL_LONGTERM: GUP migrates it
//!   out first. The migrations the report attaches to the pin calls must equal what the
//!   kernel's own `migrate:mm_migrate_pages` tracepoint printed through tracefs (reason
//!   longterm_pin), folio for folio and firing for firing.
//! - `offline`: `dd iflag=direct` from a scsi_debug disk whose every command takes 20 s holds
//!   its buffer pinned (FOLL_GET references on kernels whose block layer still takes them)
//!   while each online memory block of ZONE_MOVABLE is offlined under `timeout 5`. The block
//!   holding the buffer must fail, the report must name dd (pid, comm, stack) as the holder
//!   that blocked that block's pfn range, and offlining it must succeed once dd is done.
//!
//! scsi_debug and the SCSI core are modules of the kernels' image packages, taken from them
//! like vm-test's FAT modules. scsi_debug's delay is in jiffies: the kernel's CONFIG_HZ is read
//! from its config.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    kernels::Kernel,
    paths::vm_dir,
    vm::{self, Boot, find_line},
    vm_test::{SCSI_DEBUG_MODULES, package_modules},
};

/// The movable zone the guest boots with: two 128 MiB memory blocks of its 1 GiB.
///
/// `nokaslr`: with physical KASLR the kernel image (about 48 MiB, reserved pages) lands at a
/// random 2 MiB slot of RAM, and `movablecore=` does not keep ZONE_MOVABLE clear of it. About
/// one boot in three put it across the movable blocks: offlining was then refused at once
/// (EBUSY, "unmovable page" at the image's first pfn) before any pin was looked at, which
/// failed this scenario on 6.1 and 6.18. Without KASLR the image sits at 16 MiB.
const MOVABLE: &str = "movablecore=256M nokaslr";

/// How long each scsi_debug command takes: long enough for every offline attempt to happen
/// while dd's one read is in flight, short of the disk driver's 30 s command timeout.
const READ_SECONDS: u64 = 20;

const SCRIPT: &str = r#"
echo "uname: $(uname -r)"
M=/lib/modules/$(uname -r)
T=/sys/kernel/tracing
[ -d $T/events ] || mount -t tracefs tracefs $T
gup-trace record -o /tmp/rec.gtr 2>/tmp/rec.err &
R=$!
while ! grep -q "recording to" /tmp/rec.err && kill -0 $R 2>/dev/null; do sleep 0.2; done
kill -0 $R 2>/dev/null || echo "GUPTRACE-BLOCKING-ERROR record: $(tail -3 /tmp/rec.err | tr '\n' ' ')"

# FOLL_LONGTERM pins of movable memory, with the kernel's own tracepoint as the oracle.
echo 1 > $T/events/migrate/mm_migrate_pages/enable
echo > $T/trace
gup-trace workload ring-handoff --hold 0 >/dev/null 2>&1
echo 0 > $T/events/migrate/mm_migrate_pages/enable
echo "GUPTRACE-LONGTERM-TRACEFS $(awk '/reason=longterm_pin/ { n++; for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "nr_succeeded" || kv[1] == "succeeded") s += kv[2]; if (kv[1] == "nr_failed" || kv[1] == "failed") f += kv[2] } } END { print n + 0, s + 0, f + 0 }' $T/trace)"

# Memory offline blocked by an O_DIRECT read in flight.
for m in scsi_common scsi_mod sd_mod; do insmod $M/$m.ko; done
insmod $M/scsi_debug.ko dev_size_mb=8
DEV=""
for i in 1 2 3 4 5 6 7 8 9 10; do
    for b in /sys/block/sd*; do [ -b /dev/${b##*/} ] && DEV=/dev/${b##*/}; done
    [ -n "$DEV" ] && break
    sleep 1
done
echo "GUPTRACE-SCSI-DEBUG ${DEV:-none}"
# Commands are delayed only now: the disk's probing is over.
echo DELAY_JIFFIES > /sys/bus/pseudo/drivers/scsi_debug/delay
dd if=$DEV of=/dev/null iflag=direct bs=256k count=1 2>/dev/null &
D=$!
echo "GUPTRACE-DD $D"
sleep 3
echo "GUPTRACE-BLOCK-SIZE $(cat /sys/devices/system/memory/block_size_bytes)"
FAILED=""
# The kernel image and memblock's boot-time allocations stay out of the movable blocks
# (nokaslr), but the top block holds a hole (the firmware's reserved range) and is refused
# at once. Two rounds: the round stops at the first busy block.
for round in 1 2; do
[ -n "$FAILED" ] && break
for b in /sys/devices/system/memory/memory*; do
    grep -q online $b/state || continue
    grep -q Movable $b/valid_zones || continue
    n=${b##*memory}
    timeout 5 sh -c "echo offline > $b/state" 2>/tmp/offline.err; rc=$?
    kill -0 $D 2>/dev/null && dd=running || dd=done
    echo "GUPTRACE-OFFLINE $n $rc $dd $(tr '\n' ' ' </tmp/offline.err)"
    # Killed by timeout (124 or 128 + SIGTERM): the kernel was still retrying. Other
    # failures are refusals at once (a block with unmovable pages: memblock's boot-time
    # allocations at the top of memory).
    [ $rc -ge 124 ] && FAILED="$FAILED $n"
done
done
wait $D
echo "GUPTRACE-DD-DONE $?"
for n in $FAILED; do
    timeout 30 sh -c "echo offline > /sys/devices/system/memory/memory$n/state" 2>/dev/null
    echo "GUPTRACE-REOFFLINE $n $?"
done
dmesg | grep -iE "offlin|isolat|migrat|unmovable|pfn:" | tail -8
echo "GUPTRACE-KERNEL-IMAGE $(grep -i 'kernel code' /proc/iomem | tr -d ' ')"
sleep 1
kill -INT $R
wait $R
gup-trace report /tmp/rec.gtr >/tmp/report.txt 2>&1
sed -n '/^findings/,/^mmap_lock/p' /tmp/report.txt | grep -v '^mmap_lock'
sed -n '/^FOLL_LONGTERM calls/,$p' /tmp/report.txt | head -8
echo "GUPTRACE-BLOCKING-REPORT $(gup-trace report --json /tmp/rec.gtr 2>/dev/null | tr -d '\n')"
"#;

/// One kernel's results.
pub struct BlockingRow {
    pub release: String,
    pub longterm: String,
    pub offline: String,
    pub seconds: f64,
    pub failures: Vec<String>,
}

pub fn headers() -> [&'static str; 2] {
    ["longterm migrations = tracefs", "blocked offline names dd"]
}

/// Boots `kernel` with a movable zone and runs both scenarios under one recording.
pub fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> BlockingRow {
    let mut row = BlockingRow {
        release: kernel.release.clone(),
        longterm: "-".into(),
        offline: "-".into(),
        seconds: 0.0,
        failures: Vec::new(),
    };
    if let Err(e) = boot_and_judge(kernel, binary, logs, &mut row) {
        row.failures.push(format!("{e:#}"));
    }
    row
}

fn boot_and_judge(
    kernel: &Kernel,
    binary: &Path,
    logs: &Path,
    row: &mut BlockingRow,
) -> Result<()> {
    let hz = config_value(kernel, "CONFIG_HZ")?;
    let mut files = vec![(binary.to_path_buf(), "/bin/gup-trace".to_string())];
    for (name, path) in package_modules(kernel, &SCSI_DEBUG_MODULES)
        .with_context(|| format!("cannot get the SCSI modules of {}", kernel.release))?
    {
        files.push((path, format!("/lib/modules/{}/{name}.ko", kernel.release)));
    }
    let script = SCRIPT.replace("DELAY_JIFFIES", &(READ_SECONDS * hz).to_string());
    let initramfs = vm_dir().join(format!("blocking-{}.cpio.gz", kernel.release));
    vm::build_initramfs(&initramfs, &files, &script)?;
    let boot = Boot {
        cmdline: MOVABLE.to_string(),
        ..Boot::new(kernel, initramfs, Duration::from_secs(900))
    };
    let (console, log) = vm::boot_logged(kernel, &boot, logs, "blocking")?;
    row.seconds = console.wall.as_secs_f64();
    let text = &console.text;
    if let Some(why) = find_line(text, "GUPTRACE-BLOCKING-ERROR ") {
        bail!("{why} (console: {})", log.display());
    }
    let report: Value = find_line(text, "GUPTRACE-BLOCKING-REPORT ")
        .ok_or_else(|| anyhow!("no report (console: {})", log.display()))
        .and_then(|json| {
            serde_json::from_str(json)
                .map_err(|e| anyhow!("report printed no JSON ({e}): {json:.300}"))
        })?;
    match judge_longterm(find_line(text, "GUPTRACE-LONGTERM-TRACEFS "), &report) {
        Ok(cell) => row.longterm = cell,
        Err(e) => {
            row.longterm = "FAIL".into();
            row.failures.push(format!("longterm: {e:#}"));
        }
    }
    match judge_offline(text, &report) {
        Ok(cell) => row.offline = cell,
        Err(e) => {
            row.offline = "FAIL".into();
            row.failures
                .push(format!("offline: {e:#} (console: {})", log.display()));
        }
    }
    Ok(())
}

/// A numeric `NAME=value` of the kernel's config.
pub fn config_value(kernel: &Kernel, name: &str) -> Result<u64> {
    let path = kernel
        .config
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no kernel config to read {name} from", kernel.release))?;
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("{}: no {name} in {}", kernel.release, path.display()))
}

/// `<firings> <succeeded> <failed>` from tracefs against the report's long-term section.
fn judge_longterm(tracefs: Option<&str>, report: &Value) -> Result<String> {
    let counts: Vec<u64> = tracefs
        .ok_or_else(|| anyhow!("the guest printed no tracefs count"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [firings, succeeded, failed] = counts[..] else {
        bail!("tracefs count {counts:?} is not firings, succeeded, failed");
    };
    if firings == 0 {
        bail!(
            "the kernel migrated nothing for the FOLL_LONGTERM pins: the io_uring buffers were \
             not in ZONE_MOVABLE ({MOVABLE} ignored?)"
        );
    }
    let l = &report["longterm_migrations"];
    let seen = (
        l["retries"].as_u64().unwrap_or(0),
        l["migrated"].as_u64().unwrap_or(0),
        l["failed"].as_u64().unwrap_or(0),
    );
    if seen != (firings, succeeded, failed) {
        bail!(
            "gup-trace attached {} migrations ({} folios migrated, {} failed) to pin calls, the \
             tracepoint counted {firings} ({succeeded}, {failed}): {l}",
            seen.0,
            seen.1,
            seen.2
        );
    }
    Ok(format!(
        "{succeeded} in {} calls",
        l["calls"].as_u64().unwrap_or(0)
    ))
}

/// The offline attempts, dd's pid and the report's blocked-migration findings.
fn judge_offline(text: &str, report: &Value) -> Result<String> {
    let dd: u64 = find_line(text, "GUPTRACE-DD ")
        .ok_or_else(|| anyhow!("dd never started"))?
        .parse()?;
    let block_bytes = find_line(text, "GUPTRACE-BLOCK-SIZE ")
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| anyhow!("no memory block size"))?;
    let attempts: Vec<(u64, i64, &str)> = text
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("GUPTRACE-OFFLINE "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?))
        })
        .collect();
    if attempts.is_empty() {
        bail!("no online memory block in ZONE_MOVABLE to offline");
    }
    // Killed by `timeout` while the kernel retried; a refusal at once is another matter.
    let mut blocked: Vec<u64> = attempts
        .iter()
        .filter(|(_, rc, dd)| *rc >= 124 && *dd == "running")
        .map(|a| a.0)
        .collect();
    blocked.sort_unstable();
    blocked.dedup();
    let [block] = blocked[..] else {
        bail!(
            "expected exactly one movable block to keep offlining busy while dd ran, got \
             {attempts:?} (block, exit code, dd): dd's buffer was not in ZONE_MOVABLE?"
        );
    };
    let again = find_line(text, &format!("GUPTRACE-REOFFLINE {block} "));
    if again != Some("0") {
        bail!("memory{block} did not go offline once dd was done: {again:?}");
    }
    // x86-64 guests: 4 KiB pages.
    let pages = block_bytes / 4096;
    let (start, end) = (block * pages, (block + 1) * pages);
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let finding = findings
        .iter()
        .find(|f| {
            f["finding"] == "blocked_migration"
                && f["what"] == "memory_offline"
                && f["start_pfn"].as_u64() == Some(start)
                && f["end_pfn"].as_u64() == Some(end)
        })
        .ok_or_else(|| {
            anyhow!(
                "no blocked memory offline of pfn {start:#x}-{end:#x} in the report: {findings:?}"
            )
        })?;
    let holders = finding["holders"].as_array().cloned().unwrap_or_default();
    let at = holders
        .iter()
        .position(|h| h["tgid"].as_u64() == Some(dd) && h["comm"] == "dd")
        .ok_or_else(|| anyhow!("the blocked offline does not name dd (pid {dd}): {finding}"))?;
    let stack = &finding["holder_stacks"][at];
    if stack.as_array().is_none_or(Vec::is_empty) {
        bail!("dd is named without the stack that took its folios: {finding}");
    }
    if finding["outcome"].as_i64() != Some(-4) {
        bail!(
            "the interrupted offline should end with -EINTR (-4): {}",
            finding["outcome"]
        );
    }
    Ok(format!(
        "memory{block}: dd {} ({})",
        holders[at]["kind"].as_str().unwrap_or("?"),
        holders[at]["entry"].as_str().unwrap_or("?")
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn longterm_migrations_must_equal_the_tracepoints_count() {
        let report = json!({"longterm_migrations": {"calls": 2, "retries": 3, "migrated": 1088, "failed": 0}});
        assert_eq!(
            judge_longterm(Some("3 1088 0"), &report).unwrap(),
            "1088 in 2 calls"
        );
        assert!(judge_longterm(Some("3 1089 0"), &report).is_err());
        assert!(
            judge_longterm(Some("0 0 0"), &report).is_err(),
            "nothing migrated proves nothing"
        );
    }

    const CONSOLE: &str = "GUPTRACE-DD 77\nGUPTRACE-BLOCK-SIZE 8000000\nGUPTRACE-OFFLINE 6 0 running\n\
        GUPTRACE-OFFLINE 7 143 running\nGUPTRACE-OFFLINE 8 1 running\nGUPTRACE-REOFFLINE 7 0\n";

    fn offline_report(tgid: u64, outcome: i64) -> Value {
        json!({"findings": [{"finding": "blocked_migration", "what": "memory_offline",
            "start_pfn": 7 * 32768, "end_pfn": 8 * 32768, "outcome": outcome,
            "holders": [{"tgid": tgid, "comm": "dd", "kind": "pin", "entry": "pin_user_pages_fast"}],
            "holder_stacks": [["pin_user_pages_fast+0x5", "iov_iter_extract_pages+0x10"]]}]})
    }

    #[test]
    fn a_blocked_offline_must_name_dd_in_the_blocks_range() {
        assert_eq!(
            judge_offline(CONSOLE, &offline_report(77, -4)).unwrap(),
            "memory7: dd pin (pin_user_pages_fast)"
        );
        assert!(
            judge_offline(CONSOLE, &offline_report(78, -4)).is_err(),
            "another pid"
        );
        assert!(
            judge_offline(CONSOLE, &offline_report(77, 0)).is_err(),
            "not interrupted"
        );
        let never = CONSOLE.replace("GUPTRACE-REOFFLINE 7 0", "GUPTRACE-REOFFLINE 7 1");
        assert!(judge_offline(&never, &offline_report(77, -4)).is_err());
        let shifted = CONSOLE
            .replace("OFFLINE 7 143", "OFFLINE 5 143")
            .replace("REOFFLINE 7", "REOFFLINE 5");
        assert!(
            judge_offline(&shifted, &offline_report(77, -4)).is_err(),
            "another block's range"
        );
    }
}

impl crate::vm_test::ScenarioRow for BlockingRow {
    const TASK: &'static str = "vm-blocking";
    const PROGRESS: &'static str = "what pins block";
    const WHAT: &'static str = "the blocking scenarios";
    fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> BlockingRow {
        run(kernel, binary, logs)
    }
    fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
    fn print_table(rows: &[BlockingRow]) {
        print_table(rows)
    }
}

pub fn print_table(rows: &[BlockingRow]) {
    let [a, b] = headers();
    println!("\n{:<28} {a:>34} {b:>42} seconds  verdict", "kernel");
    for r in rows {
        println!(
            "{:<28} {:>34} {:>42} {:>7.1}  {}",
            r.release,
            r.longterm,
            r.offline,
            r.seconds,
            if r.failures.is_empty() {
                "pass"
            } else {
                "FAIL"
            }
        );
        for f in &r.failures {
            println!("    {f}");
        }
    }
}
