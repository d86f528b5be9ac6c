//! Booting a stock kernel in QEMU (TCG: KVM does not work here) with a throw-away busybox
//! initramfs, and reading what the guest printed on its serial console.
//!
//! The guest has no root file system: /init mounts the pseudo file systems the tracer needs,
//! runs the caller's shell script and powers off. The script reports by printing lines the
//! caller looks for (see [`Console::find`]); the host never trusts QEMU's exit alone.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{describe, output, run};
use crate::kernels::{self, Kernel};
use crate::paths::vm_dir;

/// Prefix of the line a guest script prints with its verdict.
pub const VERDICT_PREFIX: &str = "GUPTRACE-RESULT ";

/// Prefix of the line /init prints with the guest script's exit status.
pub const EXIT_PREFIX: &str = "GUPTRACE-EXIT ";

/// Writes a gzip'd newc cpio to `out` with busybox, the `files` (host path, absolute guest
/// path; dynamically linked ELF files get their shared libraries and loader too), and an /init
/// that mounts proc, sysfs, devtmpfs, bpf, tracefs, debugfs and a tmpfs on /tmp, runs
/// `guest_script` with sh, prints `GUPTRACE-EXIT <status>` and powers off.
pub fn build_initramfs(out: &Path, files: &[(PathBuf, String)], guest_script: &str) -> Result<()> {
    let file_name = out
        .file_name()
        .ok_or_else(|| anyhow!("initramfs path {} has no file name", out.display()))?;
    // Kept next to the image after packing: handy to see what the guest got.
    let root = out.with_file_name(format!("{}.root", file_name.to_string_lossy()));
    let _ = fs::remove_dir_all(&root);
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "root",
    ] {
        create_dir(&root.join(dir))?;
    }
    add_busybox(&root)?;
    for (host, guest) in files {
        add_file(&root, host, guest)?;
    }
    write_executable(&root.join("init"), INIT)?;
    write_executable(&root.join("guest.sh"), guest_script)?;
    pack_cpio(&root, out)
}

/// The guest's PID 1. The kernel may start it without a console on fds 0-2 (there is no
/// /dev/console in our archive), so it mounts devtmpfs and reopens the console first.
const INIT: &str = r#"#!/bin/sh
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
echo "GUPTRACE-INIT"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf || echo "init: cannot mount bpf on /sys/fs/bpf"
mount -t tracefs tracefs /sys/kernel/tracing || echo "init: cannot mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug || echo "init: cannot mount debugfs"
cd /root
sh /guest.sh
echo "GUPTRACE-EXIT $?"
poweroff -f
"#;

/// /bin/busybox (the static build from busybox-static) and a symlink for each applet, made
/// on the host so that /init does not depend on /proc being mounted for `--install`.
fn add_busybox(root: &Path) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!(
            "{} is missing: install busybox-static (cargo xtask setup)",
            busybox.display()
        );
    }
    add_file(root, busybox, "/bin/busybox")?;
    let applets = output(Command::new(busybox).arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let link = root.join(applet);
        if applet == "bin/busybox" || link.exists() {
            continue;
        }
        create_dir(link.parent().expect("applet paths have a directory"))?;
        symlink("/bin/busybox", &link)
            .with_context(|| format!("cannot create symlink {}", link.display()))?;
    }
    Ok(())
}

/// Copies `host` to `guest` under `root`, plus its shared libraries if it is a dynamic ELF.
fn add_file(root: &Path, host: &Path, guest: &str) -> Result<()> {
    copy_into(root, host, guest)?;
    if !is_elf(host)? {
        return Ok(());
    }
    for lib in shared_libraries(host)? {
        let guest_path = lib.to_string_lossy().into_owned();
        if !root.join(guest_path.trim_start_matches('/')).exists() {
            copy_into(root, &lib, &guest_path)?;
        }
    }
    Ok(())
}

fn copy_into(root: &Path, host: &Path, guest: &str) -> Result<()> {
    if !guest.starts_with('/') {
        bail!(
            "guest path {guest:?} (for {}) must be absolute",
            host.display()
        );
    }
    let dest = root.join(guest.trim_start_matches('/'));
    create_dir(dest.parent().expect("absolute paths have a parent"))?;
    // A host file may replace a busybox applet link of the same name.
    if dest.is_symlink() {
        fs::remove_file(&dest)?;
    }
    fs::copy(host, &dest).with_context(|| {
        format!(
            "cannot copy {} into the initramfs as {guest}",
            host.display()
        )
    })?;
    Ok(())
}

fn is_elf(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF")
}

/// The libraries and loader `ldd` resolves for `binary`; none for a static one.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = Command::new("ldd");
    cmd.arg(binary);
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {}", describe(&cmd)))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A static binary: glibc's ldd exits 1 with "not a dynamic executable", static-pie ones
    // make it print "statically linked".
    let is_static =
        |s: &str| s.contains("not a dynamic executable") || s.contains("statically linked");
    if is_static(&stdout) || is_static(&stderr) {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!(
            "{} failed: {}: {}",
            describe(&cmd),
            out.status,
            stderr.trim()
        );
    }
    let mut libs = Vec::new();
    for line in stdout.lines().map(str::trim) {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
        // (0x...)", or "linux-vdso.so.1 (0x...)" which is in the kernel.
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!(
                        "{} needs {} which ldd cannot find",
                        binary.display(),
                        name.trim()
                    );
                }
                target.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

fn pack_cpio(root: &Path, out: &Path) -> Result<()> {
    let out = std::path::absolute(out)?;
    run(Command::new("bash")
        .args([
            "-c",
            r#"set -e -o pipefail; find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1 > "$1""#,
            "bash",
        ])
        .arg(&out)
        .current_dir(root))
    .with_context(|| format!("cannot pack {} into {}", root.display(), out.display()))
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write_executable(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

/// One QEMU run.
pub struct Boot {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Size of the scratch NVMe disk (/dev/nvme0n1 in the guest); 0 for none.
    pub disk_mb: u64,
    pub memory_mb: u64,
    /// QEMU is killed after this long and the boot fails.
    pub timeout: Duration,
    /// Copy the console to our stdout as it arrives.
    pub echo: bool,
}

/// What the guest printed on its serial console, without \r and terminal escapes.
pub struct Console {
    pub text: String,
    /// From starting QEMU to its exit: boot plus the guest script.
    pub wall: Duration,
}

impl Console {
    /// The rest of the last line that starts with `prefix` (e.g. [`VERDICT_PREFIX`]).
    pub fn find(&self, prefix: &str) -> Option<&str> {
        find_line(&self.text, prefix)
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        tail(&self.text, n)
    }

    /// Fails unless the guest script says it ran on `kernel` (every guest script starts by
    /// printing `uname: $(uname -r)`).
    pub fn ran(&self, kernel: &Kernel) -> Result<()> {
        match self.find("uname: ") {
            Some(release) if release == kernel.release => Ok(()),
            other => bail!(
                "the guest did not run {} (its script said {other:?}); last console lines:\n{}",
                kernel.release,
                self.tail(15)
            ),
        }
    }
}

/// The rest of the last line of `text` that starts with `prefix`.
pub fn find_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim_end)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boots the kernel under TCG and returns the console once the guest powers off (or the
/// kernel panics: `panic=-1` and `-no-reboot` make QEMU exit then too).
pub fn boot(b: &Boot) -> Result<Console> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let run = boot_once(b)?;
        let early = crashed_before_init(&run.console.text);
        if !early || attempt == ATTEMPTS {
            return match run.failure {
                None => Ok(run.console),
                Some(failure) => Err(anyhow!(failure)),
            };
        }
        // Seen with 7.3 under multi-threaded TCG: an int3 oops while the kernel patches its
        // own text during early boot, before our /init exists; in CI a guest that reset
        // within 3 s without printing anything; and QEMU itself dying of SIGSEGV while
        // booting 6.12. None of it is the code under test, so boot again, and say so.
        println!(
            "vm: {} died before /init ran (attempt {attempt} of {ATTEMPTS}: {}); booting again",
            b.kernel.display(),
            run.failure
                .as_deref()
                .and_then(|f| f.lines().next())
                .unwrap_or_else(|| first_oops(&run.console.text))
        );
        attempt += 1;
    }
}

/// Whether the guest kernel died before running /init: its first line never appeared.
fn crashed_before_init(console: &str) -> bool {
    // The marker can share its line with the firmware's last words ("Booting from ROM..").
    !console.lines().any(|l| l.ends_with("GUPTRACE-INIT"))
}

/// The line that says why the guest died early, if it printed one.
fn first_oops(console: &str) -> &str {
    console
        .lines()
        .find(|l| l.contains("Oops") || l.contains("Kernel panic"))
        .map_or("it printed no oops or panic: a silent reset", str::trim)
}

/// One boot: the console, and why QEMU did not end with the guest powering off, if it did not.
struct Run {
    console: Console,
    failure: Option<String>,
}

/// Fails only when QEMU cannot be started at all.
fn boot_once(b: &Boot) -> Result<Run> {
    let disk = ScratchDisk::create(b.disk_mb)?;
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
        .args(["-m", &b.memory_mb.to_string()])
        // No network card: nothing uses it, and its boot ROM (iPXE) only costs time.
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(&b.kernel)
        .arg("-initrd")
        .arg(&b.initramfs)
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init",
        ]);
    if let Some(path) = &disk.path {
        // The kernels have NVMe built in; virtio-blk is a module and 9p is absent.
        qemu.arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=d0,cache=none",
                path.display()
            ))
            .args(["-device", "nvme,serial=guptrace,drive=d0"]);
    }
    // stdin from /dev/null: QEMU must not put our terminal into raw mode.
    qemu.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = qemu.spawn().with_context(|| {
        format!(
            "failed to start {} (is qemu-system-x86 installed?)",
            describe(&qemu)
        )
    })?;
    let console = Arc::new(Mutex::new(Vec::new()));
    let reader = spawn_console_reader(&mut child, Arc::clone(&console), b.echo);
    let stderr = spawn_stderr_reader(&mut child);

    let status = wait_with_timeout(&mut child, b.timeout)?;
    let wall = started.elapsed();
    let _ = reader.join();
    let stderr = stderr.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    let failure = match status {
        None => Some(format!(
            "QEMU ({}) did not finish within {:?}: the guest hung or its work is too slow under TCG; last console lines:\n{}",
            b.kernel.display(),
            b.timeout,
            tail(&text, 20)
        )),
        Some(s) if !s.success() => Some(format!(
            "{} failed: {s}: {}\nlast console lines:\n{}",
            describe(&qemu),
            stderr.trim(),
            tail(&text, 20)
        )),
        Some(_) => None,
    };
    Ok(Run {
        console: Console { text, wall },
        failure,
    })
}

/// Waits for `child`, killing it after `timeout`; `None` means it was killed.
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Collects QEMU's stdout (the serial console) through a [`ConsoleFilter`], optionally
/// echoing it.
fn spawn_console_reader(
    child: &mut Child,
    console: Arc<Mutex<Vec<u8>>>,
    echo: bool,
) -> thread::JoinHandle<()> {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    thread::spawn(move || {
        let mut filter = ConsoleFilter::default();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let clean = filter.feed(&buf[..n]);
            if echo {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&clean);
                let _ = out.flush();
            }
            console.lock().unwrap().extend_from_slice(&clean);
        }
    })
}

/// Removes \r and terminal escape sequences from the console. SeaBIOS and the kernel reset
/// and clear the screen (ESC c, ESC [2J) without a newline, which would glue the guest's first
/// line to "Booting from ROM.." and, echoed, would clear the user's terminal; a reset or clear
/// becomes a line break instead.
#[derive(Default)]
struct ConsoleFilter {
    state: EscapeState,
    at_line_start: bool,
}

#[derive(Default, PartialEq)]
enum EscapeState {
    #[default]
    Text,
    /// After ESC.
    Escape,
    /// Inside ESC [ ... (a CSI sequence), until its final byte.
    Csi,
}

impl ConsoleFilter {
    fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            let clears = match self.state {
                EscapeState::Text => {
                    match b {
                        b'\r' => {}
                        0x1b => self.state = EscapeState::Escape,
                        _ => {
                            out.push(b);
                            self.at_line_start = b == b'\n';
                        }
                    }
                    false
                }
                EscapeState::Escape => {
                    self.state = if b == b'[' {
                        EscapeState::Csi
                    } else {
                        EscapeState::Text
                    };
                    b == b'c'
                }
                EscapeState::Csi => {
                    let is_final = (0x40..=0x7e).contains(&b);
                    if is_final {
                        self.state = EscapeState::Text;
                    }
                    is_final && b == b'J'
                }
            };
            if clears && !self.at_line_start {
                out.push(b'\n');
                self.at_line_start = true;
            }
        }
        out
    }
}

fn spawn_stderr_reader(child: &mut Child) -> thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    })
}

/// A sparse raw image under target/vm/disks, removed when dropped. Named per process and boot
/// so that parallel boots do not share one.
struct ScratchDisk {
    path: Option<PathBuf>,
}

impl ScratchDisk {
    fn create(size_mb: u64) -> Result<ScratchDisk> {
        if size_mb == 0 {
            return Ok(ScratchDisk { path: None });
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = vm_dir().join("disks");
        create_dir(&dir)?;
        let path = dir.join(format!(
            "disk-{}-{}.img",
            std::process::id(),
            NEXT.fetch_add(1, AtomicOrdering::Relaxed)
        ));
        let file =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.set_len(size_mb << 20)
            .with_context(|| format!("cannot size {} to {size_mb} MB", path.display()))?;
        Ok(ScratchDisk { path: Some(path) })
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

/// `cargo xtask vm-boot`: boots each kernel with a script that only checks what the real tests
/// rely on (BTF, the NVMe disk, the pin counters) and prints a table. A debugging aid for the
/// VM plumbing, without the tracer in the way.
pub fn vm_boot(series: &[String], echo: bool) -> Result<()> {
    let series: Vec<&str> = if series.is_empty() {
        kernels::DEFAULT_SERIES.to_vec()
    } else {
        series.iter().map(String::as_str).collect()
    };
    let kernels = kernels::resolve(&series)?;
    let initramfs = vm_dir().join("vm-boot.cpio.gz");
    build_initramfs(&initramfs, &[], VM_BOOT_SCRIPT)?;

    let mut rows = Vec::new();
    for (requested, kernel) in series.iter().zip(&kernels) {
        println!(
            "vm-boot: booting {} (package {}, {}config)",
            kernel.release,
            kernel.package_version,
            if kernel.config.is_some() {
                "with "
            } else {
                "no "
            }
        );
        let result = boot(&Boot {
            kernel: kernel.vmlinuz.clone(),
            initramfs: initramfs.clone(),
            disk_mb: 64,
            memory_mb: 1024,
            timeout: Duration::from_secs(120),
            echo,
        });
        let (seconds, verdict) = match result {
            Ok(console) => (
                format!("{:.1}", console.wall.as_secs_f64()),
                vm_boot_verdict(&console, kernel),
            ),
            Err(e) => ("-".to_string(), format!("error: {e:#}")),
        };
        rows.push((requested.to_string(), kernel, seconds, verdict));
    }

    println!(
        "\n{:<12} {:<30} {:>7}  verdict",
        "series", "release", "seconds"
    );
    for (requested, kernel, seconds, verdict) in &rows {
        let label = if *requested == kernel.series {
            requested.clone()
        } else {
            format!("{requested} ({})", kernel.series)
        };
        println!("{label:<12} {:<30} {seconds:>7}  {verdict}", kernel.release);
    }
    let failed = rows.iter().filter(|r| r.3 != "ok").count();
    if failed > 0 {
        bail!(
            "{failed} of {} kernels did not boot cleanly (run with --echo to see their consoles)",
            rows.len()
        );
    }
    Ok(())
}

/// `cargo xtask vm-run`: one guest, gup-trace installed, one command, the console live.
pub fn vm_run(
    series: &str,
    timeout_secs: u64,
    with: &[PathBuf],
    kmod: bool,
    command: &str,
) -> Result<()> {
    let binary = crate::build::gup_trace_release()?;
    let kernel = kernels::resolve(&[series])?.remove(0);
    let initramfs = vm_dir().join("vm-run.cpio.gz");
    let script =
        format!("echo \"uname: $(uname -r)\"\n{command}\necho \"GUPTRACE-RESULT exit=$?\"\n");
    let mut files = vec![(binary, "/bin/gup-trace".to_string())];
    for extra in with {
        let name = extra
            .file_name()
            .ok_or_else(|| anyhow!("--with {}: not a file", extra.display()))?;
        files.push((extra.clone(), format!("/bin/{}", name.to_string_lossy())));
    }
    if kmod {
        files.extend(crate::kmod::guest_files(&kernel)?);
    }
    build_initramfs(&initramfs, &files, &script)?;
    let console = boot(&Boot {
        kernel: kernel.vmlinuz.clone(),
        initramfs,
        disk_mb: 64,
        memory_mb: 1024,
        timeout: Duration::from_secs(timeout_secs),
        echo: true,
    })?;
    match console.find(VERDICT_PREFIX) {
        Some("exit=0") => Ok(()),
        other => bail!("the command did not succeed in the guest ({other:?})"),
    }
}

const VM_BOOT_SCRIPT: &str = r#"
echo "uname: $(uname -r)"
grep foll_pin /proc/vmstat
missing=""
[ -e /sys/kernel/btf/vmlinux ] || missing="$missing /sys/kernel/btf/vmlinux"
[ -b /dev/nvme0n1 ] || missing="$missing /dev/nvme0n1"
if [ -z "$missing" ]; then
    echo "GUPTRACE-RESULT ok"
else
    echo "GUPTRACE-RESULT missing:$missing"
fi
"#;

/// "ok" when the guest says so and runs the kernel we meant to boot.
fn vm_boot_verdict(console: &Console, kernel: &Kernel) -> String {
    if let Err(e) = console.ran(kernel) {
        return format!("{e:#}");
    }
    if console.find("nr_foll_pin_acquired ").is_none() {
        return "no nr_foll_pin_acquired in /proc/vmstat".to_string();
    }
    if console.find(EXIT_PREFIX) != Some("0") {
        return format!(
            "guest script failed; last console lines:\n{}",
            console.tail(10)
        );
    }
    match console.find(VERDICT_PREFIX) {
        Some(v) => v.to_string(),
        None => format!("no verdict line; last console lines:\n{}", console.tail(10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_kernel_crash_is_told_apart_from_a_failing_guest() {
        let early =
            "[    1.3] Oops: int3: 0000 [#1] SMP NOPTI\n[    1.4] Kernel panic - not syncing\n";
        assert!(crashed_before_init(early));
        assert_eq!(
            first_oops(early),
            "[    1.3] Oops: int3: 0000 [#1] SMP NOPTI"
        );
        let late = "GUPTRACE-INIT\n[   9.0] Kernel panic - not syncing\n";
        assert!(
            !crashed_before_init(late),
            "a crash after /init started is the test's business"
        );
        assert!(!crashed_before_init("GUPTRACE-INIT\nGUPTRACE-EXIT 0\n"));
        assert!(!crashed_before_init("Booting from ROM...GUPTRACE-INIT\n"));
        let silent = "SeaBIOS (version 1.16)\nBooting from ROM..\n";
        assert!(crashed_before_init(silent), "a silent reset is retried too");
        assert!(first_oops(silent).contains("silent reset"));
    }

    #[test]
    fn console_filter_breaks_lines_at_screen_clears() {
        let mut f = ConsoleFilter::default();
        let mut out = f.feed(b"Booting from ROM..\x1bc\x1b[?7l\x1b[2");
        out.extend(f.feed(b"Juname: 6.1\r\nGUPTRACE-RESULT ok\r\n"));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "Booting from ROM..\nuname: 6.1\nGUPTRACE-RESULT ok\n");
        assert_eq!(find_line(&text, "uname: "), Some("6.1"));
        assert_eq!(find_line(&text, VERDICT_PREFIX), Some("ok"));
    }
}
