//! `cargo xtask bench`: what tracing costs, measured. A benchmark: it prints and saves numbers
//! and fails only when the run itself breaks, never because a number is high.
//!
//! Sections (`--only` picks one; by default all run):
//! - `vm`: this machine's kernel cannot hook GUP, so the cost of tracing is measured inside one
//!   QEMU boot of a stock Debian kernel in instruction time (`-icount shift=0,sleep=off`: the
//!   guest's clocks count the instructions it executes, so a nanosecond read in the guest is an
//!   instruction, whatever the host's load; repeatable to about 0.1% on CPU-bound work). The
//!   reads go to `null_blk` with `irqmode=0` (completed inline: CPU-bound). `gup-trace bench`
//!   there runs each workload untraced and traced in alternating rounds after a warm-up round,
//!   then once more traced with the kernel's BPF statistics on (each program's runs and own run
//!   time), and prints one JSON line, which becomes the tables here and
//!   `target/bench/vm-<kernel release>.json`.
//!
//! - `host`: no kernel needed. The `host` benchmark of the gup-trace package (`cargo bench`,
//!   gup-trace/benches/host.rs) replays a synthetic recording through the pin engine on one
//!   core, counts the memory each pinned folio costs, and times the recording writer; its JSON
//!   becomes a table here and `target/bench/host.json`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::ValueEnum;
use gup_trace_common::bench::BenchRounds;
use serde_json::{Value, json};

use crate::{
    build,
    files::{create_dir, write},
    paths::{target_dir, vm_dir},
    series::KernelSeries,
    vm::{self, Boot, EXIT_PREFIX, VERDICT_PREFIX},
    vm_test::package_modules,
};

/// bpftrace as Debian installs it.
const BPFTRACE: &str = "/usr/bin/bpftrace";
/// Guest memory: bpftrace's libraries (LLVM, clang: about 200 MB) live in the initramfs.
const BENCH_MEMORY_MB: u64 = 2048;

/// Workloads and tracing modes `gup-trace bench` runs (for the time estimate).
const BENCH_WORKLOADS: u32 = 7;
const BENCH_MODES: u32 = 6;

/// The modules of the block device the read workloads use: configfs (a module in Debian's
/// cloud kernels) and null_blk.
const NULL_BLK_MODULES: [&str; 2] = ["configfs", "null_blk"];
/// One 1 GiB null_blk device, 4 KiB blocks, every request completed inline in the submitting
/// task (`irqmode=0`): the reads cost only instructions, so instruction time measures them.
const NULL_BLK_PARAMS: &str = "nr_devices=1 gb=1 bs=4096 irqmode=0 completion_nsec=0";

/// Host targets: replay throughput on one core, memory per pinned folio, writer throughput,
/// and a refresh of `top` well inside its default one-second interval.
const REPLAY_TARGET: f64 = 10e6;
const FOLIO_BYTES_TARGET: f64 = 128.0;
const WRITER_TARGET: f64 = 1e6;
const DASHBOARD_MS_TARGET: f64 = 100.0;
/// The soak's end against its first sample: state, heap and CPU per event may not grow more
/// than this factor (what growth with churn would exceed many times over).
const SOAK_FLAT_FACTOR: f64 = 1.25;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Tracing cost inside a stock kernel under QEMU: pin/unpin loop, O_DIRECT and io_uring
    /// fixed-buffer reads, untraced vs traced.
    Vm,
    /// The userspace side on this machine, no kernel needed: replaying a synthetic recording
    /// through the pin engine, memory per pinned folio, the recording writer.
    Host,
}

#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub kernel: KernelSeries,
    /// Run only this section (default: all).
    #[arg(long, value_enum, value_name = "SECTION")]
    pub only: Option<Section>,
    // The vm section passes these on to `gup-trace bench` in the guest.
    #[command(flatten)]
    pub rounds: BenchRounds,
    /// Tracing modes, as `gup-trace bench --modes` takes them (comma-separated; default: all
    /// of them, see `gup-trace bench --help`).
    #[arg(long, value_name = "MODES")]
    pub modes: Option<String>,
    /// Events in the host section's synthetic recording.
    #[arg(long, default_value_t = 4_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1000..))]
    pub host_events: u64,
    /// Folios the host section holds pinned to measure memory per folio.
    #[arg(long, default_value_t = 1_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1000..))]
    pub host_folios: u64,
    /// Events of the host section's soak of the engine behind `serve` (10^8: about 21 hours
    /// of a busy machine's churn, a few minutes here).
    #[arg(long, default_value_t = 100_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(100_000..))]
    pub soak_events: u64,
}

pub fn run(opts: &Options) -> Result<()> {
    for section in Section::value_variants() {
        if opts.only.is_some_and(|only| only != *section) {
            continue;
        }
        match section {
            Section::Vm => vm_section(opts)?,
            Section::Host => host_section(opts)?,
        }
    }
    Ok(())
}

/// `<workspace>/target/bench`.
fn bench_dir() -> PathBuf {
    target_dir().join("bench")
}

fn vm_section(opts: &Options) -> Result<()> {
    let binary = build::gup_trace_release()?;
    let kernel = opts.kernel.resolve()?;
    let mut files = vec![(binary, "/bin/gup-trace".to_string())];
    // Debian's bpftrace (setup installs it) with its libraries, for the bpftrace modes.
    if Path::new(BPFTRACE).exists() {
        files.push((BPFTRACE.into(), BPFTRACE.to_string()));
    } else {
        println!("bench vm: no {BPFTRACE} on this machine: the bpftrace modes are left out");
    }
    for (name, path) in package_modules(&kernel, &NULL_BLK_MODULES)
        .with_context(|| format!("cannot get the null_blk module of {}", kernel.release))?
    {
        files.push((path, format!("/lib/modules/{}/{name}.ko", kernel.release)));
    }
    let script = format!(
        r#"
echo "uname: $(uname -r)"
# serve listens on loopback, which /init leaves down.
ifconfig lo 127.0.0.1 up
M=/lib/modules/$(uname -r)
insmod $M/configfs.ko 2>/dev/null
insmod $M/null_blk.ko {NULL_BLK_PARAMS} || {{ echo "GUPTRACE-RESULT insmod null_blk failed"; exit 2; }}
# Each program's load (verifier) time and verified instructions go to the console.
OUT=$(RUST_LOG=warn,gup_trace::kernel=info gup-trace bench --device /dev/nullb0 {}{})
STATUS=$?
echo "GUPTRACE-RESULT $OUT"
exit $STATUS
"#,
        opts.rounds.to_flags(),
        opts.modes
            .as_deref()
            .map_or(String::new(), |m| format!(" --modes {m}"))
    );
    let initramfs = vm_dir().join(format!("bench-{}.cpio.gz", kernel.release));
    vm::build_initramfs(&initramfs, &files, &script)?;

    // Each workload calibrated to round_ms per round of guest time, untraced and traced, a
    // warm-up round and the statistics round on top; the session's load and the boot besides.
    // Single-threaded TCG on a busy 2-core host runs a guest second in tens of seconds.
    let measuring = Duration::from_millis(opts.rounds.round_ms)
        * BENCH_WORKLOADS
        * (2 * BENCH_MODES * (opts.rounds.count + 1) + 1);
    let timeout = Duration::from_secs(1200) + measuring * 40;
    println!(
        "bench vm: booting {} under QEMU in instruction time (single-threaded TCG, 2 vCPUs); {} \
         rounds (and a warm-up) of {BENCH_WORKLOADS} workloads, untraced and under \
         {BENCH_MODES} tracing modes, about {} s of guest time measuring (timeout {} s)",
        kernel.release,
        opts.rounds.count,
        measuring.as_secs(),
        timeout.as_secs()
    );
    let console = vm::boot(&Boot {
        icount: true,
        memory_mb: BENCH_MEMORY_MB,
        ..Boot::new(&kernel, initramfs, timeout)
    })?;
    let logs = vm_dir().join("logs");
    create_dir(&logs)?;
    let log = logs.join(format!("{}-bench.log", kernel.release));
    write(&log, &console.text)?;

    console
        .ran(&kernel)
        .with_context(|| format!("whole console: {}", log.display()))?;
    let line = console.find(VERDICT_PREFIX).unwrap_or("");
    if console.find(EXIT_PREFIX) != Some("0") || line.is_empty() {
        bail!(
            "gup-trace bench failed in the guest ({}); last console lines:\n{}\n(whole console: {})",
            console
                .find(EXIT_PREFIX)
                .map_or("no exit status".to_string(), |s| format!("exit status {s}")),
            console.tail(15),
            log.display()
        );
    }
    let result: Value = serde_json::from_str(line).with_context(|| {
        format!(
            "gup-trace bench printed no JSON result: {line:.200} (console: {})",
            log.display()
        )
    })?;
    let rows = rows(&result)?;
    println!(
        "\nbench vm: {} ({} hooks), QEMU instruction time (-icount shift=0: guest ns = \
         instructions, all {} vCPUs together); {} counted rounds after a warm-up, median \
         (± half the min..max spread) over rounds\n",
        kernel.release,
        hooks(&result),
        result["cpus"],
        opts.rounds.count
    );
    print!("{}", table(&rows));
    println!(
        "\ntracers in their own processes, per counted round of every workload (median): load = \
         start to attached, CPU = the process's user+system time while attached\n"
    );
    print!("{}", tracer_table(&result));
    let markdown = markdown_table(&rows);
    println!(
        "\nthe same as markdown, for the README's cost section ({}):\n",
        kernel.release
    );
    print!("{markdown}");
    println!("\nwhere the cost goes (one more traced round with BPF statistics on):");
    print!("{}", hook_table(&rows));
    println!();
    for note in notes(&rows) {
        println!("note: {note}");
    }
    if let (Some(full), Some(floor)) = (
        result["load_seconds"].as_f64(),
        result["floor_load_seconds"].as_f64(),
    ) {
        println!(
            "load (guest s = instructions / 1e9): full session {full:.2} s, floor session \
             {floor:.2} s ({} program runs counted at the floor)",
            result["floor_runs"]
        );
    }
    let verdicts = verdicts(&rows, result["load_seconds"].as_f64());
    for v in &verdicts {
        println!("{v}");
    }

    let saved = json!({
        "section": "vm",
        "kernel": kernel.release,
        "kernel_package": kernel.package_version,
        "accel": "tcg, -icount shift=0,sleep=off (guest ns = instructions)",
        "guest_memory_mb": BENCH_MEMORY_MB,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "verdicts": verdicts,
        "markdown": markdown,
        "result": result,
    });
    let path = save(&format!("vm-{}.json", kernel.release), &saved)?;
    println!("bench vm: saved {}", path.display());
    Ok(())
}

fn host_section(opts: &Options) -> Result<()> {
    let dir = bench_dir();
    create_dir(&dir)?;
    println!(
        "bench host: cargo bench -p gup-trace --bench host (a release build: minutes the first \
         time); {} events replayed, {} folios held, {} events soaked",
        opts.host_events, opts.host_folios, opts.soak_events
    );
    let stdout = crate::cmd::output(build::cargo().args([
        "bench",
        "--quiet",
        "-p",
        "gup-trace",
        "--bench",
        "host",
        "--",
        "--dir",
        &dir.to_string_lossy(),
        "--events",
        &opts.host_events.to_string(),
        "--folios",
        &opts.host_folios.to_string(),
        "--soak-events",
        &opts.soak_events.to_string(),
    ]))?;
    let line = stdout.lines().last().unwrap_or("");
    let result: Value = serde_json::from_str(line)
        .with_context(|| format!("the host benchmark printed no JSON result: {line:.200}"))?;
    let rows = host_rows(&result)?;
    println!(
        "\nbench host: one thread on this {}-CPU machine (load average {} when it ran); rates \
         per CPU-second of that thread, wall-clock rates beside them\n",
        result["cpus"],
        result["load_average"].as_str().unwrap_or("?")
    );
    print!("{}", host_table(&rows));
    let saved = json!({
        "section": "host",
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "targets": {
            "replay_events_per_s": REPLAY_TARGET,
            "bytes_per_folio": FOLIO_BYTES_TARGET,
            "writer_events_per_s": WRITER_TARGET,
            "soak_flat_factor": SOAK_FLAT_FACTOR,
        },
        "result": result,
    });
    let path = save("host.json", &saved)?;
    println!("\nbench host: saved {}", path.display());
    Ok(())
}

/// One line of the host table: what, the figure, the target and the verdict.
#[derive(Debug, PartialEq)]
struct HostRow {
    what: String,
    figure: String,
    target: String,
    verdict: &'static str,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn rate(v: &Value, key: &str) -> Option<f64> {
    v[key].as_f64()
}

fn host_rows(result: &Value) -> Result<Vec<HostRow>> {
    let mut rows = Vec::new();
    let r = &result["replay"];
    if r.is_object() {
        let events = r["events"].as_u64().unwrap_or(0) as f64;
        let cpu = rate(&r["replay"], "per_cpu_s")
            .ok_or_else(|| anyhow!("the host result has no replay rate: {r:.300}"))?;
        rows.push(HostRow {
            what: format!("replay: read, decode, engine ({} events)", si(events)),
            figure: format!(
                "{} events/s ({} wall)",
                si(cpu),
                rate(&r["replay"], "per_wall_s").map_or("-".into(), si)
            ),
            target: format!(">= {} events/s", si(REPLAY_TARGET)),
            verdict: verdict(cpu >= REPLAY_TARGET),
        });
        for (what, key) in [
            ("  of which: read and unpack", "read"),
            ("  of which: decode to TraceEvents", "decode"),
            ("  of which: PinEngine::push", "engine"),
        ] {
            rows.push(HostRow {
                what: what.into(),
                figure: rate(&r[key], "per_cpu_s")
                    .map_or("-".into(), |v| format!("{} events/s", si(v))),
                target: String::new(),
                verdict: "",
            });
        }
    }
    let m = &result["memory"];
    if m.is_object() {
        let bytes = m["bytes_per_folio"]
            .as_f64()
            .ok_or_else(|| anyhow!("the host result has no bytes per folio: {m:.300}"))?;
        rows.push(HostRow {
            what: format!(
                "memory per pinned folio ({} held)",
                si(m["folios"].as_f64().unwrap_or(0.0))
            ),
            figure: format!(
                "{bytes:.0} B allocated (RSS {:.0} B)",
                m["rss_bytes_per_folio"].as_f64().unwrap_or(0.0)
            ),
            target: format!("<= {FOLIO_BYTES_TARGET:.0} B"),
            verdict: verdict(bytes <= FOLIO_BYTES_TARGET),
        });
        if let Some(ms) = m["dashboard_snapshot_ms"].as_f64() {
            rows.push(HostRow {
                what: "top: one refresh over those folios".into(),
                figure: format!(
                    "snapshot {ms:.1} ms, 4 screens drawn {:.1} ms",
                    m["dashboard_draw_ms"].as_f64().unwrap_or(0.0)
                ),
                target: format!("<= {DASHBOARD_MS_TARGET:.0} ms"),
                verdict: verdict(ms <= DASHBOARD_MS_TARGET),
            });
        }
    }
    if let Some(samples) = result["soak"]["samples"].as_array() {
        rows.extend(soak_rows(&result["soak"], samples)?);
    }
    for w in result["writer"].as_array().into_iter().flatten() {
        let lz4 = w["compression"] == "lz4";
        let synced = rate(&w["synced"], "per_wall_s").unwrap_or(0.0);
        rows.push(HostRow {
            what: if lz4 {
                format!(
                    "recording writer, LZ4 ({:.1}x smaller)",
                    w["ratio"].as_f64().unwrap_or(0.0)
                )
            } else {
                "recording writer, uncompressed".into()
            },
            figure: format!(
                "{} events/s with fsync, {:.0} MB/s ({}/s per CPU-s)",
                si(synced),
                w["file_mb_per_wall_s_synced"].as_f64().unwrap_or(0.0),
                rate(&w["written"], "per_cpu_s").map_or("-".into(), si)
            ),
            target: if lz4 {
                format!(">= {} events/s", si(WRITER_TARGET))
            } else {
                String::new()
            },
            verdict: if lz4 {
                verdict(synced >= WRITER_TARGET)
            } else {
                ""
            },
        });
    }
    Ok(rows)
}

/// The soak's rows: its first sample against its last.
fn soak_rows(soak: &Value, samples: &[Value]) -> Result<Vec<HostRow>> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("the host result's soak has no samples: {soak:.300}");
    };
    let num = |s: &Value, key: &str| s[key].as_f64().unwrap_or(0.0);
    let size = |s: &Value, key: &str| s["size"][key].as_f64().unwrap_or(0.0);
    // Records besides the pinned folios (which follow the stream's pins).
    let kept = |s: &Value| num(s, "records") - size(s, "folios");
    let flat = |a: f64, b: f64| b <= a * SOAK_FLAT_FACTOR;
    let mb = |s: &Value, key: &str| num(s, key) / 1e6;
    let target = format!("flat: end <= {SOAK_FLAT_FACTOR}x start");
    Ok(vec![
        HostRow {
            what: format!(
                "soak: {} events, {:.1} h of machine time",
                si(num(last, "events")),
                num(soak, "machine_hours")
            ),
            figure: format!(
                "{} processes forgotten; records {:.0} -> {:.0} (of which FOLL_GET refs {:.0} -> \
                 {:.0}; + pinned folios {:.0} -> {:.0})",
                si(last["pruned"]["processes"].as_f64().unwrap_or(0.0)),
                kept(first),
                kept(last),
                size(first, "get_refs"),
                size(last, "get_refs"),
                size(first, "folios"),
                size(last, "folios"),
            ),
            target: target.clone(),
            verdict: verdict(flat(kept(first), kept(last))),
        },
        HostRow {
            what: "  soak: memory, start -> end".into(),
            figure: format!(
                "heap {:.1} -> {:.1} MB, RSS {:.1} -> {:.1} MB (peak {:.1})",
                mb(first, "heap_bytes"),
                mb(last, "heap_bytes"),
                mb(first, "rss_bytes"),
                mb(last, "rss_bytes"),
                mb(last, "rss_peak_bytes"),
            ),
            target: target.clone(),
            verdict: verdict(flat(num(first, "heap_bytes"), num(last, "heap_bytes"))),
        },
        HostRow {
            what: "  soak: CPU per event, start -> end".into(),
            figure: format!(
                "{:.0} -> {:.0} ns; a scrape {:.2} -> {:.2} ms",
                num(first, "ns_per_event"),
                num(last, "ns_per_event"),
                num(first, "scrape_ms"),
                num(last, "scrape_ms"),
            ),
            target,
            verdict: verdict(flat(num(first, "ns_per_event"), num(last, "ns_per_event"))),
        },
    ])
}

fn host_table(rows: &[HostRow]) -> String {
    let line = |a: &str, b: &str, c: &str, d: &str| {
        format!("{a:<44} {b:<50} {c:<18} {d}")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line("measure", "result", "target", "");
    for r in rows {
        out += &line(&r.what, &r.figure, &r.target, r.verdict);
    }
    out
}

fn save(name: &str, value: &Value) -> Result<PathBuf> {
    let dir = bench_dir();
    create_dir(&dir)?;
    let path = dir.join(name);
    write_json(&path, value)?;
    Ok(path)
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write(path, text + "\n")
}

fn hooks(result: &Value) -> String {
    let n = |k: &str| result["hooks"][k].as_u64().unwrap_or(0);
    format!(
        "{} fentry, {} kprobe, {} tracepoint",
        n("fentry"),
        n("kprobe"),
        n("tracepoint")
    )
}

/// Median, min and max of one quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(v: &Value) -> Option<Stat> {
    Some(Stat {
        median: v.get("median")?.as_f64()?,
        min: v.get("min")?.as_f64()?,
        max: v.get("max")?.as_f64()?,
    })
}

/// One workload of the result: guest nanoseconds per operation (instructions, under QEMU's
/// instruction time), medians over the counted rounds.
#[derive(Debug)]
struct Row {
    name: String,
    untraced: Stat,
    /// Each tracing mode's ns per operation, in the order they ran.
    modes: Vec<(String, Stat)>,
    /// FOLL_PIN pins plus releases per operation (vmstat).
    folios_per_op: f64,
    /// The eBPF programs' own run time per operation, and ring-buffer records per operation,
    /// from the round with BPF statistics on.
    programs_ns: Option<f64>,
    records_per_op: Option<f64>,
    hooks: Vec<HookRow>,
    lost: u64,
    /// Events lost per mode over its counted rounds, where the mode reports them.
    mode_lost: Vec<(String, u64)>,
    seen: (u64, u64),
    vmstat: (u64, u64),
}

/// One eBPF program's cost in one workload.
#[derive(Debug)]
struct HookRow {
    program: String,
    runs_per_op: f64,
    ns_per_run: f64,
    ns_per_op: f64,
}

impl Row {
    fn mode(&self, mode: &str) -> Option<&Stat> {
        self.modes.iter().find(|(m, _)| m == mode).map(|(_, s)| s)
    }

    /// `mode`'s median minus the untraced median.
    fn added(&self, mode: &str) -> Option<f64> {
        Some(self.mode(mode)?.median - self.untraced.median)
    }
}

/// The mode the per-program costs and the session's lost events belong to.
const SESSION: &str = "session";
const RECORD: &str = "record";
const BPFTRACE_STACKS: &str = "bpftrace-stacks";
/// The floor mode: the same hooks, programs that only bump a counter.
const FLOOR: &str = "floor";

fn rows(result: &Value) -> Result<Vec<Row>> {
    let workloads = result["workloads"]
        .as_array()
        .ok_or_else(|| anyhow!("the bench result has no workloads: {result:.300}"))?;
    workloads
        .iter()
        .map(|w| {
            let name = w["name"].as_str().unwrap_or("?").to_string();
            let need = |key: &str| {
                stat(&w[key]).ok_or_else(|| anyhow!("workload {name}: no {key} in the result"))
            };
            let n = |key: &str| w[key].as_u64().unwrap_or(0);
            let ops = n("ops_per_round").max(1) as f64;
            let h = &w["hooks"];
            let hooks = h["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| HookRow {
                    program: p["program"].as_str().unwrap_or("?").to_string(),
                    runs_per_op: p["runs_per_op"].as_f64().unwrap_or(0.0),
                    ns_per_run: p["ns_per_run"].as_f64().unwrap_or(0.0),
                    ns_per_op: p["ns_per_op"].as_f64().unwrap_or(0.0),
                })
                .collect();
            let modes = w["modes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| Some((m["mode"].as_str()?.to_string(), stat(&m["ns_per_op"])?)))
                .collect();
            let mut mode_lost: Vec<(String, u64)> = Vec::new();
            for r in w["rounds"].as_array().into_iter().flatten() {
                let (Some(mode), Some(lost)) = (r["mode"].as_str(), r["lost_events"].as_u64())
                else {
                    continue;
                };
                if r["warmup"] == true {
                    continue;
                }
                match mode_lost.iter_mut().find(|(m, _)| m == mode) {
                    Some((_, sum)) => *sum += lost,
                    None => mode_lost.push((mode.to_string(), lost)),
                }
            }
            Ok(Row {
                untraced: need("untraced_ns_per_op")?,
                mode_lost,
                modes,
                folios_per_op: n("folios_per_round") as f64 / ops,
                programs_ns: h["program_ns_per_op"].as_f64(),
                records_per_op: h["records_per_op"].as_f64(),
                hooks,
                lost: n("lost_events"),
                seen: (n("seen_pinned"), n("seen_released")),
                vmstat: (n("vmstat_acquired"), n("vmstat_released")),
                name,
            })
        })
        .collect()
}

/// 12345.6 -> "12.3k".
fn si(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The spread of a quantity over rounds, in percent of its median.
fn spread_pct(s: &Stat) -> f64 {
    (s.max - s.min) / s.median.abs().max(1e-9) * 100.0
}

/// The side-by-side table: ns (= instructions) per operation untraced and under each mode,
/// each mode's ratio to untraced, and per workload what the session's eBPF programs ran for.
fn table(rows: &[Row]) -> String {
    let modes: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.modes.iter().map(|(m, _)| m.as_str()))
        .fold(Vec::new(), |mut v, m| {
            if !v.contains(&m) {
                v.push(m);
            }
            v
        });
    let mut out = format!("{:<20} {:>15}", "ns/op (ratio)", "untraced");
    for m in &modes {
        out += &format!(" {m:>24}");
    }
    out += &format!(
        " {:>9} {:>7} {:>7} {:>5}\n",
        "BPF ns", "rec/op", "fol/op", "lost"
    );
    for r in rows {
        out += &format!(
            "{:<20} {:>15}",
            r.name,
            format!(
                "{:.0} ±{:.2}%",
                r.untraced.median,
                spread_pct(&r.untraced) / 2.0
            )
        );
        for m in &modes {
            let cell = r.mode(m).map_or("-".to_string(), |s| {
                format!(
                    "{:.0} ({:.2}x) ±{:.1}%",
                    s.median,
                    s.median / r.untraced.median.max(1e-9),
                    spread_pct(s) / 2.0
                )
            });
            out += &format!(" {cell:>24}");
        }
        out += &format!(
            " {:>9} {:>7} {:>7.1} {:>5}\n",
            r.programs_ns.map_or("-".into(), |v| format!("{v:.0}")),
            r.records_per_op.map_or("-".into(), |v| format!("{v:.2}")),
            r.folios_per_op,
            r.lost
        );
    }
    out
}

/// The side-by-side table as markdown, paste-ready for the README's cost section: per
/// workload, one line per mode with ns (= instructions) per operation, the cost added to
/// untraced, the ratios to untraced, to the floor and to bpftrace with kernel stacks, and the
/// events lost over the counted rounds ("-" where a mode is absent or does not report them).
fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | mode | ns/op (= instructions) | added | x untraced | x floor | \
         x bpftrace-stacks | lost events |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let ratio = |v: f64, to: Option<&Stat>| {
            to.map_or("-".to_string(), |to| {
                format!("{:.2}", v / to.median.max(1e-9))
            })
        };
        out += &format!(
            "| {} | untraced | {:.0} | - | 1.00 | {} | {} | - |\n",
            r.name,
            r.untraced.median,
            ratio(r.untraced.median, r.mode(FLOOR)),
            ratio(r.untraced.median, r.mode(BPFTRACE_STACKS))
        );
        for (mode, s) in &r.modes {
            let lost = r
                .mode_lost
                .iter()
                .find(|(m, _)| m == mode)
                .map_or("-".to_string(), |(_, l)| l.to_string());
            out += &format!(
                "| {} | {mode} | {:.0} | {:+.0} | {} | {} | {} | {lost} |\n",
                r.name,
                s.median,
                s.median - r.untraced.median,
                ratio(s.median, Some(&r.untraced)),
                ratio(s.median, r.mode(FLOOR)),
                ratio(s.median, r.mode(BPFTRACE_STACKS))
            );
        }
    }
    out
}

/// Per external tracer: load time, CPU time, events and lost events per counted round.
fn tracer_table(result: &Value) -> String {
    let rounds: Vec<&Value> = result["tracers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["warmup"] != true)
        .collect();
    let mut modes: Vec<&str> = Vec::new();
    for t in &rounds {
        if let Some(m) = t["mode"].as_str().filter(|m| !modes.contains(m)) {
            modes.push(m);
        }
    }
    let mut out = format!(
        "{:<20} {:>10} {:>10} {:>12} {:>8}\n",
        "mode", "load s", "CPU s", "events", "lost"
    );
    for m in modes {
        let of = |key: &str| -> Option<f64> {
            let v: Vec<f64> = rounds
                .iter()
                .filter(|t| t["mode"] == m)
                .filter_map(|t| t[key].as_f64())
                .collect();
            median(&v)
        };
        let cell =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        out += &format!(
            "{:<20} {:>10} {:>10} {:>12} {:>8}\n",
            m,
            cell(of("load_seconds"), 2),
            cell(of("cpu_seconds"), 2),
            cell(of("events"), 0),
            cell(of("lost_events"), 0)
        );
    }
    out
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Per workload, the programs that ran: runs, own run time per run and per operation.
fn hook_table(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.hooks.is_empty()) {
        out += &format!(
            "{}: {:.0} ns/op in eBPF programs of {:+.0} the session added\n",
            r.name,
            r.programs_ns.unwrap_or(0.0),
            r.added(SESSION).unwrap_or(0.0)
        );
        for h in &r.hooks {
            out += &format!(
                "    {:<28} {:>8.2} runs/op {:>8.0} ns/run {:>8.0} ns/op\n",
                h.program, h.runs_per_op, h.ns_per_run, h.ns_per_op
            );
        }
    }
    out
}

/// Added cost under which work that pins nothing counts as not slowed: ten times the 0.1%
/// repeatability of instruction time.
const NO_COST_PCT: f64 = 1.0;
/// Workloads that pin nothing (they exercise the mmap_lock and process hooks only).
const NON_PINNING: [&str; 2] = ["fault_loop", "fork_exit"];
/// The pin/unpin loop, the workload the targets are set on.
const PIN_LOOP: &str = "pin_unpin";

/// The targets of issue 11 that this run can judge, each PASS or OVER (a benchmark never
/// fails on a number), and the ones it cannot, with why.
fn verdicts(rows: &[Row], load_seconds: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    let pass = |ok: bool| if ok { "PASS" } else { "OVER" };
    match rows.iter().find(|r| r.name == PIN_LOOP) {
        Some(r) => out.push(format!(
            "{}: zero lost events at the pin/unpin loop's full rate ({} lost)",
            pass(r.lost == 0),
            r.lost
        )),
        None => out.push(format!("n/a: no {PIN_LOOP} workload in the result")),
    }
    let pin_loop = rows.iter().find(|r| r.name == PIN_LOOP);
    match pin_loop.and_then(|r| Some((r.added(RECORD)?, r.added(BPFTRACE_STACKS)?))) {
        Some((record, stacks)) => out.push(format!(
            "{}: record below bpftrace with kernel stacks on {PIN_LOOP}: {record:+.0} vs \
             {stacks:+.0} ns/op",
            pass(record < stacks)
        )),
        None => out.push(format!(
            "n/a: record below bpftrace with kernel stacks (record or {BPFTRACE_STACKS} did not \
             run)"
        )),
    }
    match pin_loop.and_then(|r| Some((r.mode(RECORD)?.median, r.mode(FLOOR)?.median))) {
        Some((record, floor)) => out.push(format!(
            "{}: record within 2x the floor on {PIN_LOOP}: {record:.0} vs {floor:.0} ns/op \
             ({:.2}x)",
            pass(record <= 2.0 * floor),
            record / floor.max(1e-9)
        )),
        None => out.push(format!(
            "n/a: record within 2x the floor (record or {FLOOR} did not run)"
        )),
    }
    for name in NON_PINNING {
        if let Some(r) = rows.iter().find(|r| r.name == name) {
            for (mode, s) in r.modes.iter().filter(|(m, _)| !m.starts_with("bpftrace")) {
                let pct = (s.median / r.untraced.median.max(1e-9) - 1.0) * 100.0;
                out.push(format!(
                    "{}: no cost on work that pins nothing: {name} under {mode} {pct:+.2}% (at \
                     most {NO_COST_PCT}%)",
                    pass(pct <= NO_COST_PCT)
                ));
            }
        }
    }
    if let Some(s) = load_seconds {
        out.push(format!(
            "load: the session started (verifier and attach) in {s:.2} guest s = {:.2} G \
             instructions (target: half of this first measurement)",
            s
        ));
    }
    out
}

/// What the reader must know to trust the numbers: lost events, totals that differ from vmstat.
fn notes(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in rows {
        if r.lost > 0 {
            notes.push(format!(
                "{}: {} events lost over the traced rounds (ring buffer full): the traced time \
                 misses their cost",
                r.name, r.lost
            ));
        }
        if r.seen != r.vmstat {
            notes.push(format!(
                "{}: gup-trace counted {} pinned / {} released over the traced rounds, \
                 /proc/vmstat {} / {}",
                r.name, r.seen.0, r.seen.1, r.vmstat.0, r.vmstat.1
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = r#"{"kernel":"7.3.4+deb13-cloud-amd64","cpus":2,"rounds":2,"round_ms":100,
        "load_seconds":12.5,"hooks":{"fentry":18,"kprobe":0,"tracepoint":1},
        "workloads":[
          {"name":"pin_unpin","ops_per_round":1000,
           "untraced_ns_per_op":{"median":7000.0,"min":6993.0,"max":7007.0},
           "modes":[{"mode":"session","ns_per_op":{"median":36000.0,"min":35000.0,"max":37000.0}},
                    {"mode":"record","ns_per_op":{"median":21000.0,"min":21000.0,"max":21000.0}},
                    {"mode":"bpftrace-stacks","ns_per_op":{"median":14000.0,"min":14000.0,"max":14000.0}}],
           "folios_per_round":2000,"lost_events":0,"seen_pinned":4000,"seen_released":4000,
           "vmstat_acquired":4000,"vmstat_released":4000,
           "hooks":{"ns_per_op":40000.0,"records_per_op":2.0,"program_ns_per_op":5000.0,
             "programs":[{"program":"pin_user_pages_remote","runs_per_op":1.0,"ns_per_run":3000.0,"ns_per_op":3000.0},
                         {"program":"unpin_user_pages","runs_per_op":1.0,"ns_per_run":2000.0,"ns_per_op":2000.0}]}},
          {"name":"fault_loop","ops_per_round":1000,
           "untraced_ns_per_op":{"median":1000.0,"min":999.0,"max":1001.0},
           "modes":[{"mode":"session","ns_per_op":{"median":1020.0,"min":1019.0,"max":1021.0}},
                    {"mode":"bpftrace-stacks","ns_per_op":{"median":1500.0,"min":1500.0,"max":1500.0}}],
           "folios_per_round":0,"lost_events":3,"seen_pinned":0,"seen_released":0,
           "vmstat_acquired":1,"vmstat_released":1}]}"#;

    #[test]
    fn a_result_line_becomes_tables_and_verdicts() {
        let v: Value = serde_json::from_str(RESULT).unwrap();
        let rows = rows(&v).unwrap();
        assert_eq!(rows.len(), 2);
        let t = table(&rows);
        assert!(t.contains("7000 ±0.10%"), "{t}");
        assert!(t.contains("36000 (5.14x) ±2.8%"), "{t}");
        assert!(t.contains("record") && t.contains("bpftrace-stacks"), "{t}");
        let h = hook_table(&rows);
        assert!(
            h.contains("pin_unpin: 5000 ns/op in eBPF programs of +29000 the session added"),
            "{h}"
        );
        assert!(h.contains("pin_user_pages_remote"), "{h}");
        assert!(
            !h.contains("fault_loop"),
            "no statistics, no hook table: {h}"
        );
        let verdicts = verdicts(&rows, v["load_seconds"].as_f64());
        assert!(verdicts[0].starts_with("PASS: zero lost"), "{verdicts:?}");
        assert!(
            verdicts[1].starts_with("OVER: record below bpftrace with kernel stacks"),
            "{verdicts:?}"
        );
        assert!(verdicts[2].starts_with("n/a: record within 2x the floor"));
        assert!(
            verdicts[3].starts_with(
                "OVER: no cost on work that pins nothing: fault_loop under session +2.00%"
            ),
            "{verdicts:?}"
        );
        assert_eq!(
            verdicts.len(),
            5,
            "bpftrace is not judged on non-pinning work"
        );
        assert!(verdicts[4].contains("12.50 guest s"), "{verdicts:?}");
        let notes = notes(&rows);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("3 events lost"));
        assert!(notes[1].contains("counted 0 pinned"));
        assert_eq!(hooks(&v), "18 fentry, 0 kprobe, 1 tracepoint");
    }

    #[test]
    fn the_markdown_table_gives_ratios_to_untraced_floor_and_bpftrace_and_lost_events() {
        let v: Value = serde_json::from_str(
            &RESULT
                .replacen(
                    r#"[{"mode":"session","#,
                    r#"[{"mode":"floor","ns_per_op":{"median":7700.0,"min":7700.0,"max":7700.0}},
                {"mode":"session","#,
                    1,
                )
                .replacen(
                    r#""vmstat_acquired":4000,"vmstat_released":4000,"#,
                    r#""vmstat_acquired":4000,"vmstat_released":4000,"rounds":[
              {"warmup":true,"mode":"session","lost_events":50},
              {"warmup":false,"mode":"session","lost_events":2},
              {"warmup":false,"mode":"session","lost_events":3},
              {"warmup":false,"mode":"record","lost_events":0},
              {"warmup":false,"mode":"floor"}],"#,
                    1,
                ),
        )
        .unwrap();
        let md = markdown_table(&rows(&v).unwrap());
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].starts_with("| workload | mode |"), "{md}");
        assert_eq!(lines[1], "|---|---|---:|---:|---:|---:|---:|---:|");
        assert!(
            lines.contains(&"| pin_unpin | untraced | 7000 | - | 1.00 | 0.91 | 0.50 | - |"),
            "{md}"
        );
        assert!(
            lines.contains(&"| pin_unpin | floor | 7700 | +700 | 1.10 | 1.00 | 0.55 | - |"),
            "{md}"
        );
        assert!(
            lines.contains(&"| pin_unpin | session | 36000 | +29000 | 5.14 | 4.68 | 2.57 | 5 |"),
            "the warm-up's lost events are not counted: {md}"
        );
        assert!(
            lines.contains(&"| pin_unpin | record | 21000 | +14000 | 3.00 | 2.73 | 1.50 | 0 |"),
            "{md}"
        );
        assert!(
            lines.contains(&"| fault_loop | session | 1020 | +20 | 1.02 | - | 0.68 | - |"),
            "no floor in that workload: {md}"
        );
        assert_eq!(lines.len(), 2 + 5 + 3, "{md}");
        let verdicts = verdicts(&rows(&v).unwrap(), None);
        assert_eq!(
            verdicts[2],
            "OVER: record within 2x the floor on pin_unpin: 21000 vs 7700 ns/op (2.73x)"
        );
    }

    #[test]
    fn tracer_rounds_become_medians_without_the_warm_up() {
        let v = json!({"tracers": [
            {"mode": "record", "warmup": true, "load_seconds": 99.0, "cpu_seconds": 9.0,
             "events": 1, "lost_events": 0},
            {"mode": "record", "warmup": false, "load_seconds": 4.0, "cpu_seconds": 0.5,
             "events": 1000, "lost_events": 0},
            {"mode": "record", "warmup": false, "load_seconds": 6.0, "cpu_seconds": 0.7,
             "events": 1200, "lost_events": 2},
            {"mode": "bpftrace-stacks", "warmup": false, "load_seconds": 1.5}]});
        let t = tracer_table(&v);
        assert!(t.contains("record"), "{t}");
        assert!(
            t.contains("5.00") && t.contains("0.60") && t.contains("1100"),
            "{t}"
        );
        assert!(!t.contains("99.00"), "the warm-up is not counted: {t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("bpftrace-stacks") && l.contains("1.50"))
        );
    }

    #[test]
    fn lost_events_in_the_pin_loop_are_over_but_not_an_error() {
        let v: Value =
            serde_json::from_str(&RESULT.replacen(r#""lost_events":0"#, r#""lost_events":7"#, 1))
                .unwrap();
        let verdicts = verdicts(&rows(&v).unwrap(), None);
        assert!(
            verdicts[0].starts_with("OVER: zero lost events"),
            "{verdicts:?}"
        );
        assert!(
            verdicts.iter().all(|v| !v.starts_with("load")),
            "no load time, no load line"
        );
    }

    const HOST: &str = r#"{"cpus":2,"load_average":"5.10",
        "replay":{"events":4000008,
          "read":{"per_cpu_s":28000000.0,"per_wall_s":20000000.0},
          "decode":{"per_cpu_s":47000000.0,"per_wall_s":null},
          "engine":{"per_cpu_s":7400000.0,"per_wall_s":3700000.0},
          "replay":{"per_cpu_s":10500000.0,"per_wall_s":1930000.0}},
        "memory":{"folios":1000000,"bytes_per_folio":102.8,"rss_bytes_per_folio":152.6},
        "writer":[
          {"compression":"lz4","ratio":8.1,"written":{"per_cpu_s":10400000.0},
           "synced":{"per_wall_s":5570000.0},"file_mb_per_wall_s_synced":60.8},
          {"compression":"none","ratio":1.0,"written":{"per_cpu_s":18500000.0},
           "synced":{"per_wall_s":900000.0},"file_mb_per_wall_s_synced":700.0}]}"#;

    #[test]
    fn the_host_result_becomes_a_table_with_verdicts() {
        let v: Value = serde_json::from_str(HOST).unwrap();
        let rows = host_rows(&v).unwrap();
        let verdicts: Vec<_> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, ["PASS", "", "", "", "PASS", "PASS", ""]);
        let t = host_table(&rows);
        assert!(
            t.contains("replay: read, decode, engine (4.00M events)"),
            "{t}"
        );
        assert!(t.contains("10.50M events/s (1.93M wall)"), "{t}");
        assert!(t.contains("103 B allocated (RSS 153 B)"), "{t}");
        assert!(t.contains("recording writer, LZ4 (8.1x smaller)"), "{t}");
        assert!(
            t.contains("5.57M events/s with fsync, 61 MB/s (10.40M/s per CPU-s)"),
            "{t}"
        );
        // 9.9M events/s misses the 10M floor; 130 B per folio misses the 128 B one.
        let slow: Value = serde_json::from_str(&HOST.replace("10500000.0", "9900000.0")).unwrap();
        assert_eq!(host_rows(&slow).unwrap()[0].verdict, "MISS");
        let fat: Value = serde_json::from_str(&HOST.replace("102.8", "130.0")).unwrap();
        assert_eq!(host_rows(&fat).unwrap()[4].verdict, "MISS");
    }

    #[test]
    fn the_soak_becomes_three_rows_judged_flat_or_not() {
        let sample = |events: u64, records: u64, heap: u64, ns: f64| {
            json!({"events": events, "records": records, "size": {"folios": 1000, "get_refs": 0},
                   "pruned": {"processes": events / 700}, "heap_bytes": heap,
                   "rss_bytes": 20_000_000, "rss_peak_bytes": 21_000_000,
                   "ns_per_event": ns, "scrape_ms": 0.5})
        };
        let soak = |end| {
            json!({"soak": {"machine_hours": 21.3,
                   "samples": [sample(5_000_000, 1600, 8_000_000, 200.0), end]}})
        };
        let flat = host_rows(&soak(sample(100_000_000, 1650, 8_100_000, 210.0))).unwrap();
        let t = host_table(&flat);
        assert!(
            t.contains("soak: 100.00M events, 21.3 h of machine time"),
            "{t}"
        );
        assert!(
            t.contains(
                "records 600 -> 650 (of which FOLL_GET refs 0 -> 0; + pinned folios 1000 -> 1000)"
            ),
            "{t}"
        );
        assert!(
            t.contains("heap 8.0 -> 8.1 MB, RSS 20.0 -> 20.0 MB (peak 21.0)"),
            "{t}"
        );
        assert!(t.contains("200 -> 210 ns"), "{t}");
        let verdicts: Vec<_> = flat.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, ["PASS", "PASS", "PASS"]);
        let grown = host_rows(&soak(sample(100_000_000, 9000, 30_000_000, 400.0))).unwrap();
        let verdicts: Vec<_> = grown.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, ["MISS", "MISS", "MISS"]);
        assert!(host_rows(&json!({"soak": {"samples": []}})).is_err());
    }

    #[test]
    fn a_host_result_without_a_replay_rate_is_an_error() {
        assert!(host_rows(&json!({"replay": {"events": 1}})).is_err());
        assert!(host_rows(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn a_result_without_workloads_is_an_error() {
        assert!(rows(&json!({"kernel": "x"})).is_err());
    }
}
