//! Where the running kernel keeps what leads from a GUP call to the process whose memory it
//! pins: `task_struct.mm`, `mm_struct.owner`, the owner's `tgid` and `comm`, and
//! `task_struct.flags` (to tell kernel threads). Read from BTF like the folio layout: offsets
//! move between builds (randomized layouts, config options), so none is compiled in.
//!
//! `mm_struct.owner` exists only with CONFIG_MEMCG. Without it every pin is credited to the task
//! that called GUP, and the capability report says so.

use btf_rs::Btf;
use gup_trace_common::MmOwnerLayout;

use super::layout::{LayoutError, find_struct, member_offset, missing};

/// Reads the offsets; an error names what BTF lacks.
pub fn read(btf: &Btf) -> Result<MmOwnerLayout, LayoutError> {
    let task = find_struct(btf, "task_struct").ok_or_else(|| missing("struct task_struct"))?;
    let mm = find_struct(btf, "mm_struct").ok_or_else(|| missing("struct mm_struct"))?;
    let field = |st: &btf_rs::Struct, name: &str, what: &str| {
        member_offset(btf, st, name).ok_or_else(|| missing(what))
    };
    Ok(MmOwnerLayout {
        task_mm: field(&task, "mm", "task_struct.mm")?,
        task_flags: field(&task, "flags", "task_struct.flags")?,
        task_tgid: field(&task, "tgid", "task_struct.tgid")?,
        task_comm: field(&task, "comm", "task_struct.comm")?,
        mm_owner: field(
            &mm,
            "owner",
            "mm_struct.owner (the kernel lacks CONFIG_MEMCG)",
        )?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kernel BTF: its offsets must be the ones the kernel's own structs give.
    #[test]
    fn reads_the_running_kernels_offsets() {
        let Ok(btf) = Btf::from_file("/sys/kernel/btf/vmlinux") else {
            panic!("this test needs /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)");
        };
        let layout = read(&btf).unwrap();
        assert_eq!(layout.valid, 1);
        // `flags` follows `__state` (4 bytes) and `stack` (a pointer) at the start of
        // task_struct, after thread_info when it is inside (x86-64: 24 bytes).
        assert!(layout.task_flags < 64, "task_struct.flags near the start");
        assert!(layout.task_tgid > layout.task_mm, "tgid comes after mm");
        assert!(layout.task_comm > layout.task_tgid, "comm comes after tgid");
        assert!(layout.mm_owner > 0);
    }
}
