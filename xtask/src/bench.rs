//! `cargo xtask bench`: what tracing costs, measured. A benchmark: it prints and saves numbers
//! and fails only when the run itself breaks, never because a number is high.
//!
//! Sections (`--only` picks one; by default all run):
//! - `vm`: this machine's kernel cannot hook GUP, so the cost of tracing is measured inside one
//!   QEMU (TCG) boot of a stock Debian kernel: `gup-trace bench` there runs each workload
//!   untraced and traced in alternating rounds and prints one JSON line, which becomes a table
//!   here and `target/bench/vm-<kernel release>.json`.
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
};

/// Host targets: replay throughput on one core, memory per pinned folio, writer throughput,
/// and a refresh of `top` well inside its default one-second interval.
const REPLAY_TARGET: f64 = 5e6;
const FOLIO_BYTES_TARGET: f64 = 160.0;
const WRITER_TARGET: f64 = 1e6;
const DASHBOARD_MS_TARGET: f64 = 100.0;
/// The soak's end against its first sample: state, heap and CPU per event may not grow more
/// than this factor (what growth with churn would exceed many times over).
const SOAK_FLAT_FACTOR: f64 = 1.25;

/// The O_DIRECT slowdown the issue allows with every event streamed, in percent.
const O_DIRECT_TARGET_PCT: f64 = 5.0;
/// The workload that target applies to (as `gup-trace bench` names it).
const O_DIRECT_WORKLOAD: &str = "o_direct_read";

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
    let script = format!(
        r#"
echo "uname: $(uname -r)"
OUT=$(gup-trace bench --device /dev/nvme0n1 {})
STATUS=$?
echo "GUPTRACE-RESULT $OUT"
exit $STATUS
"#,
        opts.rounds.to_flags()
    );
    let initramfs = vm_dir().join("bench.cpio.gz");
    vm::build_initramfs(&initramfs, &[(binary, "/bin/gup-trace".into())], &script)?;

    // Three workloads, each calibrated to round_ms per round, untraced and traced; sessions
    // starting, calibration and boot on top. TCG on a busy machine can be several times slower.
    let measuring = Duration::from_millis(opts.rounds.round_ms) * 3 * 2 * opts.rounds.count;
    let timeout = Duration::from_secs(180) + measuring * 4;
    println!(
        "bench vm: booting {} under QEMU (TCG, 2 CPUs); {} rounds of 3 workloads, untraced and \
         traced, about {} s of measuring (timeout {} s)",
        kernel.release,
        opts.rounds.count,
        measuring.as_secs(),
        timeout.as_secs()
    );
    let console = vm::boot(&Boot::new(&kernel, initramfs, timeout))?;
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
        "\nbench vm: {} ({} hooks), QEMU TCG, {} guest CPUs on a {}-CPU host; {} rounds, \
         median (min..max) over rounds\n",
        kernel.release,
        hooks(&result),
        result["cpus"],
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.rounds.count
    );
    print!("{}", table(&rows));
    let verdict = o_direct_verdict(&rows);
    println!();
    for note in notes(&rows) {
        println!("note: {note}");
    }
    match &verdict {
        Some((pct, v)) => println!(
            "{O_DIRECT_WORKLOAD}: {pct:+.1}% slowdown traced (median of paired rounds): {v} \
             (target: at most {O_DIRECT_TARGET_PCT}% with every event streamed)"
        ),
        None => println!("{O_DIRECT_WORKLOAD}: not in the result, no verdict"),
    }

    let saved = json!({
        "section": "vm",
        "kernel": kernel.release,
        "kernel_package": kernel.package_version,
        "accel": "tcg",
        "guest_memory_mb": vm::MEMORY_MB,
        "host_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "o_direct_target_pct": O_DIRECT_TARGET_PCT,
        "o_direct_verdict": verdict.as_ref().map(|(_, v)| *v),
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

/// One workload of the result.
#[derive(Debug)]
struct Row {
    name: String,
    untraced: Stat,
    traced: Stat,
    slowdown_pct: Stat,
    ns_per_folio: Option<Stat>,
    folios_per_round: u64,
    events_per_round: f64,
    lost: u64,
    seen: (u64, u64),
    vmstat: (u64, u64),
}

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
            Ok(Row {
                untraced: need("untraced_ops_per_s")?,
                traced: need("traced_ops_per_s")?,
                slowdown_pct: need("slowdown_pct")?,
                ns_per_folio: stat(&w["ns_per_folio"]),
                folios_per_round: n("folios_per_round"),
                events_per_round: need("events_per_round")?.median,
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

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<20} {:>12} {:>12} {:>24} {:>22} {:>13} {:>6}\n",
        "workload", "untraced/s", "traced/s", "slowdown", "ns per folio", "events/round", "lost"
    );
    for r in rows {
        let slowdown = format!(
            "{:+.1}% ({:+.1}..{:+.1})",
            r.slowdown_pct.median, r.slowdown_pct.min, r.slowdown_pct.max
        );
        let per_folio = r.ns_per_folio.map_or("-".to_string(), |s| {
            format!("{:.0} ({:.0}..{:.0})", s.median, s.min, s.max)
        });
        out += &format!(
            "{:<20} {:>12} {:>12} {:>24} {:>22} {:>13} {:>6}\n",
            r.name,
            si(r.untraced.median),
            si(r.traced.median),
            slowdown,
            per_folio,
            si(r.events_per_round),
            r.lost
        );
    }
    out
}

/// The O_DIRECT workload's median slowdown and PASS or OVER against the target.
fn o_direct_verdict(rows: &[Row]) -> Option<(f64, &'static str)> {
    let r = rows.iter().find(|r| r.name == O_DIRECT_WORKLOAD)?;
    let pct = r.slowdown_pct.median;
    Some((
        pct,
        if pct <= O_DIRECT_TARGET_PCT {
            "PASS"
        } else {
            "OVER"
        },
    ))
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
        if r.folios_per_round == 0 && r.name != "io_uring_read_fixed" {
            notes.push(format!(
                "{}: /proc/vmstat counted no FOLL_PIN pins (on 6.1 O_DIRECT takes plain \
                 references), so there is no cost per folio",
                r.name
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = r#"{"kernel":"7.3.4+deb13-cloud-amd64","cpus":2,"rounds":2,"round_ms":100,
        "hooks":{"fentry":18,"kprobe":0,"tracepoint":1},
        "workloads":[
          {"name":"pin_unpin","untraced_ops_per_s":{"median":20000.0,"min":19000.0,"max":21000.0},
           "traced_ops_per_s":{"median":15000.0,"min":14000.0,"max":16000.0},
           "slowdown_pct":{"median":33.3,"min":30.0,"max":36.0},"folios_per_round":4000,
           "ns_per_folio":{"median":8333.0,"min":8000.0,"max":9000.0},
           "events_per_round":{"median":4000.0,"min":4000.0,"max":4000.0},"events":8000,
           "lost_events":0,"seen_pinned":4000,"seen_released":4000,"vmstat_acquired":4000,
           "vmstat_released":4000},
          {"name":"o_direct_read","untraced_ops_per_s":{"median":5000.0,"min":4900.0,"max":5100.0},
           "traced_ops_per_s":{"median":4900.0,"min":4800.0,"max":5000.0},
           "slowdown_pct":{"median":2.0,"min":-1.0,"max":6.5},"folios_per_round":1000,
           "ns_per_folio":{"median":2000.0,"min":-500.0,"max":6000.0},
           "events_per_round":{"median":1000.0,"min":1000.0,"max":1000.0},"events":2000,
           "lost_events":3,"seen_pinned":999,"seen_released":1000,"vmstat_acquired":1000,
           "vmstat_released":1000}]}"#;

    #[test]
    fn a_result_line_becomes_a_table_and_a_verdict() {
        let v: Value = serde_json::from_str(RESULT).unwrap();
        let rows = rows(&v).unwrap();
        assert_eq!(rows.len(), 2);
        let t = table(&rows);
        assert!(t.contains("pin_unpin"), "{t}");
        assert!(t.contains("+33.3% (+30.0..+36.0)"), "{t}");
        assert!(t.contains("8333 (8000..9000)"), "{t}");
        assert!(t.contains("20.0k"), "{t}");
        assert_eq!(o_direct_verdict(&rows), Some((2.0, "PASS")));
        let notes = notes(&rows);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("3 events lost"));
        assert!(notes[1].contains("999 pinned"));
        assert_eq!(hooks(&v), "18 fentry, 0 kprobe, 1 tracepoint");
    }

    #[test]
    fn a_slowdown_above_the_target_is_over_but_not_an_error() {
        let v: Value =
            serde_json::from_str(&RESULT.replace(r#""median":2.0,"#, r#""median":7.5,"#)).unwrap();
        assert_eq!(o_direct_verdict(&rows(&v).unwrap()), Some((7.5, "OVER")));
    }

    const HOST: &str = r#"{"cpus":2,"load_average":"5.10",
        "replay":{"events":4000008,
          "read":{"per_cpu_s":28000000.0,"per_wall_s":20000000.0},
          "decode":{"per_cpu_s":47000000.0,"per_wall_s":null},
          "engine":{"per_cpu_s":7400000.0,"per_wall_s":3700000.0},
          "replay":{"per_cpu_s":5160000.0,"per_wall_s":1930000.0}},
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
        assert!(t.contains("5.16M events/s (1.93M wall)"), "{t}");
        assert!(t.contains("103 B allocated (RSS 153 B)"), "{t}");
        assert!(t.contains("recording writer, LZ4 (8.1x smaller)"), "{t}");
        assert!(
            t.contains("5.57M events/s with fsync, 61 MB/s (10.40M/s per CPU-s)"),
            "{t}"
        );
        let slow: Value = serde_json::from_str(&HOST.replace("5160000.0", "4000000.0")).unwrap();
        assert_eq!(host_rows(&slow).unwrap()[0].verdict, "MISS");
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
