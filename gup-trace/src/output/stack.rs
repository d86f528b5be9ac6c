//! A GUP call's kernel stack under its trace line: the frames worth showing, one indented line
//! each.

use std::fmt::Write as _;

use gup_trace_common::Hook;

use crate::symbols::{CallStack, call_frames};

const STACK_INDENT: &str = "        ";

/// The stack under an event line: one indented frame per line, top first, at most `depth`.
pub fn stack_lines(stack: &CallStack, hook: Hook, depth: usize) -> String {
    let frames = match stack {
        Ok(frames) => call_frames(frames, hook),
        Err(why) => return format!("{STACK_INDENT}(no stack: {why})\n"),
    };
    if frames.is_empty() {
        return format!("{STACK_INDENT}(no stack: the kernel recorded no frames)\n");
    }
    let mut out = String::new();
    for frame in frames.iter().take(depth) {
        let _ = writeln!(out, "{STACK_INDENT}{frame}");
    }
    if frames.len() > depth {
        let _ = writeln!(
            out,
            "{STACK_INDENT}... {} more frame{} (--stack-depth {} shows all)",
            frames.len() - depth,
            if frames.len() - depth == 1 { "" } else { "s" },
            frames.len()
        );
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use gup_trace_common::Hook;

    use super::*;
    use crate::symbols::StackFrame;

    /// A fentry stack as the kernel records it: the tracer's program and trampoline on top, and
    /// no frame of the hooked function (the trampoline skips it), then its callers.
    pub(in crate::output) fn recorded_stack() -> CallStack {
        let symbols = crate::symbols::KernelSymbols::parse(
            "ffffffff81234000 T pin_user_pages_fast\n\
             ffffffff81300000 t io_sqe_buffer_register\n\
             ffffffff81310000 T __x64_sys_io_uring_register\n\
             ffffffffc0a03000 t bpf_prog_6deef7357e7b4530_gup_enter\t[bpf]\n\
             ffffffffc0a04000 t bpf_trampoline_6442512345\t[bpf]\n",
        )
        .unwrap();
        Ok(symbols
            .stack(&[
                0xffffffffc0a03040,
                0xffffffffc0a04030,
                0xffffffff813001a3,
                0xffffffff81310022,
            ])
            .into())
    }

    #[test]
    fn stacks_leave_out_the_tracers_frames_and_respect_the_depth() {
        let text = stack_lines(&recorded_stack(), Hook::PinUserPagesFast, 12);
        assert_eq!(
            text,
            "        io_sqe_buffer_register+0x1a3\n\
             \x20       __x64_sys_io_uring_register+0x22\n"
        );
        let short = stack_lines(&recorded_stack(), Hook::PinUserPagesFast, 1);
        assert_eq!(
            short,
            "        io_sqe_buffer_register+0x1a3\n\
             \x20       ... 1 more frame (--stack-depth 2 shows all)\n"
        );
        let missing = stack_lines(&Err("not recorded".into()), Hook::PinUserPages, 12);
        assert_eq!(missing, "        (no stack: not recorded)\n");
    }

    #[test]
    fn a_stack_holding_the_hooked_function_starts_at_it() {
        let symbols = crate::symbols::KernelSymbols::parse(
            "ffffffff81234000 T pin_user_pages_remote\n\
             ffffffff81240000 t kprobe_handler_like\n\
             ffffffff81300000 t process_vm_rw_core\n",
        )
        .unwrap();
        let frames: Arc<[StackFrame]> = symbols
            .stack(&[0xffffffff81240010, 0xffffffff81234001, 0xffffffff81300208])
            .into();
        let shown: Vec<String> = call_frames(&frames, Hook::PinUserPagesRemote)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["pin_user_pages_remote+0x1", "process_vm_rw_core+0x208"]
        );
        // Without the hooked function or tracer frames, nothing is left out.
        assert_eq!(call_frames(&frames, Hook::PinUserPages).len(), 3);
    }
}
