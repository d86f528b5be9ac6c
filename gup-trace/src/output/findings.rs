//! Findings for people (a block per finding, with its evidence and the stack that took the
//! pins) and for programs (`FindingRecord`, one JSON object per finding).

use std::fmt::Write as _;

use serde::Serialize;

use super::stack_lines;
use crate::engine::{
    Finding,
    blocking::{BlockedMigration, HoldKind},
    findings::{HeldFolio, HeldPins},
};
use crate::symbols::CallStack;
use crate::symbols::call_frames;

/// Frames of a stack id, or why there are none: the live STACKS map or a recording's table.
pub type StackLookup<'a> = dyn FnMut(u32) -> CallStack + 'a;

/// Seconds from `start_ns` to `ns`, for times that read as "into the run".
fn at(ns: u64, start_ns: u64) -> String {
    format!("{:.2} s", ns.saturating_sub(start_ns) as f64 / 1e9)
}

/// A duration in seconds.
fn seconds(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The findings as text: a headline, then one block each. `start_ns` is when tracing began.
pub fn findings_text(
    findings: &[Finding],
    start_ns: u64,
    stacks: &mut StackLookup,
    stack_depth: usize,
) -> String {
    let problems = findings.iter().filter(|f| f.is_problem()).count();
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("findings: none (every pin taken was released, counts agree)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "findings: {} ({} in the traced programs, {} about gup-trace's own view)",
        findings.len(),
        problems,
        findings.len() - problems
    );
    for finding in findings {
        out.push_str(&finding_text(finding, start_ns, stacks, stack_depth));
    }
    out
}

/// One finding's block of text (see [`findings_text`]).
pub fn finding_text(
    finding: &Finding,
    start_ns: u64,
    stacks: &mut StackLookup,
    stack_depth: usize,
) -> String {
    let mut out = String::new();
    let title = finding.kind().to_uppercase();
    match finding {
        Finding::OrphanedPins(h) => {
            let _ = writeln!(
                out,
                "  {title}: pid {} ({}) exited at {} and still holds {} in {}",
                h.tgid,
                h.comm,
                h.exited_ns.map_or("?".into(), |t| at(t, start_ns)),
                plural(h.pages, "pinned page", "pinned pages"),
                plural(h.folios, "folio", "folios"),
            );
            held_detail(&mut out, h, start_ns, stacks, stack_depth);
        }
        Finding::LongHeldPin(h) if h.released => {
            let _ = writeln!(
                out,
                "  {title}: pid {} ({}) held {} in {} without FOLL_LONGTERM for up to {} before \
                 releasing them: such pins block page migration and compaction while held",
                h.tgid,
                h.comm,
                plural(h.pages, "page", "pages"),
                plural(h.folios, "folio", "folios"),
                seconds(h.held_ns),
            );
            held_detail(&mut out, h, start_ns, stacks, stack_depth);
        }
        Finding::LongHeldPin(h) => {
            let _ = writeln!(
                out,
                "  {title}: pid {} ({}) holds {} in {} without FOLL_LONGTERM, the oldest since {} \
                 ({}): such pins block page migration and compaction",
                h.tgid,
                h.comm,
                plural(h.pages, "page", "pages"),
                plural(h.folios, "folio", "folios"),
                at(h.oldest_ns, start_ns),
                seconds(h.held_ns),
            );
            held_detail(&mut out, h, start_ns, stacks, stack_depth);
        }
        Finding::UnbalancedRelease(u) => {
            let _ = writeln!(
                out,
                "  {title}: pid {} ({}) dropped {} on folio {:#x} (pfn {:#x}) through {} at {}, \
                 but the folio had {}: a page taken with FOLL_GET released as a pin, or a double unpin",
                u.tgid,
                u.comm,
                plural(u64::from(u.released), "pin", "pins"),
                u.folio,
                u.pfn,
                u.hook,
                at(u.ts_ns, start_ns),
                plural(u64::from(u.pins_before), "pin", "pins"),
            );
        }
        Finding::BiasAnomaly(b) => {
            let _ = writeln!(
                out,
                "  {title}: {} {} on folio {:#x} (pfn {:#x}, {}) by pid {} at {}: refcount moved {:+} \
                 and pincount {:+}, GUP_PIN_COUNTING_BIAS says {:+} and {:+}",
                b.hook,
                plural(u64::from(b.refs), "ref", "refs"),
                b.folio,
                b.pfn,
                if b.large { "large" } else { "small" },
                b.tgid,
                at(b.ts_ns, start_ns),
                b.refcount_delta,
                b.pincount_delta,
                b.expected_refcount_delta,
                b.expected_pincount_delta,
            );
        }
        Finding::CounterDrift(d) => {
            let _ = writeln!(
                out,
                "  {title}: gup-trace saw {} pinned and {} released pages, /proc/vmstat counted {} \
                 and {}: events were lost or taken through an unhooked path, so other findings \
                 may be incomplete (see lost events and the capability report)",
                d.pinned, d.released, d.vmstat_acquired, d.vmstat_released,
            );
        }
        Finding::BlockedMigration(b) => {
            blocked_text(&mut out, &title, b, start_ns, stacks, stack_depth)
        }
    }
    out
}

/// A blocked range: what was blocked, how often the kernel failed, how it ended, then each
/// holder with its folios and the stack that took them.
fn blocked_text(
    out: &mut String,
    title: &str,
    b: &BlockedMigration,
    start_ns: u64,
    stacks: &mut StackLookup,
    stack_depth: usize,
) {
    let (start, end) = b.blocked.range();
    let _ = writeln!(
        out,
        "  {title}: {} of pfn {start:#x}-{end:#x} by pid {} ({}) blocked from {} to {}: {} \
         failed to migrate in {}, {}{}{}",
        b.blocked.name(),
        b.by_tgid,
        b.by_comm,
        at(b.first_ns, start_ns),
        at(b.last_ns, start_ns),
        plural(b.migrate_failed, "folio", "folios"),
        plural(
            b.migrate_attempts,
            "migration attempt",
            "migration attempts"
        ),
        plural(
            b.isolation_failures,
            "failed isolation",
            "failed isolations"
        ),
        b.busy_pfn
            .map_or(String::new(), |p| format!(", first busy pfn {p:#x}")),
        // CMA allocations: how often cma_alloc found the range busy.
        if b.busy_retries > 0 {
            format!(
                ", {} on the range",
                plural(b.busy_retries, "busy retry", "busy retries")
            )
        } else {
            String::new()
        },
    );
    let _ = writeln!(
        out,
        "      outcome: {}",
        match (b.outcome, b.ended_ns) {
            (Some(0), Some(t)) => format!(
                "succeeded at {} (after the holders let go)",
                at(t, start_ns)
            ),
            (Some(err), Some(t)) => format!("gave up at {} with error {err}", at(t, start_ns)),
            _ => "still blocked when last seen".to_string(),
        }
    );
    if b.holders.is_empty() {
        out.push_str(
            "      holders: none known (pins taken before tracing began, by an untraced path, or \
             references that are not GUP's)\n",
        );
    }
    for h in &b.holders {
        let _ = writeln!(
            out,
            "      held by pid {} ({}): {} in {} through {}{}, the oldest at {}",
            h.tgid,
            h.comm,
            plural(
                h.pages,
                if h.kind == HoldKind::Pin {
                    "pin"
                } else {
                    "FOLL_GET reference"
                },
                if h.kind == HoldKind::Pin {
                    "pins"
                } else {
                    "FOLL_GET references"
                },
            ),
            plural(h.folios, "folio", "folios"),
            h.entry.name(),
            if h.longterm { " (FOLL_LONGTERM)" } else { "" },
            at(h.oldest_ns, start_ns),
        );
        let shown: Vec<String> = h
            .examples
            .iter()
            .map(|f| format!("pfn {:#x} order {}", f.pfn, f.order))
            .collect();
        let _ = writeln!(out, "        folios: {}", shown.join(", "));
        match h.stack_id {
            Some(id) => {
                out.push_str("        kernel stack that took them:\n");
                out.push_str(&stack_lines(&stacks(id), h.entry, stack_depth));
            }
            None => out.push_str("        kernel stack: none recorded\n"),
        }
    }
}

fn held_detail(
    out: &mut String,
    h: &HeldPins,
    start_ns: u64,
    stacks: &mut StackLookup,
    stack_depth: usize,
) {
    let _ = writeln!(
        out,
        "      taken{} through {}{}, the oldest at {}",
        h.taken_by.as_ref().map_or(String::new(), |t| format!(
            " by pid {} ({}) on its memory",
            t.tgid, t.comm
        )),
        h.entry.name(),
        if h.longterm { " (FOLL_LONGTERM)" } else { "" },
        at(h.oldest_ns, start_ns)
    );
    let shown: Vec<String> = h
        .examples
        .iter()
        .map(|f: &HeldFolio| {
            format!(
                "pfn {:#x} order {} ({} since {})",
                f.pfn,
                f.order,
                plural(u64::from(f.refs), "pin", "pins"),
                at(f.since_ns, start_ns)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "      folios: {}{}",
        shown.join(", "),
        if h.folios > shown.len() as u64 {
            format!(" ({} of {})", shown.len(), h.folios)
        } else {
            String::new()
        }
    );
    match h.stack_id {
        Some(id) => {
            out.push_str("      kernel stack that took them:\n");
            out.push_str(&stack_lines(&stacks(id), h.entry, stack_depth));
        }
        None => out.push_str("      kernel stack: none recorded\n"),
    }
}

/// One finding as JSON, with the stack of held pins named.
#[derive(Debug, Serialize)]
pub struct FindingRecord<'a> {
    #[serde(flatten)]
    pub finding: &'a Finding,
    /// `true` for leaks and over-long pins; `false` for what only concerns gup-trace's view.
    pub problem: bool,
    /// Held pins: the kernel stack that took them, top first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<Vec<String>>,
    /// Blocked migration: each holder's kernel stack, in the order of `holders`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_stacks: Option<Vec<Vec<String>>>,
}

impl<'a> FindingRecord<'a> {
    pub fn new(finding: &'a Finding, stacks: &mut StackLookup, depth: usize) -> FindingRecord<'a> {
        let held = match finding {
            Finding::OrphanedPins(h) | Finding::LongHeldPin(h) => Some(h),
            _ => None,
        };
        let stack = held.and_then(|h| {
            let frames = stacks(h.stack_id?).ok()?;
            Some(
                call_frames(&frames, h.entry)
                    .iter()
                    .take(depth)
                    .map(ToString::to_string)
                    .collect(),
            )
        });
        let mut named = |id: Option<u32>, entry| -> Option<Vec<String>> {
            let frames = stacks(id?).ok()?;
            Some(
                call_frames(&frames, entry)
                    .iter()
                    .take(depth)
                    .map(ToString::to_string)
                    .collect(),
            )
        };
        let holder_stacks = match finding {
            Finding::BlockedMigration(b) => Some(
                b.holders
                    .iter()
                    .map(|h| named(h.stack_id, h.entry).unwrap_or_default())
                    .collect(),
            ),
            _ => None,
        };
        FindingRecord {
            finding,
            problem: finding.is_problem(),
            stack,
            holder_stacks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::findings::HeldPins;

    fn orphan() -> Finding {
        Finding::OrphanedPins(HeldPins {
            tgid: 311,
            comm: "pinleak-user".into(),
            exited_ns: Some(3_500_000_000),
            taken_by: None,
            entry: gup_trace_common::Hook::PinUserPagesFast,
            stack_id: Some(4),
            longterm: true,
            pages: 64,
            folios: 64,
            oldest_ns: 1_250_000_000,
            held_ns: 0,
            released: false,
            examples: vec![HeldFolio {
                folio: 0xffff_ea00_0012_3400,
                pfn: 0x48d0,
                order: 0,
                refs: 1,
                since_ns: 1_250_000_000,
            }],
        })
    }

    #[test]
    fn an_orphan_names_the_process_the_entry_point_and_the_stack() {
        let mut stacks = |_id: u32| -> CallStack { Err("not recorded".into()) };
        let text = findings_text(&[orphan()], 1_000_000_000, &mut stacks, 8);
        assert!(
            text.starts_with("findings: 1 (1 in the traced programs"),
            "{text}"
        );
        assert!(
            text.contains("ORPHANED PINS: pid 311 (pinleak-user) exited at 2.50 s and still holds 64 pinned pages in 64 folios"),
            "{text}"
        );
        assert!(
            text.contains(
                "taken through pin_user_pages_fast (FOLL_LONGTERM), the oldest at 0.25 s"
            ),
            "{text}"
        );
        assert!(
            text.contains("pfn 0x48d0 order 0 (1 pin since 0.25 s) (1 of 64)"),
            "{text}"
        );
        assert!(text.contains("(no stack: not recorded)"), "{text}");
    }

    #[test]
    fn json_findings_carry_their_kind_and_whether_they_are_a_problem() {
        let finding = orphan();
        let mut stacks = |_id: u32| -> CallStack { Err("none".into()) };
        let v = serde_json::to_value(FindingRecord::new(&finding, &mut stacks, 8)).unwrap();
        assert_eq!(v["finding"], "orphaned_pins");
        assert_eq!(v["problem"], true);
        assert_eq!(v["pages"], 64);
        assert_eq!(v["entry"], "pin_user_pages_fast");
    }

    #[test]
    fn pins_taken_by_another_task_name_both_owner_and_taker() {
        let Finding::OrphanedPins(mut h) = orphan() else {
            unreachable!()
        };
        h.taken_by = Some(crate::engine::findings::Taker {
            tgid: 57,
            comm: "kworker/u8:2".into(),
        });
        let finding = Finding::OrphanedPins(h);
        let mut stacks = |_id: u32| -> CallStack { Err("none".into()) };
        let text = findings_text(std::slice::from_ref(&finding), 0, &mut stacks, 8);
        assert!(
            text.contains("pid 311 (pinleak-user) exited")
                && text.contains("taken by pid 57 (kworker/u8:2) on its memory through"),
            "{text}"
        );
        let v = serde_json::to_value(FindingRecord::new(&finding, &mut stacks, 8)).unwrap();
        assert_eq!(v["comm"], "pinleak-user");
        assert_eq!(v["taken_by"]["comm"], "kworker/u8:2");
        assert_eq!(v["taken_by"]["tgid"], 57);
    }

    #[test]
    fn a_long_held_pin_released_says_how_long_it_was_held() {
        let Finding::OrphanedPins(mut h) = orphan() else {
            unreachable!()
        };
        (h.released, h.held_ns, h.longterm, h.exited_ns) = (true, 12_340_000_000, false, None);
        let finding = Finding::LongHeldPin(h);
        let mut stacks = |_id: u32| -> CallStack { Err("none".into()) };
        let text = findings_text(std::slice::from_ref(&finding), 0, &mut stacks, 8);
        assert!(
            text.contains("held 64 pages in 64 folios without FOLL_LONGTERM for up to 12.34 s before releasing them"),
            "{text}"
        );
        let v = serde_json::to_value(FindingRecord::new(&finding, &mut stacks, 8)).unwrap();
        assert_eq!(v["finding"], "long_held_pin");
        assert_eq!(v["released"], true);
        assert_eq!(v["held_ns"], 12_340_000_000u64);
        assert!(
            v.get("taken_by").is_none(),
            "no taker when the owner took them"
        );
    }

    #[test]
    fn a_blocked_offline_names_what_was_blocked_and_the_holder() {
        use crate::engine::blocking::{Blocked, BlockedMigration, BlockingHolder, HoldKind};
        let finding = Finding::BlockedMigration(BlockedMigration {
            blocked: Blocked::MemoryOffline {
                start_pfn: 0x30000,
                end_pfn: 0x38000,
            },
            by_tgid: 967,
            by_comm: "sh".into(),
            stack_id: None,
            first_ns: 9_350_000_000,
            last_ns: 14_640_000_000,
            migrate_attempts: 29,
            migrate_failed: 1827,
            isolation_failures: 0,
            busy_retries: 0,
            busy_pfn: None,
            outcome: Some(-4),
            ended_ns: Some(14_650_000_000),
            holders: vec![BlockingHolder {
                tgid: 950,
                comm: "dd".into(),
                kind: HoldKind::Pin,
                entry: gup_trace_common::Hook::PinUserPagesFast,
                stack_id: Some(3),
                longterm: false,
                pages: 63,
                folios: 63,
                oldest_ns: 5_650_000_000,
                examples: Vec::new(),
            }],
        });
        let mut stacks = |_id: u32| -> CallStack { Err("not recorded".into()) };
        let text = findings_text(&[finding], 1_000_000_000, &mut stacks, 8);
        assert!(
            text.contains(
                "BLOCKED MIGRATION: memory offline of pfn 0x30000-0x38000 by pid 967 (sh) blocked \
                 from 8.35 s to 13.64 s: 1827 folios failed to migrate in 29 migration attempts"
            ),
            "{text}"
        );
        assert!(
            text.contains("outcome: gave up at 13.65 s with error -4"),
            "{text}"
        );
        assert!(
            text.contains("held by pid 950 (dd): 63 pins in 63 folios through pin_user_pages_fast"),
            "{text}"
        );
    }

    #[test]
    fn no_findings_says_so() {
        let mut stacks = |_id: u32| -> CallStack { Err(String::new()) };
        assert!(findings_text(&[], 0, &mut stacks, 8).starts_with("findings: none"));
    }
}
