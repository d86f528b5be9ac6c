//! Builds the eBPF object (crate `gup-trace-ebpf`) with aya-build, so that building `gup-trace`
//! always embeds programs that match this source tree.

use anyhow::{Context as _, anyhow};

/// Must match `EBPF_TOOLCHAIN` in xtask/src/setup.rs: its LLVM is the one bpf-linker is built
/// against. `cargo xtask setup` installs it.
const EBPF_TOOLCHAIN: &str = "nightly-2026-07-01";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "gup-trace-ebpf")
        .ok_or_else(|| anyhow!("package gup-trace-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
    .context("building the eBPF object failed: run `cargo xtask setup` to install the pinned nightly, rust-src and bpf-linker")
}
