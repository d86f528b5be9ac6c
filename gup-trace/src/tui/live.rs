//! `gup-trace top`: the intake task takes every event into the engine as it comes and, once per
//! interval, publishes a snapshot; the screen (or the headless capture) only ever reads the
//! latest snapshot. However fast events come, drawing costs one snapshot per interval, and a
//! slow terminal never holds up the intake.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use super::{
    app::{Action, App, Mode, Screen},
    render_text,
    snapshot::{DashboardSnapshot, History, Moment, SnapshotBuilder, SourceInfo},
    term::{self, Feed},
    theme::Theme,
};
use crate::{
    engine::PinEngine,
    pipeline::{Events, LivePipeline, no_consumer, stop_requested},
    session::monotonic_ns,
    symbols::CallStack,
};

/// Takes the session's events into the engine and builds the snapshots.
pub struct Intake {
    pipeline: LivePipeline<Events<PinEngine>>,
    source: SourceInfo,
    builder: SnapshotBuilder,
    history: History,
}

impl Intake {
    pub fn new(mut pipeline: LivePipeline<Events<PinEngine>>, source: SourceInfo) -> Intake {
        pipeline.poll_every(Duration::from_millis(100));
        Intake {
            pipeline,
            source,
            builder: SnapshotBuilder::new(),
            history: History::default(),
        }
    }

    /// The engine's state now, as a snapshot (one history sample more).
    pub fn snapshot(&mut self) -> Result<DashboardSnapshot> {
        let lost = self.pipeline.counters_since_start()?.lost_events;
        let (events, stacks) = self.pipeline.sink_and_stacks();
        let engine = &mut events.engine;
        engine.flush();
        let now_ns = monotonic_ns();
        self.history.sample(engine, self.source.folio_level, now_ns);
        let mut lookup = |id: u32| -> CallStack { stacks.frames(id) };
        Ok(self.builder.build(
            engine,
            &self.source,
            &Moment {
                now_ns,
                lost_events: Some(lost),
            },
            &self.history,
            &mut lookup,
        ))
    }

    /// Takes events in until the receiving side is gone; a snapshot every `interval`.
    pub async fn run(
        &mut self,
        interval: Duration,
        tx: &watch::Sender<Arc<DashboardSnapshot>>,
    ) -> Result<()> {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            self.pipeline.run_until(tick.tick(), no_consumer).await?;
            let snap = self.snapshot()?;
            if tx.send(Arc::new(snap)).is_err() {
                return Ok(());
            }
        }
    }
}

struct LiveFeed {
    rx: watch::Receiver<Arc<DashboardSnapshot>>,
    stop: Arc<AtomicBool>,
}

impl Feed for LiveFeed {
    fn poll(&mut self, app: &App) -> Result<Option<Arc<DashboardSnapshot>>> {
        match self.rx.has_changed() {
            // Paused: the intake goes on, the screen keeps the snapshot it has.
            Ok(true) if !app.paused => Ok(Some(self.rx.borrow_and_update().clone())),
            Ok(_) => Ok(None),
            Err(_) => {
                self.stop.store(true, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    fn act(&mut self, _action: Action) -> Result<Option<Arc<DashboardSnapshot>>> {
        Ok(None)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The dashboard on this terminal until `q`, Ctrl-C or SIGTERM.
pub async fn run_terminal(mut intake: Intake, interval: Duration) -> Result<()> {
    let first = Arc::new(intake.snapshot()?);
    let (tx, rx) = watch::channel(Arc::clone(&first));
    let stop = Arc::new(AtomicBool::new(false));
    let mut feed = LiveFeed {
        rx,
        stop: Arc::clone(&stop),
    };
    let mut ui =
        tokio::task::spawn_blocking(move || term::run(&mut feed, App::new(Mode::Live), first));
    let result = tokio::select! {
        r = intake.run(interval, &tx) => r,
        r = &mut ui => return r.context("the screen task failed")?,
        _ = stop_requested() => Ok(()),
    };
    // The screen gives the terminal back before anything is printed.
    stop.store(true, Ordering::Relaxed);
    ui.await.context("the screen task failed")??;
    result
}

/// Headless: screens rendered off-screen and written as text (`--capture DIR`).
#[derive(Clone, Debug)]
pub struct Capture {
    pub dir: PathBuf,
    /// Terminal sizes to render, the first one also printed on stdout.
    pub sizes: Vec<(u16, u16)>,
    /// Stop after this many frames (0: run until stopped).
    pub frames: u64,
}

/// Renders a frame per interval: each overview goes to stdout and DIR/frames.txt; the frames
/// worth reading later are kept whole, every screen at every size (see [`milestones`]).
pub async fn run_capture(mut intake: Intake, interval: Duration, capture: Capture) -> Result<()> {
    std::fs::create_dir_all(&capture.dir)
        .with_context(|| format!("cannot create {}", capture.dir.display()))?;
    let first = Arc::new(intake.snapshot()?);
    let (tx, mut rx) = watch::channel(first);
    let mut writer = CaptureWriter::new(capture);
    let capture_loop = async {
        loop {
            rx.changed().await?;
            let snap = rx.borrow_and_update().clone();
            if writer.frame(&snap)? {
                return anyhow::Ok(());
            }
        }
    };
    tokio::select! {
        r = intake.run(interval, &tx) => r,
        r = capture_loop => r,
        _ = stop_requested() => Ok(()),
    }
}

/// Writes captured frames.
pub struct CaptureWriter {
    capture: Capture,
    theme: Theme,
    frames: u64,
    busiest: f64,
    had_finding: bool,
}

impl CaptureWriter {
    pub fn new(capture: Capture) -> CaptureWriter {
        CaptureWriter {
            capture,
            // Text files: no colours to lose.
            theme: Theme::mono(),
            frames: 0,
            busiest: 0.0,
            had_finding: false,
        }
    }

    /// Writes one frame; true once the last frame asked for is written.
    pub fn frame(&mut self, snap: &DashboardSnapshot) -> Result<bool> {
        use std::io::Write as _;
        self.frames += 1;
        let n = self.frames;
        let (w, h) = self.capture.sizes.first().copied().unwrap_or((80, 24));
        let overview = render_text(&App::new(Mode::Live), snap, &self.theme, w, h);
        let header = format!(
            "--- frame {n} at {:.1} s ---\n",
            snap.elapsed_ns() as f64 / 1e9
        );
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{header}{overview}");
        let _ = stdout.flush();
        let mut all = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.capture.dir.join("frames.txt"))?;
        write!(all, "{header}{overview}")?;
        if n == 1 {
            let mut app = App::new(Mode::Live);
            app.help = true;
            self.write("help", &self.sizes_of(&app, snap, "help"))?;
        }
        let screens = milestones(snap, &self.capture.sizes, &self.theme, n);
        self.write("last", &screens)?;
        if snap.pins_per_s > self.busiest {
            self.busiest = snap.pins_per_s;
            self.write("busiest", &screens)?;
        }
        if !self.had_finding && snap.problems() > 0 {
            self.had_finding = true;
            self.write("first-finding", &screens)?;
        }
        Ok(self.capture.frames > 0 && n >= self.capture.frames)
    }

    fn sizes_of(&self, app: &App, snap: &DashboardSnapshot, name: &str) -> String {
        let mut out = String::new();
        for &(w, h) in &self.capture.sizes {
            let _ = writeln!(out, "=== {name} {w}x{h} ===");
            out.push_str(&render_text(app, snap, &self.theme, w, h));
        }
        out
    }

    fn write(&self, name: &str, text: &str) -> Result<()> {
        let path = self.capture.dir.join(format!("{name}.txt"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Every screen of one frame, at every size: the overview; the process a problem is about (or
/// the one holding the most pins) drilled into; its biggest call site; the finding's evidence.
pub fn milestones(
    snap: &DashboardSnapshot,
    sizes: &[(u16, u16)],
    theme: &Theme,
    frame: u64,
) -> String {
    let base = App::new(Mode::Live);
    let finding = base
        .findings(snap)
        .first()
        .map(|f| (*f).clone())
        .filter(|f| f.problem);
    let process = finding
        .as_ref()
        .and_then(|f| f.process)
        .and_then(|id| snap.process(id))
        .or_else(|| base.processes(snap).first().copied());
    let site = process
        .and_then(|p| p.holdings.first().map(|h| h.0).or(p.sites.first().copied()))
        .or_else(|| base.sites(snap).first().map(|s| s.id));
    let mut screens: Vec<(String, App)> = vec![("overview".into(), base.clone())];
    if let Some(p) = process {
        let mut app = base.clone();
        app.screens.push(Screen::Process(p.id));
        screens.push((format!("process {}", p.pid), app));
    }
    if let Some(id) = site {
        let mut app = base.clone();
        app.screens.push(Screen::Site(id));
        screens.push(("call site".into(), app));
    }
    if let Some(f) = finding {
        let mut app = base.clone();
        app.screens.push(Screen::Finding(Box::new(f)));
        screens.push(("finding".into(), app));
    }
    let mut out = String::new();
    for &(w, h) in sizes {
        for (name, app) in &screens {
            let _ = writeln!(
                out,
                "=== frame {frame} at {:.1} s: {name} {w}x{h} ===",
                snap.elapsed_ns() as f64 / 1e9
            );
            out.push_str(&render_text(app, snap, theme, w, h));
        }
    }
    out
}
