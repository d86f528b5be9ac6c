//! A tracing session: the eBPF object loaded with this kernel's values, every supported hook
//! attached, and the ring buffer and counters read back.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf, StackTraceMap},
};
use clap::ValueEnum;
use gup_trace_common::{COMM_LEN, HookClass, counter, global, setting};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{
    kernel::{self, Capabilities, KernelFacts},
    symbols::{CallStack, KernelSymbols, StackFrame},
};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gup-trace"));

/// Which mmap_lock releases become events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MmapLockMode {
    /// `gup` when a pin hook is attached, else `all`.
    #[default]
    Auto,
    /// Only GUP's own drop-and-retakes of the lock, as `mmap_lock_drop` events.
    Gup,
    /// Every release (busy machines produce many).
    All,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Only this process (tgid); None traces all.
    pub pid: Option<u32>,
    /// Only tasks with this comm (at most 15 bytes, as the kernel keeps it).
    pub comm: Option<String>,
    /// Only tasks in this cgroup v2 (its id: the inode number of its directory).
    pub cgroup_id: Option<u64>,
    pub mmap_lock: MmapLockMode,
    /// Ring buffer size in KiB (a power of two, at least 4).
    pub ring_buffer_kib: u32,
    /// Only the process tree started with [`Session::follow`] (and its descendants).
    pub follow_tree: bool,
    /// Trace releases whoever makes them, whatever the filters: who holds a pin can only be
    /// told by seeing it released, often by another task (io_uring teardown, I/O completion).
    pub all_releases: bool,
    /// The floor (`gup-trace bench`): the same hooks, each program only counting its runs.
    pub floor: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            pid: None,
            comm: None,
            cgroup_id: None,
            mmap_lock: MmapLockMode::Auto,
            ring_buffer_kib: 4096,
            follow_tree: false,
            all_releases: false,
            floor: false,
        }
    }
}

/// Counters the kernel side keeps, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelCounters {
    pub lost_events: u64,
    pub mmap_lock_releases: u64,
    pub thread_map_full: u64,
    pub unmatched_exits: u64,
    /// Release batches longer than the in-kernel walk: their folios are partly itemized.
    pub truncated_walks: u64,
    /// Calls whose return was lost (kretprobe misses), forgotten after 10 s.
    pub stale_calls: u64,
}

impl KernelCounters {
    /// What the counters moved since `earlier`. They only grow; a counter below its earlier
    /// value (a recording whose end counters were damaged or made up) moved 0, not 2^64.
    pub fn delta_since(&self, earlier: &KernelCounters) -> KernelCounters {
        KernelCounters {
            lost_events: self.lost_events.saturating_sub(earlier.lost_events),
            mmap_lock_releases: self
                .mmap_lock_releases
                .saturating_sub(earlier.mmap_lock_releases),
            thread_map_full: self.thread_map_full.saturating_sub(earlier.thread_map_full),
            unmatched_exits: self.unmatched_exits.saturating_sub(earlier.unmatched_exits),
            truncated_walks: self.truncated_walks.saturating_sub(earlier.truncated_walks),
            stale_calls: self.stale_calls.saturating_sub(earlier.stale_calls),
        }
    }
}

/// One program's runs and run time, as [`Session::program_stats`] reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramStats {
    pub program: String,
    pub runs: u64,
    pub run_ns: u64,
}

pub struct Session {
    // Owns the programs: dropping it unloads them (and detaches whatever `links` still holds).
    ebpf: Ebpf,
    /// Keeps the programs attached; empty while the session is detached.
    links: kernel::Links,
    events: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    pub capabilities: Capabilities,
    pub mmap_lock: MmapLockMode,
}

impl Session {
    pub fn start(config: &SessionConfig) -> Result<Session> {
        let started = std::time::Instant::now();
        let facts = KernelFacts::probe()?;
        let probed = started.elapsed();
        let ring_bytes = config
            .ring_buffer_kib
            .checked_mul(1024)
            .filter(|b| b.is_power_of_two() && *b >= 4096)
            .with_context(|| {
                format!(
                    "--ring-buffer-kib {} is not a power of two >= 4",
                    config.ring_buffer_kib
                )
            })?;
        let filter_tgid = config.pid.unwrap_or(0);
        let filter_cgroup = config.cgroup_id.unwrap_or(0);
        let filter_comm = comm_filter(config.comm.as_deref())?;
        let mut ebpf = EbpfLoader::new()
            .override_global(global::FOLL_PIN, &facts.foll_pin.value, true)
            .override_global(
                global::FOLIO_LAYOUT,
                &facts
                    .folio_layout
                    .clone()
                    .unwrap_or_else(|_| kernel::unread_layout()),
                true,
            )
            .override_global(
                global::MM_OWNER_LAYOUT,
                &facts.mm_owner.clone().unwrap_or_default(),
                true,
            )
            .override_global(global::WAKEUP_BYTES, &wakeup_bytes(ring_bytes), true)
            .override_global(
                global::LOCK_SUCCESS_OFFSET,
                &facts.lock_success_offset,
                true,
            )
            .override_global(global::FILTER_TGID, &filter_tgid, true)
            .override_global(global::FILTER_CGROUP, &filter_cgroup, true)
            .override_global(
                global::RELEASES_UNFILTERED,
                &u32::from(config.all_releases),
                true,
            )
            .override_global(global::FILTER_COMM, &filter_comm, true)
            .override_global(
                global::FILTER_FOLLOWED,
                &u32::from(config.follow_tree),
                true,
            )
            .override_global(global::NEWTASK_PID_OFFSET, &facts.newtask_offsets.0, true)
            .override_global(global::NEWTASK_FLAGS_OFFSET, &facts.newtask_offsets.1, true)
            .override_global(
                global::MIGRATE_SUCCEEDED_OFFSET,
                &facts.migrate_offsets[0],
                true,
            )
            .override_global(
                global::MIGRATE_FAILED_OFFSET,
                &facts.migrate_offsets[1],
                true,
            )
            .override_global(
                global::MIGRATE_REASON_OFFSET,
                &facts.migrate_offsets[2],
                true,
            )
            .override_global(
                global::ISOLATED_START_OFFSET,
                &facts.isolated_offsets[0],
                true,
            )
            .override_global(
                global::ISOLATED_END_OFFSET,
                &facts.isolated_offsets[1],
                true,
            )
            .override_global(
                global::ISOLATED_FIN_OFFSET,
                &facts.isolated_offsets[2],
                true,
            )
            .override_global(global::CMA_OFFSETS, &facts.cma_offsets, true)
            .override_global(global::FLOOR, &u32::from(config.floor), true)
            .map_max_entries("EVENTS", ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| anyhow::anyhow!(explain_load_error(&e)))?;
        start_ebpf_logger(&mut ebpf);
        let object_loaded = started.elapsed();

        let (capabilities, links) = kernel::attach_all(&mut ebpf, &facts);
        log::info!(
            target: "gup_trace::kernel",
            "start-up: kernel probed (kallsyms, BTF, tracefs) in {:.1} ms, object and maps loaded \
             in {:.1} ms, programs loaded and attached in {:.1} ms",
            probed.as_secs_f64() * 1e3,
            (object_loaded - probed).as_secs_f64() * 1e3,
            (started.elapsed() - object_loaded).as_secs_f64() * 1e3
        );
        if crate::stop::pending() {
            anyhow::bail!(
                "stopped (SIGINT or SIGTERM) while loading the eBPF programs: nothing was traced"
            );
        }
        let mmap_lock = match config.mmap_lock {
            MmapLockMode::Auto if capabilities.attached(HookClass::Pin) == 0 => MmapLockMode::All,
            MmapLockMode::Auto => MmapLockMode::Gup,
            chosen => chosen,
        };
        let mut settings: Array<_, u32> = Array::try_from(map(&mut ebpf, "SETTINGS")?)?;
        settings.set(
            setting::MMAP_LOCK_ALL,
            &u32::from(mmap_lock == MmapLockMode::All),
            0,
        )?;

        let events = RingBuf::try_from(map(&mut ebpf, "EVENTS")?)?;
        let counters = PerCpuArray::try_from(map(&mut ebpf, "COUNTERS")?)?;
        Ok(Session {
            ebpf,
            links,
            events: pollable(events).context("cannot poll the ring buffer")?,
            counters,
            capabilities,
            mmap_lock,
        })
    }

    /// Detaches every program. They stay loaded, with their maps: [`Session::reattach`] brings
    /// them back without loading them again. Detach while no traced task is inside a GUP call
    /// (e.g. between two runs of a workload): a call that straddles it leaves its thread's
    /// nesting state behind, and that thread's next calls would look nested.
    pub fn detach(&mut self) {
        self.links = kernel::Links::default();
    }

    /// Attaches the programs again, each hook the way it was first attached.
    pub fn reattach(&mut self) -> Result<()> {
        self.detach();
        self.links = kernel::relink(&mut self.ebpf, &self.capabilities)?;
        Ok(())
    }

    /// Waits until the kernel side wakes us (a batch of records is waiting) or `timeout`
    /// passes, and hands each raw ring-buffer record the ring buffer holds to `each`, exactly
    /// the bytes the kernel side wrote (one [`gup_trace_common::Event`], followed by the
    /// folios of a release call), undecoded. The kernel side wakes the reader only per batch
    /// (`wakeup_bytes`), so the timeout is what bounds how long a lone event waits. An error
    /// from `each` stops the draining and is returned; the records after it stay in the ring
    /// buffer.
    pub async fn next_records(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match tokio::time::timeout(timeout, self.events.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard.context("polling the ring buffer failed")?;
                let drained = drain_records(guard.get_inner_mut(), &mut each);
                guard.clear_ready();
                drained?;
            }
            Err(_elapsed) => drain_records(self.events.get_mut(), &mut each)?,
        }
        Ok(())
    }

    /// Adds `tgid` to the followed process tree: from now on it and the processes it creates
    /// are traced (with `follow_tree`). Call it before the process does anything worth seeing.
    pub fn follow(&mut self, tgid: u32) -> Result<()> {
        // Borrowed, not taken out of the object: the tree may be given more roots.
        let map = self
            .ebpf
            .map_mut("FOLLOWED")
            .context("map FOLLOWED missing from the eBPF object (build mismatch)")?;
        let mut followed: aya::maps::HashMap<_, u32, u8> = aya::maps::HashMap::try_from(map)?;
        followed
            .insert(&tgid, &1u8, 0)
            .with_context(|| format!("cannot follow process {tgid}"))
    }

    /// Hands every raw record already in the ring buffer to `each`, without waiting.
    pub fn drain_records(&mut self, each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        drain_records(self.events.get_mut(), each)
    }

    /// The kernel stacks the GUP hooks record, ready to be read by id and named. Reads
    /// /proc/kallsyms now, after the eBPF programs loaded, so that their frames are named too.
    /// Call it once: it takes the stack map out of the session.
    pub fn kernel_stacks(&mut self) -> Result<KernelStacks> {
        let map = StackTraceMap::try_from(map(&mut self.ebpf, "STACKS")?)?;
        let symbols = KernelSymbols::load()?;
        log::info!("{} kernel symbols loaded for stacks", symbols.len());
        Ok(KernelStacks {
            map,
            symbols,
            cache: HashMap::new(),
        })
    }

    /// The kernel stacks for commands that name them when they can and go on without them
    /// when they cannot (check, top, record): a failure is logged once and becomes the reason
    /// every lookup gives.
    pub fn stack_names(&mut self) -> StackNames {
        match self.kernel_stacks() {
            Ok(stacks) => StackNames::Named(Box::new(stacks)),
            Err(e) => {
                log::warn!("kernel stacks will not be named: {e:#}");
                StackNames::Unavailable(e)
            }
        }
    }

    /// Every loaded program's runs and run time so far, by program name (programs this
    /// kernel could not load, for hooks it lacks, are left out). The kernel counts
    /// them only while statistics are on (`kernel.bpf_stats_enabled`, or the descriptor of
    /// [`aya::sys::enable_stats`] held open); run time is the program's own, measured by the
    /// kernel around each run (not the trampoline or kprobe that calls it).
    pub fn program_stats(&self) -> Result<Vec<ProgramStats>> {
        self.ebpf
            .programs()
            .filter(|(_, program)| program.fd().is_ok())
            .map(|(name, program)| {
                let info = program
                    .info()
                    .with_context(|| format!("BPF_OBJ_GET_INFO_BY_FD of program {name}"))?;
                Ok(ProgramStats {
                    program: name.to_string(),
                    runs: info.run_count(),
                    run_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }

    /// Program runs a floor session counted (0 in any other session).
    pub fn floor_runs(&self) -> Result<u64> {
        self.counter(counter::FLOOR_RUNS)
    }

    fn counter(&self, index: u32) -> Result<u64> {
        Ok(self.counters.get(&index, 0)?.iter().sum())
    }

    pub fn counters(&self) -> Result<KernelCounters> {
        let sum = |index: u32| self.counter(index);
        Ok(KernelCounters {
            lost_events: sum(counter::LOST_EVENTS)?,
            mmap_lock_releases: sum(counter::MMAP_LOCK_RELEASES)?,
            thread_map_full: sum(counter::TASK_MAP_FULL)?,
            unmatched_exits: sum(counter::UNMATCHED_EXITS)?,
            truncated_walks: sum(counter::TRUNCATED_WALKS)?,
            stale_calls: sum(counter::STALE_CALLS)?,
        })
    }
}

/// Wake the reader once an eighth of the ring buffer is waiting: few wakeups (one per event
/// more than doubled the cost of a traced O_DIRECT read), and room left for bursts while the
/// reader catches up.
fn wakeup_bytes(ring_bytes: u32) -> u64 {
    u64::from(ring_bytes / 8)
}

/// Kernel stacks recorded by the GUP hooks (`bpf_get_stackid` into the STACKS map: the
/// kernel's own unwinder), read and named the first time an id is asked for. Every call from
/// the same code path shares one id, so a trace reads each stack once.
pub struct KernelStacks {
    map: StackTraceMap<MapData>,
    symbols: KernelSymbols,
    cache: HashMap<u32, Arc<[StackFrame]>>,
}

impl KernelStacks {
    /// The frames of stack `id`, top first. The kernel never replaces a stack under its id
    /// (STACKS is written without BPF_F_REUSE_STACKID), so a cached stack stays right.
    pub fn frames(&mut self, id: u32) -> Result<Arc<[StackFrame]>> {
        if let Some(frames) = self.cache.get(&id) {
            return Ok(Arc::clone(frames));
        }
        let trace = self
            .map
            .get(&id, 0)
            .with_context(|| format!("cannot read kernel stack {id} from the STACKS map"))?;
        let addresses: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
        if self.symbols.modules_changed() {
            // A module loaded since the table was read: its frames need its symbols.
            self.symbols = KernelSymbols::load()
                .context("a kernel module was loaded or removed; re-reading symbols failed")?;
            log::info!(
                "modules changed: {} kernel symbols re-read",
                self.symbols.len()
            );
        }
        let frames: Arc<[StackFrame]> = self.symbols.stack(&addresses).into();
        self.cache.insert(id, Arc::clone(&frames));
        Ok(frames)
    }
}

/// Kernel stacks, or why there are none (see [`Session::stack_names`]).
pub enum StackNames {
    Named(Box<KernelStacks>),
    /// Reading them failed: every lookup says why.
    Unavailable(anyhow::Error),
    /// The command does not show stacks, so they were never read.
    NotRead,
}

impl StackNames {
    pub fn frames(&mut self, id: u32) -> CallStack {
        match self {
            StackNames::Named(stacks) => stacks.frames(id).map_err(|e| format!("{e:#}")),
            StackNames::Unavailable(e) => Err(format!("kernel stacks unavailable: {e:#}")),
            StackNames::NotRead => Err("kernel stacks were not read".into()),
        }
    }
}

fn drain_records(
    ring: &mut RingBuf<MapData>,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    while let Some(item) = ring.next() {
        each(&item)?;
    }
    Ok(())
}

/// The kernel compares the whole 16-byte comm; names longer than the kernel keeps never match,
/// so refuse them instead of tracing nothing.
fn comm_filter(comm: Option<&str>) -> Result<[u8; COMM_LEN]> {
    let mut bytes = [0u8; COMM_LEN];
    if let Some(comm) = comm {
        if comm.is_empty() || comm.len() >= COMM_LEN {
            anyhow::bail!(
                "--comm {comm:?}: the kernel keeps 1 to {} bytes of a task name (see /proc/PID/comm)",
                COMM_LEN - 1
            );
        }
        bytes[..comm.len()].copy_from_slice(comm.as_bytes());
    }
    Ok(bytes)
}

fn map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object (build mismatch)"))
}

fn explain_load_error(err: &aya::EbpfError) -> String {
    let text = err.to_string();
    if text.contains("Operation not permitted") {
        format!(
            "loading the eBPF object failed: {text}: run as root (or with CAP_BPF and CAP_PERFMON)"
        )
    } else {
        format!("loading the eBPF object failed: {text}")
    }
}

/// Forwards aya-log records from the eBPF programs to our logger (shown with --verbose).
fn start_ebpf_logger(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => {
            log::warn!("eBPF-side logging unavailable: {e}");
            return;
        }
    };
    let Ok(mut logger) = pollable(logger) else {
        log::warn!("eBPF-side logging unavailable: cannot poll its ring buffer");
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// Registers a map-backed reader with the async runtime, for readability.
fn pollable<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map fd and keeps it open, unchanged, for as long as it lives,
    // and the AsyncFd owns `inner`.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads, so it compares with event times.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
