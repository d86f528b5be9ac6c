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

use anyhow::{Context as _, Result};

use crate::cmd::{capture, describe, run as run_cmd};
use crate::debroot::{self, Mount};
use crate::files::write;
use crate::paths::vm_dir;

/// The suite of the root: the Debian release whose compiler and glibc the kernels need.
const SUITE: &str = "trixie";
/// What kbuild runs for an out-of-tree module: the compiler, make, the C library headers,
/// libelf (objtool), bc/flex/bison (the tree's scripts) and pahole (the module's BTF).
const PACKAGES: &str = "gcc-14,make,libc6-dev,libelf-dev,bc,flex,bison,dwarves";

/// A complete build root.
pub struct BuildRoot {
    dir: PathBuf,
}

impl BuildRoot {
    /// The build root, created unless a complete one is cached (about 30 s and 680 MB, once).
    pub fn ensure() -> Result<Self> {
        let dir = vm_dir().join(format!("buildroot-{SUITE}"));
        debroot::ensure(&dir, SUITE, PACKAGES, "the Debian 13 build root")?;
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
        let _proc = Mount::new("proc", &self.dir.join("proc"))?;
        let mut cmd = debroot::chroot(&self.dir, "make");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = capture(&mut cmd)?;
        Ok((out, describe(&cmd)))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
