//! The capability report printed before tracing starts: the kernel, FOLL_PIN, and which hooks
//! attached and how.

use std::fmt::Write as _;

use gup_trace_common::HookClass;

use crate::kernel::{Capabilities, HookStatus};

/// The capability report, hooks with the same outcome grouped so that a kernel which refuses a
/// method says it once, not once per hook.
pub fn capabilities(caps: &Capabilities, verbose: bool) -> String {
    let mut groups: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for report in &caps.hooks {
        let key = match &report.status {
            HookStatus::Attached { kind } => format!("attached via {kind}"),
            HookStatus::NotInKernel => "not in this kernel (nothing lost)".to_string(),
            HookStatus::Failed { reasons } => format!("NOT attached: {}", reasons.join("; ")),
        };
        let group = match groups.iter().position(|g| g.0 == key) {
            Some(i) => &mut groups[i],
            None => {
                groups.push((key, Vec::new(), Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        group.1.push(report.hook.name());
        if let Some(cost) = report.cost.filter(|c| !group.2.contains(c)) {
            group.2.push(cost);
        }
    }
    let mut out = format!(
        "gup-trace on Linux {} (FOLL_PIN = {:#x}, from {})\n",
        caps.kernel, caps.foll_pin.value, caps.foll_pin.source
    );
    for (key, hooks, costs) in &groups {
        let _ = writeln!(out, "  {key}:");
        let _ = writeln!(out, "      {}", hooks.join(", "));
        for cost in costs {
            let _ = writeln!(out, "      cost: {cost}");
        }
    }
    if let Some(why) = &caps.owners_unread {
        let _ = writeln!(
            out,
            "  owners of pinned memory are not read ({why}): pins are credited to the task \
             that took them, and a kernel worker pinning a process's pages is not that \
             process's"
        );
    }
    let pins = caps.attached(HookClass::Pin);
    let unpins = caps.attached(HookClass::Unpin);
    if pins == 0 && unpins == 0 {
        out.push_str(
            "  no GUP function can be hooked on this kernel: still traced are the mmap_lock \
             tracepoint and the /proc/vmstat pin totals\n",
        );
    } else if verbose {
        let _ = writeln!(out, "  {pins} pin and {unpins} unpin hooks live");
    }
    out
}

#[cfg(test)]
mod tests {
    use gup_trace_common::Hook;

    use super::*;
    use crate::kernel::{AttachKind, FlagValue, FollFlags, HookReport};

    #[test]
    fn capability_report_groups_hooks_refused_for_the_same_reason() {
        let failed = |hook| HookReport {
            hook,
            status: HookStatus::Failed {
                reasons: vec!["fentry refused: EPERM".into()],
            },
            cost: Some("pins are not seen"),
        };
        let caps = Capabilities {
            kernel: "6.18.0".into(),
            foll_pin: FlagValue {
                value: 0x80000,
                source: "BTF",
            },
            foll: FollFlags {
                source: "BTF",
                flags: Vec::new(),
            },
            hooks: vec![
                failed(Hook::PinUserPages),
                failed(Hook::UnpinUserPage),
                HookReport {
                    hook: Hook::MmapLockReleased,
                    status: HookStatus::Attached {
                        kind: AttachKind::Tracepoint,
                    },
                    cost: None,
                },
            ],
            owners_unread: Some("kernel BTF lacks mm_struct.owner".into()),
        };
        let text = capabilities(&caps, false);
        assert_eq!(text.matches("fentry refused: EPERM").count(), 1, "{text}");
        assert!(text.contains("pin_user_pages, unpin_user_page"), "{text}");
        assert!(text.contains("attached via tracepoint"), "{text}");
        assert!(text.contains("FOLL_PIN = 0x80000"), "{text}");
        assert!(
            text.contains(
                "owners of pinned memory are not read (kernel BTF lacks mm_struct.owner)"
            ),
            "{text}"
        );
    }
}
