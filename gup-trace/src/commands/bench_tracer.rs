//! The tracers `gup-trace bench` runs as separate processes, as people run them: gup-trace's
//! own `record` and `serve`, and bpftrace one-liners on the same pin and unpin entry points
//! (counters, and counters with a kernel stack per pin call). Each is started before a round,
//! waited for until it says it is attached (the time that takes is its load time), and stopped
//! with SIGINT after the round; what it reports about itself (events, lost events) is read
//! from its output.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::ValueEnum;
use serde::Serialize;

/// How a round is traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Nothing attached.
    Untraced,
    /// A gup-trace session inside the bench process: every hook attached, every event decoded
    /// into the pin engine, as `selftest` and `trace` consume them.
    Session,
    /// The floor: the session's hooks attached with programs that only bump a per-CPU
    /// counter (inside the bench process, as `session`): what hooking costs before any work.
    Floor,
    /// `gup-trace record -o FILE` in its own process.
    Record,
    /// `gup-trace serve` in its own process (nothing scrapes it during the round).
    Serve,
    /// bpftrace counting calls of the pin and unpin entry points (kfunc: fentry).
    BpftraceCounters,
    /// The same with a map keyed by the kernel stack of each pin call (`kstack`).
    BpftraceStacks,
}

/// The pin and unpin entry points the bpftrace modes probe: those gup-trace hooks for calls.
const BPFTRACE_PROBES: &str = "kfunc:pin_user_pages*, kfunc:unpin_user_page*, kfunc:unpin_folio";

/// Where serve listens in the guest.
const SERVE_ADDR: &str = "127.0.0.1:9808";

/// How long a tracer may take to attach (guest time: under instruction time the verifier's
/// pass over gup-trace's programs takes billions of instructions).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(600);

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Session => "session",
            Mode::Floor => "floor",
            Mode::Record => "record",
            Mode::Serve => "serve",
            Mode::BpftraceCounters => "bpftrace-counters",
            Mode::BpftraceStacks => "bpftrace-stacks",
        }
    }

    /// Whether the mode runs in a process of its own.
    pub fn external(self) -> bool {
        !matches!(self, Mode::Untraced | Mode::Session | Mode::Floor)
    }

    /// The command line of an external mode, and the text it prints once attached.
    fn command(self) -> Result<(Command, &'static str)> {
        let exe = std::env::current_exe().context("cannot find the gup-trace binary itself")?;
        let bpftrace = |script: String| {
            let mut c = Command::new("bpftrace");
            c.arg("-e").arg(script);
            (c, "Attaching")
        };
        Ok(match self {
            Mode::Untraced | Mode::Session | Mode::Floor => {
                bail!("{} runs in the bench itself", self.name())
            }
            Mode::Record => {
                let mut c = Command::new(exe);
                c.args(["record", "-o"]).arg(recording_path());
                (c, "recording to")
            }
            Mode::Serve => {
                let mut c = Command::new(exe);
                c.args(["serve", "--listen", SERVE_ADDR]);
                (c, "metrics on http://")
            }
            Mode::BpftraceCounters => {
                bpftrace(format!("{BPFTRACE_PROBES} {{ @calls[probe] = count(); }}"))
            }
            Mode::BpftraceStacks => bpftrace(format!(
                "kfunc:pin_user_pages* {{ @stacks[kstack] = count(); }} {BPFTRACE_PROBES} \
                 {{ @calls[probe] = count(); }}"
            )),
        })
    }

    /// Why this mode cannot run here, if it cannot (bpftrace missing).
    pub fn unavailable(self) -> Option<String> {
        let needs_bpftrace = matches!(self, Mode::BpftraceCounters | Mode::BpftraceStacks);
        if needs_bpftrace
            && Command::new("bpftrace")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        {
            return Some("no working bpftrace on PATH".into());
        }
        None
    }
}

fn recording_path() -> PathBuf {
    std::env::temp_dir().join("gup-trace-bench.gtr")
}

/// What an external tracer said about a round once stopped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TracerEnd {
    /// Guest seconds from starting it to its saying it was attached.
    pub load_seconds: f64,
    /// CPU time the tracer's process used while attached and up to the stop (user + system,
    /// /proc/PID/stat, in clock ticks of 10 ms): the consumer's share of the traced round.
    pub cpu_seconds: Option<f64>,
    pub events: Option<u64>,
    pub records: Option<u64>,
    pub lost_events: Option<u64>,
}

/// An external tracer, attached.
pub struct Tracer {
    mode: Mode,
    child: Child,
    log: PathBuf,
    load_seconds: f64,
    /// CPU time used by the time it was attached (loading the programs).
    cpu_at_attach: f64,
}

impl Tracer {
    /// Starts `mode`'s process and waits until it is attached.
    pub fn start(mode: Mode) -> Result<Tracer> {
        let (mut cmd, ready) = mode.command()?;
        let log = std::env::temp_dir().join(format!("gup-trace-bench-{}.log", mode.name()));
        let out =
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {} tracer ({cmd:?})", mode.name()))?;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains(ready) {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the {} tracer exited ({status}) before attaching: {}",
                    mode.name(),
                    tail(&text)
                );
            }
            if started.elapsed() > ATTACH_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the {} tracer did not say {ready:?} within {ATTACH_TIMEOUT:?}: {}",
                    mode.name(),
                    tail(&text)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Tracer {
            mode,
            cpu_at_attach: cpu_seconds(child.id()).unwrap_or(0.0),
            child,
            log,
            load_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Reads what the tracer can tell about itself while running, stops it with SIGINT and
    /// waits for it to exit.
    pub fn stop(mut self) -> Result<TracerEnd> {
        let mut end = TracerEnd {
            load_seconds: self.load_seconds,
            ..TracerEnd::default()
        };
        if self.mode == Mode::Serve {
            let metrics = http_get(SERVE_ADDR, "/metrics")?;
            end.events = metric(&metrics, "gup_trace_events_total");
            end.lost_events = metric(&metrics, "gup_trace_lost_events_total");
        }
        end.cpu_seconds = cpu_seconds(self.child.id()).map(|s| s - self.cpu_at_attach);
        // SAFETY: signals our own child, which has not been waited for yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for the {} tracer", self.mode.name()))?;
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        if !status.success() {
            bail!(
                "the {} tracer failed ({status}): {}",
                self.mode.name(),
                tail(&text)
            );
        }
        if self.mode == Mode::Record {
            let (events, records, lost) = record_summary(&text)
                .ok_or_else(|| anyhow!("record printed no summary line: {}", tail(&text)))?;
            end.events = Some(events);
            end.records = Some(records);
            end.lost_events = Some(lost);
            let _ = fs::remove_file(recording_path());
        }
        Ok(end)
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

/// User plus system CPU time of process `pid` so far, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ticks_to_seconds(&stat)
}

/// Fields 14 and 15 (utime, stime), counted after the command name's closing parenthesis.
fn ticks_to_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// record's last summary line: "recorded N events (M records) in S s: ...; lost events: L".
fn record_summary(text: &str) -> Option<(u64, u64, u64)> {
    let line = text.lines().rev().find(|l| l.contains("recorded "))?;
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &line[line.find(marker)? + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((
        number_after("recorded ")?,
        number_after(" events (")?,
        number_after("lost events: ")?,
    ))
}

/// The value of an unlabelled metric in the Prometheus text format.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A plain HTTP/1.0 GET on loopback, the body returned.
fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect to serve at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .with_context(|| format!("reading GET {path} from serve"))?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_serve_say_what_they_saw() {
        let text = "recording to /tmp/x.gtr for as long as it runs... (Ctrl-C ends)\n\
                    recorded 7200 events (3600 records) in 2.1 s: 10.0 KiB written; lost events: 12; 3 kernel stacks; /tmp/x.gtr\n";
        assert_eq!(record_summary(text), Some((7200, 3600, 12)));
        assert_eq!(record_summary("recording to x"), None);
        let metrics = "# TYPE gup_trace_lost_events_total counter\n\
                       gup_trace_lost_events_total 5\ngup_trace_events_total 1.2e3\n";
        assert_eq!(metric(metrics, "gup_trace_lost_events_total"), Some(5));
        assert_eq!(metric(metrics, "gup_trace_events_total"), Some(1200));
        assert_eq!(metric(metrics, "gup_trace_events"), None);
        // pid (comm with spaces) state ppid ... utime=250 stime=50 ...
        let stat = "42 (gup trace) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(ticks_to_seconds(stat), Some(300.0 / hz));
    }
}
