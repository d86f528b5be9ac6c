//! The session scenarios of `cargo xtask vm-test` (issue 12's guest check, issue 13 item 3):
//! several gup-trace sessions at once, a tracer killed with SIGKILL, and a ring buffer too
//! small for the event rate, in one guest per kernel (the oldest and the newest of the matrix
//! in vm-test; `cargo xtask vm-sessions` runs them on any kernel). What must happen:
//!
//! - `serve = vmstat = record`: `gup-trace serve` and `record` run while `check` runs the
//!   selftest workload (and a second check waits for its turn); /metrics is scraped before and after. The pins and releases
//!   serve counted over that window equal the kernel's nr_foll_pin_acquired/released deltas
//!   (serve's own copy of /proc/vmstat, read at the same scrapes) and the totals of the
//!   recording, which equal /proc/vmstat over its own window.
//! - `check with 3 others`: the check of that workload (four sessions at once) exits 0 and
//!   counts the same pins and releases; neither it, serve nor record lost an event.
//! - `orphan -> findings`: a process exits while its io_uring fixed-buffer pins live on in a
//!   child (`workload ring-handoff`): serve's `gup_trace_findings_total{kind="orphaned pins"}`
//!   goes up.
//! - `SIGKILL leaves nothing`: `serve`, programs attached and running for minutes, is killed
//!   with SIGKILL (its session is the one `trace` and `record` open, the same programs, maps
//!   and links); the kernel's own view (bpftool's program, map and link lists, bpf file descriptors in
//!   /proc/*/fd, /sys/fs/bpf) returns to what it was before any session started.
//! - `lost -> verdict 2`: `check --ring-buffer-kib 4` (the smallest) over three rounds of the
//!   workload loses events; it must say so and exit 2 (gup-trace could not tell), never 1,
//!   and present no finding as a problem (a leak it cannot be sure of).
//!
//! All four sessions load their programs at once, at the start (loading is most of the time
//! under TCG: 322 s for five sessions on 6.1 with the host busy); each check's command waits
//! for its turn.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    kernels::Kernel,
    paths::vm_dir,
    vm::{self, Boot, find_line},
    vm_check,
};

const SCRIPT: &str = r#"
echo "uname: $(uname -r)"
ip link set lo up
# Programs, maps and links the kernel holds, bpf file descriptors of any process, and
# files pinned in bpffs.
bpf_objects() {
    echo "$(bpftool prog show | grep -cE '^[0-9]+: ') $(bpftool map show | grep -cE '^[0-9]+: ') \
$(bpftool link show | grep -cE '^[0-9]+: ') $(ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c 'anon_inode:bpf') \
$(find /sys/fs/bpf -mindepth 1 | wc -l)"
}
BEFORE=$(bpf_objects)
echo "GUPTRACE-BPF-BEFORE $BEFORE"
# Waits until file $1 says $2 or process $3 is gone; fails if it is gone.
ready() {
    while ! grep -q "$2" $1 && kill -0 $3 2>/dev/null; do sleep 0.5; done
    kill -0 $3 2>/dev/null || { echo "GUPTRACE-SESSIONS-ERROR $1: $(tail -3 $1 | tr '\n' ' ')"; return 1; }
}
scrape() {
    wget -q -O /tmp/metrics http://127.0.0.1:9808/metrics || echo "GUPTRACE-SESSIONS-ERROR scrape $1 failed"
    grep -E '^gup_trace_(pins_pages|releases_pages|kernel_foll_pin_acquired|kernel_foll_pin_released|lost_events|findings)_total' /tmp/metrics | sed "s/^/GUPTRACE-SCRAPE $1 /"
}
# Every session loads its programs at once (loading is most of a guest's time under TCG): the
# two checks run a command that says it started (so their programs are attached) and waits
# for its turn.
gated() { echo "touch /tmp/ready-$1; while [ ! -e /tmp/go-$1 ]; do sleep 0.2; done; exec $2"; }
gup-trace serve --listen 127.0.0.1:9808 2>/tmp/serve.err &
S=$!
gup-trace record -o /tmp/rec.gtr 2>/tmp/rec.err &
R=$!
gup-trace check --json -- sh -c "$(gated check 'gup-trace workload --device /dev/nvme0n1')" >/tmp/check.out 2>/tmp/check.err &
C=$!
gup-trace check --ring-buffer-kib 4 -- sh -c "$(gated lost 'gup-trace workload --device /dev/nvme0n1 --rounds 3')" >/tmp/lost.out 2>/tmp/lost.err &
L=$!
ready /tmp/serve.err "metrics on" $S && ready /tmp/rec.err "recording to" $R
while [ ! -e /tmp/ready-check ] && kill -0 $C 2>/dev/null; do sleep 0.5; done
while [ ! -e /tmp/ready-lost ] && kill -0 $L 2>/dev/null; do sleep 0.5; done
echo "GUPTRACE-LOADED four sessions $(cut -d' ' -f1 /proc/uptime) s after boot"
scrape before
touch /tmp/go-check
wait $C
echo "GUPTRACE-SESSIONS-CHECK $? $(tail -n 1 /tmp/check.out)"
# io_uring's teardown releases in a worker; serve takes events in every 100 ms.
sleep 2
scrape after
kill -INT $R
wait $R
echo "GUPTRACE-SESSIONS-REPORT $(gup-trace report --json /tmp/rec.gtr 2>&1 | tr -d '\n')"

scrape orphan_before
gup-trace workload ring-handoff --hold 10 >/dev/null
# Past serve's grace period (2 s) the holder's parent is long gone.
sleep 6
scrape orphan_after
sleep 5

touch /tmp/go-lost
wait $L
echo "GUPTRACE-LOST-CHECK $?"
# The verdict as a person reads it: the findings' heading, what stands before it, the summary.
grep -E '^(UNCERTAIN|findings|gup-trace check)' /tmp/lost.out | sed 's/^/GUPTRACE-LOST-OUT /'
tail -3 /tmp/lost.err

if kill -0 $S 2>/dev/null; then
    echo "GUPTRACE-BPF-ATTACHED $(bpf_objects)"
    kill -KILL $S
    wait $S 2>/dev/null
    # A program or map goes when its last reference does, after an RCU grace period.
    for i in $(seq 50); do [ "$(bpf_objects)" = "$BEFORE" ] && break; sleep 0.2; done
    echo "GUPTRACE-BPF-AFTER $(bpf_objects)"
    bpftool prog show; bpftool map show; bpftool link show; ls -R /sys/fs/bpf
else
    echo "GUPTRACE-SESSIONS-ERROR serve was not running before SIGKILL"
fi
"#;

/// The table's columns, one per scenario.
const COLUMNS: [&str; 5] = [
    "serve = vmstat = record",
    "check with 3 others",
    "orphan -> findings",
    "SIGKILL leaves nothing",
    "lost -> verdict 2",
];

/// One kernel's result.
pub struct SessionsRow {
    pub release: String,
    /// A cell per [`COLUMNS`] entry.
    pub cells: Vec<String>,
    pub seconds: f64,
    pub failures: Vec<String>,
}

pub fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> SessionsRow {
    let mut row = SessionsRow {
        release: kernel.release.clone(),
        cells: vec!["-".into(); COLUMNS.len()],
        seconds: 0.0,
        failures: Vec::new(),
    };
    let bpftool = Path::new("/usr/sbin/bpftool");
    let files = vec![
        (binary.to_path_buf(), "/bin/gup-trace".to_string()),
        (bpftool.to_path_buf(), "/usr/sbin/bpftool".to_string()),
    ];
    let initramfs = vm_dir().join(format!("sessions-{}.cpio.gz", kernel.release));
    if let Err(e) = vm::build_initramfs(&initramfs, &files, SCRIPT) {
        row.failures.push(format!(
            "{e:#} (bpftool comes from Debian's bpftool package: cargo xtask setup)"
        ));
        return row;
    }
    // Four sessions load their programs at once: minutes under TCG.
    let boot = Boot::new(kernel, initramfs, Duration::from_secs(1200));
    let (console, log) = match vm::boot_logged(kernel, &boot, logs, "sessions") {
        Ok(c) => c,
        Err(e) => {
            row.failures.push(format!("{e:#}"));
            return row;
        }
    };
    row.seconds = console.wall.as_secs_f64();
    let text = &console.text;
    if let Some(e) = find_line(text, "GUPTRACE-SESSIONS-ERROR ") {
        row.failures.push(format!("the guest says: {e}"));
    }
    let judged: [Result<String>; 5] = [
        judge_agreement(text),
        judge_check(text),
        judge_orphan(text),
        judge_sigkill(text),
        judge_lost(text),
    ];
    for (i, result) in judged.into_iter().enumerate() {
        match result {
            Ok(cell) => row.cells[i] = cell,
            Err(e) => {
                row.cells[i] = "FAIL".into();
                row.failures.push(format!(
                    "{}: {e:#} (console: {})",
                    COLUMNS[i],
                    log.display()
                ));
            }
        }
    }
    row
}

/// The metrics of one scrape: each series (name and labels) and its value.
fn scrape(text: &str, tag: &str) -> Result<HashMap<String, f64>> {
    let prefix = format!("GUPTRACE-SCRAPE {tag} ");
    let series: HashMap<String, f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (name, value) = l.trim_end().rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    if series.is_empty() {
        bail!("the {tag} scrape of /metrics has no gup_trace counter");
    }
    Ok(series)
}

/// The sum of the series of `metric` (whatever their labels) in a scrape.
fn total(series: &HashMap<String, f64>, metric: &str) -> u64 {
    series
        .iter()
        .filter(|(name, _)| {
            name.strip_prefix(metric)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, v)| *v as u64)
        .sum()
}

/// How much `metric` grew between two scrapes.
fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, metric: &str) -> u64 {
    total(after, metric).saturating_sub(total(before, metric))
}

/// `<exit code> <check --json>` of the check that ran with the others.
fn check_verdict(text: &str, tag: &str) -> Result<(i64, Value)> {
    let line = find_line(text, tag).ok_or_else(|| anyhow!("the check never ran"))?;
    let (code, json) = line.split_once(' ').unwrap_or((line, ""));
    let code: i64 = code.parse()?;
    let v: Value = serde_json::from_str(json).map_err(|e| {
        anyhow!("check exited {code} and printed no JSON verdict ({e}): {json:.300}")
    })?;
    Ok((code, v))
}

/// Serve's pins and releases over the check's window equal the kernel's counters over the
/// same scrapes and the recording's totals.
fn judge_agreement(text: &str) -> Result<String> {
    let (before, after) = (scrape(text, "before")?, scrape(text, "after")?);
    let pins = delta(&before, &after, "gup_trace_pins_pages_total");
    let releases = delta(&before, &after, "gup_trace_releases_pages_total");
    let acquired = delta(&before, &after, "gup_trace_kernel_foll_pin_acquired_total");
    let released = delta(&before, &after, "gup_trace_kernel_foll_pin_released_total");
    let lost = delta(&before, &after, "gup_trace_lost_events_total");
    let report = find_line(text, "GUPTRACE-SESSIONS-REPORT ")
        .ok_or_else(|| anyhow!("record's report never ran"))?;
    let (recorded_pins, recorded_releases) =
        vm_check::recorded_totals(report).context("record, run with serve and check")?;
    if lost > 0 {
        bail!("serve lost {lost} events");
    }
    if (pins, releases) != (acquired, released)
        || (pins, releases) != (recorded_pins, recorded_releases)
    {
        bail!(
            "pins/releases: serve {pins}/{releases}, the kernel (nr_foll_pin_acquired/released) \
             {acquired}/{released}, record {recorded_pins}/{recorded_releases}"
        );
    }
    if pins == 0 {
        bail!("serve saw no pin: the workload ran outside the scrapes?");
    }
    Ok(format!("{pins}/{releases} all three"))
}

/// The check that ran beside serve, record and the other check: clean, nothing lost, the same totals.
fn judge_check(text: &str) -> Result<String> {
    let (code, v) = check_verdict(text, "GUPTRACE-SESSIONS-CHECK ")?;
    let (before, after) = (scrape(text, "before")?, scrape(text, "after")?);
    let acquired = delta(&before, &after, "gup_trace_kernel_foll_pin_acquired_total");
    let released = delta(&before, &after, "gup_trace_kernel_foll_pin_released_total");
    let (taken, freed, lost) = (
        v["pins_taken"].as_u64(),
        v["pins_released"].as_u64(),
        v["lost_events"].as_u64(),
    );
    if code != 0 || v["verdict"].as_i64() != Some(0) {
        bail!("exit {code}, verdict {}: {}", v["verdict"], v["findings"]);
    }
    if lost != Some(0) {
        bail!("check lost {lost:?} events");
    }
    if (taken, freed) != (Some(acquired), Some(released)) {
        bail!("check counted {taken:?}/{freed:?} pins/releases, the kernel {acquired}/{released}");
    }
    Ok(format!("0 ok, {acquired}/{released}, 0 lost"))
}

/// Serve's orphaned-pins counter went up over the ring hand-off.
fn judge_orphan(text: &str) -> Result<String> {
    let metric = r#"gup_trace_findings_total{kind="orphaned pins"}"#;
    let (before, after) = (
        scrape(text, "orphan_before")?,
        scrape(text, "orphan_after")?,
    );
    let value = |s: &HashMap<String, f64>| s.get(metric).copied().unwrap_or(0.0) as u64;
    let (was, is) = (value(&before), value(&after));
    if is <= was {
        let findings: Vec<_> = after
            .keys()
            .filter(|k| k.starts_with("gup_trace_findings_total"))
            .collect();
        bail!("{metric} stayed at {was} (findings series after: {findings:?})");
    }
    Ok(format!("orphaned {was} -> {is}"))
}

/// `<programs> <maps> <links> <bpf fds> <bpffs files>` at a moment of the guest.
fn bpf_objects(text: &str, tag: &str) -> Result<[u64; 5]> {
    let line = find_line(text, tag).ok_or_else(|| anyhow!("the guest printed no {tag}"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{tag}{line}"))?;
    n.try_into()
        .map_err(|n| anyhow!("{tag}: five counts expected, got {n:?}"))
}

/// After SIGKILL, the kernel holds what it held before any session: nothing of gup-trace.
fn judge_sigkill(text: &str) -> Result<String> {
    let before = bpf_objects(text, "GUPTRACE-BPF-BEFORE ")?;
    let attached = bpf_objects(text, "GUPTRACE-BPF-ATTACHED ")?;
    let after = bpf_objects(text, "GUPTRACE-BPF-AFTER ")?;
    if attached[0] <= before[0] || attached[1] <= before[1] {
        bail!("no program or map was loaded before SIGKILL: {before:?} then {attached:?}");
    }
    if after != before {
        bail!(
            "left behind (programs, maps, links, bpf fds, bpffs files): {after:?}, before any \
             session {before:?}"
        );
    }
    Ok(format!(
        "{} progs, {} maps, {} links -> {}/{}/{}",
        attached[0], attached[1], attached[2], after[0], after[1], after[2]
    ))
}

/// A ring buffer too small: check's text says how many events were lost, puts any finding
/// under UNCERTAIN (a release it never saw looks like a leak), and exits 2 (could not tell),
/// not 1.
fn judge_lost(text: &str) -> Result<String> {
    let code: i64 = find_line(text, "GUPTRACE-LOST-CHECK ")
        .ok_or_else(|| anyhow!("the check never ran"))?
        .parse()?;
    let out: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("GUPTRACE-LOST-OUT "))
        .map(str::trim_end)
        .collect();
    let summary = out
        .iter()
        .find(|l| l.starts_with("gup-trace check: "))
        .ok_or_else(|| anyhow!("check (exit {code}) printed no summary: {out:?}"))?;
    // "...; 7217 events LOST (raise --ring-buffer-kib): ..."
    let lost: u64 = summary
        .split_once(" events LOST")
        .and_then(|(head, _)| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    if lost == 0 {
        bail!("no event lost with a 4 KiB ring buffer: the scenario proves nothing ({summary})");
    }
    let at = out
        .iter()
        .position(|l| l.starts_with("findings: "))
        .ok_or_else(|| anyhow!("check printed no findings line: {out:?}"))?;
    let certain = !out[at].starts_with("findings: none")
        && (at == 0 || !out[at - 1].starts_with("UNCERTAIN: "));
    if code != 2 || certain {
        bail!(
            "{lost} events lost, yet exit {code}{}: {}",
            if certain {
                " and findings presented as certain"
            } else {
                ""
            },
            out.join(" | ")
        );
    }
    Ok(format!(
        "2 ({lost} lost{})",
        if out[at].starts_with("findings: none") {
            ", no finding"
        } else {
            ", UNCERTAIN"
        }
    ))
}

impl crate::vm_test::ScenarioRow for SessionsRow {
    const TASK: &'static str = "vm-sessions";
    const PROGRESS: &'static str = "serve, record and two checks at once, SIGKILL, lost events";
    const WHAT: &'static str = "the session scenarios";
    fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> SessionsRow {
        run(kernel, binary, logs)
    }
    fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
    fn print_table(rows: &[SessionsRow]) {
        print_table(rows)
    }
}

/// The table (vm-test runs the scenarios on its oldest and newest kernel only), then what
/// failed.
pub fn print_table(rows: &[SessionsRow]) {
    crate::vm_test::print_cell_table(
        "sessions (oldest, newest)",
        &COLUMNS,
        rows.iter().map(|r| crate::vm_test::CellRow {
            release: &r.release,
            cells: r.cells.iter().map(String::as_str).collect(),
            seconds: r.seconds,
            passed: r.failures.is_empty(),
        }),
    );
    for r in rows {
        for f in &r.failures {
            println!("    {}: {f}", r.release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console as the 7.3.4 guest prints it, trimmed to what the judges read.
    const CONSOLE: &str = r#"GUPTRACE-BPF-BEFORE 0 0 0 0 0
GUPTRACE-SCRAPE before gup_trace_pins_pages_total{entry="pin_user_pages_fast"} 10
GUPTRACE-SCRAPE before gup_trace_releases_pages_total{entry="pin_user_pages_fast"} 10
GUPTRACE-SCRAPE before gup_trace_kernel_foll_pin_acquired_total 5000
GUPTRACE-SCRAPE before gup_trace_kernel_foll_pin_released_total 4990
GUPTRACE-SCRAPE before gup_trace_lost_events_total 0
GUPTRACE-SESSIONS-CHECK 0 {"verdict":0,"pins_taken":3392,"pins_released":3392,"lost_events":0,"findings":[]}
GUPTRACE-SCRAPE after gup_trace_pins_pages_total{entry="pin_user_pages_fast"} 2058
GUPTRACE-SCRAPE after gup_trace_pins_pages_total{entry="io_uring_register"} 1344
GUPTRACE-SCRAPE after gup_trace_releases_pages_total{entry="pin_user_pages_fast"} 3402
GUPTRACE-SCRAPE after gup_trace_kernel_foll_pin_acquired_total 8392
GUPTRACE-SCRAPE after gup_trace_kernel_foll_pin_released_total 8382
GUPTRACE-SCRAPE after gup_trace_lost_events_total 0
GUPTRACE-SESSIONS-REPORT {"recording":{"status":"complete","lost_events":0,"pinned":3392,"released":3392,"vmstat":{"acquired":3392,"released":3392}}}
GUPTRACE-SCRAPE orphan_before gup_trace_lost_events_total 0
GUPTRACE-SCRAPE orphan_after gup_trace_findings_total{kind="orphaned pins"} 1
GUPTRACE-BPF-ATTACHED 120 30 90 150 0
GUPTRACE-BPF-AFTER 0 0 0 0 0
GUPTRACE-LOST-CHECK 2
GUPTRACE-LOST-OUT UNCERTAIN: 811 events were lost (the ring buffer filled; raise --ring-buffer-kib): the findings below may be releases gup-trace never saw, not leaks
GUPTRACE-LOST-OUT findings: 2 (2 in the traced programs, 0 about gup-trace's own view)
GUPTRACE-LOST-OUT gup-trace check: `sh -c ...` exited with status 0 after 9.1 s; 11 processes traced, 6525 pages pinned, 6175 released, 350 still pinned; 811 events LOST (raise --ring-buffer-kib): the verdict cannot be trusted
"#;

    #[test]
    fn every_scenario_passes_on_a_good_console() {
        assert_eq!(judge_agreement(CONSOLE).unwrap(), "3392/3392 all three");
        assert_eq!(judge_check(CONSOLE).unwrap(), "0 ok, 3392/3392, 0 lost");
        assert_eq!(judge_orphan(CONSOLE).unwrap(), "orphaned 0 -> 1");
        assert_eq!(
            judge_sigkill(CONSOLE).unwrap(),
            "120 progs, 30 maps, 90 links -> 0/0/0"
        );
        assert_eq!(judge_lost(CONSOLE).unwrap(), "2 (811 lost, UNCERTAIN)");
    }

    #[test]
    fn serve_must_agree_with_the_kernel_and_the_recording() {
        // A pin serve missed.
        let missed = CONSOLE.replace(
            r#"after gup_trace_pins_pages_total{entry="io_uring_register"} 1344"#,
            r#"after gup_trace_pins_pages_total{entry="io_uring_register"} 1343"#,
        );
        assert!(judge_agreement(&missed).is_err());
        // The recording disagrees.
        let recorded = CONSOLE.replace(
            r#""pinned":3392,"released":3392,"vmstat":{"acquired":3392"#,
            r#""pinned":3000,"released":3392,"vmstat":{"acquired":3000"#,
        );
        assert!(judge_agreement(&recorded).is_err());
        let lost = CONSOLE.replace(
            "after gup_trace_lost_events_total 0",
            "after gup_trace_lost_events_total 3",
        );
        assert!(judge_agreement(&lost).is_err());
        // The check counted fewer releases than the kernel made.
        let check = CONSOLE.replace(r#""pins_released":3392"#, r#""pins_released":3391"#);
        assert!(judge_check(&check).is_err());
    }

    #[test]
    fn orphans_must_move_the_counter() {
        let still = CONSOLE.replace(
            r#"{kind="orphaned pins"} 1"#,
            r#"{kind="unbalanced release"} 1"#,
        );
        assert!(judge_orphan(&still).is_err());
    }

    #[test]
    fn a_pinned_map_or_an_open_fd_left_after_sigkill_fails() {
        let pinned = CONSOLE.replace("AFTER 0 0 0 0 0", "AFTER 0 1 0 0 1");
        let err = judge_sigkill(&pinned).unwrap_err().to_string();
        assert!(err.contains("left behind"), "{err}");
        let never_loaded = CONSOLE.replace("ATTACHED 120 30 90 150 0", "ATTACHED 0 0 0 0 0");
        assert!(judge_sigkill(&never_loaded).is_err());
    }

    #[test]
    fn lost_events_must_give_verdict_two_and_uncertain_findings() {
        let leak = CONSOLE.replace("GUPTRACE-LOST-CHECK 2", "GUPTRACE-LOST-CHECK 1");
        assert!(judge_lost(&leak).is_err());
        let none_lost = CONSOLE.replace("; 811 events LOST", "");
        assert!(judge_lost(&none_lost).is_err());
        // Verdict 2, but the findings are printed as if they were leaks.
        let certain: String = CONSOLE
            .lines()
            .filter(|l| !l.starts_with("GUPTRACE-LOST-OUT UNCERTAIN"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = judge_lost(&certain).unwrap_err().to_string();
        assert!(err.contains("presented as certain"), "{err}");
        let clean = certain.replace(
            "findings: 2 (2 in the traced programs, 0 about gup-trace's own view)",
            "findings: none (every pin taken was released, counts agree)",
        );
        assert_eq!(judge_lost(&clean).unwrap(), "2 (811 lost, no finding)");
    }
}
