//! `cargo xtask test`: everything, in the order that fails fastest: unit tests and the host
//! tests (which load the tracepoint program into this machine's kernel), the Debian package
//! in a clean Debian 12 root, each fuzz target for a short fixed time, then the VM matrix, then
//! the `top` dashboard captured in a guest.

use std::time::Instant;

use anyhow::Result;

use crate::{build, cmd::run as run_cmd, demo, fuzz, package, vm_test};

/// How long `cargo xtask test` runs each fuzz target: long enough to replay the corpus and
/// try new inputs, short enough for CI.
const FUZZ_SECONDS: u32 = 20;

/// `cargo xtask test`'s flags: those of the VM matrix it runs.
pub type Options = vm_test::Options;

pub fn run(opts: &Options) -> Result<()> {
    let start = Instant::now();
    println!("xtask test: unit and host tests");
    // The default members: everything but the eBPF crate, which only builds for BPF (the
    // gup-trace build script builds it).
    run_cmd(build::cargo().args(["test", "--quiet"]))?;
    println!("xtask test: the Debian package");
    package::test()?;
    println!("xtask test: fuzz targets, {FUZZ_SECONDS} s each");
    fuzz::fuzz(fuzz::TARGETS, FUZZ_SECONDS)?;
    println!("xtask test: VM matrix");
    vm_test::run(opts)?;
    if opts.kernels.is_default() {
        // The dashboard's proof: `top` captured headless in a guest over the workload and two
        // leaks (the module's on 6.1), the findings panel lit.
        println!("xtask test: the top dashboard in a guest");
        demo::run_tui("6.1", true)?;
    }
    println!(
        "xtask test: all passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
