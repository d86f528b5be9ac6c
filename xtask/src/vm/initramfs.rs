//! The guest's initramfs: a gzip'd newc cpio with busybox, the caller's files (dynamic ELF
//! files with their shared libraries and loader), an /init and the caller's script.

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{capture, describe, output, run};
use crate::files::{create_dir, write};

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
    let out = capture(&mut cmd)?;
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

fn write_executable(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}
