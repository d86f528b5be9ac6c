//! `cargo xtask vm-boot`: boots each kernel with a script that only checks what the real tests
//! rely on (BTF, the NVMe disk, the pin counters) and prints a table. A debugging aid for the
//! VM plumbing that vm-test and demo use, without the tracer in the way.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{
    kernels::{self, Kernel},
    paths::vm_dir,
    series::KernelSeriesList,
    vm::{self, Boot, Console, EXIT_PREFIX, VERDICT_PREFIX},
};

/// `cargo xtask vm-boot`'s flags.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub kernels: KernelSeriesList,
    /// Show each guest's console as it boots.
    #[arg(long)]
    pub echo: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    let series = opts.kernels.series();
    let kernels = kernels::resolve(&series)?;
    let initramfs = vm_dir().join("vm-boot.cpio.gz");
    vm::build_initramfs(&initramfs, &[], VM_BOOT_SCRIPT)?;

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
        let result = vm::boot(&Boot {
            echo: opts.echo,
            ..Boot::new(kernel, initramfs.clone(), Duration::from_secs(120))
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
