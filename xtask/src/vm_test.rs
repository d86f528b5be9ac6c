//! `cargo xtask vm-test`: `gup-trace selftest` inside stock Debian kernels under QEMU, each
//! judged by the kernel's own /proc/vmstat pin counters. Passes only if every kernel passes.

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{
    build,
    kernels::{self, Kernel},
    vm::{self, Boot, VERDICT_PREFIX, vm_dir},
};

const SELFTEST_SCRIPT: &str = r#"
echo "uname: $(uname -r)"
echo "GUPTRACE-RESULT $(gup-trace selftest --json --device /dev/nvme0n1)"
"#;

/// One row of the result table.
struct Row {
    release: String,
    hooks: String,
    pins: String,
    unpins: String,
    /// Folio transitions checked against the pin bias rule, and anomalies.
    bias: String,
    seconds: f64,
    /// None when the kernel passed.
    failure: Option<String>,
}

pub fn run(series: &[String]) -> Result<()> {
    let series = default_series(series);
    let binary = build::gup_trace_release()?;
    let kernels = kernels::resolve(&series)?;
    let initramfs = vm_dir().join("selftest.cpio.gz");
    vm::build_initramfs(
        &initramfs,
        &[(binary, "/bin/gup-trace".into())],
        SELFTEST_SCRIPT,
    )?;
    let logs = vm_dir().join("logs");
    fs::create_dir_all(&logs)?;

    let mut rows = Vec::new();
    for kernel in &kernels {
        println!("vm-test: {} ...", kernel.release);
        let row = boot_and_judge(kernel, &initramfs, &logs);
        if let Some(f) = &row.failure {
            println!("vm-test: {} FAILED: {f}", kernel.release);
        }
        rows.push(row);
    }
    print_table(&rows);
    let failed = rows.iter().filter(|r| r.failure.is_some()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} kernels failed the selftest (consoles in {})",
            rows.len(),
            logs.display()
        );
    }
    Ok(())
}

pub fn default_series(series: &[String]) -> Vec<&str> {
    if series.is_empty() {
        kernels::DEFAULT_SERIES.to_vec()
    } else {
        series.iter().map(String::as_str).collect()
    }
}

fn boot_and_judge(kernel: &Kernel, initramfs: &PathBuf, logs: &std::path::Path) -> Row {
    let mut row = Row {
        release: kernel.release.clone(),
        hooks: "-".into(),
        pins: "-".into(),
        unpins: "-".into(),
        bias: "-".into(),
        seconds: 0.0,
        failure: None,
    };
    let console = match vm::boot(&Boot {
        kernel: kernel.vmlinuz.clone(),
        initramfs: initramfs.clone(),
        disk_mb: 64,
        memory_mb: 1024,
        // Loading ~60 programs with bounded loops takes 1-2 minutes of verifier time under TCG.
        timeout: Duration::from_secs(420),
        echo: false,
    }) {
        Ok(c) => c,
        Err(e) => {
            row.failure = Some(format!("{e:#}"));
            return row;
        }
    };
    row.seconds = console.wall.as_secs_f64();
    let log = logs.join(format!("{}-selftest.log", kernel.release));
    let _ = fs::write(&log, &console.text);
    if console.find("uname: ") != Some(kernel.release.as_str()) {
        row.failure = Some(format!(
            "the guest did not run {}; last console lines:\n{}",
            kernel.release,
            console.tail(15)
        ));
        return row;
    }
    match console.find(VERDICT_PREFIX).map(parse_verdict) {
        Some(Ok(v)) => {
            row.hooks = v.hooks;
            row.pins = v.pins;
            row.unpins = v.unpins;
            row.bias = v.bias;
            row.failure = v.failure;
        }
        Some(Err(e)) => row.failure = Some(format!("{e:#}; console: {}", log.display())),
        None => {
            row.failure = Some(format!(
                "no verdict; last console lines:\n{}",
                console.tail(15)
            ))
        }
    }
    row
}

struct Verdict {
    hooks: String,
    pins: String,
    unpins: String,
    bias: String,
    failure: Option<String>,
}

fn parse_verdict(line: &str) -> Result<Verdict> {
    let v: Value = serde_json::from_str(line)
        .with_context(|| format!("selftest printed no JSON verdict: {line:.200}"))?;
    let n = |path: &[&str]| -> u64 {
        path.iter()
            .try_fold(&v, |v, k| v.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let hooks = format!(
        "{} fentry, {} kprobe, {} tp{}",
        n(&["hooks", "fentry"]),
        n(&["hooks", "kprobe"]),
        n(&["hooks", "tracepoint"]),
        match n(&["hooks", "failed"]) {
            0 => String::new(),
            f => format!(", {f} FAILED"),
        }
    );
    // Per call / per folio / vmstat.
    let triple = |seen: &str, vmstat: &str| {
        format!(
            "{}/{}/{}",
            n(&["summary", seen]),
            n(&["summary", "folios", seen]),
            n(&["summary", "vmstat", vmstat])
        )
    };
    let bias = match n(&["summary", "folios", "bias_anomalies"]) {
        0 => format!("{} ok", n(&["summary", "folios", "bias_checked"])),
        bad => format!("{bad} BAD of {}", n(&["summary", "folios", "bias_checked"])),
    };
    let failure = match v.get("verdict").and_then(Value::as_str) {
        Some("pass") => None,
        other => Some(format!(
            "verdict {}: {}",
            other.unwrap_or("missing"),
            v.get("reason").and_then(Value::as_str).unwrap_or("")
        )),
    };
    Ok(Verdict {
        hooks,
        pins: triple("pinned", "acquired"),
        unpins: triple("released", "released"),
        bias,
        failure,
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<28} {:<26} {:>16} {:>16} {:>12} {:>7}  verdict",
        "kernel",
        "hooks attached",
        "pins call/folio/vm",
        "unpins call/folio/vm",
        "bias rule",
        "seconds"
    );
    for r in rows {
        println!(
            "{:<28} {:<26} {:>18} {:>20} {:>12} {:>7.1}  {}",
            r.release,
            r.hooks,
            r.pins,
            r.unpins,
            r.bias,
            r.seconds,
            if r.failure.is_none() { "pass" } else { "FAIL" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_line_becomes_a_table_row() {
        let line = r#"{"verdict":"pass","reason":null,"hooks":{"fentry":12,"kprobe":1,"tracepoint":1,"failed":0},"summary":{"pinned":128,"released":128,"folios":{"pinned":128,"released":127,"bias_checked":130,"bias_anomalies":0},"vmstat":{"acquired":128,"released":128}}}"#;
        let v = parse_verdict(line).unwrap();
        assert_eq!(v.hooks, "12 fentry, 1 kprobe, 1 tp");
        assert_eq!(
            (v.pins.as_str(), v.unpins.as_str()),
            ("128/128/128", "128/127/128")
        );
        assert_eq!(v.bias, "130 ok");
        assert!(v.failure.is_none());
        let bad = line.replace(
            "\"pass\",\"reason\":null",
            "\"fail\",\"reason\":\"pinned 1 vs vmstat 2\"",
        );
        assert!(
            parse_verdict(&bad)
                .unwrap()
                .failure
                .unwrap()
                .contains("pinned 1 vs vmstat 2")
        );
        assert!(parse_verdict("garbage").is_err());
    }
}
