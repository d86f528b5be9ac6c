//! Decoding what the kernel side writes into the ring buffer.

use gup_trace_common::{COMM_LEN, Event, Hook};

/// One decoded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
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
    pub comm: String,
}

/// Why a ring-buffer record could not be decoded (a build mismatch between the two sides).
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Size(usize),
    UnknownHook(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Size(n) => write!(
                f,
                "ring buffer record of {n} bytes, expected {}",
                size_of::<Event>()
            ),
            DecodeError::UnknownHook(id) => {
                write!(f, "ring buffer record with unknown hook id {id}")
            }
        }
    }
}

impl TraceEvent {
    pub fn decode(bytes: &[u8]) -> Result<TraceEvent, DecodeError> {
        if bytes.len() != size_of::<Event>() {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: the length matches and Event is plain old data; the ring buffer gives no
        // alignment guarantee, hence the unaligned read.
        let raw: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let hook = Hook::from_id(raw.hook).ok_or(DecodeError::UnknownHook(raw.hook))?;
        Ok(TraceEvent {
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
            comm: comm_to_string(&raw.comm),
        })
    }
}

fn comm_to_string(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
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
            hook,
            error: 0,
            start: 0x7f00_0000_0000,
            requested: 64,
            cgroup_id: 1,
            gup_flags: 1,
            stack_id: -14,
            comm,
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
            (e.pages, e.tgid, e.tid, e.comm.as_str()),
            (64, 10, 11, "fio")
        );
        assert_eq!(
            (e.start, e.requested, e.gup_flags),
            (0x7f00_0000_0000, 64, 1)
        );
        assert_eq!(
            e.stack_id, None,
            "a negative stack id (-EFAULT) means no stack"
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
