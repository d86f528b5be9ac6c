//! `cargo xtask fuzz`: the cargo-fuzz (libFuzzer) targets of fuzz/, each for a fixed time.
//!
//! Installs cargo-fuzz (a pinned version, once), builds the targets with the pinned nightly
//! (cargo-fuzz's defaults: release, debug assertions, AddressSanitizer), runs each on its
//! working corpus (fuzz/corpus/T, not committed) and its committed seeds (fuzz/seeds/T), and
//! reports per target the runs, the corpus and the crashes. A crash fails the task with the
//! input's path and the command that reproduces it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{capture, describe, run},
    paths::{target_dir, workspace_root},
    setup::EBPF_TOOLCHAIN,
};

/// The targets, in fuzz/fuzz_targets/.
pub const TARGETS: &[&str] = &["recording", "ring_record", "engine"];
/// The cargo-fuzz this project is fuzzed with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// libFuzzer's limits: an input that takes longer or a process that grows larger is a crash.
const INPUT_TIMEOUT_S: u32 = 10;
const RSS_LIMIT_MB: u32 = 1024;

/// `cargo xtask fuzz`'s flags.
#[derive(clap::Args)]
pub struct Options {
    /// How long each target runs.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub seconds: u32,
    /// Only this target (default: all of them).
    #[arg(long, value_name = "T", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub target: Option<String>,
}

/// What one target's run did.
struct TargetRun {
    target: &'static str,
    runs: u64,
    corpus: usize,
    new_inputs: u64,
    peak_rss_mb: u64,
    seconds: f64,
    /// The input that crashed it, and the run's log.
    crash: Option<PathBuf>,
    log: PathBuf,
}

pub fn run_fuzz(opts: &Options) -> Result<()> {
    let targets: Vec<&'static str> = match &opts.target {
        Some(t) => TARGETS.iter().copied().filter(|x| x == t).collect(),
        None => TARGETS.to_vec(),
    };
    fuzz(&targets, opts.seconds)
}

/// Builds the targets and runs each of `targets` for `seconds`; fails if one crashed.
pub fn fuzz(targets: &[&'static str], seconds: u32) -> Result<()> {
    ensure_cargo_fuzz()?;
    let start = Instant::now();
    run(cargo_fuzz().arg("build")).context(
        "building the fuzz targets failed: run `cargo xtask setup` for the pinned nightly",
    )?;
    println!(
        "xtask fuzz: targets built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    for &target in targets {
        let r = run_target(target, seconds)?;
        println!(
            "xtask fuzz: {:<12} {:>10} runs in {:.0} s, corpus {} inputs ({} new), peak RSS {} MiB, {}",
            r.target,
            r.runs,
            r.seconds,
            r.corpus,
            r.new_inputs,
            r.peak_rss_mb,
            if r.crash.is_some() {
                "CRASHED"
            } else {
                "0 crashes"
            }
        );
        runs.push(r);
    }
    let crashed: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let input = r.crash.as_ref()?;
            Some(format!(
                "{}: the input {} crashed it (libFuzzer's output: {}); reproduce with \
                 `cargo +{EBPF_TOOLCHAIN} fuzz run {} {}`, then add the input to fuzz/seeds/{} \
                 with the fix",
                r.target,
                input.display(),
                r.log.display(),
                r.target,
                input.display(),
                r.target
            ))
        })
        .collect();
    if !crashed.is_empty() {
        bail!("fuzzing found crashes:\n{}", crashed.join("\n"));
    }
    Ok(())
}

fn cargo_fuzz() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{EBPF_TOOLCHAIN}"))
        .arg("fuzz")
        .current_dir(workspace_root());
    cmd
}

/// `cargo install --locked` of the pinned cargo-fuzz, unless it is there already.
fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if have.is_some_and(|v| v.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    println!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about two minutes)");
    run(Command::new("cargo").args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
    .context("cargo install cargo-fuzz failed")
}

fn run_target(target: &'static str, seconds: u32) -> Result<TargetRun> {
    let fuzz_dir = workspace_root().join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&corpus, &seeds, &artifacts] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let logs = target_dir().join("fuzz");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log = logs.join(format!("{target}.log"));
    println!(
        "xtask fuzz: {target} for {seconds} s (log: {})",
        log.display()
    );
    let mut cmd = cargo_fuzz();
    cmd.args(["run", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1");
    let start = Instant::now();
    let out = capture(&mut cmd)?;
    let seconds = start.elapsed().as_secs_f64();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(&log, &text).with_context(|| format!("cannot write {}", log.display()))?;
    let crash = crash_input(&text);
    if !out.status.success() && crash.is_none() {
        bail!(
            "{} failed ({}) without a crashing input: see {}",
            describe(&cmd),
            out.status,
            log.display()
        );
    }
    Ok(TargetRun {
        target,
        runs: stat(&text, "number_of_executed_units"),
        corpus: files_in(&corpus) + files_in(&seeds),
        new_inputs: stat(&text, "new_units_added"),
        peak_rss_mb: stat(&text, "peak_rss_mb"),
        seconds,
        crash,
        log,
    })
}

/// A `-print_final_stats` figure: `stat::NAME: N`.
fn stat(log: &str, name: &str) -> u64 {
    let key = format!("stat::{name}:");
    log.lines()
        .filter_map(|l| l.trim().strip_prefix(&key))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// The input libFuzzer saved when the target crashed, leaked, ran out of time or memory.
fn crash_input(log: &str) -> Option<PathBuf> {
    log.lines()
        .filter_map(|l| l.split_once("Test unit written to "))
        .map(|(_, path)| PathBuf::from(path.trim()))
        .next_back()
}

fn files_in(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.filter(|e| e.is_ok()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_final_stats_and_crash_line() {
        let log = "#1024 pulse cov: 300\n\
                   ==123== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='/w/fuzz/artifacts/engine/'; Test unit written to /w/fuzz/artifacts/engine/crash-0a1b\n\
                   stat::number_of_executed_units: 98765\n\
                   stat::new_units_added: 12\n\
                   stat::peak_rss_mb: 81\n";
        assert_eq!(stat(log, "number_of_executed_units"), 98765);
        assert_eq!(stat(log, "new_units_added"), 12);
        assert_eq!(stat(log, "peak_rss_mb"), 81);
        assert_eq!(stat(log, "slowest_unit_time_sec"), 0);
        assert_eq!(
            crash_input(log),
            Some(PathBuf::from("/w/fuzz/artifacts/engine/crash-0a1b"))
        );
        assert_eq!(crash_input("stat::number_of_executed_units: 5\n"), None);
    }
}
