//! The workloads: code that makes the kernel pin (or reference) user pages in known ways, for
//! the commands to trace or time. `selftest` traces the ten steps of [`plan`] and compares what
//! it saw with /proc/vmstat; `workload` runs them alone (and the [`ring_handoff`] leak scenario
//! for `check`); `bench` times the workloads of [`bench`](mod@bench), untraced and traced.
//! Nothing here knows about tracing: the modules below use libc, io_uring and each other only.
//!
//! - [`plan`]: the selftest's steps, their options, order and report ([`run`]);
//! - `steps`: what each step does, built from the pieces below;
//! - `memory`: anonymous buffers (small, THP, hugetlb pages) and file mappings;
//! - `huge_pages`: transparent huge page settings, the hugetlb pool;
//! - `child`: a forked child holding a known pattern, process_vm_readv/writev;
//! - `direct_io`: O_DIRECT targets (device choice, temporary files) and their reads;
//! - `uring`: io_uring fixed-buffer registration;
//! - [`ring_handoff`]: an io_uring whose pins outlive the process that took them;
//! - [`bench`](mod@bench): the bench's pin/unpin loop, O_DIRECT reads and io_uring
//!   fixed-buffer reads;
//! - `error`: a step that cannot run here (skipped, with its reason) vs one that failed;
//! - `sys`: errno, errors naming the failed call, the page size.
//!
//! Everything here blocks; from an async runtime call it via `spawn_blocking`.

pub mod bench;
mod child;
mod direct_io;
mod error;
mod huge_pages;
mod memory;
pub mod plan;
pub mod ring_handoff;
mod steps;
mod sys;
mod uring;

pub use plan::{
    REFERENCE_STEPS, STEP_DIRECT_IO, STEP_LEGACY_DIO, STEP_LOCK_DROP, STEP_PROC_MEM, STEP_URING,
    STEP_URING_HUGETLB, STEP_URING_THP, STEP_VM_READV, STEP_VM_WRITEV, STEP_ZERO_PAGE, StepOutcome,
    StepReport, WorkloadOptions, WorkloadReport, run,
};
