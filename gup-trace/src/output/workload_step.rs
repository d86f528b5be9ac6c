//! A workload step's line (`workload`, `selftest`): what it asked the kernel for, or why it
//! was skipped.

use crate::workload::{StepOutcome, StepReport};

/// One workload step: what it asked the kernel for, or why it was skipped.
pub fn workload_step(step: &StepReport) -> String {
    match &step.outcome {
        StepOutcome::Ran => format!(
            "{:<28} {:>6} pages {}",
            step.name,
            step.pages,
            if step.pins() {
                "pinned"
            } else {
                "referenced (FOLL_GET)"
            }
        ),
        StepOutcome::Skipped(why) => format!("{:<28} skipped: {why}", step.name),
    }
}
