//! `cargo xtask package`: the Debian package, for machines without a Rust toolchain; and its
//! test, which `cargo xtask test` runs.
//!
//! The package is built by cargo-deb (installed at a pinned version, `cargo install --locked`,
//! when missing) from `[package.metadata.deb]` in gup-trace/Cargo.toml, after the release
//! build and after `gup-trace assets` wrote the man pages and shell completions (generated
//! from the command line's definition) under target/package-assets.
//!
//! The test installs the .deb into a clean Debian 12 root (`debootstrap --variant=minbase`
//! with man-db, made once under target/package-root-bookworm, about 40 s; the package is
//! purged again afterwards, so the root stays clean), checks what `dpkg -L` lists, runs `man`
//! and `gup-trace --help` from the installed files, and starts the installed `gup-trace serve`
//! in the root (with /proc, /sys and tracefs mounted: this machine's kernel is the one it
//! traces), scrapes its /metrics, checks the kernel's pin counters against /proc/vmstat, and
//! stops it with SIGTERM (exit 0). The package never goes into this machine itself.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    build,
    cmd::{capture, describe, output, run as run_cmd, succeeds},
    debroot::{self, Mount},
    paths::target_dir,
};

/// The cargo-deb that builds the package: pinned, so the package's layout does not change
/// under us.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The root the test installs the package into: Debian 12, as the README's machines.
const ROOT_SUITE: &str = "bookworm";
/// What the root has besides minbase: `man`, to read the installed man page.
const ROOT_PACKAGES: &str = "man-db";

/// Files the package must hold (as `dpkg -L` lists them).
const PACKAGE_FILES: [&str; 8] = [
    "/usr/bin/gup-trace",
    "/usr/lib/systemd/system/gup-trace-serve.service",
    "/usr/share/man/man1/gup-trace.1.gz",
    "/usr/share/man/man1/gup-trace-serve.1.gz",
    "/usr/share/bash-completion/completions/gup-trace",
    "/usr/share/zsh/vendor-completions/_gup-trace",
    "/usr/share/fish/vendor_completions.d/gup-trace.fish",
    "/usr/share/gup-trace/prometheus/rules.yml",
];

/// `cargo xtask package`'s flags.
#[derive(clap::Args)]
pub struct Options {
    /// Also install the package into a clean Debian 12 root and check it there (the step
    /// `cargo xtask test` runs).
    #[arg(long)]
    test: bool,
}

/// `cargo xtask package`: builds the .deb (and with --test checks it) and prints its path.
pub fn run(opts: &Options) -> Result<()> {
    let deb = if opts.test { test()? } else { build_deb()? };
    println!("{}", deb.display());
    Ok(())
}

/// The release binary, its assets, then the .deb; its path.
pub fn build_deb() -> Result<PathBuf> {
    ensure_cargo_deb()?;
    let binary = build::gup_trace_release()?;
    let assets = target_dir().join("package-assets");
    // A page or completion that is no longer generated must not stay in the package.
    if assets.exists() {
        fs::remove_dir_all(&assets)
            .with_context(|| format!("cannot clear {}", assets.display()))?;
    }
    run_cmd(
        Command::new(&binary)
            .arg("assets")
            .arg("--out")
            .arg(&assets),
    )
    .context("gup-trace could not write its man pages and completions")?;
    println!("xtask: building the Debian package with cargo-deb {CARGO_DEB_VERSION}");
    let out = output(build::cargo().args(["deb", "-p", "gup-trace", "--no-build"])).context(
        "cargo-deb failed (its metadata is [package.metadata.deb] in gup-trace/Cargo.toml)",
    )?;
    let deb = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo-deb printed no .deb path; it printed:\n{out}"))?;
    ensure!(
        deb.is_file(),
        "cargo-deb named {} but it is not there",
        deb.display()
    );
    Ok(deb)
}

/// cargo-deb at [`CARGO_DEB_VERSION`], installed unless that one is there.
fn ensure_cargo_deb() -> Result<()> {
    let installed = capture(Command::new("cargo").args(["deb", "--version"]))
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if installed.as_deref() == Some(&format!("cargo-deb {CARGO_DEB_VERSION}")) {
        return Ok(());
    }
    println!("xtask: installing cargo-deb {CARGO_DEB_VERSION} (a few minutes, once)");
    run_cmd(build::cargo().args([
        "install",
        "--locked",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
    ]))
    .context("cargo install cargo-deb failed")
}

/// The test: build the .deb, install it into the clean root, check it, purge it; the .deb.
pub fn test() -> Result<PathBuf> {
    let start = Instant::now();
    let deb = build_deb()?;
    let root = target_dir().join(format!("package-root-{ROOT_SUITE}"));
    debroot::ensure(&root, ROOT_SUITE, ROOT_PACKAGES, "the clean Debian 12 root")?;
    // One an interrupted run left installed goes first: the install below is into a clean root.
    purge(&root)?;
    let result = check_installed(&root, &deb);
    let purged = purge(&root);
    result?;
    purged?;
    ensure!(
        !root.join("usr/bin/gup-trace").exists(),
        "dpkg --purge left /usr/bin/gup-trace in {}",
        root.display()
    );
    println!(
        "xtask: package test passed in {:.0} s: {} installs into a clean Debian 12 root, its files, man page, --help and serve work there",
        start.elapsed().as_secs_f64(),
        deb.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(deb)
}

fn purge(root: &Path) -> Result<()> {
    run_cmd(debroot::chroot(root, "dpkg").args(["--purge", "gup-trace"]))
        .with_context(|| format!("cannot purge gup-trace from {}", root.display()))
}

/// What `program args` inside the root printed; an error with its output when it failed.
fn in_root(root: &Path, program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = debroot::chroot(root, program);
    cmd.args(args).stdin(Stdio::null());
    let out = capture(&mut cmd)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} failed ({}) in {}:\n{text}{}",
            describe(&cmd),
            out.status,
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

fn check_installed(root: &Path, deb: &Path) -> Result<()> {
    let inside = "/tmp/gup-trace.deb";
    fs::copy(deb, root.join(inside.trim_start_matches('/')))
        .with_context(|| format!("cannot copy {} into {}", deb.display(), root.display()))?;
    in_root(root, "dpkg", &["-i", inside]).context(
        "the package does not install into a clean Debian 12 root (its Depends, or its files)",
    )?;
    let listed = in_root(root, "dpkg", &["-L", "gup-trace"])?;
    let missing: Vec<&str> = PACKAGE_FILES
        .iter()
        .copied()
        .filter(|f| !listed.lines().any(|l| l == *f))
        .collect();
    ensure!(
        missing.is_empty(),
        "the installed package lacks {missing:?}; dpkg -L lists:\n{listed}"
    );
    let man = in_root(
        root,
        "man",
        &["-P", "cat", "-l", "/usr/share/man/man1/gup-trace.1.gz"],
    )?;
    ensure!(
        man.contains("gup-trace-serve(1)") && man.contains("FOLL_PIN"),
        "the installed man page does not list the serve command's page:\n{man}"
    );
    let help = in_root(root, "/usr/bin/gup-trace", &["--help"])?;
    ensure!(
        help.lines().any(|l| l.trim_start().starts_with("serve")),
        "the installed gup-trace --help lists no serve command:\n{help}"
    );
    serve_in_root(root)
}

/// The installed `gup-trace serve`, in the root, scraped once and stopped with SIGTERM.
fn serve_in_root(root: &Path) -> Result<()> {
    // Dropped in reverse: tracefs, then /sys, then /proc.
    let _proc = Mount::new("proc", &root.join("proc"))?;
    let _sys = Mount::new("sysfs", &root.join("sys"))?;
    let _tracing = Mount::new("tracefs", &root.join("sys/kernel/tracing"))?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port on 127.0.0.1")?
        .port();
    let log = target_dir().join("package-serve.log");
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = debroot::chroot(root, "/usr/bin/gup-trace");
    cmd.args(["serve", "--listen", &listen])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?,
        );
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", describe(&cmd)))?;
    let scraped = scrape(&mut child, &listen, &log);
    // chroot execs gup-trace: the child's pid is the server's.
    let stopped = succeeds(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = wait(&mut child, Duration::from_secs(20));
    let body = scraped?;
    ensure!(
        stopped,
        "could not send SIGTERM to the installed gup-trace serve"
    );
    let status = status?;
    ensure!(
        status.success(),
        "the installed gup-trace serve exited with {status} on SIGTERM (want 0); its log: {}",
        log.display()
    );
    println!(
        "xtask: the installed gup-trace serve answered /metrics ({} lines) and stopped on SIGTERM with exit 0",
        body.lines().count()
    );
    Ok(())
}

/// GET /metrics until the server answers (60 s at most): the body, after checking the
/// kernel's pin counters in it against /proc/vmstat read around the scrape.
fn scrape(child: &mut Child, listen: &str, log: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the installed gup-trace serve exited ({status}) before answering; its log ({}):\n{}",
                log.display(),
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        let before = vmstat_acquired()?;
        if let Ok(response) = get_metrics(listen) {
            let after = vmstat_acquired()?;
            let Some(body) = response.split_once("\r\n\r\n").map(|(_, b)| b) else {
                bail!("a response without a body from {listen}:\n{response}");
            };
            ensure!(
                response.starts_with("HTTP/1.1 200"),
                "GET /metrics answered:\n{response}"
            );
            let value = body
                .lines()
                .find_map(|l| l.strip_prefix("gup_trace_kernel_foll_pin_acquired_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .with_context(|| {
                    format!("no gup_trace_kernel_foll_pin_acquired_total in:\n{body}")
                })?;
            ensure!(
                (before..=after).contains(&value),
                "gup_trace_kernel_foll_pin_acquired_total is {value}, /proc/vmstat said {before} before the scrape and {after} after"
            );
            ensure!(
                body.contains("gup_trace_hook_info{"),
                "no gup_trace_hook_info series in:\n{body}"
            );
            return Ok(body.to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "the installed gup-trace serve did not answer on {listen} within 60 s; its log: {}",
                log.display()
            );
        }
        sleep(Duration::from_millis(250));
    }
}

fn get_metrics(listen: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(listen)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The kernel's `nr_foll_pin_acquired` now.
fn vmstat_acquired() -> Result<u64> {
    let text = fs::read_to_string("/proc/vmstat").context("cannot read /proc/vmstat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("nr_foll_pin_acquired "))
        .and_then(|v| v.trim().parse().ok())
        .context("/proc/vmstat has no nr_foll_pin_acquired (a kernel before 5.8?)")
}

fn wait(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the installed gup-trace serve did not stop within {} s of SIGTERM (killed)",
                limit.as_secs()
            );
        }
        sleep(Duration::from_millis(100));
    }
}
