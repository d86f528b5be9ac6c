//! One folio's transition: the verb and the detail of its trace line, and its JSON record.

use std::fmt::Write as _;

use gup_trace_common::{FolioTransition, folio_bit};
use serde::Serialize;

pub(super) fn folio_verb(f: &FolioTransition) -> &'static str {
    let release = f.bits & folio_bit::RELEASE != 0;
    let pin = f.bits & folio_bit::PIN != 0;
    match (release, pin, f.bits & folio_bit::FAILED != 0) {
        (true, _, _) => "-pin",
        (false, _, true) => "grab!",
        (false, true, false) => "+pin",
        (false, false, false) => "+ref",
    }
}

/// `folio 0xffffea0004a1b2c0 pfn 0x1286cb order 9 ref 1->513 pincount 0->512`
pub fn folio_detail(f: &FolioTransition) -> String {
    let mut out = format!(
        "folio {:#x} pfn {:#x} ref {}->{}",
        f.folio, f.pfn, f.refcount_before, f.refcount_after
    );
    if f.bits & folio_bit::LARGE != 0 {
        let _ = write!(
            out,
            " pincount {}->{} order {}",
            f.pincount_before, f.pincount_after, f.order
        );
    }
    for (bit, label) in [
        (folio_bit::ZERO_PAGE, " zero-page"),
        (folio_bit::TRUNCATED, " batch-truncated"),
    ] {
        if f.bits & bit != 0 {
            out.push_str(label);
        }
    }
    out
}

#[derive(Debug, Serialize)]
pub struct FolioRecord {
    #[serde(serialize_with = "crate::hex::address")]
    pub folio: u64,
    pub pfn: u64,
    pub refs: u32,
    pub order: u32,
    /// FOLL_PIN (else a FOLL_GET reference).
    pub pin: bool,
    pub release: bool,
    pub large: bool,
    pub zero_page: bool,
    pub failed: bool,
    /// A release batch longer than the in-kernel walk: the call released more than shown.
    pub truncated: bool,
    pub refcount_before: i32,
    pub refcount_after: i32,
    pub pincount_before: i32,
    pub pincount_after: i32,
}

impl From<&FolioTransition> for FolioRecord {
    fn from(f: &FolioTransition) -> FolioRecord {
        let bit = |b: u32| f.bits & b != 0;
        FolioRecord {
            folio: f.folio,
            pfn: f.pfn,
            refs: f.refs,
            order: f.order,
            pin: bit(folio_bit::PIN),
            release: bit(folio_bit::RELEASE),
            large: bit(folio_bit::LARGE),
            zero_page: bit(folio_bit::ZERO_PAGE),
            failed: bit(folio_bit::FAILED),
            truncated: bit(folio_bit::TRUNCATED),
            refcount_before: f.refcount_before,
            refcount_after: f.refcount_after,
            pincount_before: f.pincount_before,
            pincount_after: f.pincount_after,
        }
    }
}
