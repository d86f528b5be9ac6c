//! `gup-trace serve` scraped by a real Prometheus (Debian's `prometheus` package, which
//! `cargo xtask setup` installs) on this machine's kernel: the test asks Prometheus's HTTP API
//! for the series and checks their values, and `promtool` checks the scraped text and the
//! alerting rules users copy from deploy/prometheus/. Needs root, as the tool does.

mod host_support;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use host_support::{gup_trace, is_root, start_gup_trace, text};

/// A free port on 127.0.0.1 (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: the status line and the body (HTTP/1.0, so the server
/// closes when done).
fn try_get(port: u16, path: &str, accept: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    Ok((head.to_string(), body.to_string()))
}

/// GET `path`, which must answer 200: the body.
fn get(port: u16, path: &str, accept: &str) -> std::io::Result<String> {
    let (head, body) = try_get(port, path, accept)?;
    assert!(head.contains(" 200 "), "GET {path}: {head}");
    Ok(body)
}

/// Waits until Prometheus answers /-/ready with 200 (it opens its storage first).
fn wait_ready(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_get(port, "/-/ready", "*/*") {
            Ok((head, _)) if head.contains(" 200 ") => return,
            other => assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 60 s: {other:?}; its log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// /proc/vmstat's nr_foll_pin_acquired and nr_foll_pin_released.
fn vmstat() -> (f64, f64) {
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
    let text = std::fs::read_to_string("/proc/vmstat").unwrap();
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("/proc/vmstat has no {name}"))
    };
    (
        field("nr_foll_pin_acquired "),
        field("nr_foll_pin_released "),
    )
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Asks Prometheus for `query`: (sample time, value) of each series, with its labels.
fn query(port: u16, query: &str) -> Vec<(serde_json::Value, f64, f64)> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = get(port, &format!("/api/v1/query?query={encoded}"), "*/*").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{query}: {body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let ts = r["value"][0].as_f64().unwrap();
            let val: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), ts, val)
        })
        .collect()
}

/// The one sample of `q`, once Prometheus has one taken after `after` (Unix seconds).
fn sample_after(port: u16, q: &str, after: f64) -> (serde_json::Value, f64) {
    // The sample's own time, not the query's: `timestamp()` gives when it was scraped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stamp = query(port, &format!("timestamp({q})"));
        if let [(_, _, scraped)] = stamp[..]
            && scraped >= after
        {
            let got = query(port, q);
            assert_eq!(got.len(), 1, "{q}: {got:?}");
            return (got[0].0.clone(), got[0].2);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus scraped no {q} after {after} within 60 s: {stamp:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A child killed when the test ends, also when it fails half way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool: install Debian's prometheus package (cargo xtask setup)");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn prometheus_scrapes_serve_and_sees_vmstat_hooks_and_health() {
    assert!(
        is_root(),
        "serve loads eBPF programs: run the host tests as root"
    );
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/rules.yml");
    let (ok, said) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules {}: {said}", rules.display());

    let (serve_port, prom_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{serve_port}");
    let serve = start_gup_trace(&["serve", "--listen", &listen], "metrics on http://");
    let mut serve = KillOnDrop(serve.child);

    let dir = std::env::temp_dir().join(format!("gup-trace-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: gup-trace\n    static_configs:\n      - targets: [\"{listen}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("run prometheus: install Debian's prometheus package (cargo xtask setup)"),
    );

    // Pins the kernel counts, so that vmstat's counters move while serve runs.
    let work = gup_trace(&["workload"]);
    assert_eq!(work.status.code(), Some(0), "{}", text(&work));

    wait_ready(prom_port, &dir.join("prometheus.log"));
    let before = vmstat();
    let after_s = now_s();
    let (_, acquired) = sample_after(
        prom_port,
        "gup_trace_kernel_foll_pin_acquired_total",
        after_s,
    );
    let (_, released) = sample_after(
        prom_port,
        "gup_trace_kernel_foll_pin_released_total",
        after_s,
    );
    let after = vmstat();
    assert!(
        before.0 > 0.0 && before.0 <= acquired && acquired <= after.0,
        "scraped nr_foll_pin_acquired {acquired}, /proc/vmstat {} then {}",
        before.0,
        after.0
    );
    assert!(
        before.1 <= released && released <= after.1,
        "scraped nr_foll_pin_released {released}, /proc/vmstat {} then {}",
        before.1,
        after.1
    );

    // Health: the target is up, nothing lost, events flow, the tracepoints attached and the
    // hooks this kernel refuses say why.
    let (_, up) = sample_after(prom_port, "up{job=\"gup-trace\"}", after_s);
    assert_eq!(up, 1.0);
    let (_, lost) = sample_after(prom_port, "gup_trace_lost_events_total", after_s);
    assert_eq!(lost, 0.0);
    let (_, events) = sample_after(prom_port, "gup_trace_events_total", after_s);
    assert!(events > 0.0, "no events taken in");
    let (_, exit) = sample_after(
        prom_port,
        "gup_trace_hook_info{hook=\"sched_process_exit\",state=\"attached\",reason=\"tracepoint\"}",
        after_s,
    );
    assert_eq!(exit, 1.0);
    let refused = query(prom_port, "gup_trace_hook_info{state=\"refused\"}");
    let pin = refused
        .iter()
        .find(|(m, _, _)| m["hook"] == "pin_user_pages")
        .unwrap_or_else(|| panic!("pin_user_pages not refused on this kernel: {refused:?}"));
    assert!(
        pin.0["reason"].as_str().unwrap().contains("fexit refused"),
        "{pin:?}"
    );

    // The scraped text, in both formats, passes promtool's lint.
    let plain = get(serve_port, "/metrics", "text/plain").unwrap();
    let (ok, said) = promtool(&["check", "metrics"], Some(&plain));
    assert!(ok, "promtool check metrics: {said}\n{plain}");
    let open = get(
        serve_port,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    )
    .unwrap();
    assert!(open.ends_with("# EOF\n"), "{open}");

    // SIGTERM stops serve cleanly.
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(serve.0.id() as i32, libc::SIGTERM) };
    let status = serve.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
