//! One QEMU boot of a kernel and an initramfs: the command line, the timeout, a scratch NVMe
//! disk, the console collected (and echoed) as it arrives, and boots retried when the kernel dies
//! before /init runs.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};

use super::console::{Console, ConsoleFilter, tail};
use crate::cmd::describe;
use crate::files::create_dir;
use crate::kernels::Kernel;
use crate::paths::vm_dir;

/// Guest memory.
pub const MEMORY_MB: u64 = 1024;
/// The scratch NVMe disk's size: room for the workloads' O_DIRECT reads (the bench walks
/// through its first 16 MiB) and vm-test's FAT file system.
pub const DISK_MB: u64 = 64;

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
    /// More kernel command line (e.g. `movablecore=256M`), after the usual one.
    pub cmdline: String,
    /// Instruction time (`-icount shift=0,sleep=off`, single-threaded TCG) instead of
    /// multi-threaded TCG: the guest's clocks advance one nanosecond per instruction the guest
    /// executes (all vCPUs together), whatever the host's load, so guest-measured durations
    /// repeat to about 0.1% on CPU-bound work. Slower in wall time (one host thread), and
    /// time spent waiting for emulated devices is skipped: for benchmarks of CPU-bound work.
    pub icount: bool,
}

impl Boot {
    /// `kernel` with `initramfs`, the guest every task boots: [`MEMORY_MB`], a scratch disk of
    /// [`DISK_MB`], the console not echoed.
    pub fn new(kernel: &Kernel, initramfs: PathBuf, timeout: Duration) -> Boot {
        Boot {
            kernel: kernel.vmlinuz.clone(),
            initramfs,
            disk_mb: DISK_MB,
            memory_mb: MEMORY_MB,
            timeout,
            echo: false,
            cmdline: String::new(),
            icount: false,
        }
    }
}

/// Boots the kernel under TCG and returns the console once the guest powers off (or the
/// kernel panics: `panic=-1` and `-no-reboot` make QEMU exit then too).
pub fn boot(b: &Boot) -> Result<Console> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let run = boot_once(b)?;
        let why = emulation_fault(&run.console.text);
        if why.is_none() || attempt == ATTEMPTS {
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
            "vm: {} {} (attempt {attempt} of {ATTEMPTS}: {}); booting again",
            b.kernel.display(),
            why.unwrap_or_default(),
            run.failure
                .as_deref()
                .and_then(|f| f.lines().next())
                .unwrap_or_else(|| first_oops(&run.console.text))
        );
        attempt += 1;
    }
}

/// [`boot`], then the console kept in `<logs>/<release>-<task>.log` and checked to come from
/// `kernel`'s guest (see [`Console::ran`]); the console and the log's path.
pub fn boot_logged(
    kernel: &Kernel,
    b: &Boot,
    logs: &std::path::Path,
    task: &str,
) -> Result<(Console, PathBuf)> {
    let console = boot(b)?;
    let log = logs.join(format!("{}-{task}.log", kernel.release));
    let _ = fs::write(&log, &console.text);
    console.ran(kernel)?;
    Ok((console, log))
}

/// Why the guest died of the emulator rather than of the code under test, if it did: it died
/// before running /init, or of an int3 oops. The kernel patches its own text with a temporary
/// int3 (text_poke_bp: each fentry attach and detach does), and under multi-threaded TCG a
/// vCPU can still run the breakpoint after the patch is done, which the kernel then takes for
/// a stray int3 (seen on 6.18 at get_user_pages_remote+0x5 while `record` attached, as an exec
/// passed through it). An eBPF program cannot raise int3, so this is never gup-trace's fault.
fn emulation_fault(console: &str) -> Option<&'static str> {
    if crashed_before_init(console) {
        Some("died before /init ran")
    } else if console.lines().any(|l| l.contains("Oops: int3")) {
        Some("died of an int3 oops while the kernel patched its text (a TCG race)")
    } else {
        None
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
    qemu.args(accel_args(b.icount))
        .args(["-cpu", "max", "-smp", "2"])
        .args(["-m", &b.memory_mb.to_string()])
        // No network card: nothing uses it, and its boot ROM (iPXE) only costs time.
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(&b.kernel)
        .arg("-initrd")
        .arg(&b.initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init {}",
            b.cmdline
        ));
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

/// QEMU's accelerator flags: multi-threaded TCG, or single-threaded TCG in instruction time
/// (see [`Boot::icount`]).
fn accel_args(icount: bool) -> &'static [&'static str] {
    if icount {
        &["-accel", "tcg", "-icount", "shift=0,sleep=off"]
    } else {
        &["-accel", "tcg,thread=multi"]
    }
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
        let patching = "GUPTRACE-INIT\n[ 171.9] Oops: int3: 0000 [#1] SMP NOPTI\n[ 171.9] RIP: 0010:get_user_pages_remote+0x5/0x430\n";
        assert!(
            emulation_fault(patching).is_some_and(|why| why.contains("int3")),
            "an int3 oops while live patching is TCG's, wherever it happens"
        );
        assert_eq!(emulation_fault(late), None);
        let silent = "SeaBIOS (version 1.16)\nBooting from ROM..\n";
        assert!(crashed_before_init(silent), "a silent reset is retried too");
        assert!(first_oops(silent).contains("silent reset"));
    }

    #[test]
    fn instruction_time_is_single_threaded_tcg() {
        assert_eq!(
            accel_args(true),
            ["-accel", "tcg", "-icount", "shift=0,sleep=off"]
        );
        assert!(accel_args(false).concat().contains("thread=multi"));
    }
}
