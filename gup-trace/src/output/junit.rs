//! JUnit XML for `check --junit`: CI systems show each kind of finding as a test case, failed
//! when the traced program has findings of that kind.

use std::fmt::Write as _;

use crate::engine::Finding;

/// The kinds that fail a check, one test case each, in this order.
const CASES: [&str; 4] = [
    "orphaned pins",
    "unbalanced release",
    "long-held short-term pin",
    "blocked migration",
];

/// A test suite named after `command`; `details` gives the text of each finding. Lost events
/// make the suite end in an error case: a release gup-trace never saw looks like a leak, so
/// the failures above it cannot be trusted either.
pub fn junit_xml(
    command: &str,
    seconds: f64,
    findings: &[Finding],
    lost_events: u64,
    mut details: impl FnMut(&Finding) -> String,
) -> String {
    let failed = CASES
        .iter()
        .filter(|case| findings.iter().any(|f| f.kind() == **case))
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites><testsuite name=\"gup-trace check {}\" tests=\"{}\" failures=\"{failed}\" errors=\"{}\" time=\"{seconds:.3}\">",
        escape(command),
        CASES.len() + usize::from(lost_events > 0),
        u8::from(lost_events > 0),
    );
    for case in CASES {
        let _ = write!(
            out,
            "  <testcase classname=\"gup-trace.check\" name=\"no {}\"",
            escape(case)
        );
        let found: Vec<&Finding> = findings.iter().filter(|f| f.kind() == case).collect();
        if found.is_empty() {
            out.push_str("/>\n");
            continue;
        }
        let text: String = found.iter().map(|f| details(f)).collect();
        let _ = writeln!(
            out,
            ">\n    <failure message=\"{} finding{}: {case}\">{}</failure>\n  </testcase>",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            escape(&text)
        );
    }
    if lost_events > 0 {
        let _ = writeln!(
            out,
            "  <testcase classname=\"gup-trace.check\" name=\"no lost events\">\n    <error \
             message=\"{lost_events} events lost: the ring buffer filled, the findings may be \
             releases gup-trace never saw (raise --ring-buffer-kib)\"/>\n  </testcase>"
        );
    }
    // What concerns gup-trace's own view goes to the suite's output, not into a verdict.
    let notes: String = findings
        .iter()
        .filter(|f| !f.is_problem())
        .map(&mut details)
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "  <system-out>{}</system-out>", escape(&notes));
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{findings::CounterDrift, pins::UnbalancedRelease};

    #[test]
    fn a_finding_fails_its_case_and_the_others_pass() {
        let findings = [
            Finding::UnbalancedRelease(UnbalancedRelease {
                ts_ns: 1,
                folio: 0x10,
                pfn: 0x1,
                tgid: 5,
                comm: "a<b".into(),
                hook: "unpin_user_page",
                pins_before: 0,
                released: 1,
            }),
            Finding::CounterDrift(CounterDrift {
                pinned: 1,
                vmstat_acquired: 2,
                released: 0,
                vmstat_released: 0,
            }),
        ];
        let xml = junit_xml("./t & x", 1.5, &findings, 0, |f| {
            format!("{} by a<b\n", f.kind())
        });
        assert!(
            xml.contains("name=\"gup-trace check ./t &amp; x\" tests=\"4\" failures=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"gup-trace.check\" name=\"no orphaned pins\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"1 finding: unbalanced release\">unbalanced release by a&lt;b\n</failure>"),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>counter drift by a&lt;b\n</system-out>"),
            "{xml}"
        );
        assert!(!xml.contains("lost events"), "{xml}");
    }

    #[test]
    fn lost_events_are_an_error_case() {
        let xml = junit_xml("t", 1.0, &[], 7, |f| f.kind().to_string());
        assert!(
            xml.contains("tests=\"5\" failures=\"0\" errors=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"no lost events\">\n    <error message=\"7 events lost"),
            "{xml}"
        );
    }
}
