//! The presentations outside the dashboard (`tui`): text for people (trace event lines and the
//! stacks under them, the capability report, workload steps, the trace summary, findings), JSON
//! for programs through serde on the same types (`trace --json` events through `EventRecord`,
//! findings through `FindingRecord`), and JUnit XML for `check --junit`. One file per printed
//! form.

mod capabilities;
mod cma;
mod duration;
mod event;
mod findings;
mod folio;
mod junit;
mod migration;
pub mod perfetto;
pub mod report;
mod stack;
mod summary;
mod workload_step;

pub use capabilities::capabilities;
pub use duration::duration;
pub use event::{EVENT_HEADER, EventRecord, LockRecord, PathRecord, event_line, is_gup_call};
pub use findings::{FindingRecord, StackLookup, finding_text, findings_text};
pub use folio::{FolioRecord, folio_detail};
pub use junit::junit_xml;
pub use stack::stack_lines;
pub use summary::summary;
pub use workload_step::workload_step;
