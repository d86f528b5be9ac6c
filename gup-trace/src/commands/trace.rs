//! `gup-trace trace`: live event lines, then the totals beside /proc/vmstat.

use std::{
    io::{Write as _, stdout},
    process::ExitCode,
    time::Duration,
};

use anyhow::Result;
use clap::Args;
use gup_trace_common::EventKind;

use super::{SessionArgs, require_root, stop_requested};
use crate::{output, session::Session, window::Window};

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print only the capability report and the summary, no event lines.
    #[arg(long)]
    pub quiet: bool,
    /// Also print one line per folio grabbed or released, with its refcount and pincount
    /// before and after (many lines: one per page for small folios). They are always counted
    /// in the summary.
    #[arg(long)]
    pub folios: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

pub async fn run(args: TraceArgs, verbose: bool) -> Result<ExitCode> {
    require_root("trace")?;
    let mut session = Session::start(&args.session.config()?)?;
    eprint!("{}", output::capabilities(&session.capabilities, verbose));
    eprintln!(
        "mmap_lock events: {:?}; tracing {}... (Ctrl-C ends)",
        session.mmap_lock,
        match args.duration {
            Some(s) => format!("for {s} s"),
            None => "until stopped".into(),
        }
    );
    let mut window = Window::open(&session)?;
    let start_ns = window.ledger.start_ns;
    let stop = async {
        match args.duration {
            Some(secs) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))) => {}
                    _ = stop_requested() => {}
                }
            }
            None => stop_requested().await,
        }
    };
    tokio::pin!(stop);
    if !args.quiet {
        println!("{}", output::EVENT_HEADER);
    }
    let mut batch = Vec::new();
    let foll = session.capabilities.foll.clone();
    let print = |e: &crate::events::TraceEvent| {
        if !args.quiet && (args.folios || e.kind != EventKind::Folio) {
            println!("{}", output::event_line(e, start_ns, &foll));
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = session.next_events(&mut batch, Duration::from_millis(250)) => {
                r?;
                for e in &batch {
                    if window.ledger.in_window(e.ts_ns) {
                        print(e);
                    }
                }
                window.apply(&batch);
                batch.clear();
                let _ = stdout().flush();
            }
        }
    }
    let summary = window.close(&mut session, print)?;
    eprint!("{}", output::summary(&summary, 10));
    Ok(ExitCode::SUCCESS)
}
