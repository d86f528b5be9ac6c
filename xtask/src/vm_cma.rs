//! The CMA scenario of `cargo xtask vm-test` (issue 10, item 3): a CMA allocation blocked by a
//! short-term pin names its holder. Its own guest: 2 GiB booted with `hugetlb_cma=1G` (and
//! `hugetlb_cma_only=1`, so that a gigantic page comes from the CMA area or not at all), on
//! kernels built with CMA; the others print why they skip it (no cma tracepoints in tracefs).
//!
//! Under one `gup-trace record`: one 1 GiB gigantic page is allocated and freed (the area
//! works); `dd iflag=direct` from a scsi_debug disk whose every command takes 20 s holds its
//! buffer pinned (movable user memory: the page allocator hands out free CMA pages to it);
//! allocating the gigantic page again must fail (the kernel's own
//! /sys/kernel/mm/cma/<area>/alloc_pages_fail grows), the report must name dd (pid, comm,
//! stack) as the holder of folios in the busy range of a "CMA allocation (<area>)", and the
//! allocation must succeed once dd is done.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    kernels::Kernel,
    paths::vm_dir,
    vm::{self, Boot, find_line},
    vm_test::package_modules,
};

const SCSI_MODULES: [&str; 4] = ["scsi_common", "scsi_mod", "sd_mod", "scsi_debug"];

/// A 1 GiB area: exactly one gigantic page, so any pinned page in it blocks the allocation.
const CMDLINE: &str = "hugetlb_cma=1G hugetlb_cma_only=1";
/// The area needs a free 1 GiB-aligned GiB when it is reserved at boot: QEMU puts the first
/// 3 GiB of a guest this big below 4 GiB (with the kernel, the initramfs and the firmware
/// tables in them) and the rest at 4 GiB, whose top the kernel's early allocations take.
/// 2 and 4 GiB guests print "cma: Failed to reserve 1024 MiB".
const MEMORY_MB: u64 = 5120;
/// Memory outside the area left free by the filler: room for what the allocation migrates
/// out of the area.
const FILL_LEFT_MB: u64 = 300;
const READ_SECONDS: u64 = 20;

const SCRIPT: &str = r#"
echo "uname: $(uname -r)"
M=/lib/modules/$(uname -r)
T=/sys/kernel/tracing
[ -d $T/events ] || mount -t tracefs tracefs $T
if [ ! -d $T/events/cma ]; then
    echo "GUPTRACE-CMA-SKIP no cma tracepoints in tracefs (kernel without CONFIG_CMA)"
    exit 0
fi
A=$(ls /sys/kernel/mm/cma 2>/dev/null | head -1)
H=/sys/kernel/mm/hugepages/hugepages-1048576kB
if [ -z "$A" ] || [ ! -d $H ]; then
    cat /proc/cmdline; ls /sys/kernel/mm/cma /sys/kernel/mm/hugepages; grep -o -w pdpe1gb /proc/cpuinfo | head -1
    dmesg | grep -i -E "cma|hugetlb" | head
    echo "GUPTRACE-CMA-SKIP no CMA area or no 1 GiB pages (hugetlb_cma= ignored?)"
    exit 0
fi
C=/sys/kernel/mm/cma/$A
dmesg | grep -i cma | sed 's/^/dmesg: /'
grep -i cma /proc/meminfo
echo "GUPTRACE-CMA-AREA $A $(cat $C/total_pages 2>/dev/null)"
counts() { echo "$(cat $C/alloc_pages_success) $(cat $C/alloc_pages_fail)"; }
gup-trace record -o /tmp/rec.gtr 2>/tmp/rec.err &
R=$!
while ! grep -q "recording to" /tmp/rec.err && kill -0 $R 2>/dev/null; do sleep 0.2; done
kill -0 $R 2>/dev/null || echo "GUPTRACE-CMA-ERROR record: $(tail -3 /tmp/rec.err | tr '\n' ' ')"
grep -i cma /tmp/rec.err | sed 's/^/capabilities: /'
echo "GUPTRACE-CMA-BEFORE $(cat $H/nr_hugepages) $(counts)"
echo 1 > $H/nr_hugepages
echo "GUPTRACE-CMA-FREE-ALLOC $(cat $H/nr_hugepages) $(counts)"
# While the gigantic page holds the whole area, fill the rest of memory with a tmpfs file but
# FILL_LEFT_MB; once it is freed, the area is most of the free memory, and the page allocator
# serves movable allocations (dd's buffer) from it.
FILL=$(( $(awk '/MemFree/ { print $2 }' /proc/meminfo) / 1024 - FILL_LEFT_MB ))
mkdir -p /fill
mount -t tmpfs -o size=${FILL}m tmpfs /fill
dd if=/dev/zero of=/fill/f bs=1M count=$FILL 2>/dev/null
echo "GUPTRACE-CMA-FILLED $FILL"
echo 0 > $H/nr_hugepages

for m in scsi_common scsi_mod sd_mod; do insmod $M/$m.ko; done
insmod $M/scsi_debug.ko dev_size_mb=16
DEV=""
for i in 1 2 3 4 5 6 7 8 9 10; do
    for b in /sys/block/sd*; do [ -b /dev/${b##*/} ] && DEV=/dev/${b##*/}; done
    [ -n "$DEV" ] && break
    sleep 1
done
echo "GUPTRACE-SCSI-DEBUG ${DEV:-none}"
grep -E "MemFree|CmaFree" /proc/meminfo
echo DELAY_JIFFIES > /sys/bus/pseudo/drivers/scsi_debug/delay
# 8 MiB: the first pages come from the per-CPU lists (filled before, outside the area), the
# rest from the buddy lists, which serve movable allocations from the area now.
dd if=$DEV of=/dev/null iflag=direct bs=8M count=1 2>/dev/null &
D=$!
echo "GUPTRACE-DD $D"
sleep 3
echo 1 > $H/nr_hugepages
kill -0 $D 2>/dev/null && dd=running || dd=done
echo "GUPTRACE-CMA-PINNED-ALLOC $(cat $H/nr_hugepages) $(counts) $dd"
echo 0 > $H/nr_hugepages
wait $D
echo "GUPTRACE-DD-DONE $?"
echo 1 > $H/nr_hugepages
echo "GUPTRACE-CMA-AFTER-ALLOC $(cat $H/nr_hugepages) $(counts)"
echo 0 > $H/nr_hugepages
sleep 1
kill -INT $R
wait $R
gup-trace report /tmp/rec.gtr >/tmp/report.txt 2>&1
sed -n '/^findings/,/^mmap_lock/p' /tmp/report.txt | grep -v '^mmap_lock'
echo "GUPTRACE-CMA-REPORT $(gup-trace report --json /tmp/rec.gtr 2>/dev/null | tr -d '\n')"
"#;

/// One kernel's result: the cell of the table, or why it failed.
pub struct CmaRow {
    pub release: String,
    pub cell: String,
    pub seconds: f64,
    pub failure: Option<String>,
}

pub fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> CmaRow {
    let mut row = CmaRow {
        release: kernel.release.clone(),
        cell: "-".into(),
        seconds: 0.0,
        failure: None,
    };
    match boot_and_judge(kernel, binary, logs, &mut row) {
        Ok(cell) => row.cell = cell,
        Err(e) => {
            row.cell = "FAIL".into();
            row.failure = Some(format!("{e:#}"));
        }
    }
    row
}

fn boot_and_judge(kernel: &Kernel, binary: &Path, logs: &Path, row: &mut CmaRow) -> Result<String> {
    let hz = crate::vm_blocking::config_value(kernel, "CONFIG_HZ")?;
    let mut files = vec![(binary.to_path_buf(), "/bin/gup-trace".to_string())];
    for (name, path) in package_modules(kernel, &SCSI_MODULES)
        .with_context(|| format!("cannot get the SCSI modules of {}", kernel.release))?
    {
        files.push((path, format!("/lib/modules/{}/{name}.ko", kernel.release)));
    }
    let script = SCRIPT
        .replace("DELAY_JIFFIES", &(READ_SECONDS * hz).to_string())
        .replace("FILL_LEFT_MB", &FILL_LEFT_MB.to_string());
    let initramfs = vm_dir().join(format!("cma-{}.cpio.gz", kernel.release));
    vm::build_initramfs(&initramfs, &files, &script)?;
    let boot = Boot {
        cmdline: CMDLINE.to_string(),
        memory_mb: MEMORY_MB,
        // Writing the 3.4 GiB filler under TCG takes about 5 minutes on an idle host.
        ..Boot::new(kernel, initramfs, Duration::from_secs(900))
    };
    let (console, log) = vm::boot_logged(kernel, &boot, logs, "cma")?;
    row.seconds = console.wall.as_secs_f64();
    judge(&console.text).with_context(|| format!("console: {}", log.display()))
}

/// `<nr_hugepages> <alloc_pages_success> <alloc_pages_fail>` after one allocation attempt.
fn counts(text: &str, tag: &str) -> Result<[u64; 3]> {
    let line = find_line(text, tag).ok_or_else(|| anyhow!("the guest printed no {tag}"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{tag}{line}"))?;
    n.try_into()
        .map_err(|n| anyhow!("{tag}: three counts expected, got {n:?}"))
}

/// The oracles (nr_hugepages and the area's own counters) and the report's finding.
pub fn judge(text: &str) -> Result<String> {
    if let Some(why) = find_line(text, "GUPTRACE-CMA-SKIP ") {
        return Ok(format!("skip: {why}"));
    }
    if let Some(why) = find_line(text, "GUPTRACE-CMA-ERROR ") {
        bail!("{why}");
    }
    let area = find_line(text, "GUPTRACE-CMA-AREA ")
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| anyhow!("no CMA area named"))?;
    let before = counts(text, "GUPTRACE-CMA-BEFORE ")?;
    let free = counts(text, "GUPTRACE-CMA-FREE-ALLOC ")?;
    if free[0] != 1 || free[1] <= before[1] {
        bail!(
            "the area could not give a gigantic page even without dd: nr_hugepages {}, \
             alloc_pages_success {} -> {}",
            free[0],
            before[1],
            free[1]
        );
    }
    let pinned = counts(text, "GUPTRACE-CMA-PINNED-ALLOC ")?;
    if pinned[0] != 0 || pinned[2] <= free[2] {
        bail!(
            "the allocation during dd's read was not blocked: nr_hugepages {}, \
             alloc_pages_fail {} -> {} (dd's buffer not in the CMA area?)",
            pinned[0],
            free[2],
            pinned[2]
        );
    }
    let after = counts(text, "GUPTRACE-CMA-AFTER-ALLOC ")?;
    if after[0] != 1 {
        bail!("the allocation failed after dd was done too: {after:?}");
    }
    let dd: u64 = find_line(text, "GUPTRACE-DD ")
        .ok_or_else(|| anyhow!("dd never started"))?
        .parse()?;
    let report: Value = find_line(text, "GUPTRACE-CMA-REPORT ")
        .ok_or_else(|| anyhow!("no report"))
        .and_then(|json| {
            serde_json::from_str(json)
                .map_err(|e| anyhow!("report printed no JSON ({e}): {json:.300}"))
        })?;
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let finding = findings
        .iter()
        .find(|f| {
            f["finding"] == "blocked_migration"
                && f["what"] == "cma_allocation"
                && f["area"] == area
        })
        .ok_or_else(|| {
            anyhow!("no blocked CMA allocation of {area} in the report: {findings:?}")
        })?;
    let (start, end) = (
        finding["start_pfn"].as_u64().unwrap_or(0),
        finding["end_pfn"].as_u64().unwrap_or(0),
    );
    let holders = finding["holders"].as_array().cloned().unwrap_or_default();
    let at = holders
        .iter()
        .position(|h| h["tgid"].as_u64() == Some(dd) && h["comm"] == "dd")
        .ok_or_else(|| {
            anyhow!("the blocked CMA allocation does not name dd (pid {dd}): {finding}")
        })?;
    if finding["holder_stacks"][at]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        bail!("dd is named without the stack that took its folios: {finding}");
    }
    let pfns: Vec<u64> = holders[at]["examples"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["pfn"].as_u64())
        .collect();
    if pfns.is_empty() || pfns.iter().any(|&p| p < start || p >= end) {
        bail!("dd's folios {pfns:x?} are not all in the busy range {start:#x}-{end:#x}");
    }
    Ok(format!(
        "{area} pfn {start:#x}-{end:#x}: dd {} ({})",
        holders[at]["kind"].as_str().unwrap_or("?"),
        holders[at]["entry"].as_str().unwrap_or("?")
    ))
}

impl crate::vm_test::ScenarioRow for CmaRow {
    const TASK: &'static str = "vm-cma";
    const PROGRESS: &'static str = "CMA allocation blocked by a pin";
    const WHAT: &'static str = "the CMA scenario";
    fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> CmaRow {
        run(kernel, binary, logs)
    }
    fn failed(&self) -> bool {
        self.failure.is_some()
    }
    fn print_table(rows: &[CmaRow]) {
        print_table(rows)
    }
}

pub fn print_table(rows: &[CmaRow]) {
    println!(
        "\n{:<28} {:>60} seconds  verdict",
        "kernel", "CMA allocation blocked by dd names it"
    );
    for r in rows {
        println!(
            "{:<28} {:>60} {:>7.1}  {}",
            r.release,
            r.cell,
            r.seconds,
            if r.failure.is_none() { "pass" } else { "FAIL" }
        );
        if let Some(f) = &r.failure {
            println!("    {f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the 7.3.4 guest printed (trimmed to what `judge` reads).
    fn console(pinned_alloc: &str, holder_pfn: u64) -> String {
        let report = json!({"findings": [{
            "finding": "blocked_migration", "what": "cma_allocation", "area": "hugetlb0",
            "start_pfn": 0x100000, "end_pfn": 0x140000, "outcome": -16,
            "holders": [{"tgid": 1124, "comm": "dd", "kind": "pin",
                "entry": "pin_user_pages_fast", "examples": [{"pfn": holder_pfn}]}],
            "holder_stacks": [["iov_iter_extract_pages+0xff"]],
        }]});
        format!(
            "GUPTRACE-CMA-AREA hugetlb0 262144\nGUPTRACE-CMA-BEFORE 0 0 0\n\
             GUPTRACE-CMA-FREE-ALLOC 1 262144 0\nGUPTRACE-DD 1124\n\
             GUPTRACE-CMA-PINNED-ALLOC {pinned_alloc} running\n\
             GUPTRACE-CMA-AFTER-ALLOC 1 524288 262144\nGUPTRACE-CMA-REPORT {report}\n"
        )
    }

    #[test]
    fn the_blocked_allocation_must_name_dd_inside_the_busy_range() {
        assert_eq!(
            judge(&console("0 262144 262144", 0x13fbe0)).unwrap(),
            "hugetlb0 pfn 0x100000-0x140000: dd pin (pin_user_pages_fast)"
        );
        // dd's folio outside the range the kernel found busy: not the one that blocked it.
        assert!(judge(&console("0 262144 262144", 0x0fffff)).is_err());
        // The area's own counter says the allocation did not fail while dd ran.
        assert!(judge(&console("1 524288 0", 0x13fbe0)).is_err());
        let skipped = "GUPTRACE-CMA-SKIP no cma tracepoints in tracefs\n";
        assert!(judge(skipped).unwrap().starts_with("skip: "));
    }
}
