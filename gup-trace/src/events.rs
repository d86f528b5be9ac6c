//! Decoding what the kernel side writes into the ring buffer.

use gup_trace_common::{
    COMM_LEN, CallPath, Event, EventKind, FolioTransition, Hook, LockStats, NO_CALL, owner_bit,
};

/// One decoded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub kind: EventKind,
    pub ts_ns: u64,
    pub duration_ns: u64,
    pub pages: u64,
    pub tgid: u32,
    pub tid: u32,
    pub hook: Hook,
    /// Negative errno a GUP call returned, 0 on success.
    pub error: i32,
    /// GUP calls: start address, pages asked for, the caller's gup_flags, kernel stack id.
    pub start: u64,
    pub requested: u64,
    pub gup_flags: u32,
    pub stack_id: Option<u32>,
    pub cgroup_id: u64,
    pub comm: Comm,
    /// Folio and mmap_lock-drop events: the GUP entry point in progress on the thread.
    pub call_hook: Option<Hook>,
    /// GUP calls: fast/slow split; unpin calls: entries walked.
    pub path: CallPath,
    /// GUP calls: mmap_lock wait, hold and drops inside the call.
    pub lock: LockStats,
    /// Folio events only.
    pub folio: Option<FolioTransition>,
    /// GUP calls and their grabs: the process whose memory the call works on, when the
    /// kernel side could read it (see [`TraceEvent::owner`]).
    pub owner_tgid: u32,
    pub owner_comm: Comm,
    /// `owner_bit` flags.
    pub owner_bits: u32,
}

/// Why a ring-buffer record could not be decoded (a build mismatch between the two sides).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "ring buffer record of {0} bytes, expected {head} plus a multiple of {folio}",
        head = size_of::<Event>(),
        folio = size_of::<FolioTransition>()
    )]
    Size(usize),
    #[error("ring buffer record with unknown hook id {0}")]
    UnknownHook(u32),
    #[error("ring buffer record with unknown event kind {0}")]
    UnknownKind(u32),
    #[error(
        "ring buffer record of {0} pages, more than a user address space holds ({MAX_USER_PAGES})"
    )]
    Pages(u64),
}

/// Pages in the largest user address space (x86-64 with 5-level paging: 2^56 bytes of 4 KiB
/// pages). No GUP call can pin more, no release can drop more; a count above it is a damaged record, and
/// summing such counts would overflow the engine's totals.
pub const MAX_USER_PAGES: u64 = 1 << 44;

impl TraceEvent {
    /// Decodes one ring-buffer record into `out`. A release call's record carries its folios
    /// behind the call's own event (one record per call keeps the kernel side cheap): they come
    /// out first, as folio events, then the call.
    pub fn decode_record(bytes: &[u8], out: &mut Vec<TraceEvent>) -> Result<(), DecodeError> {
        let head = size_of::<Event>();
        let item = size_of::<FolioTransition>();
        if bytes.len() < head || !(bytes.len() - head).is_multiple_of(item) {
            return Err(DecodeError::Size(bytes.len()));
        }
        let call = TraceEvent::decode(&bytes[..head])?;
        for chunk in bytes[head..].chunks_exact(item) {
            // SAFETY: exactly one FolioTransition's bytes, plain old data, read unaligned.
            let folio: FolioTransition = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
            out.push(TraceEvent {
                kind: EventKind::Folio,
                pages: u64::from(folio.refs),
                duration_ns: 0,
                requested: 0,
                path: CallPath::default(),
                folio: Some(folio),
                ..call.clone()
            });
        }
        out.push(call);
        Ok(())
    }

    pub fn decode(bytes: &[u8]) -> Result<TraceEvent, DecodeError> {
        if bytes.len() != size_of::<Event>() {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: the length matches and Event is plain old data; the ring buffer gives no
        // alignment guarantee, hence the unaligned read.
        let raw: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let hook = Hook::from_id(raw.hook).ok_or(DecodeError::UnknownHook(raw.hook))?;
        let kind = EventKind::from_id(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
        // Only what was done is bounded: a caller may ask for any count (the call then fails).
        if raw.pages > MAX_USER_PAGES {
            return Err(DecodeError::Pages(raw.pages));
        }
        let call_hook = match raw.call_hook {
            NO_CALL => None,
            id => Some(Hook::from_id(id).ok_or(DecodeError::UnknownHook(id))?),
        };
        Ok(TraceEvent {
            kind,
            ts_ns: raw.ts_ns,
            duration_ns: raw.duration_ns,
            pages: raw.pages,
            tgid: raw.tgid,
            tid: raw.tid,
            hook,
            error: raw.error,
            start: raw.start,
            requested: raw.requested,
            gup_flags: raw.gup_flags,
            stack_id: u32::try_from(raw.stack_id).ok(),
            cgroup_id: raw.cgroup_id,
            comm: Comm::new(raw.comm),
            call_hook,
            path: raw.path,
            lock: raw.lock,
            // Migration events reuse the folio part for a pfn and a count (see
            // gup_trace_common::migration_event).
            folio: matches!(
                kind,
                EventKind::Folio
                    | EventKind::Migration
                    | EventKind::Isolation
                    | EventKind::CmaBusy
                    | EventKind::CmaAllocEnd
            )
            .then_some(raw.folio),
            owner_tgid: raw.owner_tgid,
            owner_comm: Comm::new(raw.owner_comm),
            owner_bits: raw.owner_bits,
        })
    }

    /// The process whose memory a GUP call (or its grab) works on, when it was read: the
    /// owner of the mm named by a `*_remote` call, or of the caller's own mm.
    pub fn owner(&self) -> Option<(u32, Comm)> {
        (self.owner_bits & owner_bit::KNOWN != 0).then_some((self.owner_tgid, self.owner_comm))
    }

    /// The owner when it is not the caller's own process: the call was made on its behalf.
    pub fn taken_for(&self) -> Option<(u32, Comm)> {
        self.owner().filter(|&(tgid, _)| tgid != self.tgid)
    }

    /// Whether the caller is a kernel thread.
    pub fn kthread_caller(&self) -> bool {
        self.owner_bits & owner_bit::KTHREAD_CALLER != 0
    }

    /// An event with every field empty, for tests to fill in.
    #[cfg(test)]
    pub fn sample(kind: EventKind, hook: Hook, ts_ns: u64, tgid: u32, pages: u64) -> TraceEvent {
        TraceEvent {
            kind,
            ts_ns,
            duration_ns: 0,
            pages,
            tgid,
            tid: tgid,
            hook,
            error: 0,
            start: 0,
            requested: pages,
            gup_flags: 0,
            stack_id: None,
            cgroup_id: 0,
            comm: Comm::from(format!("p{tgid}").as_str()),
            call_hook: None,
            path: CallPath::default(),
            lock: LockStats::default(),
            folio: None,
            owner_tgid: 0,
            owner_comm: Comm::default(),
            owner_bits: 0,
        }
    }
}

/// A task name as the kernel keeps it: at most 15 bytes and a NUL, in place. Kept as bytes:
/// one String per event cost the engine a quarter of its time in malloc and free.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    /// From the kernel's bytes; whatever follows the first NUL is dropped.
    pub fn new(mut bytes: [u8; COMM_LEN]) -> Comm {
        if let Some(end) = bytes.iter().position(|&b| b == 0) {
            bytes[end..].fill(0);
        }
        Comm(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        &self.0[..end]
    }

    /// The name as text (bytes that are not UTF-8 become U+FFFD).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.bytes())
    }
}

impl From<&str> for Comm {
    /// The first 15 bytes of `name`, as the kernel would keep them.
    fn from(name: &str) -> Comm {
        let mut bytes = [0u8; COMM_LEN];
        let n = name.len().min(COMM_LEN - 1);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        Comm(bytes)
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.bytes() == other.as_bytes()
    }
}

impl std::fmt::Display for Comm {
    /// Honours width and alignment, as a `str` does.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.text())
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

impl serde::Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(hook: u32) -> Event {
        let mut comm = [0u8; COMM_LEN];
        comm[..3].copy_from_slice(b"fio");
        Event {
            ts_ns: 5,
            duration_ns: 7,
            pages: 64,
            tgid: 10,
            tid: 11,
            kind: EventKind::Call as u32,
            hook,
            error: 0,
            gup_flags: 1,
            start: 0x7f00_0000_0000,
            requested: 64,
            cgroup_id: 1,
            stack_id: -14,
            call_hook: NO_CALL,
            comm,
            path: CallPath {
                fast_refs: 60,
                slow_refs: 4,
                slow_walks: 1,
                walked: 0,
            },
            lock: LockStats::default(),
            folio: FolioTransition {
                folio: 0xdead,
                ..FolioTransition::default()
            },
            owner_tgid: 12,
            owner_bits: owner_bit::KNOWN | owner_bit::REMOTE_MM,
            owner_comm: *b"pinleak-user\0\0\0\0",
        }
    }

    fn bytes(e: &Event) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), size_of::<Event>()) }
            .to_vec()
    }

    #[test]
    fn decodes_a_record() {
        let e = TraceEvent::decode(&bytes(&raw(Hook::PinUserPagesFast as u32))).unwrap();
        assert_eq!(e.hook, Hook::PinUserPagesFast);
        assert_eq!(
            (e.pages, e.tgid, e.tid, e.comm.to_string()),
            (64, 10, 11, "fio".to_string())
        );
        assert_eq!(
            (e.start, e.requested, e.gup_flags),
            (0x7f00_0000_0000, 64, 1)
        );
        assert_eq!(
            e.stack_id, None,
            "a negative stack id (-EFAULT) means no stack"
        );
        assert_eq!((e.path.fast_refs, e.path.slow_refs), (60, 4));
        assert_eq!(e.call_hook, None);
        assert_eq!(e.folio, None, "only folio events carry a folio");
        let owner = e.owner().map(|(tgid, comm)| (tgid, comm.to_string()));
        assert_eq!(owner, Some((12, "pinleak-user".to_string())));
        assert_eq!(
            e.taken_for().map(|o| o.0),
            Some(12),
            "taken by tgid 10 for 12"
        );
        assert!(!e.kthread_caller());
    }

    #[test]
    fn a_page_count_no_address_space_holds_is_a_damaged_record() {
        // A flipped high bit of `pages` once overflowed the engine's totals (a panic in debug
        // builds, wrapped totals in release).
        let mut r = raw(Hook::PinUserPagesFast as u32);
        r.pages = MAX_USER_PAGES + 1;
        assert!(matches!(
            TraceEvent::decode(&bytes(&r)),
            Err(DecodeError::Pages(n)) if n == MAX_USER_PAGES + 1
        ));
        r.pages = MAX_USER_PAGES;
        r.requested = u64::MAX;
        assert!(
            TraceEvent::decode(&bytes(&r)).is_ok(),
            "a caller may ask for any count"
        );
    }

    #[test]
    fn an_owner_not_read_is_none() {
        let mut raw = raw(Hook::PinUserPagesFast as u32);
        raw.owner_bits = owner_bit::KTHREAD_CALLER;
        let e = TraceEvent::decode(&bytes(&raw)).unwrap();
        assert_eq!(e.owner(), None);
        assert_eq!(e.taken_for(), None);
        assert!(e.kthread_caller());
    }

    #[test]
    fn a_release_record_becomes_its_folio_events_then_the_call() {
        let mut call = raw(Hook::UnpinUserPages as u32);
        call.pages = 3;
        let mut bytes = bytes(&call);
        for (folio, refs) in [(0xa0u64, 2u32), (0xb0, 1)] {
            let t = FolioTransition {
                folio,
                refs,
                ..FolioTransition::default()
            };
            bytes.extend_from_slice(unsafe {
                std::slice::from_raw_parts(
                    (&t as *const FolioTransition).cast::<u8>(),
                    size_of::<FolioTransition>(),
                )
            });
        }
        let mut out = Vec::new();
        TraceEvent::decode_record(&bytes, &mut out).unwrap();
        let kinds: Vec<_> = out.iter().map(|e| (e.kind, e.pages)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Folio, 2),
                (EventKind::Folio, 1),
                (EventKind::Call, 3)
            ]
        );
        assert_eq!(out[1].folio.map(|f| f.folio), Some(0xb0));
        assert!(
            out.iter()
                .all(|e| e.hook == Hook::UnpinUserPages && e.tid == 11)
        );
        bytes.pop();
        assert!(TraceEvent::decode_record(&bytes, &mut out).is_err());
    }

    #[test]
    fn decodes_a_folio_event_with_its_call() {
        let mut r = raw(Hook::TryGrabFolioFast as u32);
        r.kind = EventKind::Folio as u32;
        r.call_hook = Hook::PinUserPagesFast as u32;
        let e = TraceEvent::decode(&bytes(&r)).unwrap();
        assert_eq!(e.kind, EventKind::Folio);
        assert_eq!(e.call_hook, Some(Hook::PinUserPagesFast));
        assert_eq!(e.folio.map(|f| f.folio), Some(0xdead));
        r.kind = 99;
        assert_eq!(
            TraceEvent::decode(&bytes(&r)),
            Err(DecodeError::UnknownKind(99))
        );
    }

    #[test]
    fn a_comm_is_its_bytes_up_to_the_nul() {
        let mut raw = *b"kworker/u8:3\0xyz";
        let c = Comm::new(raw);
        assert_eq!(c.bytes(), b"kworker/u8:3");
        assert_eq!(
            c,
            Comm::from("kworker/u8:3"),
            "the bytes after the NUL do not count"
        );
        assert!(c == "kworker/u8:3");
        assert_eq!(format!("[{c:<14}]"), "[kworker/u8:3  ]");
        raw = [b'x'; COMM_LEN];
        assert_eq!(Comm::new(raw).text().len(), COMM_LEN);
        assert_eq!(
            Comm::from("a-very-long-process-name").to_string(),
            "a-very-long-pro"
        );
        assert_eq!(
            serde_json::to_string(&Comm::from("fio")).unwrap(),
            "\"fio\""
        );
    }

    #[test]
    fn rejects_wrong_size_and_unknown_hook() {
        let mut b = bytes(&raw(0));
        b.pop();
        assert_eq!(
            TraceEvent::decode(&b),
            Err(DecodeError::Size(size_of::<Event>() - 1))
        );
        assert_eq!(
            TraceEvent::decode(&bytes(&raw(999))),
            Err(DecodeError::UnknownHook(999))
        );
    }
}
