//! What the host tests share: running the real binary, and starting processes for it to see.
//! Each test crate uses part of it.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, ChildStderr, Command, Output, Stdio},
};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs gup-trace to the end.
pub fn gup_trace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gup-trace"))
        .args(args)
        .output()
        .expect("run gup-trace")
}

/// Its stdout then its stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// gup-trace running in the background, its programs attached.
pub struct Running {
    pub child: Child,
    pub stderr: BufReader<ChildStderr>,
    /// Its stderr so far.
    pub said: String,
}

/// Starts gup-trace and waits until its stderr says `ready` (the line it prints once the
/// programs are attached: loading is slow on a busy machine).
pub fn start_gup_trace(args: &[&str], ready: &str) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gup-trace"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gup-trace");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains(ready) {
        assert!(stderr.read_line(&mut said).unwrap() > 0, "{said}");
    }
    Running {
        child,
        stderr,
        said,
    }
}

/// Starts `n` short-lived children (`sleep 0.1`) one after another; their pids.
pub fn short_lived_children(n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let mut child = Command::new("sleep").arg("0.1").spawn().unwrap();
            child.wait().unwrap();
            child.id()
        })
        .collect()
}
