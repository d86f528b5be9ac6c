//! `gup-trace check -- CMD ARGS...`: run a command, follow its whole process tree, and say
//! whether it left pins behind. Exit 0 when clean, 1 when it leaked, 2 when gup-trace itself
//! could not tell.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use gup_trace_common::HookClass;
use serde::Serialize;

use super::{FindingArgs, SessionArgs, require_root};
use crate::{
    engine::{Finding, PinEngine},
    kernel::PinVisibility,
    output::{self, FindingRecord},
    pipeline::{Events, Finished, LivePipeline, VmstatUse, no_consumer, stop_requested},
    session::{KernelCounters, Session, monotonic_ns},
    symbols::CallStack,
};

#[derive(Args, Debug)]
#[command(after_help = "\
Exit status: 0 when the command left no pins behind, 1 when it did (orphaned pins, \
unbalanced releases, short-term pins held too long), 2 when gup-trace could not tell \
(no GUP hook on this kernel, events lost, or an error). Any lost event makes it 2, findings \
or not: a release gup-trace never saw looks like a leak.

Examples:
  sudo gup-trace check -- ./my-io-uring-test
  sudo gup-trace check --junit pins.xml --grace 5 -- make check")]
pub struct CheckArgs {
    #[command(flatten)]
    pub findings: FindingArgs,
    /// Also write the verdict as JUnit XML (one test case per kind of finding).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the verdict as one JSON object instead of text: the last line of stdout (the
    /// command's own output, which shares stdout, comes before it).
    #[arg(long)]
    pub json: bool,
    /// At most this many frames of each kernel stack.
    #[arg(long, default_value_t = 12, value_name = "FRAMES")]
    pub stack_depth: usize,
    #[command(flatten)]
    pub session: SessionArgs,
    /// The command to run, after `--`, with its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The verdict as JSON.
#[derive(Serialize)]
struct Verdict<'a> {
    command: &'a [String],
    /// The command's own exit code (None: killed by a signal).
    exit_code: Option<i32>,
    seconds: f64,
    processes: usize,
    pins_taken: u64,
    pins_released: u64,
    pins_outstanding: u64,
    lost_events: u64,
    /// Releases of pins taken before tracing began (never a finding).
    pre_existing_releases: u64,
    /// Events that arrived after newer ones were already applied.
    late_events: u64,
    /// Pages released by calls the kernel side could not itemize folio by folio.
    unitemized_releases: u64,
    kernel: KernelCounters,
    findings: Vec<FindingRecord<'a>>,
    /// 0 clean, 1 leaks found, 2 gup-trace could not tell.
    verdict: u8,
}

pub async fn run(args: CheckArgs, verbose: bool) -> Result<ExitCode> {
    require_root("check")?;
    let rules = args.findings.rules()?;
    if let Some(path) = &args.junit {
        super::create_output(path, "JUnit report").map(drop)?;
    }
    let mut config = args.session.config()?;
    config.follow_tree = true;
    config.all_releases = true;
    let mut session = Session::start(&config)?;
    let caps = &session.capabilities;
    // Ownership comes from the per-folio grab events: without them nothing can be attributed.
    let blind = caps.pin_visibility() < PinVisibility::Folios;
    if verbose || blind {
        eprint!("{}", output::capabilities(caps, verbose));
    }
    if blind {
        bail!(
            "cannot check for pin leaks on this kernel: the GUP pin hooks did not attach (see \
             above); `sudo gup-trace probe` explains why"
        );
    }
    if caps.attached(HookClass::Process) < 2 {
        log::warn!("process tracepoints missing: exits are not seen, so no orphaned pins");
    }
    let longterm = caps.foll.longterm();
    let stacks = session.stack_names();
    let mut pipeline = LivePipeline::open(session, stacks, VmstatUse::Skip, |start_ns| {
        Events::new(PinEngine::new(start_ns, longterm, rules))
    })?;
    let start_ns = pipeline.start().ts_ns;

    let mut child = spawn_followed(&args.command, pipeline.session_mut())?;
    let command_line = args.command.join(" ");
    let exited = async {
        tokio::select! {
            status = child.wait() => Some(status),
            _ = stop_requested() => {
                // Ctrl-C reached the command too (same terminal); a SIGTERM sent to gup-trace
                // alone is passed on, so that the command does not outlive its check.
                if let Some(pid) = child.id() {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                None
            }
        }
    };
    let status = pipeline
        .run_until(exited, no_consumer)
        .await?
        .transpose()
        .context("waiting for the command failed")?;
    let interrupted = status.is_none();
    // The command is done; its pins may still be released by others (io_uring teardown,
    // descendants): watch for the grace period before judging.
    if !interrupted {
        let until = tokio::time::Instant::now()
            + Duration::from_nanos(rules.grace_ns)
            + Duration::from_millis(300);
        let grace = async {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = stop_requested() => {}
            }
        };
        pipeline.poll_every(Duration::from_millis(100));
        pipeline.run_until(grace, no_consumer).await?;
    }
    let Finished {
        closing,
        sink,
        mut stacks,
        ..
    } = pipeline.finish(no_consumer)?;
    let mut engine = sink.engine;
    engine.flush();
    // Judged now, once every event is in: after the last drain, not when it began.
    let now_ns = monotonic_ns();
    let kernel_counters = closing.kernel;
    let lost = closing.lost_events();

    // /proc/vmstat counts every process on the machine, not just this tree: no drift check.
    let findings = engine.findings(now_ns, None, true);
    let verdict = verdict(findings.iter().any(Finding::is_problem), lost, interrupted);
    let mut lookup = |id: u32| -> CallStack { stacks.frames(id) };
    let seconds = now_ns.saturating_sub(start_ns) as f64 / 1e9;
    let state = &engine.state;
    let taken: u64 = state.processes.iter().map(|p| p.pins_taken).sum();
    let released: u64 = state.processes.iter().map(|p| p.pins_released).sum();
    if let Some(path) = &args.junit {
        let xml = output::junit_xml(&command_line, seconds, &findings, lost, |f| {
            output::finding_text(f, start_ns, &mut lookup, args.stack_depth)
        });
        std::fs::write(path, xml)
            .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
    }
    let exit_code = status.and_then(|s| s.code());
    if args.json {
        let records = findings
            .iter()
            .map(|f| FindingRecord::new(f, &mut lookup, args.stack_depth))
            .collect();
        let v = Verdict {
            command: &args.command,
            exit_code,
            seconds,
            processes: state.processes.len(),
            pins_taken: taken,
            pins_released: released,
            pins_outstanding: state.pinned_now,
            lost_events: lost,
            pre_existing_releases: state.pre_existing_releases,
            late_events: engine.late_events(),
            unitemized_releases: state.unitemized_releases,
            kernel: kernel_counters,
            findings: records,
            verdict,
        };
        println!("{}", serde_json::to_string(&v)?);
    } else {
        if lost > 0 && !findings.is_empty() {
            println!(
                "UNCERTAIN: {lost} events were lost (the ring buffer filled; raise \
                 --ring-buffer-kib): the findings below may be releases gup-trace never saw, \
                 not leaks"
            );
        }
        print!(
            "{}",
            output::findings_text(&findings, start_ns, &mut lookup, args.stack_depth)
        );
        println!(
            "gup-trace check: `{command_line}` {} after {seconds:.1} s; {} traced, {taken} \
             pages pinned, {released} released, {} still pinned{}",
            match (interrupted, exit_code) {
                (true, _) => "interrupted".to_string(),
                (false, Some(c)) => format!("exited with status {c}"),
                (false, None) => "was killed by a signal".to_string(),
            },
            plural(state.processes.len(), "process", "processes"),
            state.pinned_now,
            if lost > 0 {
                format!(
                    "; {lost} events LOST (raise --ring-buffer-kib): the verdict cannot be trusted"
                )
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::from(verdict))
}

/// 0 clean, 1 leaked, 2 could not tell. Lost events come first: a lost release leaves a pin
/// that looks orphaned, so with any event lost a finding is no proof of a leak (and no finding
/// is no proof of none).
fn verdict(problems: bool, lost_events: u64, interrupted: bool) -> u8 {
    if lost_events > 0 {
        2
    } else if problems {
        1
    } else if interrupted {
        2
    } else {
        0
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Starts `command` held at the door: a shell with the command's eventual pid waits on a pipe
/// until that pid is in the followed set, then execs the command, so not one of its pins goes
/// unseen. (A pre_exec wait cannot do this: spawning returns only once the child has exec'd.)
fn spawn_followed(command: &[String], session: &mut Session) -> Result<tokio::process::Child> {
    if !command[0].contains('/') && find_in_path(&command[0]).is_none() {
        bail!("cannot run {:?}: no such command in PATH", command[0]);
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // SAFETY: both fds are fresh and owned here.
    let (door, key) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let door_fd = door.as_raw_fd();
    let mut cmd = tokio::process::Command::new("/bin/sh");
    // If gup-trace dies before opening the door, the read fails and the command never runs.
    cmd.args([
        "-c",
        r#"read -r _ <&3 && exec 3<&- && exec "$@""#,
        "gup-trace-check",
    ])
    .args(command);
    // SAFETY: dup2 is async-signal-safe; the door becomes fd 3 (without close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(door_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .context("cannot start /bin/sh to run the command")?;
    let pid = child.id().context("the command exited before it started")?;
    session.follow(pid)?;
    // SAFETY: writing one line from a valid buffer to our own pipe.
    if unsafe { libc::write(key.as_raw_fd(), b"\n".as_ptr().cast(), 1) } != 1 {
        return Err(std::io::Error::last_os_error()).context("cannot let the command start");
    }
    drop((door, key));
    Ok(child)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn lost_events_make_any_verdict_uncertain() {
        assert_eq!(verdict(false, 0, false), 0);
        assert_eq!(verdict(true, 0, false), 1);
        assert_eq!(verdict(true, 0, true), 1);
        assert_eq!(verdict(false, 0, true), 2);
        assert_eq!(verdict(true, 1, false), 2);
        assert_eq!(verdict(false, 3, false), 2);
    }
}
