//! `cargo xtask vm-test`: `gup-trace selftest` inside stock Debian kernels under QEMU, each
//! judged by the kernel's own /proc/vmstat pin counters. Passes only if every kernel passes.
//!
//! The guest formats the scratch disk with FAT and mounts it for the selftest's legacy direct
//! I/O step (the one that makes the kernel call `folio_add_pin`); FAT is a module in Debian's
//! cloud kernels, so each kernel's FAT modules are taken from its package and put in the
//! initramfs under `/lib/modules/<release>/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    build,
    cmd::{output, run as run_cmd},
    files::create_dir,
    kernels::{self, Kernel},
    paths::vm_dir,
    series::KernelSeriesList,
    vm::{self, Boot, VERDICT_PREFIX},
    vm_blocking, vm_check, vm_cma, vm_sessions,
};

const SELFTEST_SCRIPT: &str = r#"
echo "uname: $(uname -r)"
M=/lib/modules/$(uname -r)
for m in nls_cp437 fat msdos; do [ -f $M/$m.ko ] && insmod $M/$m.ko; done
LEGACY=""
if grep -qw msdos /proc/filesystems && mkdosfs /dev/nvme0n1 >/dev/null && mkdir -p /mnt/fat \
    && mount -t msdos /dev/nvme0n1 /mnt/fat; then
    LEGACY="--legacy-dio-dir /mnt/fat"
else
    echo "vm-test: no FAT file system on /dev/nvme0n1"
fi
echo "GUPTRACE-RESULT $(gup-trace selftest --json --device /dev/nvme0n1 $LEGACY)"
"#;

/// Kernel modules for a FAT file system, in load order (msdos needs fat, fat needs the
/// default codepage).
const FAT_MODULES: [&str; 3] = ["nls_cp437", "fat", "msdos"];

/// scsi_debug, a slow disk on demand (its `delay`, in jiffies), and what it needs to appear as
/// /dev/sdX, in load order: the leak scenarios hold short-term O_DIRECT pins with it.
pub const SCSI_DEBUG_MODULES: [&str; 4] = ["scsi_common", "scsi_mod", "sd_mod", "scsi_debug"];

/// Workload steps that must run in the guest (a skip fails the kernel): each provokes what no
/// other step does, and the selftest checks it only when it ran.
const REQUIRED_STEPS: [&str; 3] = [
    "o_direct_read_cold_file_mmap",
    "process_vm_readv_zero_page",
    "legacy_direct_io_read",
];

/// `cargo xtask vm-test`'s flags (`cargo xtask test` takes them too).
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub kernels: KernelSeriesList,
}

/// One row of the result table.
struct Row {
    release: String,
    hooks: String,
    pins: String,
    unpins: String,
    /// Folio transitions checked against the pin bias rule, and anomalies.
    bias: String,
    /// mmap_lock drops inside GUP.
    drops: String,
    /// Zero-page pins the kernel skipped / counted.
    zero: String,
    /// Pins added by folio_add_pin(s).
    added: String,
    seconds: f64,
    /// None when the kernel passed.
    failure: Option<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    let series = opts.kernels.series();
    let binary = build::gup_trace_release()?;
    let kernels = kernels::resolve(&series)?;
    let initramfs = vm_dir().join("selftest.cpio.gz");
    let mut files = vec![(binary.clone(), "/bin/gup-trace".to_string())];
    for kernel in &kernels {
        let modules = package_modules(kernel, &FAT_MODULES)
            .with_context(|| format!("cannot get the FAT modules of {}", kernel.release))?;
        for (name, path) in modules {
            files.push((path, format!("/lib/modules/{}/{name}.ko", kernel.release)));
        }
    }
    vm::build_initramfs(&initramfs, &files, SELFTEST_SCRIPT)?;
    let logs = vm_dir().join("logs");
    fs::create_dir_all(&logs)?;

    let mut rows = Vec::new();
    for kernel in &kernels {
        println!("vm-test: {} ...", kernel.release);
        let row = boot_and_judge(kernel, &initramfs, &logs);
        if let Some(f) = &row.failure {
            println!("vm-test: {} FAILED: {f}", kernel.release);
        }
        rows.push(row);
    }
    print_table(&rows);

    let mut checks = Vec::new();
    for kernel in &kernels {
        println!("vm-test: {}: leak scenarios ...", kernel.release);
        let row = vm_check::run(kernel, &binary, &logs);
        for f in &row.failures {
            println!("vm-test: {} FAILED: {f}", kernel.release);
        }
        checks.push(row);
    }
    print_check_table(&checks);

    let blocking: Vec<vm_blocking::BlockingRow> =
        scenario_rows("vm-test", &kernels, &binary, &logs);
    let cma: Vec<vm_cma::CmaRow> = scenario_rows("vm-test", &kernels, &binary, &logs);
    // Four minutes a guest: on the oldest and the newest kernel only (`vm-sessions` runs them
    // on any).
    let sessions: Vec<vm_sessions::SessionsRow> =
        scenario_rows("vm-test", &oldest_and_newest(&kernels), &binary, &logs);
    let failed_blocking = blocking.iter().filter(|r| r.failed()).count()
        + cma.iter().filter(|r| r.failed()).count()
        + sessions.iter().filter(|r| r.failed()).count();

    let failed = rows.iter().filter(|r| r.failure.is_some()).count();
    let failed_checks = checks.iter().filter(|r| !r.failures.is_empty()).count();
    if failed > 0 || failed_checks > 0 || failed_blocking > 0 {
        bail!(
            "{failed} of {} kernels failed the selftest, {failed_checks} the leak scenarios and \
             {failed_blocking} the blocking, CMA or session scenarios (consoles in {})",
            rows.len(),
            logs.display()
        );
    }
    // The module scenarios must run on every kernel whose headers package exists (this machine
    // builds the module for Debian 12's kernels, the Debian 13 build root for the others): only
    // a kernel without headers (6.18.15 today) may go without them.
    let without: Vec<&str> = module_missing(&checks);
    if !without.is_empty() {
        bail!(
            "the pinleak module scenarios did not run on {} although their headers exist: \
             `cargo xtask kmod` says why",
            without.join(", ")
        );
    }
    Ok(())
}

/// The first and the last kernel of the matrix (the oldest and the newest series), once each.
fn oldest_and_newest(kernels: &[Kernel]) -> Vec<Kernel> {
    let mut ends: Vec<Kernel> = kernels.first().into_iter().cloned().collect();
    if kernels.len() > 1 {
        ends.extend(kernels.last().cloned());
    }
    ends
}

/// The kernels that ran without the module for a reason other than missing headers.
fn module_missing(checks: &[vm_check::CheckRow]) -> Vec<&str> {
    checks
        .iter()
        .filter(|r| !r.module && !r.no_headers)
        .map(|r| r.release.as_str())
        .collect()
}

fn print_check_table(rows: &[vm_check::CheckRow]) {
    print_cell_table(
        "kernel",
        &vm_check::headers(),
        rows.iter().map(|r| CellRow {
            release: &r.release,
            cells: r
                .cells
                .iter()
                .chain([&r.report])
                .map(String::as_str)
                .collect(),
            seconds: r.seconds,
            passed: r.failures.is_empty(),
        }),
    );
}

/// One kernel's line of a table of scenario cells.
pub struct CellRow<'a> {
    pub release: &'a str,
    pub cells: Vec<&'a str>,
    pub seconds: f64,
    pub passed: bool,
}

/// A table with a column (30 wide) per scenario, a line per kernel, its seconds and verdict.
pub fn print_cell_table<'a, H: AsRef<str>>(
    first: &str,
    headers: &[H],
    rows: impl IntoIterator<Item = CellRow<'a>>,
) {
    let mut line = format!("\n{first:<28}");
    for h in headers {
        line.push_str(&format!(" {:>30}", h.as_ref()));
    }
    println!("{line} seconds  verdict");
    for r in rows {
        let mut line = format!("{:<28}", r.release);
        for cell in r.cells {
            line.push_str(&format!(" {cell:>30}"));
        }
        println!(
            "{line} {:>7.1}  {}",
            r.seconds,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
}

fn boot_and_judge(kernel: &Kernel, initramfs: &Path, logs: &Path) -> Row {
    let mut row = Row {
        release: kernel.release.clone(),
        hooks: "-".into(),
        pins: "-".into(),
        unpins: "-".into(),
        bias: "-".into(),
        drops: "-".into(),
        zero: "-".into(),
        added: "-".into(),
        seconds: 0.0,
        failure: None,
    };
    // Loading ~60 programs with bounded loops takes 1-2 minutes of verifier time under TCG.
    let timeout = Duration::from_secs(420);
    let console = match vm::boot(&Boot::new(kernel, initramfs.to_path_buf(), timeout)) {
        Ok(c) => c,
        Err(e) => {
            row.failure = Some(format!("{e:#}"));
            return row;
        }
    };
    row.seconds = console.wall.as_secs_f64();
    let log = logs.join(format!("{}-selftest.log", kernel.release));
    let _ = fs::write(&log, &console.text);
    if let Err(e) = console.ran(kernel) {
        row.failure = Some(format!("{e:#}"));
        return row;
    }
    match console.find(VERDICT_PREFIX).map(parse_verdict) {
        Some(Ok(v)) => {
            row.hooks = v.hooks;
            row.pins = v.pins;
            row.unpins = v.unpins;
            row.bias = v.bias;
            row.drops = v.drops;
            row.zero = v.zero;
            row.added = v.added;
            row.failure = v.failure;
        }
        Some(Err(e)) => row.failure = Some(format!("{e:#}; console: {}", log.display())),
        None => {
            row.failure = Some(format!(
                "no verdict; last console lines:\n{}",
                console.tail(15)
            ))
        }
    }
    row
}

struct Verdict {
    hooks: String,
    pins: String,
    unpins: String,
    bias: String,
    drops: String,
    zero: String,
    added: String,
    failure: Option<String>,
}

fn parse_verdict(line: &str) -> Result<Verdict> {
    let v: Value = serde_json::from_str(line)
        .with_context(|| format!("selftest printed no JSON verdict: {line:.200}"))?;
    let n = |path: &[&str]| -> u64 {
        path.iter()
            .try_fold(&v, |v, k| v.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let hooks = format!(
        "{} fentry, {} kprobe, {} tp{}",
        n(&["hooks", "fentry"]),
        n(&["hooks", "kprobe"]),
        n(&["hooks", "tracepoint"]),
        match n(&["hooks", "failed"]) {
            0 => String::new(),
            f => format!(", {f} FAILED"),
        }
    );
    // Per call / per folio / vmstat.
    let triple = |seen: &str, vmstat: &str| {
        format!(
            "{}/{}/{}",
            n(&["summary", seen]),
            n(&["summary", "folios", seen]),
            n(&["summary", "vmstat", vmstat])
        )
    };
    let bias = match n(&["summary", "folios", "bias_anomalies"]) {
        0 => format!("{} ok", n(&["summary", "folios", "bias_checked"])),
        bad => format!("{bad} BAD of {}", n(&["summary", "folios", "bias_checked"])),
    };
    let mut failures = Vec::new();
    match v.get("verdict").and_then(Value::as_str) {
        Some("pass") => {}
        other => failures.push(format!(
            "verdict {}: {}",
            other.unwrap_or("missing"),
            v.get("reason").and_then(Value::as_str).unwrap_or("")
        )),
    }
    let steps = v.get("steps").and_then(Value::as_array);
    for required in REQUIRED_STEPS {
        let step = steps.and_then(|s| {
            s.iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(required))
        });
        match step.map(|s| s.get("skipped").and_then(Value::as_str)) {
            Some(None) => {}
            Some(Some(why)) => failures.push(format!("step {required} skipped: {why}")),
            None => failures.push(format!("step {required} missing from the report")),
        }
    }
    Ok(Verdict {
        hooks,
        pins: triple("pinned", "acquired"),
        unpins: triple("released", "released"),
        bias,
        drops: n(&["checks", "mmap_lock_drops"]).to_string(),
        zero: format!(
            "{}/{}",
            n(&["checks", "zero_page_pins_skipped"]),
            n(&["checks", "zero_page_pins_counted"])
        ),
        added: n(&["checks", "added_pins"]).to_string(),
        failure: (!failures.is_empty()).then(|| failures.join("; ")),
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<28} {:<26} {:>18} {:>20} {:>12} {:>6} {:>14} {:>6} {:>7}  verdict",
        "kernel",
        "hooks attached",
        "pins call/folio/vm",
        "unpins call/folio/vm",
        "bias rule",
        "drops",
        "zero skip/cnt",
        "added",
        "seconds"
    );
    for r in rows {
        println!(
            "{:<28} {:<26} {:>18} {:>20} {:>12} {:>6} {:>14} {:>6} {:>7.1}  {}",
            r.release,
            r.hooks,
            r.pins,
            r.unpins,
            r.bias,
            r.drops,
            r.zero,
            r.added,
            r.seconds,
            if r.failure.is_none() { "pass" } else { "FAIL" }
        );
    }
}

/// The `names` modules of `kernel` as (name, host path of the uncompressed .ko), taken once
/// from its Debian package into `<kernel dir>/modules/`. Up to 6.18 the modules are in the
/// image package itself; from 6.19 that one holds only the image and the modules are in
/// `linux-modules-<release>` (same version).
pub fn package_modules(
    kernel: &Kernel,
    names: &[&'static str],
) -> Result<Vec<(&'static str, PathBuf)>> {
    let dir = kernel
        .vmlinuz
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", kernel.vmlinuz.display()))?
        .join("modules");
    let wanted: Vec<(&str, PathBuf)> = names
        .iter()
        .map(|&name| (name, dir.join(format!("{name}.ko"))))
        .collect();
    if wanted.iter().all(|(_, path)| path.exists()) {
        return Ok(wanted);
    }
    let package_file = dir.with_file_name("package");
    let image = fs::read_to_string(&package_file)
        .with_context(|| format!("cannot read {}", package_file.display()))?;
    let image = image
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("{} is empty", package_file.display()))?
        .to_string();
    let scratch = vm_dir().join("apt").join("modules-download");
    let _ = fs::remove_dir_all(&scratch);
    create_dir(&scratch)?;
    let partial = dir.with_file_name(".modules.partial");
    let _ = fs::remove_dir_all(&partial);
    create_dir(&partial)?;
    // Modules extracted before (for other callers) are kept.
    if dir.is_dir() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            fs::copy(entry.path(), partial.join(entry.file_name()))?;
        }
    }
    let mut missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !partial.join(format!("{name}.ko")).exists())
        .collect();
    for package in [image, format!("linux-modules-{}", kernel.release)] {
        if missing.is_empty() {
            break;
        }
        let deb = download(&package, &kernel.package_version, &scratch)?;
        let members = output(
            Command::new("sh")
                .args(["-c", r#"dpkg-deb --fsys-tarfile "$1" | tar -t"#, "sh"])
                .arg(&deb),
        )?;
        missing.retain(|&name| {
            let Some(member) = module_member(&members, name) else {
                return true;
            };
            let dest = partial.join(format!("{name}.ko"));
            let decompress = match member.rsplit_once(".ko") {
                Some((_, ".xz")) => "xz -dc",
                Some((_, ".zst")) => "zstd -dc",
                _ => "cat",
            };
            let extracted = run_cmd(
                Command::new("bash")
                    .args([
                        "-c",
                        r#"set -e -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO "$2" | $3 > "$4""#,
                        "bash",
                    ])
                    .arg(&deb)
                    .arg(member)
                    .arg(decompress)
                    .arg(&dest),
            );
            extracted.is_err()
        });
        fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
        if missing.is_empty() {
            break;
        }
    }
    if !missing.is_empty() {
        bail!(
            "no {} module in the kernel's packages (or it could not be extracted)",
            missing.join(", ")
        );
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dir.display()))?;
    Ok(wanted)
}

/// Where the `name` module is in a package listing: `.../kernel/fs/fat/fat.ko[.xz|.zst]`.
fn module_member<'a>(members: &'a str, name: &str) -> Option<&'a str> {
    members.lines().find(|m| {
        m.rsplit_once('/').is_some_and(|(dir, file)| {
            dir.contains("/kernel/")
                && (file == format!("{name}.ko") || file.starts_with(&format!("{name}.ko.")))
        })
    })
}

/// `apt-get download package=version` into `dir` (the private apt configuration); the .deb.
fn download(package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
    println!("vm-test: downloading {package} {version} for its modules");
    run_cmd(
        kernels::apt_command("apt-get")?
            .args(["download", "-qq"])
            .arg(format!("{package}={version}"))
            .current_dir(dir)
            .stdout(std::process::Stdio::null()),
    )
    .with_context(|| format!("cannot download {package}"))?;
    fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .ok_or_else(|| {
            anyhow!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_row(release: &str, module: bool, no_headers: bool) -> vm_check::CheckRow {
        vm_check::CheckRow {
            release: release.into(),
            cells: Vec::new(),
            report: String::new(),
            module,
            no_headers,
            seconds: 0.0,
            failures: Vec::new(),
        }
    }

    #[test]
    fn only_kernels_without_headers_may_skip_the_module() {
        let rows = [
            check_row("6.1.0-57-cloud-amd64", true, false),
            check_row("6.12.118+deb13-cloud-amd64", false, false),
            check_row("6.18.15+deb13-cloud-amd64", false, true),
            check_row("7.3.4+deb13-cloud-amd64", true, false),
        ];
        assert_eq!(module_missing(&rows), ["6.12.118+deb13-cloud-amd64"]);
        assert!(module_missing(&rows[2..]).is_empty());
    }

    #[test]
    fn a_verdict_line_becomes_a_table_row() {
        let line = r#"{"verdict":"pass","reason":null,"hooks":{"fentry":12,"kprobe":1,"tracepoint":1,"failed":0},"checks":{"mmap_lock_drops":64,"zero_page_pins_skipped":64,"zero_page_pins_counted":0,"added_pins":128},"summary":{"pinned":128,"released":128,"folios":{"pinned":128,"released":127,"bias_checked":130,"bias_anomalies":0},"vmstat":{"acquired":128,"released":128}},"steps":[{"name":"o_direct_read_cold_file_mmap","skipped":null},{"name":"process_vm_readv_zero_page","skipped":null},{"name":"legacy_direct_io_read","skipped":null}]}"#;
        let v = parse_verdict(line).unwrap();
        assert_eq!(v.hooks, "12 fentry, 1 kprobe, 1 tp");
        assert_eq!(
            (v.pins.as_str(), v.unpins.as_str()),
            ("128/128/128", "128/127/128")
        );
        assert_eq!(v.bias, "130 ok");
        assert_eq!(
            (v.drops.as_str(), v.zero.as_str(), v.added.as_str()),
            ("64", "64/0", "128")
        );
        assert!(v.failure.is_none());
        // A step that provokes something only it provokes must not be skipped.
        let skipped = line.replace(
            r#""legacy_direct_io_read","skipped":null"#,
            r#""legacy_direct_io_read","skipped":"no FAT""#,
        );
        assert!(
            parse_verdict(&skipped)
                .unwrap()
                .failure
                .unwrap()
                .contains("step legacy_direct_io_read skipped: no FAT")
        );
        let bad = line.replace(
            "\"pass\",\"reason\":null",
            "\"fail\",\"reason\":\"pinned 1 vs vmstat 2\"",
        );
        assert!(
            parse_verdict(&bad)
                .unwrap()
                .failure
                .unwrap()
                .contains("pinned 1 vs vmstat 2")
        );
        assert!(parse_verdict("garbage").is_err());
    }

    #[test]
    fn modules_are_found_compressed_or_not() {
        let listing = "./usr/lib/modules/7.3.4/kernel/fs/fat/\n\
                       ./usr/lib/modules/7.3.4/kernel/fs/fat/fat.ko.xz\n\
                       ./usr/lib/modules/7.3.4/kernel/fs/fat/msdos.ko.xz\n\
                       ./lib/modules/6.1.0-56/kernel/fs/nls/nls_cp437.ko\n";
        assert_eq!(
            module_member(listing, "fat"),
            Some("./usr/lib/modules/7.3.4/kernel/fs/fat/fat.ko.xz")
        );
        assert_eq!(
            module_member(listing, "nls_cp437"),
            Some("./lib/modules/6.1.0-56/kernel/fs/nls/nls_cp437.ko")
        );
        assert_eq!(module_member(listing, "vfat"), None);
    }
}

/// One kernel's result of a scenario set that `vm-test` runs after its own and that a task of
/// its own (`vm-blocking`, `vm-cma`) runs alone on chosen kernels.
pub trait ScenarioRow: Sized {
    /// The task's name, for progress lines.
    const TASK: &'static str;
    /// What a guest of the set shows, for progress lines.
    const PROGRESS: &'static str;
    /// What failed, for the final error ("the CMA scenario").
    const WHAT: &'static str;
    fn run(kernel: &Kernel, binary: &Path, logs: &Path) -> Self;
    fn failed(&self) -> bool;
    fn print_table(rows: &[Self]);
}

/// `cargo xtask vm-blocking` and `vm-cma`: only those scenarios, on the chosen kernels.
#[derive(clap::Args)]
pub struct ScenarioOptions {
    #[command(flatten)]
    pub kernels: KernelSeriesList,
}

/// Boots each chosen kernel for the scenario set `R`, prints its table, and fails when a
/// kernel failed.
pub fn run_alone<R: ScenarioRow>(opts: &ScenarioOptions) -> Result<()> {
    let binary = build::gup_trace_release()?;
    let kernels = kernels::resolve(&opts.kernels.series())?;
    let logs = vm_dir().join("logs");
    fs::create_dir_all(&logs)?;
    let rows: Vec<R> = scenario_rows(R::TASK, &kernels, &binary, &logs);
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        bail!("{failed} of {} kernels failed {}", rows.len(), R::WHAT);
    }
    Ok(())
}

/// Boots each kernel for the scenario set `R` and prints its table.
fn scenario_rows<R: ScenarioRow>(
    task: &str,
    kernels: &[Kernel],
    binary: &Path,
    logs: &Path,
) -> Vec<R> {
    let rows: Vec<R> = kernels
        .iter()
        .map(|k| {
            println!("{task}: {}: {} ...", k.release, R::PROGRESS);
            R::run(k, binary, logs)
        })
        .collect();
    R::print_table(&rows);
    rows
}
