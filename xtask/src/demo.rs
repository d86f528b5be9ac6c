//! `cargo xtask demo`: gup-trace's main job, live, on a machine whose own kernel cannot hook
//! GUP: boots a stock kernel under QEMU and runs `gup-trace trace --stacks` over the selftest
//! workload, the guest console streamed to this terminal: each GUP call with the kernel stack
//! that made it.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{
    build, kernels,
    vm::{self, Boot, VERDICT_PREFIX, vm_dir},
};

/// The trace runs in the background and shows on the console as it happens; the workload runs
/// once it is ready; SIGTERM then ends the trace cleanly, with its summary.
const DEMO_SCRIPT: &str = r#"
echo
echo "=== gup-trace demo on Linux $(uname -r) ==="
gup-trace trace --stacks > /tmp/trace.out 2>&1 &
TRACE=$!
tail -f /tmp/trace.out &
TAIL=$!
while ! grep -q "tracing until stopped" /tmp/trace.out; do
    kill -0 $TRACE 2>/dev/null || break
    sleep 0.2
done
echo "=== running the pin workload: O_DIRECT read, io_uring fixed buffers, process_vm_readv ==="
gup-trace workload --device /dev/nvme0n1 > /tmp/workload.out 2>&1
sleep 1
kill -TERM $TRACE
wait $TRACE
STATUS=$?
sleep 0.5
kill $TAIL
echo "=== workload ==="
cat /tmp/workload.out
echo "GUPTRACE-RESULT trace-exit=$STATUS"
"#;

pub fn run(kernel: Option<&str>) -> Result<()> {
    let binary = build::gup_trace_release()?;
    let kernels = kernels::resolve(&[kernel.unwrap_or("newest")])?;
    let kernel = &kernels[0];
    let initramfs = vm_dir().join("demo.cpio.gz");
    vm::build_initramfs(
        &initramfs,
        &[(binary, "/bin/gup-trace".into())],
        DEMO_SCRIPT,
    )?;
    println!(
        "demo: booting {} under QEMU (TCG); the guest console follows",
        kernel.release
    );
    let console = vm::boot(&Boot {
        kernel: kernel.vmlinuz.clone(),
        initramfs,
        disk_mb: 64,
        memory_mb: 1024,
        timeout: Duration::from_secs(300),
        echo: true,
    })?;
    match console.find(VERDICT_PREFIX) {
        Some("trace-exit=0") => {
            println!("demo: done in {:.1} s", console.wall.as_secs_f64());
            Ok(())
        }
        other => bail!("the demo did not finish cleanly ({other:?})"),
    }
}
