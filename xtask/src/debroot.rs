//! Debian roots made with `debootstrap --variant=minbase`, cached under target/ with a marker
//! written last (a root without it was interrupted and is made again), and what runs in them
//! needs mounted for a while: the Debian 13 build root of the pinleak module
//! ([`crate::kmod::BuildRoot`]) and the clean Debian 12 root the package test installs the
//! .deb into ([`crate::package`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{capture, describe, run as run_cmd};
use crate::files::write;
use crate::kernels::parse_deb822;

/// The machine's apt sources, where the mirror comes from (never written into this code).
const SOURCES_DEB822: &str = "/etc/apt/sources.list.d/debian.sources";
const SOURCES_LIST: &str = "/etc/apt/sources.list";
/// Written last by [`ensure`]: the packages asked for, one line. (Its name is the one the
/// build root had first, so roots made before stay valid.)
const MARKER: &str = ".gup-trace-buildroot";

/// A root of `suite` with `packages` (comma-separated, for debootstrap's --include) at `dir`,
/// made unless a complete one is there. A half-made root is unmounted and removed first.
/// `what` names it in the messages (e.g. "the Debian 13 build root").
pub fn ensure(dir: &Path, suite: &str, packages: &str, what: &str) -> Result<()> {
    let marker = dir.join(MARKER);
    if fs::read_to_string(&marker).is_ok_and(|m| m.trim() == packages) {
        return Ok(());
    }
    if dir.exists() {
        println!(
            "xtask: {what} {} is incomplete (an interrupted run?): making it again",
            dir.display()
        );
        unmount_all_under(dir)?;
        fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the half-made {}", dir.display()))?;
    }
    let mirror = machine_mirror()?;
    println!(
        "xtask: creating {what} {} with debootstrap ({suite}, once)",
        dir.display()
    );
    let log = dir.with_extension("log");
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={packages}"))
        .arg(suite)
        .arg(dir)
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
            last_lines(&text, 10)
        );
    }
    write(&marker, format!("{packages}\n"))
}

/// `program` run inside the root `dir` (chroot), in a clean environment.
pub fn chroot(dir: &Path, program: &str) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(dir)
        .arg(program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LC_ALL", "C");
    cmd
}

/// A file system mounted at a point inside a root while it lives (unmounted when dropped).
pub struct Mount {
    point: PathBuf,
}

impl Mount {
    /// `mount -t fstype fstype point`. One left at `point` by a killed run is reused (and
    /// unmounted by this one).
    pub fn new(fstype: &str, point: &Path) -> Result<Self> {
        if !mount_points().iter().any(|m| m == point) {
            run_cmd(
                Command::new("mount")
                    .args(["-t", fstype, fstype])
                    .arg(point),
            )
            .with_context(|| format!("cannot mount {fstype} at {}", point.display()))?;
        }
        Ok(Self {
            point: point.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = run_cmd(Command::new("umount").arg(&self.point)) {
            eprintln!(
                "xtask: cannot unmount {} ({e:#}): `umount {}` by hand",
                self.point.display(),
                self.point.display()
            );
        }
    }
}

/// The mount points of this machine, from /proc/self/mountinfo.
pub fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// Unmounts whatever a killed run left mounted under `dir` (deepest first), so that removing
/// `dir` cannot reach into /proc.
pub fn unmount_all_under(dir: &Path) -> Result<()> {
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
pub fn machine_mirror() -> Result<String> {
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

fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The last `n` lines of a command's output, for an error message.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
}
