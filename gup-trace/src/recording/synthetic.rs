//! Synthetic recordings: raw ring-buffer records as the kernel side writes them, for a
//! realistic mix of GUP traffic, to benchmark and test the recorder, the reader and the engine
//! without a kernel that can be hooked.
//!
//! The mix, per step: pin calls (their per-folio grab records, then the call: mostly one
//! folio, as O_DIRECT; some batches of 4 to 16, as a vectored read; some 64-folio io_uring
//! buffer registrations with FOLL_LONGTERM; some on a large folio), releases (one record per
//! call with its folios behind it, sometimes by another process, as io_uring teardown),
//! FOLL_GET calls, mmap_lock drops, and processes exiting and being replaced, one in ten
//! leaving pins behind. Times advance 2 to 8 us per step (about 1.2 million events a second),
//! and 3% of the records arrive behind the next one, as records another CPU committed later
//! do.

use std::collections::VecDeque;

use gup_trace_common::{
    COMM_LEN, CallPath, Event, EventKind, FolioTransition, Hook, LockStats, NO_CALL, folio_bit,
};

use super::{
    Compression, CounterSnapshot, Filters, Metadata, RecordedHook, RecordingWriter, WriteStats,
    hook_ids,
};
use crate::{
    session::KernelCounters,
    symbols::{FrameSymbol, StackFrame},
    vmstat::PinCounters,
};

/// FOLL_* values of a 6.12 kernel.
pub const FOLL_WRITE: u32 = 0x1;
pub const FOLL_LONGTERM: u32 = 0x100;
pub const FOLL_PIN: u32 = 0x80000;
/// Where the synthetic time starts (CLOCK_MONOTONIC of a machine up for 1000 s).
pub const START_NS: u64 = 1_000_000_000_000;
const VMEMMAP: u64 = 0xffff_ea00_0000_0000;
/// `sizeof(struct page)`.
const PAGE_STRUCT: u64 = 64;

/// xorshift64*: reproducible, and no dependency for it.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// The struct folio address of `pfn`.
pub fn folio_of(pfn: u64) -> u64 {
    VMEMMAP + pfn * PAGE_STRUCT
}

/// A task name as the kernel keeps it.
pub fn comm(name: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    c[..n].copy_from_slice(&name.as_bytes()[..n]);
    c
}

/// An event with only its identity filled in.
pub fn event(
    kind: EventKind,
    hook: Hook,
    ts_ns: u64,
    tgid: u32,
    tid: u32,
    name: [u8; COMM_LEN],
) -> Event {
    Event {
        ts_ns,
        duration_ns: 0,
        pages: 0,
        tgid,
        tid,
        kind: kind as u32,
        hook: hook as u32,
        error: 0,
        gup_flags: 0,
        start: 0,
        requested: 0,
        cgroup_id: 1,
        stack_id: -1,
        call_hook: NO_CALL,
        comm: name,
        path: CallPath::ZERO,
        lock: LockStats::ZERO,
        folio: FolioTransition::ZERO,
        owner_tgid: 0,
        owner_bits: 0,
        owner_comm: [0; COMM_LEN],
    }
}

/// Appends `e`'s bytes, as the kernel side writes them.
pub fn put_event(out: &mut Vec<u8>, e: &Event) {
    // SAFETY: Event is repr(C) plain old data without padding (it is aya::Pod).
    out.extend_from_slice(unsafe {
        std::slice::from_raw_parts((e as *const Event).cast::<u8>(), size_of::<Event>())
    });
}

/// Appends `t`'s bytes behind a release call's event.
pub fn put_folio(out: &mut Vec<u8>, t: &FolioTransition) {
    // SAFETY: FolioTransition is repr(C) plain old data; its padding is an explicit field.
    out.extend_from_slice(unsafe {
        std::slice::from_raw_parts(
            (t as *const FolioTransition).cast::<u8>(),
            size_of::<FolioTransition>(),
        )
    });
}

/// One pin on a small folio (refcount +1024), or `refs` pins on a large one (+refs each).
pub fn pin_transition(pfn: u64, refs: u32, large: bool, release: bool) -> FolioTransition {
    let (rc, pc) = if large {
        (1 + refs as i32, refs as i32)
    } else {
        (1 + 1024 * refs as i32, 0)
    };
    let (before, after) = if release {
        ((rc, pc), (1, 0))
    } else {
        ((1, 0), (rc, pc))
    };
    FolioTransition {
        folio: folio_of(pfn),
        pfn,
        refs,
        bits: folio_bit::PIN
            | if large { folio_bit::LARGE } else { 0 }
            | if release { folio_bit::RELEASE } else { 0 },
        order: if large { 9 } else { 0 },
        refcount_before: before.0,
        refcount_after: after.0,
        pincount_before: before.1,
        pincount_after: after.1,
        _pad: 0,
    }
}

/// Where GUP calls come from: an entry point, its flags and a kernel stack.
#[derive(Clone, Copy)]
struct Site {
    hook: Hook,
    grab: Hook,
    flags: u32,
    stack_id: i32,
    frames: &'static [&'static str],
}

const SITES: &[Site] = &[
    Site {
        hook: Hook::PinUserPagesFast,
        grab: Hook::TryGrabFolioFast,
        flags: FOLL_WRITE,
        stack_id: 11,
        frames: &[
            "iov_iter_extract_pages+0x1a5",
            "bio_iov_iter_get_pages+0xd4",
            "iomap_dio_bio_iter+0x2b4",
            "__iomap_dio_rw+0x3f1",
            "ext4_file_read_iter+0x8d",
            "vfs_read+0x245",
            "__x64_sys_pread64+0x98",
            "do_syscall_64+0x82",
        ],
    },
    Site {
        hook: Hook::PinUserPagesFast,
        grab: Hook::TryGrabFolioFast,
        flags: FOLL_WRITE | FOLL_LONGTERM,
        stack_id: 12,
        frames: &[
            "io_pin_pages+0x8a",
            "io_sqe_buffer_register+0x1a3",
            "io_sqe_buffers_register+0x130",
            "__x64_sys_io_uring_register+0x22",
            "do_syscall_64+0x82",
        ],
    },
    Site {
        hook: Hook::PinUserPagesRemote,
        grab: Hook::TryGrabFolio,
        flags: 0,
        stack_id: 13,
        frames: &[
            "process_vm_rw_core+0x208",
            "process_vm_rw+0xd7",
            "__x64_sys_process_vm_readv+0x29",
            "do_syscall_64+0x82",
        ],
    },
    Site {
        hook: Hook::GetUserPagesRemote,
        grab: Hook::TryGrabFolio,
        flags: 0,
        stack_id: 14,
        frames: &[
            "get_arg_page+0x4c",
            "copy_string_kernel+0x9e",
            "do_execveat_common+0x15d",
            "__x64_sys_execve+0x3e",
            "do_syscall_64+0x82",
        ],
    },
];

/// The stacks of the synthetic call sites, named as a recorder names them.
pub fn stacks() -> Vec<(u32, Vec<StackFrame>)> {
    SITES
        .iter()
        .map(|s| {
            let frames = s
                .frames
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let (name, off) = f.split_once("+0x").expect("name+0xoff");
                    StackFrame {
                        address: 0xffff_ffff_8100_0000 + (i as u64) * 0x1000,
                        symbol: Some(FrameSymbol {
                            function: name.to_string(),
                            offset: u64::from_str_radix(off, 16).expect("hex"),
                            module: None,
                        }),
                    }
                })
                .collect();
            (s.stack_id as u32, frames)
        })
        .collect()
}

/// The metadata of a synthetic recording: a 6.12-like kernel with every hook attached.
pub fn metadata() -> Metadata {
    Metadata {
        gup_trace_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: "synthetic".into(),
        start_ns: START_NS,
        start_unix_ns: 1_795_000_000_000_000_000,
        foll_source: "synthetic".into(),
        foll_flags: vec![
            ("FOLL_WRITE".into(), FOLL_WRITE),
            ("FOLL_LONGTERM".into(), FOLL_LONGTERM),
            ("FOLL_PIN".into(), FOLL_PIN),
        ],
        foll_pin: FOLL_PIN,
        foll_longterm: FOLL_LONGTERM,
        hooks: Hook::ALL
            .iter()
            .map(|h| RecordedHook {
                hook: h.name().into(),
                status: "attached".into(),
                kind: Some(if h.tracepoint_category().is_some() {
                    "tracepoint".into()
                } else {
                    "fentry".into()
                }),
                reasons: Vec::new(),
                cost: None,
            })
            .collect(),
        hook_ids: hook_ids(),
        filters: Filters {
            mmap_lock: "gup".into(),
            all_releases: true,
            ring_buffer_kib: 4096,
            ..Filters::default()
        },
    }
}

struct Batch {
    pfns: Vec<u64>,
    large: bool,
}

struct Process {
    tgid: u32,
    comm: [u8; COMM_LEN],
    held: VecDeque<Batch>,
    /// (soak) Short-term pins held for a long time, released when due.
    long: VecDeque<(u64, Batch)>,
}

/// The soak's mix on top of the busy one (see [`Synthetic::soak`]): what a machine up for
/// days does to a tracer's state.
#[derive(Clone, Copy, Debug)]
pub struct SoakMix {
    /// Machine time between steps: lo..hi ns.
    pub gap_ns: (u64, u64),
    /// Pids wrap past this (the kernel's pid_max), to 300 as Linux does: pids are reused.
    pub pid_max: u32,
    /// Processes (the first slots) that never exit, each holding a FOLL_LONGTERM buffer
    /// registration (64 folios) from its start to the end.
    pub daemons: usize,
    /// One pin call in this many keeps its pins `long_ns` (lo..hi) before releasing them:
    /// long-held short-term pins.
    pub long_every: u64,
    pub long_ns: (u64, u64),
    /// Pins an exiting process leaves behind (one exit in ten) are released this long after
    /// by another process (a late io_uring teardown), except the first `leaks` batches,
    /// which stay pinned to the end.
    pub orphan_release_ns: u64,
    pub leaks: usize,
    /// The kernel stack of the most common call site changes this often (other callers,
    /// modules loaded): call sites come and go.
    pub stack_every_ns: u64,
}

impl Default for SoakMix {
    /// About 1,300 events a second of machine time (a step every 5 ms, two processes exiting
    /// a second): 10^8 events are about 21 hours.
    fn default() -> Self {
        SoakMix {
            gap_ns: (1_000_000, 9_000_000),
            pid_max: 32_768,
            daemons: 4,
            long_every: 500,
            long_ns: (30_000_000_000, 120_000_000_000),
            orphan_release_ns: 120_000_000_000,
            leaks: 32,
            stack_every_ns: 60_000_000_000,
        }
    }
}

/// The soak's state: its mix, orphans waiting for their teardown, leaks left for ever.
struct Soak {
    mix: SoakMix,
    orphans: VecDeque<(u64, Batch)>,
    leaked: usize,
}

/// Generates the records of a synthetic recording, one at a time.
pub struct Synthetic {
    rng: Rng,
    now_ns: u64,
    processes: Vec<Process>,
    next_pid: u32,
    next_pfn: u64,
    queue: VecDeque<Vec<u8>>,
    held_back: Option<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// Pins taken and released so far (pages), as vmstat counts them.
    pub pinned: u64,
    pub released: u64,
    soak: Option<Soak>,
}

const NAMES: &[&str] = &[
    "fio",
    "postgres",
    "qemu-system-x86",
    "nginx",
    "rdma-bench",
    "java",
    "rocksdb",
    "io_worker",
];

impl Synthetic {
    pub fn new(seed: u64, processes: u32) -> Synthetic {
        let mut s = Synthetic {
            rng: Rng::new(seed),
            now_ns: START_NS,
            processes: Vec::new(),
            next_pid: 1000,
            next_pfn: 0x10_0000,
            queue: VecDeque::new(),
            held_back: None,
            spare: Vec::new(),
            pinned: 0,
            released: 0,
            soak: None,
        };
        for _ in 0..processes.max(1) {
            let p = s.new_process();
            s.processes.push(p);
        }
        s
    }

    /// The busy mix of [`Synthetic::new`] slowed to `mix.gap_ns` a step, with what weeks of
    /// uptime bring: pid reuse, daemons holding long-term pins for ever, long-held short-term
    /// pins, orphaned pins released late or never, call sites coming and going.
    pub fn soak(seed: u64, processes: u32, mix: SoakMix) -> Synthetic {
        let mut s = Synthetic::new(seed, processes.max(mix.daemons as u32 + 1));
        s.soak = Some(Soak {
            mix,
            orphans: VecDeque::new(),
            leaked: 0,
        });
        for p in 0..mix.daemons {
            s.pin_batch(p, SITES[1], 64, false);
            // Never released: out of `held`, and the daemon never exits.
            s.processes[p].held.pop_back().expect("just pinned");
        }
        s
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn new_process(&mut self) -> Process {
        self.next_pid += 1 + (self.rng.next() % 7) as u32;
        if let Some(pid_max) = self.soak.as_ref().map(|s| s.mix.pid_max) {
            // Past pid_max, the next pid (and the three tids after it) not in use from 300.
            let in_use =
                |s: &Synthetic, pid: u32| s.processes.iter().any(|p| p.tgid.abs_diff(pid) < 4);
            while self.next_pid + 4 >= pid_max || in_use(self, self.next_pid) {
                self.next_pid += 1 + (self.rng.next() % 7) as u32;
                if self.next_pid + 4 >= pid_max {
                    self.next_pid = 300;
                }
            }
        }
        let name = NAMES[(self.rng.next() as usize) % NAMES.len()];
        Process {
            tgid: self.next_pid,
            comm: comm(name),
            held: VecDeque::new(),
            long: VecDeque::new(),
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// The next record's bytes, in `out` (replaced). Now and then a record is held back
    /// behind the next one, as a record another CPU committed later arrives.
    pub fn next_record(&mut self, out: &mut Vec<u8>) {
        loop {
            while self.queue.is_empty() {
                self.step();
            }
            let record = self.queue.pop_front().expect("queue filled");
            if self.held_back.is_none() && self.rng.chance(3) {
                self.held_back = Some(record);
                continue;
            }
            if let Some(late) = self.held_back.take() {
                self.queue.push_front(late);
            }
            let old = std::mem::replace(out, record);
            self.spare.push(old);
            return;
        }
    }

    /// About 1.2 million events a second of machine time: a busy machine's worth, and what
    /// the engine's reorder window (20 ms) holds is as large as it would be there.
    fn ts(&mut self) -> u64 {
        let (lo, hi) = self.soak.as_ref().map_or((2000, 8000), |s| s.mix.gap_ns);
        self.now_ns += self.rng.range(lo, hi);
        self.now_ns
    }

    fn step(&mut self) {
        let p = (self.rng.next() as usize) % self.processes.len();
        if self.soak_step(p) {
            return;
        }
        let daemon = self.soak.as_ref().is_some_and(|s| p < s.mix.daemons);
        let roll = self.rng.next() % 1000;
        let holding = self.processes[p].held.len();
        if roll < 10 && !daemon {
            self.exit_and_replace(p);
        } else if roll < 60 {
            self.mmap_lock_drop(p);
        } else if roll < 100 {
            self.get_call(p);
        } else if holding > 24 || (holding > 0 && roll < 540) {
            let releaser = if self.rng.chance(5) {
                (self.rng.next() as usize) % self.processes.len()
            } else {
                p
            };
            self.release_oldest(p, releaser);
        } else {
            self.pin_call(p);
        }
    }

    fn pin_call(&mut self, p: usize) {
        let roll = self.rng.next() % 100;
        let (site, n, large) = match roll {
            0..70 => (SITES[0], 1, false),
            70..88 => (SITES[0], self.rng.range(4, 17), false),
            88..93 => (SITES[1], 64, false),
            93..97 => (SITES[2], self.rng.range(1, 5), false),
            _ => (SITES[0], 1, true),
        };
        self.pin_batch(p, site, n, large);
        let Some(soak) = &self.soak else { return };
        let (every, (lo, hi)) = (soak.mix.long_every, soak.mix.long_ns);
        if site.flags & FOLL_LONGTERM == 0 && self.rng.next() % every.max(1) == 0 {
            let due = self.now_ns + self.rng.range(lo, hi);
            let batch = self.processes[p].held.pop_back().expect("just pinned");
            self.processes[p].long.push_back((due, batch));
        }
    }

    /// A pin call of `n` folios by process `p` through `site`; its batch joins `held`.
    fn pin_batch(&mut self, p: usize, mut site: Site, n: u64, large: bool) {
        if let Some(soak) = &self.soak
            && site.stack_id == SITES[0].stack_id
        {
            // Stacks 1000 and up, one per period, cycling through 4096 of them.
            let period = self.now_ns / soak.mix.stack_every_ns.max(1);
            site.stack_id = 1000 + (period % 4096) as i32;
        }
        let (tgid, name) = (self.processes[p].tgid, self.processes[p].comm);
        let tid = tgid + (self.rng.next() % 4) as u32;
        let pfns: Vec<u64> = (0..n)
            .map(|_| {
                self.next_pfn += if large { 512 } else { 1 };
                self.next_pfn
            })
            .collect();
        let refs = if large { 512 } else { 1 };
        let slow = self.rng.chance(10);
        let mut ts = self.ts();
        for &pfn in &pfns {
            let mut e = event(EventKind::Folio, site.grab, ts, tgid, tid, name);
            e.call_hook = site.hook as u32;
            e.stack_id = site.stack_id;
            e.folio = pin_transition(pfn, refs, large, false);
            e.pages = u64::from(refs);
            let mut b = self.buffer();
            put_event(&mut b, &e);
            self.queue.push_back(b);
            // Grabs are microseconds apart at most: the whole call fits before the next step.
            ts += 10;
        }
        let pages = n * u64::from(refs);
        let mut call = event(EventKind::Call, site.hook, ts + 20, tgid, tid, name);
        call.duration_ns = 300 + 40 * pages;
        call.pages = pages;
        call.requested = pages;
        call.gup_flags = site.flags;
        call.start = 0x7f00_0000_0000 + (pfns[0] << 12);
        call.stack_id = site.stack_id;
        call.path = CallPath {
            fast_refs: if slow { 0 } else { pages },
            slow_refs: if slow { pages } else { 0 },
            slow_walks: u32::from(slow),
            walked: 0,
        };
        if slow {
            call.lock = LockStats {
                wait_ns: self.rng.range(100, 50_000),
                hold_ns: self.rng.range(1_000, 200_000),
                acquisitions: 1,
                drops: 0,
            };
        }
        let mut b = self.buffer();
        put_event(&mut b, &call);
        self.queue.push_back(b);
        self.pinned += pages;
        self.processes[p].held.push_back(Batch { pfns, large });
    }

    fn get_call(&mut self, p: usize) {
        let site = SITES[3];
        let (tgid, name) = (self.processes[p].tgid, self.processes[p].comm);
        let ts = self.ts();
        let pfn = self.next_pfn + 7;
        let mut e = event(EventKind::Folio, site.grab, ts, tgid, tgid, name);
        e.call_hook = site.hook as u32;
        e.stack_id = site.stack_id;
        e.folio = FolioTransition {
            folio: folio_of(pfn),
            pfn,
            refs: 1,
            refcount_before: 2,
            refcount_after: 3,
            ..FolioTransition::ZERO
        };
        e.pages = 1;
        let mut b = self.buffer();
        put_event(&mut b, &e);
        self.queue.push_back(b);
        let mut call = event(EventKind::Call, site.hook, ts + 80, tgid, tgid, name);
        call.pages = 1;
        call.requested = 1;
        call.stack_id = site.stack_id;
        call.path.fast_refs = 1;
        let mut b = self.buffer();
        put_event(&mut b, &call);
        self.queue.push_back(b);
    }

    fn release_oldest(&mut self, owner: usize, releaser: usize) {
        if let Some(batch) = self.processes[owner].held.pop_front() {
            self.release(batch, releaser);
        }
    }

    /// An unpin call by process `releaser` of the pins of `batch`.
    fn release(&mut self, batch: Batch, releaser: usize) {
        let (tgid, name) = (self.processes[releaser].tgid, self.processes[releaser].comm);
        let refs = if batch.large { 512 } else { 1 };
        let pages = batch.pfns.len() as u64 * u64::from(refs);
        let hook = if pages == 1 {
            Hook::UnpinUserPage
        } else {
            Hook::UnpinUserPagesDirtyLock
        };
        let mut call = event(EventKind::Call, hook, self.ts(), tgid, tgid, name);
        call.duration_ns = 200 + 20 * pages;
        call.pages = pages;
        call.path.walked = batch.pfns.len() as u32;
        let mut b = self.buffer();
        put_event(&mut b, &call);
        for &pfn in &batch.pfns {
            put_folio(&mut b, &pin_transition(pfn, refs, batch.large, true));
        }
        self.queue.push_back(b);
        self.released += pages;
    }

    /// (soak) Releases one thing due: an orphan batch (by another process), or `p`'s oldest
    /// long-held pins. Whether it did.
    fn soak_step(&mut self, p: usize) -> bool {
        let Some(soak) = &mut self.soak else {
            return false;
        };
        if soak
            .orphans
            .front()
            .is_some_and(|(due, _)| *due <= self.now_ns)
        {
            let (_, batch) = soak.orphans.pop_front().expect("front checked");
            self.release(batch, p);
            return true;
        }
        if self.processes[p]
            .long
            .front()
            .is_some_and(|(due, _)| *due <= self.now_ns)
        {
            let (_, batch) = self.processes[p].long.pop_front().expect("front checked");
            self.release(batch, p);
            return true;
        }
        false
    }

    fn mmap_lock_drop(&mut self, p: usize) {
        let (tgid, name) = (self.processes[p].tgid, self.processes[p].comm);
        let mut e = event(
            EventKind::MmapLockDrop,
            Hook::MmapLockReleased,
            self.ts(),
            tgid,
            tgid,
            name,
        );
        e.call_hook = Hook::PinUserPagesFast as u32;
        e.duration_ns = self.rng.range(1_000, 100_000);
        e.start = 0x7f00_0000_0000;
        let mut b = self.buffer();
        put_event(&mut b, &e);
        self.queue.push_back(b);
    }

    /// The process exits (releasing what it holds, except one time in ten) and a new one,
    /// forked by another, takes its place.
    fn exit_and_replace(&mut self, p: usize) {
        let long: Vec<Batch> = self.processes[p].long.drain(..).map(|(_, b)| b).collect();
        self.processes[p].held.extend(long);
        if !self.rng.chance(10) {
            while !self.processes[p].held.is_empty() {
                self.release_oldest(p, p);
            }
        } else if let Some(soak) = &mut self.soak {
            // Orphans: a late teardown releases them, or (the first few) nobody ever does.
            let due = self.now_ns + soak.mix.orphan_release_ns;
            for batch in self.processes[p].held.drain(..) {
                if soak.leaked < soak.mix.leaks {
                    soak.leaked += 1; // dropped: its pins stay
                } else {
                    soak.orphans.push_back((due, batch));
                }
            }
        }
        let (tgid, name) = (self.processes[p].tgid, self.processes[p].comm);
        let e = event(
            EventKind::ProcessExit,
            Hook::SchedProcessExit,
            self.ts(),
            tgid,
            tgid,
            name,
        );
        let mut b = self.buffer();
        put_event(&mut b, &e);
        self.queue.push_back(b);
        let parent = (self.rng.next() as usize) % self.processes.len();
        let child = self.new_process();
        let (ptgid, pname) = (self.processes[parent].tgid, self.processes[parent].comm);
        let mut fork = event(
            EventKind::ProcessFork,
            Hook::TaskNewtask,
            self.ts(),
            ptgid,
            ptgid,
            pname,
        );
        fork.start = u64::from(child.tgid);
        let mut b = self.buffer();
        put_event(&mut b, &fork);
        self.queue.push_back(b);
        // The leftovers stay pinned: nobody holds them any more.
        self.processes[p] = child;
    }
}

/// Writes a whole synthetic recording of at least `events` events; returns what was written.
pub fn write_recording<W: std::io::Write>(
    out: W,
    seed: u64,
    events: u64,
    compression: Compression,
) -> anyhow::Result<(W, WriteStats)> {
    let mut w = RecordingWriter::new(out, &metadata(), compression)?;
    let mut synth = Synthetic::new(seed, 32);
    let counters = |ts_ns, end, s: &Synthetic| CounterSnapshot {
        ts_ns,
        end,
        kernel: KernelCounters::default(),
        vmstat: Some(PinCounters {
            acquired: 5_000_000 + s.pinned,
            released: 5_000_000 + s.released,
        }),
    };
    w.counters(&counters(START_NS, false, &synth))?;
    for (id, frames) in stacks() {
        w.stack(id, &Ok(frames.into()))?;
    }
    let mut record = Vec::new();
    while w.stats.events < events {
        synth.next_record(&mut record);
        w.record(&record)?;
    }
    let end_ns = synth.now_ns() + 1_000;
    w.counters(&counters(end_ns, true, &synth))?;
    let end = w.end_totals(end_ns, 0);
    Ok(w.finish(&end)?)
}
