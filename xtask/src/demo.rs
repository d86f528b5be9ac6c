//! `cargo xtask demo`: gup-trace's main job, live, on a machine whose own kernel cannot hook
//! GUP: boots a stock kernel under QEMU and runs `gup-trace trace --stacks` over the selftest
//! workload, the guest console streamed to this terminal: each GUP call with the kernel stack
//! that made it; then `gup-trace check` catching io_uring pins that outlive their process.
//!
//! `cargo xtask demo --tui`: the same guest runs the `top` dashboard instead, headless (the
//! guest has no terminal: `top --capture` renders its screens into text), over the workload
//! and then a leak: an io_uring whose fixed-buffer pins outlive the process that registered
//! them (`workload ring-handoff --hold 30`), and with `--kmod` the pinleak module keeping pins
//! a process took. Every frame shows on the console as it is drawn; the frames worth reading
//! (the busiest, the first with a finding, the last, the help) come back whole, every screen
//! at 80x24 and 120x40, and are saved under target/demo-tui/ and checked.

use std::{collections::BTreeMap, fs, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{
    build,
    files::create_dir,
    kernels, kmod,
    paths::{target_dir, vm_dir},
    series::KernelSeries,
    vm::{self, Boot, Console, VERDICT_PREFIX},
};

/// `cargo xtask demo`'s flags.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub kernel: KernelSeries,
    /// Run the `top` dashboard (headless, its screens captured as text) over the workload
    /// and a leak, instead of `trace`; the captures go to target/demo-tui/ and are checked.
    #[arg(long)]
    pub tui: bool,
    /// With --tui: also load the pinleak test module and leak pins through it (kernels
    /// it builds for: see `cargo xtask kmod`).
    #[arg(long, requires = "tui")]
    pub kmod: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    if opts.tui {
        run_tui(&opts.kernel.series, opts.kmod)
    } else {
        run_trace(&opts.kernel.series)
    }
}

/// What tells the guests of the two demos apart.
struct Guest<'a> {
    /// How the demo names itself in what it prints: "demo" or "demo --tui".
    name: &'static str,
    /// The initramfs's file name under target/vm.
    image: &'static str,
    script: &'a str,
    /// Also put the pinleak module and its driver in the guest.
    kmod: bool,
    timeout: Duration,
}

/// Boots the kernel of `series` with gup-trace (and, if asked, the pinleak module) and the
/// demo's script in its initramfs, the guest console streamed to this terminal: what both
/// demos share.
fn boot(series: &str, guest: &Guest) -> Result<Console> {
    let binary = build::gup_trace_release()?;
    let kernel = kernels::resolve_one(series)?;
    let mut files = vec![(binary, "/bin/gup-trace".to_string())];
    if guest.kmod {
        files.extend(kmod::guest_files(&kernel).context(
            "--kmod: the pinleak module does not build for this kernel (`cargo xtask kmod`)",
        )?);
    }
    let initramfs = vm_dir().join(guest.image);
    vm::build_initramfs(&initramfs, &files, guest.script)?;
    println!(
        "{}: booting {} under QEMU (TCG); the guest console follows",
        guest.name, kernel.release
    );
    vm::boot(&Boot {
        echo: true,
        ..Boot::new(&kernel, initramfs, guest.timeout)
    })
}

/// The trace runs in the background and shows on the console as it happens; the workload runs
/// once it is ready; SIGTERM then ends the trace cleanly, with its summary.
const DEMO_SCRIPT: &str = r#"
echo
echo "=== gup-trace demo on Linux $(uname -r) ==="
# The file exists before tail opens it (the shell creates it only in the trace's child).
: > /tmp/trace.out
gup-trace trace --stacks >> /tmp/trace.out 2>&1 &
TRACE=$!
tail -f /tmp/trace.out &
TAIL=$!
while ! grep -q "tracing until stopped" /tmp/trace.out; do
    kill -0 $TRACE 2>/dev/null || break
    sleep 0.2
done
echo "=== running the pin workload: O_DIRECT read, io_uring fixed buffers, process_vm_readv ==="
gup-trace workload --device /dev/nvme0n1 > /tmp/workload.out 2>&1
sleep 1
kill -TERM $TRACE
wait $TRACE
STATUS=$?
# busybox tail -f looks at the file once a second: let it show the summary before it goes.
sleep 2
kill $TAIL
echo "=== workload ==="
cat /tmp/workload.out
echo
echo "=== gup-trace check over a program whose io_uring pins outlive it (exit 1: a leak) ==="
gup-trace check -- gup-trace workload ring-handoff --hold 8
CHECK=$?
echo "=== check exited with $CHECK ==="
echo "GUPTRACE-RESULT trace-exit=$STATUS check-exit=$CHECK"
"#;

/// `cargo xtask demo`: `trace --stacks` over the workload, then `check` over a leak.
pub fn run_trace(series: &str) -> Result<()> {
    let console = boot(
        series,
        &Guest {
            name: "demo",
            image: "demo.cpio.gz",
            script: DEMO_SCRIPT,
            kmod: false,
            timeout: Duration::from_secs(600),
        },
    )?;
    match console.find(VERDICT_PREFIX) {
        Some("trace-exit=0 check-exit=1") => {}
        other => bail!("the demo did not finish cleanly ({other:?})"),
    }
    if !console.text.contains("summary over") {
        bail!("the trace's summary never reached the console: nothing to compare with vmstat");
    }
    let (differ, unexplained) = summary_marks(&console.text);
    if !differ.is_empty() {
        bail!(
            "the trace's per-folio totals differ from /proc/vmstat:\n{}",
            differ.join("\n")
        );
    }
    for line in &unexplained {
        println!("demo: warning: a per-call total differs for no reason the summary knows: {line}");
    }
    println!("demo: done in {:.1} s", console.wall.as_secs_f64());
    Ok(())
}

/// The summary lines of the trace that fail the demo (a per-folio total that differs from
/// vmstat: gup-trace missed or invented pins) and those it only warns about (a per-call total
/// whose difference the per-folio counts do not explain).
fn summary_marks(console: &str) -> (Vec<&str>, Vec<&str>) {
    let lines = || console.lines().map(str::trim_end);
    (
        lines().filter(|l| l.ends_with("  DIFFER")).collect(),
        lines().filter(|l| l.contains("  UNEXPLAINED: ")).collect(),
    )
}

/// `top` captures its screens while the workload and the leak run. The leak: ring-handoff's
/// parent registers io_uring buffers (FOLL_LONGTERM pins) and exits at once, its child holds
/// the ring 30 s: the pins are orphaned once the parent is gone + 2 s grace, and released when
/// the child exits. With the module (KMOD=1), pinleak-user then pins 64 pages that the module
/// keeps: orphaned for good.
const TUI_SCRIPT: &str = r#"
echo
echo "=== gup-trace top (headless capture) on Linux $(uname -r) ==="
gup-trace top --capture /tmp/cap --interval 1000 --size 80x24 --size 120x40 > /tmp/top.out 2>/tmp/top.err &
TOP=$!
while ! grep -q "capturing to" /tmp/top.err; do
    kill -0 $TOP 2>/dev/null || break
    sleep 0.5
done
cat /tmp/top.err
tail -f /tmp/top.out &
TAIL=$!
sleep 3
echo "=== running the pin workload: O_DIRECT read, io_uring fixed buffers, process_vm_readv ==="
gup-trace workload --device /dev/nvme0n1 > /tmp/workload.out 2>&1
sleep 3
echo "=== a leak: gup-trace workload ring-handoff --hold 30 ==="
gup-trace workload ring-handoff --hold 30
sleep 36
if [ "$KMOD" = 1 ] && insmod /root/pinleak.ko; then
    echo "=== a leak: pinleak-user keep 64 (the module keeps the pins) ==="
    pinleak-user keep 64 --longterm
    sleep 6
fi
kill -TERM $TOP
wait $TOP
STATUS=$?
sleep 0.5
kill $TAIL
echo "=== workload ==="
cat /tmp/workload.out
for f in help busiest first-finding last; do
    echo "GUPTRACE-CAPTURE-BEGIN $f"
    cat /tmp/cap/$f.txt
    echo "GUPTRACE-CAPTURE-END $f"
done
echo "GUPTRACE-RESULT top-exit=$STATUS"
"#;

/// `cargo xtask demo --tui`: the `top` dashboard captured over the workload and a leak.
pub fn run_tui(series: &str, with_kmod: bool) -> Result<()> {
    let console = boot(
        series,
        &Guest {
            name: "demo --tui",
            image: "demo-tui.cpio.gz",
            script: &format!("KMOD={}\n{TUI_SCRIPT}", u8::from(with_kmod)),
            kmod: with_kmod,
            timeout: Duration::from_secs(900),
        },
    )?;
    let out = target_dir().join("demo-tui");
    create_dir(&out)?;
    fs::write(out.join("console.log"), &console.text)?;
    let captures = captures(&console.text);
    for (name, text) in &captures {
        fs::write(out.join(format!("{name}.txt")), text)?;
    }
    match console.find(VERDICT_PREFIX) {
        Some("top-exit=0") => {}
        other => bail!(
            "top did not finish cleanly ({other:?}); console: {}",
            out.join("console.log").display()
        ),
    }
    let failures = judge(&captures, with_kmod);
    if !failures.is_empty() {
        bail!(
            "the captures in {} do not show what they must:\n  {}",
            out.display(),
            failures.join("\n  ")
        );
    }
    println!(
        "demo --tui: done in {:.1} s; the screens are in {}",
        console.wall.as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The captures the guest printed between GUPTRACE-CAPTURE-BEGIN/END lines, by name.
fn captures(console: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in console.lines() {
        if let Some(name) = line.strip_prefix("GUPTRACE-CAPTURE-BEGIN ") {
            current = Some((name.trim().to_string(), String::new()));
        } else if line.starts_with("GUPTRACE-CAPTURE-END ") {
            if let Some((name, text)) = current.take() {
                found.insert(name, text);
            }
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    found
}

/// The screens of capture `name` titled `screen` (e.g. "overview 80x24").
fn screen<'a>(captures: &'a BTreeMap<String, String>, name: &str, screen: &str) -> Option<&'a str> {
    let text = captures.get(name)?;
    let start = text
        .lines()
        .position(|l| l.starts_with("=== ") && l.ends_with(&format!("{screen} ===")))?;
    let body: usize = text.lines().take(start + 1).map(|l| l.len() + 1).sum();
    let rest = &text[body..];
    let end = rest.find("\n=== ").map_or(rest.len(), |i| i + 1);
    Some(&rest[..end])
}

/// Whether screen `which` of capture `name` shows every needle; what is missing goes to
/// `failures`.
fn expect(
    captures: &BTreeMap<String, String>,
    failures: &mut Vec<String>,
    name: &str,
    which: &str,
    needles: &[&str],
) {
    match screen(captures, name, which) {
        None => failures.push(format!("{name}: no {which} screen")),
        Some(text) => {
            for needle in needles {
                if !text.contains(needle) {
                    failures.push(format!("{name}, {which}: no {needle:?}"));
                }
            }
        }
    }
}

/// What the captures must show; the failures, if any.
fn judge(captures: &BTreeMap<String, String>, with_kmod: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let f = &mut failures;
    expect(
        captures,
        f,
        "help",
        "help 80x24",
        &["keys (any key closes)", "quit"],
    );
    // The workload: pins taken by gup-trace's own workload threads, no event lost.
    expect(
        captures,
        f,
        "busiest",
        "overview 80x24",
        &[
            "processes",
            "gup-trace",
            "lost events: 0",
            "pinned pages by age",
        ],
    );
    // The leak: the findings panel lights up with the orphaned io_uring pins, and the
    // drill-downs show the evidence and the folios.
    expect(
        captures,
        f,
        "first-finding",
        "overview 80x24",
        &["FINDINGS: ", "ORPHANED pid", "(LONGTERM)"],
    );
    expect(
        captures,
        f,
        "first-finding",
        "finding 120x40",
        &[
            "evidence:",
            "ORPHANED PINS: pid",
            "kernel stack that took them:",
            "io_",
        ],
    );
    expect(
        captures,
        f,
        "first-finding",
        "overview 120x40",
        &["call sites", "RELEASED"],
    );
    // The process the finding is about, drilled into.
    let process = captures.get("first-finding").and_then(|t| {
        t.lines()
            .find(|l| l.contains(": process ") && l.ends_with(" 80x24 ==="))
            .and_then(|l| l.split(": ").nth(1))
            .map(|l| l.trim_end_matches(" ===").to_string())
    });
    match process {
        Some(title) => expect(
            captures,
            f,
            "first-finding",
            &title,
            &["pinned folios (", "LONGTERM", "exited"],
        ),
        None => f.push("first-finding: no process screen".into()),
    }
    if with_kmod {
        expect(
            captures,
            f,
            "last",
            "overview 80x24",
            &["FINDINGS: ", "pinleak-user"],
        );
        expect(captures, f, "last", "finding 120x40", &["pinleak"]);
    } else {
        // The holder closed the ring: io_uring released the pins, the finding is gone.
        expect(captures, f, "last", "overview 80x24", &["findings: none"]);
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_folio_differ_fails_and_an_unexplained_per_call_total_warns() {
        let console = "\
summary over 9.10 s
  per folio (exact)         gup-trace  /proc/vmstat
  pinned pages                  3392          3392  match
  released pages                3519          3520  DIFFER
  per call
  pinned pages                  3456          3392  +64: 64 zero-page pins (pages the calls returned that the kernel neither pins nor counts)
  released pages                3600          3520  UNEXPLAINED: +80 where 64 zero-page releases and 0 releases outside unpin calls make +64
";
        let (differ, unexplained) = summary_marks(console);
        assert_eq!(differ.len(), 1);
        assert!(differ[0].contains("released pages"));
        assert_eq!(unexplained.len(), 1);
        let clean = console.replace("3519          3520  DIFFER", "3520          3520  match");
        assert!(summary_marks(&clean).0.is_empty());
    }

    #[test]
    fn captures_are_cut_out_of_the_console_and_into_screens() {
        let console = "boot noise\nGUPTRACE-CAPTURE-BEGIN last\n=== frame 9 at 9.0 s: overview 80x24 ===\n top\n=== frame 9 at 9.0 s: process 12 80x24 ===\n pid 12\nGUPTRACE-CAPTURE-END last\nmore noise\n";
        let c = captures(console);
        assert_eq!(c.len(), 1);
        assert_eq!(screen(&c, "last", "overview 80x24"), Some(" top\n"));
        assert_eq!(screen(&c, "last", "process 12 80x24"), Some(" pid 12\n"));
        assert_eq!(screen(&c, "last", "finding 80x24"), None);
    }
}
