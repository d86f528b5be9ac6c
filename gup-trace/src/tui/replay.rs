//! `gup-trace report --tui FILE`: the dashboard over a recording, with a time cursor. A first
//! pass reads the whole recording once, sampling the history at every step; moving the cursor
//! forward applies the events up to the new time, moving it back replays from the start (the
//! engine takes millions of events a second, so that is quick for recordings of minutes).

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use gup_trace_common::HookClass;

use super::{
    app::{Action, App, Mode},
    snapshot::{
        DashboardSnapshot, History, Moment, Sample, SnapshotBuilder, SourceInfo, sample_of,
    },
    term::Feed,
};
use crate::{
    engine::FindingRules,
    recording::{
        Metadata, ProcessFilter, RecordingReader,
        replay::{Replayer, stack_in},
    },
    symbols::CallStack,
};

/// A recording and the time cursor over it.
pub struct ReplayFeed {
    path: PathBuf,
    rules: FindingRules,
    filter: ProcessFilter,
    replayer: Replayer<File>,
    source: SourceInfo,
    step_ns: u64,
    /// Cursor positions: 0 is the start, `last` the end of the recording.
    position: u64,
    last: u64,
    /// The history at every position, from the first pass.
    samples: Vec<Sample>,
    stacks: HashMap<u32, CallStack>,
    lost_events: Option<u64>,
    builder: SnapshotBuilder,
    current: Arc<DashboardSnapshot>,
    interval: Duration,
    played: Instant,
}

impl ReplayFeed {
    /// Reads the whole recording once; the cursor starts at its end.
    pub fn open(
        path: &Path,
        rules: FindingRules,
        filter: ProcessFilter,
        step: Duration,
        interval: Duration,
    ) -> Result<ReplayFeed> {
        let step_ns = (step.as_nanos() as u64).max(1_000_000);
        let mut replayer =
            Replayer::new(RecordingReader::open(path)?, rules).filtered(filter.clone());
        let mut source = source_info(path, replayer.meta());
        // What `report --pid/--comm/--cgroup` keeps, beside what the recorder traced.
        let kept = filter.describe();
        if !kept.is_empty() {
            if !source.filters.is_empty() {
                source.filters.push_str("; ");
            }
            source
                .filters
                .push_str(&format!("replayed: {}", kept.join(", ")));
        }
        let folio_level = source.folio_level;
        let start = source.start_ns;
        let mut samples = Vec::new();
        let mut t = start;
        loop {
            replayer.advance(Some(t))?;
            samples.push(sample_of(&mut replayer.engine, folio_level, t));
            if replayer.at_end() {
                break;
            }
            t += step_ns;
        }
        replayer.advance(None)?;
        let mut replay = replayer.into_replay();
        let end = replay.end_ns().max(t.saturating_sub(step_ns));
        if let Some(last) = samples.last_mut() {
            let peak = last.peak;
            *last = sample_of(&mut replay.engine, folio_level, end);
            last.peak = last.peak.max(peak);
        }
        let lost_events = replay.lost_events();
        let last = samples.len() as u64 - 1;
        let mut feed = ReplayFeed {
            path: path.to_path_buf(),
            rules,
            replayer: Replayer::new(RecordingReader::open(path)?, rules).filtered(filter.clone()),
            filter,
            source: SourceInfo {
                end_ns: Some(end),
                ..source
            },
            step_ns,
            position: 0,
            last,
            samples,
            stacks: replay.stacks,
            lost_events,
            builder: SnapshotBuilder::new(),
            current: Arc::default(),
            interval,
            played: Instant::now(),
        };
        // The replayer above starts over: the end state is reached by the same path as any
        // other position.
        feed.seek(last)?;
        Ok(feed)
    }

    fn time_of(&self, position: u64) -> u64 {
        if position >= self.last {
            self.source.end_ns.unwrap_or(self.source.start_ns)
        } else {
            self.source.start_ns + position * self.step_ns
        }
    }

    /// Moves the cursor: forward by applying more events, back by replaying from the start.
    pub fn seek(&mut self, position: u64) -> Result<Arc<DashboardSnapshot>> {
        let position = position.min(self.last);
        if position < self.position {
            self.replayer = Replayer::new(RecordingReader::open(&self.path)?, self.rules)
                .filtered(self.filter.clone());
        }
        // Rates are measured over the step before the cursor.
        if position > 0 {
            let before = self.time_of(position - 1);
            self.replayer.advance(Some(before))?;
            self.builder.baseline(&self.replayer.engine, before);
        }
        let now = self.time_of(position);
        if position == self.last {
            self.replayer.advance(None)?;
        } else {
            self.replayer.advance(Some(now))?;
        }
        self.position = position;
        self.current = Arc::new(self.snapshot());
        Ok(Arc::clone(&self.current))
    }

    /// The snapshot at the cursor.
    pub fn current(&self) -> Arc<DashboardSnapshot> {
        Arc::clone(&self.current)
    }

    fn snapshot(&mut self) -> DashboardSnapshot {
        let now = self.time_of(self.position);
        let mut history = History::default();
        let first = (self.position + 1).saturating_sub(super::snapshot::HISTORY as u64);
        for s in &self.samples[first as usize..=self.position as usize] {
            history.push(*s);
        }
        // Stacks as the whole recording has them (the recorder writes each once, when first
        // seen, so some come after the cursor).
        let stacks = &self.stacks;
        let mut lookup = |id: u32| -> CallStack { stack_in(stacks, id) };
        self.builder.build(
            &self.replayer.engine,
            &self.source,
            &Moment {
                now_ns: now,
                lost_events: self.lost_events,
            },
            &history,
            &mut lookup,
        )
    }

    pub fn position(&self) -> (u64, u64) {
        (self.position, self.last)
    }
}

impl Feed for ReplayFeed {
    /// Playing: one step per interval until the end.
    fn poll(&mut self, app: &App) -> Result<Option<Arc<DashboardSnapshot>>> {
        if app.paused || self.position >= self.last || self.played.elapsed() < self.interval {
            return Ok(None);
        }
        self.played = Instant::now();
        self.seek(self.position + 1).map(Some)
    }

    fn act(&mut self, action: Action) -> Result<Option<Arc<DashboardSnapshot>>> {
        let to = match action {
            Action::Step(n) => self.position.saturating_add_signed(n).min(self.last),
            Action::ToStart => 0,
            Action::ToEnd => self.last,
            Action::None | Action::Quit => return Ok(None),
        };
        if to == self.position {
            return Ok(None);
        }
        self.seek(to).map(Some)
    }

    fn stopped(&self) -> bool {
        false
    }
}

fn source_info(path: &Path, meta: &Metadata) -> SourceInfo {
    let filters = meta.filters.processes.describe();
    SourceInfo {
        source: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        kernel: meta.kernel_release.clone(),
        start_ns: meta.start_ns,
        end_ns: None,
        filters: filters.join(", "),
        missing_hooks: meta
            .hooks
            .iter()
            .filter(|h| h.failed())
            .map(|h| h.hook.clone())
            .collect(),
        blind: meta.attached(HookClass::Pin) == 0 && meta.attached(HookClass::Grab) == 0,
        folio_level: meta.attached(HookClass::Grab) > 0,
        // The recording does not say; every architecture gup-trace runs on uses 4 KiB.
        page_size: 4096,
    }
}

/// `report --tui FILE`.
pub fn run(
    path: &Path,
    rules: FindingRules,
    filter: ProcessFilter,
    step: Duration,
    interval: Duration,
) -> Result<()> {
    let mut feed = ReplayFeed::open(path, rules, filter, step, interval)?;
    let first = feed.current();
    super::term::run(&mut feed, App::new(Mode::Replay), first)
}
