//! The ring-buffer record decoder on arbitrary bytes: what a kernel side of another build (or
//! a damaged recording) could hand it. It decodes or says why not; what it decodes is
//! consistent with the record's own framing.

#![no_main]

use gup_trace::{
    events::{MAX_USER_PAGES, TraceEvent},
    recording::{events_in, stack_id_of},
};
use gup_trace_common::EventKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let Ok(()) = TraceEvent::decode_record(data, &mut out) else {
        assert!(
            out.is_empty(),
            "a record that fails to decode gives no event"
        );
        return;
    };
    assert_eq!(
        out.len() as u64,
        events_in(data),
        "the recorder's count of events in a record"
    );
    let (call, folios) = out.split_last().expect("a decoded record has its call");
    assert_eq!(call.stack_id, stack_id_of(data), "the recorder's stack id");
    assert!(call.pages <= MAX_USER_PAGES, "{} pages", call.pages);
    for f in folios {
        assert_eq!(f.kind, EventKind::Folio);
        assert!(f.folio.is_some(), "a folio event carries its folio");
        assert_eq!((f.tid, f.hook, f.ts_ns), (call.tid, call.hook, call.ts_ns));
    }
    // The call's own bytes alone decode to the same call.
    let head = size_of::<gup_trace_common::Event>();
    assert_eq!(
        TraceEvent::decode(&data[..head]).as_ref(),
        Ok(call),
        "decode and decode_record agree"
    );
});
