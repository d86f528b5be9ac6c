//! `cargo xtask setup`: installs everything the build and the VM tests need, idempotently.
//!
//! Every other xtask command calls [`ensure`] first, so a fresh Debian 12 machine with only
//! rustup (stable + nightly) needs no manual step. When everything is present this costs a few
//! process spawns (well under a second).

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::cmd::{output, run, succeeds};

/// Toolchain for userspace and the tests: aya 0.16 needs rustc >= 1.98, newer than the
/// machine's own stable.
pub const USER_TOOLCHAIN: &str = "1.99.1";
/// Toolchain for the eBPF object (`-Z build-std=core` for bpfel-unknown-none needs a nightly
/// with rust-src). Pinned, because its LLVM major must match the LLVM bpf-linker is built with.
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-07-01";
/// LLVM major of [`EBPF_TOOLCHAIN`]; bpf-linker must be built against the same one.
const LLVM_MAJOR: u32 = 22;

/// Debian packages: LLVM for bpf-linker, the tools that build and boot the test VMs, and what
/// building the pinleak test module needs: the compiler Debian 12's kernels are built with,
/// make, the libraries the kbuild programs link, pahole (module BTF), a static libc for
/// pinleak-user, debootstrap for the Debian 13 build root (see [`run_setup`]), Prometheus
/// (with promtool) that scrapes `gup-trace serve` in its host test, bpftool, the kernel's
/// own view of BPF objects, copied into the guest of the session scenarios, protoc, which
/// decodes `report --perfetto`'s output against Perfetto's own schema in its test, g++ for
/// libFuzzer, and bpftrace, which `cargo xtask bench` copies into its guest to measure what
/// people run today beside gup-trace.
fn apt_packages() -> Vec<String> {
    let mut pkgs: Vec<String> = ["llvm-{v}-dev", "libpolly-{v}-dev"]
        .iter()
        .map(|p| p.replace("{v}", &LLVM_MAJOR.to_string()))
        .collect();
    pkgs.extend(
        [
            "zlib1g-dev",
            "libzstd-dev",
            "qemu-system-x86",
            "busybox-static",
            "cpio",
            "lz4",
            "zstd",
            "gcc-12",
            // libfuzzer-sys builds libFuzzer (C++) for the fuzz targets.
            "g++",
            "make",
            "libc6-dev",
            "libelf1",
            "libssl3",
            "dwarves",
            "debootstrap",
            "prometheus",
            "bpftool",
            "protobuf-compiler",
            "bpftrace",
        ]
        .map(String::from),
    );
    pkgs
}

/// `cargo xtask setup`: [`ensure`] (which `main` ran), then the Debian 13 build root that builds
/// the pinleak module for the Debian 13 kernels of the matrix. Other tasks create the root when
/// a kernel first needs it, so only the explicit setup pays for it up front.
pub fn run_setup() -> Result<()> {
    crate::kmod::BuildRoot::ensure()?;
    println!("setup: done");
    Ok(())
}

pub fn ensure() -> Result<()> {
    ensure_toolchain(USER_TOOLCHAIN, &[])?;
    ensure_toolchain(EBPF_TOOLCHAIN, &["rust-src"])?;
    ensure_apt_packages()?;
    ensure_bpf_linker()?;
    Ok(())
}

fn ensure_toolchain(name: &str, components: &[&str]) -> Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    let present = installed
        .lines()
        .any(|l| l.starts_with(&format!("{name}-")));
    let missing: Vec<&str> = if present {
        let have = output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            name,
        ]))?;
        components
            .iter()
            .copied()
            .filter(|c| !have.lines().any(|l| l.starts_with(c)))
            .collect()
    } else {
        components.to_vec()
    };
    if present && missing.is_empty() {
        return Ok(());
    }
    let what = if missing.is_empty() {
        String::new()
    } else {
        format!(" with {}", missing.join(", "))
    };
    println!("setup: installing Rust toolchain {name}{what}");
    let mut cmd = Command::new("rustup");
    cmd.args(["toolchain", "install", name, "--profile", "minimal"]);
    for c in &missing {
        cmd.args(["--component", c]);
    }
    run(&mut cmd).with_context(|| format!("cannot install Rust toolchain {name} with rustup"))
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"install ok installed"))
}

fn ensure_apt_packages() -> Result<()> {
    let missing: Vec<String> = apt_packages()
        .into_iter()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    // llvm-22-dev lives in bookworm-security: a machine whose package lists are stale does not
    // know it yet, so refresh the lists first.
    run(Command::new("apt-get").args(["update", "-qq"]))
        .context("apt-get update failed (setup must run as root)")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get install failed (setup must run as root)")
}

fn ensure_bpf_linker() -> Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    println!("setup: building bpf-linker against LLVM {LLVM_MAJOR} (about a minute)");
    // The default feature set wants a newer LLVM than Debian 12 has, and the linker cannot find
    // -lLLVM on its own: point it at Debian's LLVM explicitly.
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{LLVM_MAJOR}"))
        .env("LLVM_PREFIX", format!("/usr/lib/llvm-{LLVM_MAJOR}")))
    .context("cargo install bpf-linker failed")
}
