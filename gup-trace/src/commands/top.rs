//! `gup-trace top`: the live dashboard (see the `tui` module), or its headless capture.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use gup_trace_common::HookClass;

use super::{FindingArgs, SessionArgs, require_root};
use crate::{
    engine::PinEngine,
    kernel::{HookStatus, PinVisibility},
    pipeline::{Events, LivePipeline, VmstatUse},
    recording::filter,
    session::Session,
    tui::{
        live::{self, Capture, Intake},
        snapshot::SourceInfo,
    },
};

#[derive(Args, Debug)]
#[command(after_help = "\
Keys: Tab switches between processes, call sites and findings; Enter opens the selected one \
(a process's pinned folios, ages and stacks; a finding's evidence); Esc goes back; s sorts \
(outstanding, rate, oldest pin); / filters; p pauses; ? shows every key; q quits. \
NO_COLOR=1 draws without colours.")]
pub struct TopArgs {
    /// Milliseconds between screen refreshes. Events are taken in continuously; the screen is
    /// redrawn from a snapshot of the pin state this often.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(50..))]
    pub interval: u64,
    #[command(flatten)]
    pub findings: FindingArgs,
    /// No terminal: render the screens off-screen every interval and write them as text into
    /// DIR (frames.txt: every overview, also printed on stdout; first-finding.txt,
    /// busiest.txt, last.txt: every screen of those frames; help.txt).
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,
    /// With --capture: stop after this many frames (0: at Ctrl-C or SIGTERM).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "capture")]
    pub frames: u64,
    /// With --capture: the terminal size to render, WIDTHxHEIGHT (repeatable; default 80x24).
    #[arg(long = "size", value_name = "WxH", value_parser = parse_size, requires = "capture")]
    pub sizes: Vec<(u16, u16)>,
    #[command(flatten)]
    pub session: SessionArgs,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s}: give WIDTHxHEIGHT, e.g. 80x24"))?;
    let parse = |v: &str| v.parse::<u16>().map_err(|e| format!("{s}: {e}"));
    let (w, h) = (parse(w)?, parse(h)?);
    if w < 40 || h < 12 {
        return Err(format!("{s}: at least 40x12"));
    }
    Ok((w, h))
}

pub async fn run(args: TopArgs, verbose: bool) -> Result<ExitCode> {
    require_root("top")?;
    if args.capture.is_none() && !std::io::stdout().is_terminal() {
        bail!("`gup-trace top` draws on a terminal: run it in one, or use --capture DIR");
    }
    let rules = args.findings.rules()?;
    let mut config = args.session.config()?;
    // Who holds a pin is only known when its release is seen, whoever makes it.
    config.all_releases = true;
    let mut session = Session::start(&config)?;
    let caps = session.capabilities.clone();
    let stacks = session.stack_names();
    let missing_hooks: Vec<String> = caps
        .hooks
        .iter()
        .filter(|h| matches!(h.status, HookStatus::Failed { .. }))
        .map(|h| h.hook.name().to_string())
        .collect();
    let blind = caps.pin_visibility() == PinVisibility::Blind;
    // The cgroup as it was given: a directory or an id.
    let cgroup = args
        .session
        .cgroup
        .as_ref()
        .map(|c| c as &dyn std::fmt::Display);
    let filters = filter::describe(args.session.pid, args.session.comm.as_deref(), cgroup);
    if verbose || blind {
        eprint!("{}", crate::output::capabilities(&caps, verbose));
    }
    let longterm = caps.foll.longterm();
    let pipeline = LivePipeline::open(session, stacks, VmstatUse::Skip, |start_ns| {
        Events::new(PinEngine::new(start_ns, longterm, rules))
    })?;
    let source = SourceInfo {
        source: "live".into(),
        kernel: caps.kernel.clone(),
        start_ns: pipeline.start().ts_ns,
        end_ns: None,
        filters: filters.join(", "),
        missing_hooks,
        blind,
        folio_level: caps.attached(HookClass::Grab) > 0,
        page_size: crate::kernel::page_size() as u64,
    };
    let intake = Intake::new(pipeline, source);
    let interval = Duration::from_millis(args.interval);
    match args.capture {
        Some(dir) => {
            eprintln!(
                "gup-trace top: capturing to {} every {} ms{} (Ctrl-C ends)",
                dir.display(),
                args.interval,
                if args.frames > 0 {
                    format!(", {} frames", args.frames)
                } else {
                    String::new()
                }
            );
            let sizes = if args.sizes.is_empty() {
                vec![(80, 24)]
            } else {
                args.sizes
            };
            live::run_capture(
                intake,
                interval,
                Capture {
                    dir,
                    sizes,
                    frames: args.frames,
                },
            )
            .await?;
        }
        None => {
            // Log lines would scribble over the screen: only --verbose keeps them.
            let level = log::max_level();
            if !verbose {
                log::set_max_level(log::LevelFilter::Off);
            }
            let result = live::run_terminal(intake, interval).await;
            log::set_max_level(level);
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
