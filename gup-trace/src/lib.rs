//! gup-trace: an eBPF tracer for get_user_pages and FOLL_PIN page pinning.
//!
//! Layers, bottom up; each module uses only the ones listed before it:
//! - Kernel facts: `symbols` reads /proc/kallsyms and names stack frames (`CallStack`);
//!   `kernel` knows every kernel difference (BTF values, the folio layout, attach methods, the
//!   capability report); `vmstat` reads the kernel's own pin counters.
//! - `stop`: the user's stop request (SIGINT, SIGTERM), heard from start-up on; `limits`: the
//!   open files a session needs.
//! - Session and decoding: `session` loads and attaches the eBPF object and reads its ring
//!   buffer; `events` decodes its records.
//! - `engine`: the pure pin-state engine (events in, state and findings out; no I/O, no clock).
//! - `pipeline`: the one live pipeline every tracing command runs on (session -> engine, the
//!   counters at both ends, the final drain, stop signals); `window` compares its totals with
//!   /proc/vmstat.
//! - `analysis`: the one layer that ranks and summarises engine state for every consumer.
//! - `recording`: the file format, and the replayer that feeds a recording to the engine.
//! - `workload`: the pin workloads that selftest, bench and the VM tests run (real memory,
//!   child processes, O_DIRECT, io_uring).
//! - Presentations: `output` (text, JSON, JUnit, the report), `tui` (the `top` dashboard and
//!   `report --tui`).
//! - `commands`: one thin module per subcommand.

pub mod analysis;
pub mod commands;
pub mod engine;
pub mod events;
pub mod hex;
pub mod kernel;
pub mod limits;
pub mod output;
pub mod pipeline;
pub mod recording;
pub mod session;
pub mod soak;
pub mod stop;
pub mod symbols;
pub mod tui;
pub mod vmstat;
pub mod window;
pub mod workload;
