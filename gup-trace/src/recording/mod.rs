//! Recordings: what a session saw, on disk, to be reported on later or elsewhere.
//!
//! A recording keeps the raw ring-buffer records (exactly the bytes the kernel side wrote), so
//! a later gup-trace replays them through the same decoder and engine as a live session.
//! Everything needed to read them away from the machine travels with them: the kernel's
//! FOLL_* values, the capability report, and the kernel stacks, named at record time.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! header   "GUPTRACE"  u32 format version  u32 size_of::<Event>()
//!          u32 size_of::<FolioTransition>()  u32 metadata length  metadata (JSON)
//!          u32 CRC32C of the header before it
//! chunks   u8 codec (0 stored, 1 LZ4 block)  [u8; 3] zero  u32 raw length  u32 stored length
//!          u32 CRC32C of the stored bytes  u32 CRC32C of the chunk header before it
//!          stored bytes, which unpack to whole items:
//! item     u8 tag  u32 payload length  payload
//! ```
//!
//! Checksums (format 3): a damaged header is refused; a damaged chunk (its header or its bytes)
//! ends the read there, with its number and byte offset ([`Damage`]): everything before it is
//! given, nothing after it (lengths past a damaged chunk cannot be trusted, so skipping it
//! would mean guessing). The chunk header's own checksum is checked before its lengths are
//! used, so a damaged length is told from a file cut short. Format 2 recordings (no
//! checksums, 12-byte chunk headers) are still read, unchecked.
//!
//! Items: a ring-buffer record; a kernel stack (id and named frames, once per id, before the
//! first record that uses it); the kernel's counters and /proc/vmstat's pin counters, at the
//! start and at the end; the end marker with the totals. A reader skips tags it does not know,
//! so items can be added without a new format version; changing one needs a new version.
//!
//! The writer packs items into chunks of about [`CHUNK_BYTES`] and writes each chunk with one
//! `write`, at least every second when told to ([`RecordingWriter::flush_if_due`]). A recorder
//! killed midway leaves whole chunks and maybe part of one: the reader gives every item of the
//! whole chunks and says the recording was truncated after so many events.

pub mod filter;
pub mod replay;
#[cfg(test)]
pub(crate) mod scenario;
pub mod synthetic;

pub use filter::ProcessFilter;
pub use replay::{Replay, Replayer};

use std::{
    collections::HashSet,
    fmt,
    fs::File,
    io::{self, Read, Write},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use gup_trace_common::{Event, FolioTransition, Hook};
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{Capabilities, HookStatus},
    session::KernelCounters,
    symbols::{CallStack, FrameSymbol, StackFrame},
    vmstat::PinCounters,
};

pub const MAGIC: [u8; 8] = *b"GUPTRACE";
/// The version this gup-trace writes.
/// 2: events carry the owner of the memory a GUP call works on (`owner_*`).
/// 3: the header and every chunk carry CRC32C checksums.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this gup-trace reads (without checksums before version 3).
pub const OLDEST_READ_VERSION: u32 = 2;
const CHECKSUMS_SINCE: u32 = 3;
/// Magic, version, the two sizes and the metadata length.
pub(crate) const FIXED_HEADER: usize = 8 + 4 * 4;
/// The header's checksum, after the metadata.
pub(crate) const HEADER_CHECKSUM: usize = 4;
/// Raw bytes a chunk collects before it is packed and written.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// More than any chunk or metadata block a writer makes: a larger length is damage.
const MAX_BLOCK: usize = 64 << 20;
/// A chunk header: codec, lengths and the two checksums.
const CHUNK_HEADER: usize = 20;
/// A chunk header of format 2: codec and lengths.
const CHUNK_HEADER_V2: usize = 12;
const ITEM_HEADER: usize = 5;

mod tag {
    pub const RECORD: u8 = 1;
    pub const STACK: u8 = 2;
    pub const COUNTERS: u8 = 3;
    pub const END: u8 = 4;
}

mod codec {
    pub const STORED: u8 = 0;
    pub const LZ4: u8 = 1;
}

/// How chunks are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// LZ4 block format, one block per chunk (a chunk that does not shrink is stored).
    Lz4,
}

/// What the recording says about where and how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub gup_trace_version: String,
    pub kernel_release: String,
    /// When recording began: CLOCK_MONOTONIC (the clock of event times) and the wall clock.
    pub start_ns: u64,
    pub start_unix_ns: u64,
    /// The kernel's FOLL_* flags and where their values came from.
    pub foll_source: String,
    pub foll_flags: Vec<(String, u32)>,
    pub foll_pin: u32,
    pub foll_longterm: u32,
    /// The capability report: every hook and how it attached, or why not.
    pub hooks: Vec<RecordedHook>,
    /// Hook names by id, as the writing build numbered them.
    pub hook_ids: Vec<String>,
    pub filters: Filters,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHook {
    pub hook: String,
    /// `attached`, `not_in_kernel` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}

impl RecordedHook {
    pub fn attached(&self) -> bool {
        self.status == "attached"
    }

    pub fn failed(&self) -> bool {
        self.status == "failed"
    }

    /// The hook of this build with the same name.
    pub fn hook(&self) -> Option<Hook> {
        Hook::ALL.iter().copied().find(|h| h.name() == self.hook)
    }
}

/// The session's filters and settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Stored as `pid`, `comm` and `cgroup_id` beside the settings, as they always were.
    #[serde(flatten)]
    pub processes: ProcessFilter,
    pub mmap_lock: String,
    pub all_releases: bool,
    pub ring_buffer_kib: u32,
}

impl Metadata {
    /// The recording's description of a session started now.
    pub fn new(caps: &Capabilities, filters: Filters, start_ns: u64) -> Metadata {
        let start_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Metadata {
            gup_trace_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: caps.kernel.clone(),
            start_ns,
            start_unix_ns,
            foll_source: caps.foll.source.to_string(),
            foll_flags: caps.foll.flags.clone(),
            foll_pin: caps.foll_pin.value,
            foll_longterm: caps.foll.longterm(),
            hooks: caps
                .hooks
                .iter()
                .map(|r| {
                    let (status, kind, reasons) = match &r.status {
                        HookStatus::Attached { kind } => {
                            ("attached", Some(kind.to_string()), Vec::new())
                        }
                        HookStatus::NotInKernel => ("not_in_kernel", None, Vec::new()),
                        HookStatus::Failed { reasons } => ("failed", None, reasons.clone()),
                    };
                    RecordedHook {
                        hook: r.hook.name().to_string(),
                        status: status.to_string(),
                        kind,
                        reasons,
                        cost: r.cost.map(str::to_string),
                    }
                })
                .collect(),
            hook_ids: hook_ids(),
            filters,
        }
    }

    /// Whether hooks of `class` were attached.
    pub fn attached(&self, class: gup_trace_common::HookClass) -> usize {
        self.hooks
            .iter()
            .filter(|h| h.attached() && h.hook().is_some_and(|k| k.class() == class))
            .count()
    }
}

fn hook_ids() -> Vec<String> {
    Hook::ALL.iter().map(|h| h.name().to_string()).collect()
}

/// The kernel's counters at the start or the end of the recording.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// CLOCK_MONOTONIC when they were read.
    pub ts_ns: u64,
    pub end: bool,
    pub kernel: KernelCounters,
    /// None when /proc/vmstat has no pin counters (kernels before 5.7).
    pub vmstat: Option<PinCounters>,
}

/// The end marker: written once recording stopped and the ring buffer was drained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndTotals {
    /// CLOCK_MONOTONIC when recording stopped.
    pub end_ns: u64,
    pub records: u64,
    pub events: u64,
    /// Events the kernel side could not put in the ring buffer while recording.
    pub lost_events: u64,
    pub stacks: u64,
}

/// One item read back.
#[derive(Debug)]
pub enum Item<'a> {
    /// A raw ring-buffer record.
    Record(&'a [u8]),
    Stack(u32, CallStack),
    Counters(CounterSnapshot),
    End(EndTotals),
}

/// Decoded events in a raw record: its call (or folio) event and the folios behind it.
pub fn events_in(record: &[u8]) -> u64 {
    let head = size_of::<Event>();
    1 + (record.len().saturating_sub(head) / size_of::<FolioTransition>()) as u64
}

/// The kernel stack id a raw record carries, if any.
pub fn stack_id_of(record: &[u8]) -> Option<u32> {
    let at = std::mem::offset_of!(Event, stack_id);
    let bytes = record.get(at..at + 4)?;
    u32::try_from(i32::from_le_bytes(bytes.try_into().ok()?)).ok()
}

/// What a writer has written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub records: u64,
    pub events: u64,
    pub stacks: u64,
    /// Item bytes before packing, and bytes written to the file (the header's among them).
    pub raw_bytes: u64,
    pub file_bytes: u64,
    pub header_bytes: u64,
}

/// Writes a recording as a stream.
pub struct RecordingWriter<W: Write> {
    out: W,
    compression: Compression,
    chunk: Vec<u8>,
    packed: Vec<u8>,
    stacks: HashSet<u32>,
    last_flush: Instant,
    pub stats: WriteStats,
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the header at once: a recording killed before its first chunk still says what
    /// it is.
    pub fn new(mut out: W, meta: &Metadata, compression: Compression) -> Result<Self> {
        let json = serde_json::to_vec(meta)?;
        let mut header = Vec::with_capacity(FIXED_HEADER + json.len());
        header.extend_from_slice(&MAGIC);
        for n in [
            FORMAT_VERSION,
            size_of::<Event>() as u32,
            size_of::<FolioTransition>() as u32,
            json.len() as u32,
        ] {
            header.extend_from_slice(&n.to_le_bytes());
        }
        header.extend_from_slice(&json);
        let crc = crc32c::crc32c(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        out.write_all(&header)?;
        out.flush()?;
        Ok(RecordingWriter {
            out,
            compression,
            chunk: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
            packed: Vec::new(),
            stacks: HashSet::new(),
            last_flush: Instant::now(),
            stats: WriteStats {
                file_bytes: header.len() as u64,
                header_bytes: header.len() as u64,
                ..WriteStats::default()
            },
        })
    }

    fn item(&mut self, tag: u8, payload: &[u8]) -> io::Result<()> {
        self.chunk.push(tag);
        self.chunk
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(payload);
        self.stats.raw_bytes += (ITEM_HEADER + payload.len()) as u64;
        if self.chunk.len() >= CHUNK_BYTES {
            self.write_chunk()?;
        }
        Ok(())
    }

    /// One raw ring-buffer record, as the ring buffer gave it.
    pub fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stats.records += 1;
        self.stats.events += events_in(bytes);
        self.item(tag::RECORD, bytes)
    }

    /// Whether stack `id` was written already.
    pub fn has_stack(&self, id: u32) -> bool {
        self.stacks.contains(&id)
    }

    /// Kernel stack `id`, named (or why it could not be read). Written once per id: later
    /// calls with the same id do nothing.
    pub fn stack(&mut self, id: u32, stack: &CallStack) -> io::Result<()> {
        if !self.stacks.insert(id) {
            return Ok(());
        }
        self.stats.stacks += 1;
        let mut p = Vec::with_capacity(64);
        p.extend_from_slice(&id.to_le_bytes());
        match stack {
            Ok(frames) => {
                p.push(1);
                put_u32(&mut p, frames.len() as u32);
                for f in frames.iter() {
                    p.extend_from_slice(&f.address.to_le_bytes());
                    match &f.symbol {
                        None => p.push(0),
                        Some(s) => {
                            p.push(if s.module.is_some() { 3 } else { 1 });
                            p.extend_from_slice(&s.offset.to_le_bytes());
                            put_str(&mut p, &s.function);
                            if let Some(m) = &s.module {
                                put_str(&mut p, m);
                            }
                        }
                    }
                }
            }
            Err(why) => {
                p.push(0);
                put_str(&mut p, why);
            }
        }
        self.item(tag::STACK, &p)
    }

    pub fn counters(&mut self, c: &CounterSnapshot) -> io::Result<()> {
        let mut p = Vec::with_capacity(80);
        p.push(u8::from(c.end));
        p.push(u8::from(c.vmstat.is_some()));
        let k = &c.kernel;
        let v = c.vmstat.unwrap_or_default();
        for n in [
            c.ts_ns,
            k.lost_events,
            k.mmap_lock_releases,
            k.thread_map_full,
            k.unmatched_exits,
            k.truncated_walks,
            v.acquired,
            v.released,
            // Appended later: readers of older recordings take 0.
            k.stale_calls,
        ] {
            p.extend_from_slice(&n.to_le_bytes());
        }
        self.item(tag::COUNTERS, &p)
    }

    /// Writes what is waiting if the last write was `interval` ago or more; true if it did.
    pub fn flush_if_due(&mut self, interval: Duration) -> io::Result<bool> {
        if self.last_flush.elapsed() < interval {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Writes what is waiting, as a (short) chunk.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.chunk.is_empty() {
            self.write_chunk()?;
        }
        self.out.flush()?;
        self.last_flush = Instant::now();
        Ok(())
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        let raw = &self.chunk;
        self.packed.clear();
        self.packed.resize(CHUNK_HEADER, 0);
        let mut packed_codec = codec::STORED;
        if self.compression == Compression::Lz4 {
            let bound = lz4_flex::block::get_maximum_output_size(raw.len());
            self.packed.resize(CHUNK_HEADER + bound, 0);
            match lz4_flex::block::compress_into(raw, &mut self.packed[CHUNK_HEADER..]) {
                Ok(n) if n < raw.len() => {
                    self.packed.truncate(CHUNK_HEADER + n);
                    packed_codec = codec::LZ4;
                }
                _ => self.packed.truncate(CHUNK_HEADER),
            }
        }
        if packed_codec == codec::STORED {
            self.packed.extend_from_slice(raw);
        }
        let stored = (self.packed.len() - CHUNK_HEADER) as u32;
        self.packed[0] = packed_codec;
        self.packed[4..8].copy_from_slice(&(raw.len() as u32).to_le_bytes());
        self.packed[8..12].copy_from_slice(&stored.to_le_bytes());
        let data_crc = crc32c::crc32c(&self.packed[CHUNK_HEADER..]);
        self.packed[12..16].copy_from_slice(&data_crc.to_le_bytes());
        let head_crc = crc32c::crc32c(&self.packed[..16]);
        self.packed[16..20].copy_from_slice(&head_crc.to_le_bytes());
        // One write per chunk: a recorder killed between writes leaves whole chunks.
        self.out.write_all(&self.packed)?;
        self.stats.file_bytes += self.packed.len() as u64;
        self.chunk.clear();
        Ok(())
    }

    /// The end marker's totals for what this writer wrote, stopped at `end_ns` with
    /// `lost_events` events the kernel side could not deliver.
    pub fn end_totals(&self, end_ns: u64, lost_events: u64) -> EndTotals {
        EndTotals {
            end_ns,
            records: self.stats.records,
            events: self.stats.events,
            lost_events,
            stacks: self.stats.stacks,
        }
    }

    /// Writes the end marker and everything still waiting; returns the output and what was
    /// written.
    pub fn finish(mut self, end: &EndTotals) -> io::Result<(W, WriteStats)> {
        let mut p = Vec::with_capacity(40);
        for n in [
            end.end_ns,
            end.records,
            end.events,
            end.lost_events,
            end.stacks,
        ] {
            p.extend_from_slice(&n.to_le_bytes());
        }
        self.item(tag::END, &p)?;
        self.flush()?;
        Ok((self.out, self.stats))
    }
}

fn put_u32(p: &mut Vec<u8>, n: u32) {
    p.extend_from_slice(&n.to_le_bytes());
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    put_u32(p, s.len() as u32);
    p.extend_from_slice(s.as_bytes());
}

/// How reading a recording ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Items are still coming.
    Reading,
    /// The end marker was read: the recorder stopped cleanly.
    Complete,
    /// The file ends before the end marker: the recorder was killed or the disk filled. Every
    /// whole chunk was read.
    Truncated,
    /// A chunk that fails its checksum or cannot be unpacked or parsed: reading stopped
    /// there (the items before it were given).
    Damaged(Damage),
}

/// Where a recording is damaged, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// The chunk's number, counting from 1.
    pub chunk: u64,
    /// Byte offset of the chunk's header in the file.
    pub offset: u64,
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk {} at byte offset {}: {}",
            self.chunk, self.offset, self.reason
        )
    }
}

/// Reads a recording back, item by item.
pub struct RecordingReader<R: Read> {
    input: R,
    pub meta: Metadata,
    chunk: Vec<u8>,
    at: usize,
    packed: Vec<u8>,
    /// File offset of the next chunk.
    offset: u64,
    /// The chunk being read: its number (from 1) and file offset.
    chunk_no: u64,
    chunk_offset: u64,
    /// Whether chunks carry checksums (format 3 on).
    checksums: bool,
    pub status: ReadStatus,
    /// Records and events read so far.
    pub records: u64,
    pub events: u64,
}

impl RecordingReader<File> {
    /// Reads the file as it is: chunks are large, so two reads per chunk need no buffer (a
    /// BufReader would copy every byte once more).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        RecordingReader::new(file).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

impl<R: Read> RecordingReader<R> {
    /// Reads and checks the header: a recording this build cannot read is refused here, with
    /// the reason.
    pub fn new(mut input: R) -> Result<Self> {
        let mut fixed = [0u8; FIXED_HEADER];
        let n = read_full(&mut input, &mut fixed)?;
        let m = n.min(MAGIC.len());
        if fixed[..m] != MAGIC[..m] {
            bail!("not a gup-trace recording (it does not start with {MAGIC:?})");
        }
        if n < FIXED_HEADER {
            bail!(
                "the recording ends inside its header ({n} of {FIXED_HEADER} bytes): the \
                 recorder stopped before it wrote anything"
            );
        }
        let version = le32(&fixed[8..]);
        let event_size = le32(&fixed[12..]) as usize;
        let folio_size = le32(&fixed[16..]) as usize;
        let meta_len = le32(&fixed[20..]) as usize;
        if meta_len > MAX_BLOCK {
            bail!("the recording's header is damaged (metadata of {meta_len} bytes)");
        }
        let mut json = vec![0u8; meta_len];
        let got = read_full(&mut input, &mut json)?;
        if got < meta_len {
            bail!(
                "the recording ends inside its header ({} of {} bytes): the recorder stopped \
                 before it wrote anything",
                FIXED_HEADER + got,
                FIXED_HEADER + meta_len
            );
        }
        // Which gup-trace wrote it, for the messages below, whatever else the metadata holds.
        let writer = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["gup_trace_version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "of unknown version".into());
        let this = env!("CARGO_PKG_VERSION");
        if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
            bail!(
                "recording format version {version} (written by gup-trace {writer}); this \
                 gup-trace ({this}) reads versions {OLDEST_READ_VERSION} to {FORMAT_VERSION} \
                 only: report it with a gup-trace that reads it"
            );
        }
        let checksums = version >= CHECKSUMS_SINCE;
        if checksums {
            let mut crc = [0u8; HEADER_CHECKSUM];
            if read_full(&mut input, &mut crc)? < HEADER_CHECKSUM {
                bail!(
                    "the recording ends inside its header (before its checksum): the recorder \
                     stopped before it wrote anything"
                );
            }
            let want = crc32c::crc32c_append(crc32c::crc32c(&fixed), &json);
            if le32(&crc) != want {
                bail!(
                    "the recording's header is damaged (its CRC32C checksum does not match): \
                     the file was changed after it was written; nothing in it can be trusted"
                );
            }
        }
        let (ours, our_folio) = (size_of::<Event>(), size_of::<FolioTransition>());
        if event_size != ours || folio_size != our_folio {
            bail!(
                "the recording's events are {event_size} bytes with {folio_size}-byte folio \
                 entries, this build's are {ours} and {our_folio}: it was written by gup-trace \
                 {writer} from other sources; report it with that build"
            );
        }
        let meta: Metadata = serde_json::from_slice(&json)
            .context("the recording's metadata cannot be read (damaged header)")?;
        if meta.hook_ids != hook_ids() {
            bail!(
                "the recording numbers its hooks otherwise than this build (written by \
                 gup-trace {writer}): report it with that build"
            );
        }
        Ok(RecordingReader {
            input,
            meta,
            chunk: Vec::new(),
            at: 0,
            packed: Vec::new(),
            offset: (FIXED_HEADER + meta_len + if checksums { HEADER_CHECKSUM } else { 0 }) as u64,
            chunk_no: 0,
            chunk_offset: 0,
            checksums,
            status: ReadStatus::Reading,
            records: 0,
            events: 0,
        })
    }

    /// The next item; None at the end, whether the recording is complete, truncated or
    /// damaged (see [`RecordingReader::status`]). Errors are read errors of the file only.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        let (tag, start, len) = loop {
            if self.status != ReadStatus::Reading {
                return Ok(None);
            }
            if self.at >= self.chunk.len() {
                self.next_chunk()?;
                continue;
            }
            let rest = &self.chunk[self.at..];
            if rest.len() < ITEM_HEADER || rest.len() - ITEM_HEADER < le32(&rest[1..]) as usize {
                return Ok(self.damaged("it ends inside an item"));
            }
            let (tag, len) = (rest[0], le32(&rest[1..]) as usize);
            let start = self.at + ITEM_HEADER;
            self.at = start + len;
            // Kinds of item added by a later gup-trace are skipped.
            if (tag::RECORD..=tag::END).contains(&tag) {
                break (tag, start, len);
            }
        };
        let payload = &self.chunk[start..start + len];
        let item = match tag {
            tag::RECORD => {
                self.records += 1;
                self.events += events_in(payload);
                return Ok(Some(Item::Record(&self.chunk[start..start + len])));
            }
            tag::STACK => parse_stack(payload)
                .map(|(id, stack)| Item::Stack(id, stack))
                .ok_or("a kernel stack item is malformed"),
            tag::COUNTERS => parse_counters(payload)
                .map(Item::Counters)
                .ok_or("a counters item is too short"),
            _ => parse_end(payload)
                .map(Item::End)
                .ok_or("the end marker is too short"),
        };
        match item {
            Ok(item) => {
                if matches!(item, Item::End(_)) {
                    self.status = ReadStatus::Complete;
                }
                Ok(Some(item))
            }
            Err(why) => Ok(self.damaged(why)),
        }
    }

    /// Ends the read: the current chunk is damaged.
    fn damaged(&mut self, why: &str) -> Option<Item<'static>> {
        self.status = ReadStatus::Damaged(Damage {
            chunk: self.chunk_no,
            offset: self.chunk_offset,
            reason: why.to_string(),
        });
        None
    }

    /// Reads and unpacks the next chunk; at the end of what can be read, sets the status.
    fn next_chunk(&mut self) -> Result<()> {
        self.chunk_no += 1;
        self.chunk_offset = self.offset;
        let mut head = [0u8; CHUNK_HEADER];
        let head_len = if self.checksums {
            CHUNK_HEADER
        } else {
            CHUNK_HEADER_V2
        };
        let head = &mut head[..head_len];
        let n = read_full(&mut self.input, head).context("reading the recording failed")?;
        if n < head_len {
            self.status = ReadStatus::Truncated;
            return Ok(());
        }
        if self.checksums && crc32c::crc32c(&head[..16]) != le32(&head[16..]) {
            self.damaged("its header fails its CRC32C checksum");
            return Ok(());
        }
        let (codec, raw_len, stored_len) = (head[0], le32(&head[4..]), le32(&head[8..]));
        let (raw_len, stored_len) = (raw_len as usize, stored_len as usize);
        let data_crc = self.checksums.then(|| le32(&head[12..]));
        if raw_len == 0 || raw_len > MAX_BLOCK || stored_len > MAX_BLOCK || head[1..4] != [0; 3] {
            self.damaged("its header is malformed");
            return Ok(());
        }
        self.packed.resize(stored_len, 0);
        let got =
            read_full(&mut self.input, &mut self.packed).context("reading the recording failed")?;
        if got < stored_len {
            self.status = ReadStatus::Truncated;
            return Ok(());
        }
        if data_crc.is_some_and(|crc| crc32c::crc32c(&self.packed) != crc) {
            self.damaged("its bytes fail their CRC32C checksum");
            return Ok(());
        }
        self.offset += (head_len + stored_len) as u64;
        self.chunk.resize(raw_len, 0);
        let unpacked = match codec {
            codec::STORED if stored_len == raw_len => {
                std::mem::swap(&mut self.chunk, &mut self.packed);
                true
            }
            codec::LZ4 => lz4_flex::block::decompress_into(&self.packed, &mut self.chunk)
                .is_ok_and(|n| n == raw_len),
            _ => false,
        };
        if !unpacked {
            self.damaged("it cannot be unpacked");
            return Ok(());
        }
        self.at = 0;
        Ok(())
    }
}

/// A little reader over an item's payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(le32(self.take(4)?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(le64(self.take(8)?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

fn parse_stack(payload: &[u8]) -> Option<(u32, CallStack)> {
    let mut c = Cursor(payload);
    let id = c.u32()?;
    if c.u8()? == 0 {
        return Some((id, Err(c.str()?)));
    }
    let count = c.u32()? as usize;
    // Every frame takes at least 9 bytes: a count beyond that is damage, not an allocation.
    if count > payload.len() / 9 {
        return None;
    }
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        let address = c.u64()?;
        let symbol = match c.u8()? {
            0 => None,
            flags => {
                let offset = c.u64()?;
                let function = c.str()?;
                let module = if flags & 2 != 0 { Some(c.str()?) } else { None };
                Some(FrameSymbol {
                    function,
                    offset,
                    module,
                })
            }
        };
        frames.push(StackFrame { address, symbol });
    }
    Some((id, Ok(Arc::from(frames))))
}

fn parse_counters(payload: &[u8]) -> Option<CounterSnapshot> {
    let mut c = Cursor(payload);
    let end = c.u8()? != 0;
    let has_vmstat = c.u8()? != 0;
    let ts_ns = c.u64()?;
    let kernel = KernelCounters {
        lost_events: c.u64()?,
        mmap_lock_releases: c.u64()?,
        thread_map_full: c.u64()?,
        unmatched_exits: c.u64()?,
        truncated_walks: c.u64()?,
        stale_calls: 0,
    };
    let vmstat = PinCounters {
        acquired: c.u64()?,
        released: c.u64()?,
    };
    let kernel = KernelCounters {
        stale_calls: c.u64().unwrap_or(0),
        ..kernel
    };
    Some(CounterSnapshot {
        ts_ns,
        end,
        kernel,
        vmstat: has_vmstat.then_some(vmstat),
    })
}

fn parse_end(payload: &[u8]) -> Option<EndTotals> {
    let mut c = Cursor(payload);
    Some(EndTotals {
        end_ns: c.u64()?,
        records: c.u64()?,
        events: c.u64()?,
        lost_events: c.u64()?,
        stacks: c.u64()?,
    })
}

impl fmt::Display for ReadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadStatus::Reading => f.write_str("still reading"),
            ReadStatus::Complete => f.write_str("complete"),
            ReadStatus::Truncated => f.write_str("truncated"),
            ReadStatus::Damaged(d) => write!(f, "damaged: {d}"),
        }
    }
}

#[cfg(test)]
mod tests;
