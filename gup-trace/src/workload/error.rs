//! How a workload says that it cannot run here, as opposed to failing: a helper that may find
//! the machine unable (no transparent huge pages, no O_DIRECT target, a ptrace policy...) returns
//! an [`Outcome`], `?` carries either kind of error up to the step, and the plan turns
//! [`WorkloadError::Unavailable`] into a skipped step (its reason printed word for word) and
//! [`WorkloadError::Failed`] into the command's error.

/// Why a workload (or a piece of one) did not run.
#[derive(Debug, thiserror::Error)]
pub(super) enum WorkloadError {
    /// This machine or kernel cannot do it; the reason says why, for a human.
    #[error("{0}")]
    Unavailable(String),
    /// It could, and a call failed midway (the error names the call and the errno).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl WorkloadError {
    /// The reason, for a list of things tried: a skip reason as it is, an error with its causes.
    pub(super) fn into_reason(self) -> String {
        match self {
            WorkloadError::Unavailable(why) => why,
            WorkloadError::Failed(e) => format!("{e:#}"),
        }
    }
}

/// A result that is either a value, unavailable here, or failed.
pub(super) type Outcome<T> = Result<T, WorkloadError>;

/// `Err(Unavailable(why))`.
pub(super) fn unavailable<T>(why: impl Into<String>) -> Outcome<T> {
    Err(WorkloadError::Unavailable(why.into()))
}
