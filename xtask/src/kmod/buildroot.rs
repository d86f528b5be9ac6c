//! The Debian 13 build root: where pinleak.ko is built for kernels this machine cannot build
//! modules for.
//!
//! Debian 13's kernels (6.12+deb13, 7.x) are built with gcc-14, and the kbuild programs of
//! their headers packages (modpost, objtool, resolve_btfids) need glibc >= 2.38: neither exists
//! on Debian 12. A `debootstrap --variant=minbase` of trixie with the compiler and what kbuild
//! runs has both (about 30 s and 680 MB, once, under `target/vm/buildroot-trixie`). The
//! kernel's unpacked headers packages are copied to their own paths inside it (`/usr/src`,
//! `/usr/lib/linux-kbuild-*`) and `make` runs under `chroot` with /proc mounted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{capture, describe, run as run_cmd};
use crate::files::write;
use crate::kernels::parse_deb822;
use crate::paths::vm_dir;

/// The suite of the root: the Debian release whose compiler and glibc the kernels need.
const SUITE: &str = "trixie";
/// What kbuild runs for an out-of-tree module: the compiler, make, the C library headers,
/// libelf (objtool), bc/flex/bison (the tree's scripts) and pahole (the module's BTF).
const PACKAGES: &str = "gcc-14,make,libc6-dev,libelf-dev,bc,flex,bison,dwarves";
/// Written last by [`BuildRoot::ensure`]: a root without it was interrupted and is redone.
const MARKER: &str = ".gup-trace-buildroot";
/// The machine's apt sources, where the mirror comes from (never written into this code).
const SOURCES_DEB822: &str = "/etc/apt/sources.list.d/debian.sources";
const SOURCES_LIST: &str = "/etc/apt/sources.list";

/// A complete build root.
pub struct BuildRoot {
    dir: PathBuf,
}

impl BuildRoot {
    /// The build root, created unless a complete one is cached. A half-made root (no marker:
    /// an interrupted debootstrap) is unmounted and removed first.
    pub fn ensure() -> Result<Self> {
        let dir = vm_dir().join(format!("buildroot-{SUITE}"));
        let marker = dir.join(MARKER);
        if fs::read_to_string(&marker).is_ok_and(|m| m.trim() == PACKAGES) {
            return Ok(Self { dir });
        }
        if dir.exists() {
            println!(
                "kmod: {} is incomplete (an interrupted run?): making it again",
                dir.display()
            );
            unmount_all_under(&dir)?;
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove the half-made {}", dir.display()))?;
        }
        let mirror = machine_mirror()?;
        println!(
            "kmod: creating the Debian 13 build root {} with debootstrap (about 30 s and 680 MB, once)",
            dir.display()
        );
        let log = vm_dir().join(format!("buildroot-{SUITE}.log"));
        let mut cmd = Command::new("debootstrap");
        cmd.arg("--variant=minbase")
            .arg(format!("--include={PACKAGES}"))
            .arg(SUITE)
            .arg(&dir)
            .arg(&mirror);
        let out = capture(cmd.stdin(Stdio::null()))?;
        let text = combined(&out);
        let _ = fs::write(&log, &text);
        if !out.status.success() {
            bail!(
                "{} failed ({}); its output is in {} and ends:\n{}\n\
                 (debootstrap comes with `cargo xtask setup`; it needs root and the network)",
                describe(&cmd),
                out.status,
                log.display(),
                super::last_lines(&text, 10)
            );
        }
        write(&marker, format!("{PACKAGES}\n"))?;
        Ok(Self { dir })
    }

    /// Whether the root has `program` in /usr/bin (the kernel's compiler, e.g.
    /// x86_64-linux-gnu-gcc-14).
    pub fn has_program(&self, program: &str) -> bool {
        self.dir.join("usr/bin").join(program).exists()
    }

    /// Where the path `inside` of the root is on this machine.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.dir.join(inside.trim_start_matches('/'))
    }

    /// Copies the unpacked headers packages of `release` (`unpacked` holds their `usr/`) to
    /// their own paths in the root, and points the tree's Makefile, which [`super`] relocated
    /// into the unpacked copy, back at /usr/src. Skipped when the same packages are there.
    pub fn install_headers(&self, release: &str, unpacked: &Path) -> Result<()> {
        let packages = fs::read_to_string(unpacked.join("packages"))
            .with_context(|| format!("cannot read {}", unpacked.join("packages").display()))?;
        let stamp = self.host_path(&format!("/usr/src/.gup-trace-{release}.packages"));
        if fs::read_to_string(&stamp).ok().as_deref() == Some(packages.as_str()) {
            return Ok(());
        }
        let _ = fs::remove_file(&stamp);
        run_cmd(
            Command::new("cp")
                .arg("-a")
                .arg(unpacked.join("usr/."))
                .arg(self.host_path("/usr/")),
        )
        .with_context(|| format!("cannot copy the headers of {release} into the build root"))?;
        let src = self.host_path("/usr/src");
        for entry in fs::read_dir(&src)
            .with_context(|| format!("cannot list {}", src.display()))?
            .flatten()
        {
            let makefile = entry.path().join("Makefile");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("linux-headers-")
                && name.contains(release)
                && let Ok(text) = fs::read_to_string(&makefile)
            {
                write(&makefile, unrelocate_makefile(&text))?;
            }
        }
        write(&stamp, packages)
    }

    /// Runs `make args` inside the root (chroot, a clean environment, /proc mounted for the
    /// time of the build and unmounted afterwards, whether make succeeded or not).
    pub fn make(&self, args: &[String]) -> Result<(Output, String)> {
        let _proc = ProcMount::new(&self.dir.join("proc"))?;
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.dir)
            .arg("make")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = capture(&mut cmd)?;
        Ok((out, describe(&cmd)))
    }
}

/// /proc mounted in the root while it lives.
struct ProcMount {
    point: PathBuf,
}

impl ProcMount {
    fn new(point: &Path) -> Result<Self> {
        // One left by a killed run is reused (and unmounted by this one).
        if !mount_points().iter().any(|m| m == point) {
            run_cmd(
                Command::new("mount")
                    .args(["-t", "proc", "proc"])
                    .arg(point),
            )
            .with_context(|| {
                format!("cannot mount /proc in the build root ({})", point.display())
            })?;
        }
        Ok(Self {
            point: point.to_path_buf(),
        })
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        if let Err(e) = run_cmd(Command::new("umount").arg(&self.point)) {
            eprintln!(
                "kmod: cannot unmount {} ({e:#}): `umount {}` by hand",
                self.point.display(),
                self.point.display()
            );
        }
    }
}

/// The mount points of this machine, from /proc/self/mountinfo.
fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// Unmounts whatever a killed run left mounted under `dir` (deepest first), so that removing
/// `dir` cannot reach into /proc.
fn unmount_all_under(dir: &Path) -> Result<()> {
    let mut under: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for point in under {
        run_cmd(Command::new("umount").arg(&point)).with_context(|| {
            format!("cannot unmount {} left by an earlier run", point.display())
        })?;
    }
    Ok(())
}

/// The machine's Debian mirror, read from its apt sources.
fn machine_mirror() -> Result<String> {
    let deb822 = fs::read_to_string(SOURCES_DEB822).ok();
    let list = fs::read_to_string(SOURCES_LIST).ok();
    mirror_from_sources(deb822.as_deref(), list.as_deref()).ok_or_else(|| {
        anyhow!(
            "neither {SOURCES_DEB822} nor {SOURCES_LIST} names a Debian mirror (a `deb` source of \
             a release suite, not -security or -updates): debootstrap needs one for the build root"
        )
    })
}

/// The URI of the first `deb` source of a plain release suite (not `-security`, `-updates`,
/// `-backports`): deb822 sources first, then the one-line format.
fn mirror_from_sources(deb822: Option<&str>, list: Option<&str>) -> Option<String> {
    let plain = |suite: &str| !suite.contains('-') && !suite.contains('/');
    let from_deb822 = deb822.and_then(|text| {
        parse_deb822(text).into_iter().find_map(|s| {
            let is_deb = s
                .get("Types")
                .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
            let suites = s.get("Suites")?;
            if !is_deb || !suites.split_whitespace().any(plain) {
                return None;
            }
            s.get("URIs")?.split_whitespace().next().map(String::from)
        })
    });
    from_deb822.or_else(|| {
        list?.lines().find_map(|line| {
            let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
            if words.next()? != "deb" {
                return None;
            }
            let uri = words.next()?;
            plain(words.next()?).then(|| uri.to_string())
        })
    })
}

/// The headers tree's Makefile names the common headers (and from 7.x, KBUILD_OUTPUT) by
/// absolute path under /usr/src, which [`super`] pointed into the unpacked copy on this
/// machine (wherever that was when it was unpacked): point them at /usr/src again.
fn unrelocate_makefile(text: &str) -> String {
    const USR_SRC: &str = "/usr/src/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut mid_token = false;
    while let Some(at) = rest.find(USR_SRC) {
        let head = &rest[..at];
        // The path's first character: after the space, '=' or newline before it.
        match head.rfind([' ', '=', '\n']) {
            Some(i) => out.push_str(&head[..=i]),
            None if mid_token => out.push_str(head),
            None => {}
        }
        out.push_str(USR_SRC);
        rest = &rest[at + USR_SRC.len()..];
        mid_token = true;
    }
    out.push_str(rest);
    out
}

fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_comes_from_the_release_suite() {
        let deb822 = "Types: deb\n\
                      # a comment\n\
                      URIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\n\
                      Components: main\n\
                      \n\
                      Types: deb\n\
                      URIs: http://mirror.example/debian\n\
                      Suites: bookworm bookworm-updates\n\
                      Components: main\n";
        assert_eq!(
            mirror_from_sources(Some(deb822), None).as_deref(),
            Some("http://mirror.example/debian")
        );
        let list = "deb http://mirror.example/debian-security bookworm-security main\n\
                    deb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(None, Some(list)).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_from_sources(
                Some("Types: deb-src\nURIs: http://x/\nSuites: bookworm\n"),
                None
            ),
            None
        );
    }

    #[test]
    fn makefile_paths_point_at_usr_src_again() {
        let text = "KBUILD_OUTPUT=/work/a/target/vm/headers/7.3/usr/src/linux-headers-7.3-cloud-amd64\n\
                    include /work/a/target/vm/headers/7.3/usr/src/linux-headers-7.3-common/Makefile\n\
                    include /usr/src/already/Makefile\n";
        assert_eq!(
            unrelocate_makefile(text),
            "KBUILD_OUTPUT=/usr/src/linux-headers-7.3-cloud-amd64\n\
             include /usr/src/linux-headers-7.3-common/Makefile\n\
             include /usr/src/already/Makefile\n"
        );
    }
}
