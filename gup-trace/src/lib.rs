//! gup-trace: an eBPF tracer for get_user_pages and FOLL_PIN page pinning.
//!
//! Layout: `kernel` knows every kernel difference (symbols, BTF values, attach methods);
//! `session` loads and attaches the eBPF object and reads its ring buffer; `events` decodes
//! records; `symbols` names kernel stack frames from /proc/kallsyms; `engine` is the pure
//! pin-state engine; `window` compares totals with /proc/vmstat;
//! `output` formats for humans; `tui` is the dashboard (`top`, `report --tui`); `commands`
//! holds one module per subcommand.

pub mod analysis;
pub mod commands;
pub mod engine;
pub mod events;
pub mod hex;
pub mod kernel;
pub mod output;
pub mod pipeline;
pub mod recording;
pub mod session;
pub mod symbols;
pub mod tui;
pub mod vmstat;
pub mod window;
pub mod workload;
