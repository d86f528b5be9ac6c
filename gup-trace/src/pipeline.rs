//! The live pipeline every tracing command runs on: the [`Session`]'s ring buffer read batch by
//! batch, each record handed to a [`Sink`] (decoded into an engine, or kept raw for a
//! recording), the kernel's counters (and /proc/vmstat's) read when the run opens and when it
//! closes, and the ring buffer drained once more at the end. A command brings only what it
//! does with each event (print a line, write a chunk, count it) and what ends its run.
//!
//! Sits on `session` (the eBPF side and its ring buffer), `engine` (pure state) and `vmstat`;
//! `commands`, `window` and the dashboard's intake (`tui::live`) are built on it.

use std::{future::Future, time::Duration};

use anyhow::Result;

use crate::{
    engine::{PinEngine, PinLedger},
    events::TraceEvent,
    session::{KernelCounters, Session, StackNames, monotonic_ns},
    vmstat::PinCounters,
};

/// How long a batch may wait unless the command says otherwise (see
/// [`LivePipeline::poll_every`]).
const DEFAULT_POLL: Duration = Duration::from_millis(250);

/// What the pipeline does with each ring-buffer record.
pub trait Sink {
    /// What the command's consumer is handed for each record: a decoded event, or the raw
    /// record.
    type Item: ?Sized;

    /// Takes one record in, and hands what of it the command should see to `consume`.
    fn take(
        &mut self,
        record: &[u8],
        stacks: &mut StackNames,
        consume: &mut impl FnMut(&Self::Item, &mut StackNames) -> Result<()>,
    ) -> Result<()>;

    /// The run closes at `end_ns`: what arrives later happened after it.
    fn close(&mut self, end_ns: u64);
}

/// An engine the pipeline feeds decoded events into.
pub trait Engine {
    /// Whether an event at `ts_ns` falls in what the engine measures: the command's consumer
    /// sees only those.
    fn in_window(&self, ts_ns: u64) -> bool;
    fn take(&mut self, event: TraceEvent);
    /// The run closed at `end_ns`.
    fn close(&mut self, end_ns: u64);
}

/// A measurement window's totals: events past its end are neither counted nor shown.
impl Engine for PinLedger {
    fn in_window(&self, ts_ns: u64) -> bool {
        PinLedger::in_window(self, ts_ns)
    }

    fn take(&mut self, event: TraceEvent) {
        self.apply(&event);
    }

    fn close(&mut self, end_ns: u64) {
        PinLedger::close(self, end_ns);
    }
}

/// Who holds which pins: every event counts, whenever it comes, since a release seen late
/// still ends a pin.
impl Engine for PinEngine {
    fn in_window(&self, _ts_ns: u64) -> bool {
        true
    }

    fn take(&mut self, event: TraceEvent) {
        self.push(event);
    }

    fn close(&mut self, _end_ns: u64) {}
}

/// Records decoded into events, each fed to `engine`.
pub struct Events<E> {
    pub engine: E,
    /// The events of the record being decoded (a release call's record holds several).
    decoded: Vec<TraceEvent>,
}

impl<E: Engine> Events<E> {
    pub fn new(engine: E) -> Events<E> {
        Events {
            engine,
            decoded: Vec::new(),
        }
    }
}

impl<E: Engine> Sink for Events<E> {
    type Item = TraceEvent;

    fn take(
        &mut self,
        record: &[u8],
        stacks: &mut StackNames,
        consume: &mut impl FnMut(&TraceEvent, &mut StackNames) -> Result<()>,
    ) -> Result<()> {
        TraceEvent::decode_record(record, &mut self.decoded).map_err(|e| {
            anyhow::anyhow!("{e}: gup-trace and its eBPF object disagree (rebuild)")
        })?;
        for event in self.decoded.drain(..) {
            if self.engine.in_window(event.ts_ns) {
                consume(&event, stacks)?;
            }
            self.engine.take(event);
        }
        Ok(())
    }

    fn close(&mut self, end_ns: u64) {
        self.engine.close(end_ns);
    }
}

/// Records kept as the kernel side wrote them, undecoded (`record` writes them to a file).
pub struct Records;

impl Sink for Records {
    type Item = [u8];

    fn take(
        &mut self,
        record: &[u8],
        stacks: &mut StackNames,
        consume: &mut impl FnMut(&[u8], &mut StackNames) -> Result<()>,
    ) -> Result<()> {
        consume(record, stacks)
    }

    fn close(&mut self, _end_ns: u64) {}
}

/// A consumer for commands that only feed the engine.
pub fn no_consumer<T: ?Sized>(_: &T, _: &mut StackNames) -> Result<()> {
    Ok(())
}

/// Whether the pipeline reads /proc/vmstat's pin counters when it opens and closes.
#[derive(Clone, Copy, Debug)]
pub enum VmstatUse {
    /// Not read: the run judges one process tree, and vmstat counts the whole machine.
    Skip,
    /// Read when the kernel has them; `warning` is logged (with why) when it does not.
    IfPresent { warning: &'static str },
    /// The run is compared with them: opening fails without them.
    Required,
}

impl VmstatUse {
    /// The counters now, as this use asks; `warn`: say so when they cannot be read (once, when
    /// the run opens).
    fn read(self, warn: bool) -> Result<Option<PinCounters>> {
        Ok(match self {
            VmstatUse::Skip => None,
            VmstatUse::IfPresent { warning } => PinCounters::read()
                .map_err(|e| {
                    if warn {
                        log::warn!("{warning}: {e:#}");
                    }
                })
                .ok(),
            VmstatUse::Required => Some(PinCounters::read()?),
        })
    }
}

/// The kernel's counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// CLOCK_MONOTONIC when they were read.
    pub ts_ns: u64,
    pub kernel: KernelCounters,
    /// None when not read (see [`VmstatUse`]).
    pub vmstat: Option<PinCounters>,
}

/// The figures a finished run closes with, beside what its engine saw.
#[derive(Clone, Copy, Debug)]
pub struct Closing {
    pub start: Reading,
    /// When the run closed, before the final drain.
    pub end: Reading,
    /// The kernel side's counters over the run, read after the final drain.
    pub kernel: KernelCounters,
}

impl Closing {
    pub fn lost_events(&self) -> u64 {
        self.kernel.lost_events
    }

    /// /proc/vmstat's pin counters over the run, when read at both ends.
    pub fn vmstat(&self) -> Option<PinCounters> {
        Some(self.end.vmstat?.delta_since(&self.start.vmstat?))
    }

    pub fn seconds(&self) -> f64 {
        self.end.ts_ns.saturating_sub(self.start.ts_ns) as f64 / 1e9
    }
}

/// What [`LivePipeline::finish`] gives back.
pub struct Finished<S> {
    pub closing: Closing,
    pub sink: S,
    pub stacks: StackNames,
    /// Still loaded: a later run can use it again.
    pub session: Session,
}

/// A session's events flowing into a sink, between two readings of the kernel's counters.
pub struct LivePipeline<S> {
    session: Session,
    sink: S,
    stacks: StackNames,
    vmstat: VmstatUse,
    start: Reading,
    end: Option<Reading>,
    poll: Duration,
}

impl<S: Sink> LivePipeline<S> {
    /// Opens the run now: the kernel side's counters, then /proc/vmstat (as `vmstat` says),
    /// then the clock, whose reading `sink` is built with (the start of its window).
    pub fn open(
        session: Session,
        stacks: StackNames,
        vmstat: VmstatUse,
        sink: impl FnOnce(u64) -> S,
    ) -> Result<LivePipeline<S>> {
        let kernel = session.counters()?;
        let start_vmstat = vmstat.read(true)?;
        let ts_ns = monotonic_ns();
        Ok(LivePipeline {
            session,
            sink: sink(ts_ns),
            stacks,
            vmstat,
            start: Reading {
                ts_ns,
                kernel,
                vmstat: start_vmstat,
            },
            end: None,
            poll: DEFAULT_POLL,
        })
    }

    /// Makes a lone event wait at most `every` (the kernel side wakes the reader only once a
    /// batch is waiting).
    pub fn poll_every(&mut self, every: Duration) {
        self.poll = every;
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The counters when the run opened.
    pub fn start(&self) -> &Reading {
        &self.start
    }

    /// The sink and the stack names together, to read the engine while naming stacks.
    pub fn sink_and_stacks(&mut self) -> (&mut S, &mut StackNames) {
        (&mut self.sink, &mut self.stacks)
    }

    /// The kernel side's counters since the run opened.
    pub fn counters_since_start(&self) -> Result<KernelCounters> {
        Ok(self.session.counters()?.delta_since(&self.start.kernel))
    }

    /// Waits for one batch of records (or the poll interval) and takes it in.
    pub async fn pump(
        &mut self,
        mut consume: impl FnMut(&S::Item, &mut StackNames) -> Result<()>,
    ) -> Result<()> {
        let LivePipeline {
            session,
            sink,
            stacks,
            poll,
            ..
        } = self;
        session
            .next_records(*poll, |record| sink.take(record, stacks, &mut consume))
            .await
    }

    /// Takes records in until `stop` resolves, and returns what it resolved to.
    pub async fn run_until<T>(
        &mut self,
        stop: impl Future<Output = T>,
        mut consume: impl FnMut(&S::Item, &mut StackNames) -> Result<()>,
    ) -> Result<T> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                out = &mut stop => return Ok(out),
                r = self.pump(&mut consume) => r?,
            }
        }
    }

    /// Closes the run now: the clock, then /proc/vmstat, then the kernel side's counters.
    /// Records still in the ring buffer are taken in by [`LivePipeline::finish`], which closes
    /// the run itself when this was not called.
    pub fn close(&mut self) -> Result<Reading> {
        if let Some(end) = self.end {
            return Ok(end);
        }
        let ts_ns = monotonic_ns();
        let vmstat = self.vmstat.read(false)?;
        let end = Reading {
            ts_ns,
            kernel: self.session.counters()?,
            vmstat,
        };
        self.sink.close(ts_ns);
        self.end = Some(end);
        Ok(end)
    }

    /// Closes the run (if not yet), takes in what the ring buffer still holds, and returns the
    /// closing figures with the parts.
    pub fn finish(
        mut self,
        mut consume: impl FnMut(&S::Item, &mut StackNames) -> Result<()>,
    ) -> Result<Finished<S>> {
        let end = self.close()?;
        let LivePipeline {
            session,
            sink,
            stacks,
            ..
        } = &mut self;
        session.drain_records(|record| sink.take(record, stacks, &mut consume))?;
        let kernel = self.counters_since_start()?;
        Ok(Finished {
            closing: Closing {
                start: self.start,
                end,
                kernel,
            },
            sink: self.sink,
            stacks: self.stacks,
            session: self.session,
        })
    }
}

/// Resolves after `duration` seconds (None: never) or when the user asks to stop.
pub async fn stop_after(duration: Option<f64>) {
    match duration {
        Some(secs) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))) => {}
                _ = stop_requested() => {}
            }
        }
        None => stop_requested().await,
    }
}

/// "for 10 s" or "until stopped", for the line that says tracing has begun.
pub fn how_long(duration: Option<f64>) -> String {
    match duration {
        Some(s) => format!("for {s} s"),
        None => "until stopped".into(),
    }
}

/// Resolves when the user asks to stop: Ctrl-C or SIGTERM (see [`crate::stop`]).
pub async fn stop_requested() {
    crate::stop::requested().await
}
