//! `gup-trace trace`: live event lines, then the totals beside /proc/vmstat.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use gup_trace_common::EventKind;

use super::{SessionArgs, require_root};
use crate::{
    events::TraceEvent,
    kernel::PinVisibility,
    output::{self, EventRecord},
    pipeline::{how_long, stop_after},
    session::{Session, StackNames},
    symbols::CallStack,
    window::{self, Summary},
};

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = super::positive_seconds)]
    pub duration: Option<f64>,
    /// Print only the capability report and the summary, no event lines.
    #[arg(long)]
    pub quiet: bool,
    /// Also print one line per folio grabbed or released, with its refcount and pincount
    /// before and after (many lines: one per page for small folios). They are always counted
    /// in the summary.
    #[arg(long)]
    pub folios: bool,
    /// Also print process creations (`fork`, not threads) and ends (`exit`), which is how
    /// gup-trace tells pins a process left behind from pins it still holds.
    #[arg(long)]
    pub processes: bool,
    /// Print under each GUP call the kernel stack that led to it, as the kernel's own unwinder
    /// recorded it.
    ///
    /// One frame per line, indented, innermost first, down to the system call; each named from
    /// /proc/kallsyms as `function+0xoffset`, with `[module]` after functions of a kernel
    /// module. The eBPF hook records the stack with bpf_get_stackid when the GUP call begins,
    /// so it is what the kernel's unwinder saw, not a reconstruction. gup-trace's own frames
    /// (its eBPF program and fentry trampoline) are left out; an fentry trampoline also hides
    /// the hooked function's frame, so the first frame is then its caller (the event line
    /// names the function). Release (unpin) and mmap_lock events have no stack. With --json
    /// the frames go into each GUP call's "stack" array. Needs readable kallsyms addresses:
    /// root, and kernel.kptr_restrict below 2.
    #[arg(long, conflicts_with = "quiet")]
    pub stacks: bool,
    /// With --stacks: at most this many frames per stack, top first (also in --json).
    #[arg(long, default_value_t = 12, value_name = "FRAMES", requires = "stacks")]
    pub stack_depth: usize,
    /// Print events as JSON, one object per line on stdout, then the summary as a final
    /// {"summary": ...} line. The capability report and the text summary stay on stderr.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

pub async fn run(args: TraceArgs, verbose: bool) -> Result<ExitCode> {
    require_root("trace")?;
    let mut session = Session::start(&args.session.config()?)?;
    let stacks = if args.stacks {
        StackNames::Named(Box::new(
            session
                .kernel_stacks()
                .map_err(|e| anyhow::anyhow!("--stacks: {e:#}"))?,
        ))
    } else {
        StackNames::NotRead
    };
    // The window opens before "tracing" is said: whatever a user starts on seeing it is in.
    let mut window = window::open(session, stacks)?;
    let start_ns = window.start().ts_ns;
    let session = window.session();
    eprint!("{}", output::capabilities(&session.capabilities, verbose));
    eprintln!(
        "mmap_lock events: {:?}; tracing {}... (Ctrl-C ends)",
        session.mmap_lock,
        how_long(args.duration)
    );
    if !args.quiet && !args.json {
        println!("{}", output::EVENT_HEADER);
    }
    let foll = session.capabilities.foll.clone();
    let per_folio = session.capabilities.pin_visibility() == PinVisibility::Folios;
    let mut print = |e: &TraceEvent, stacks: &mut StackNames| -> Result<()> {
        let process_event = matches!(e.kind, EventKind::ProcessExit | EventKind::ProcessFork);
        if args.quiet
            || (!args.folios && e.kind == EventKind::Folio)
            || (!args.processes && process_event)
        {
            return Ok(());
        }
        let stack: Option<CallStack> =
            (args.stacks && output::is_gup_call(e)).then(|| match e.stack_id {
                Some(id) => stacks.frames(id),
                None => Err(
                    "the kernel did not record it (bpf_get_stackid failed: the STACKS \
                             map is full or its bucket holds another stack)"
                        .into(),
                ),
            });
        if args.json {
            let record = EventRecord::new(e, start_ns, &foll, stack.as_ref(), args.stack_depth);
            match serde_json::to_string(&record) {
                Ok(line) => println!("{line}"),
                Err(err) => log::error!("cannot write an event as JSON: {err}"),
            }
        } else {
            println!("{}", output::event_line(e, start_ns, &foll));
            if let Some(stack) = &stack {
                print!("{}", output::stack_lines(stack, e.hook, args.stack_depth));
            }
        }
        Ok(())
    };
    // Each line goes out whole as it is printed: stdout is line-buffered.
    window
        .run_until(stop_after(args.duration), &mut print)
        .await?;
    let (summary, _) = window::close(window, print)?;
    eprint!("{}", output::summary(&summary, 10, per_folio));
    if args.json {
        #[derive(serde::Serialize)]
        struct SummaryLine<'a> {
            summary: &'a Summary,
        }
        println!(
            "{}",
            serde_json::to_string(&SummaryLine { summary: &summary })?
        );
    }
    Ok(ExitCode::SUCCESS)
}
