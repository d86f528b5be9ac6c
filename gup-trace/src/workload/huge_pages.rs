//! The kernel's huge pages as the workloads see them: the transparent huge page settings in
//! sysfs, whether a buffer really became PMD-mapped huge pages (/proc/self/smaps), and the 2 MiB
//! hugetlb pool, grown for a step and shrunk back.

use std::io;

use anyhow::{Context, Result};

use super::error::{Outcome, unavailable};
use super::memory::AnonBuf;

/// Transparent huge page settings.
const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";
/// The 2 MiB hugetlb pool.
pub(super) const HUGETLB_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";
pub(super) const HUGETLB_SIZE: usize = 2 << 20;

/// The selected value of a sysfs multiple-choice file: `always [madvise] never` -> `madvise`.
fn selected(choices: &str) -> Option<&str> {
    let (_, rest) = choices.split_once('[')?;
    Some(rest.split_once(']')?.0)
}

fn read_trimmed(path: &str) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

fn read_u64(path: &str) -> Result<u64> {
    let s = read_trimmed(path).with_context(|| format!("read {path}"))?;
    s.parse()
        .with_context(|| format!("{path} holds {s:?}, not a number"))
}

/// The size of a PMD-sized transparent huge page, when such pages can form in this process's
/// `MADV_HUGEPAGE` memory (`page` is the small page size). Unavailable when they cannot.
pub(super) fn thp_size(page: usize) -> Outcome<usize> {
    let enabled_path = format!("{THP_DIR}/enabled");
    let enabled = match read_trimmed(&enabled_path) {
        Ok(s) => s,
        Err(e) => {
            return unavailable(format!("no transparent huge pages: {enabled_path}: {e}"));
        }
    };
    if selected(&enabled) == Some("never") {
        return unavailable(format!(
            "transparent huge pages are disabled ({enabled_path}: {enabled})"
        ));
    }
    let size_path = format!("{THP_DIR}/hpage_pmd_size");
    let hp = match read_u64(&size_path) {
        Ok(v) => v as usize,
        Err(e) => return unavailable(format!("{e:#}")),
    };
    if hp < 2 * page || !hp.is_multiple_of(page) {
        return unavailable(format!(
            "{size_path} is {hp}, not a multiple of the page size {page}"
        ));
    }
    // Per-size switch (6.8+): "inherit" follows the global one.
    let sized_path = format!("{THP_DIR}/hugepages-{}kB/enabled", hp >> 10);
    if let Ok(s) = read_trimmed(&sized_path)
        && selected(&s) == Some("never")
    {
        return unavailable(format!(
            "PMD-sized transparent huge pages are disabled ({sized_path}: {s})"
        ));
    }
    // SAFETY: PR_GET_THP_DISABLE takes no pointers.
    if unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1 {
        return unavailable(
            "transparent huge pages are disabled for this process (prctl PR_SET_THP_DISABLE)",
        );
    }
    Ok(hp)
}

/// Checks, with /proc/self/smaps, that the whole buffer is PMD-mapped transparent huge pages
/// (`AnonHugePages` counts exactly those). Needs the buffer to be a VMA of its own, which
/// [`AnonBuf::thp`] arranges. Unavailable when it is not.
pub(super) fn check_thp_backed(buf: &AnonBuf) -> Outcome<()> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").context("read /proc/self/smaps")?;
    let (start, end) = (buf.ptr as usize, buf.ptr as usize + buf.len);
    let mut vma = None;
    for line in smaps.lines() {
        let range = line
            .split_once(' ')
            .and_then(|(r, _)| r.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            });
        if let Some((a, b)) = range {
            vma = (a <= start && start < b).then_some((a, b));
            continue;
        }
        let Some((a, b)) = vma else { continue };
        let Some(v) = line.strip_prefix("AnonHugePages:") else {
            continue;
        };
        if (a, b) != (start, end) {
            return unavailable(format!(
                "the buffer {start:#x}-{end:#x} is not a VMA of its own in /proc/self/smaps \
                 ({a:#x}-{b:#x}), so its huge pages cannot be checked"
            ));
        }
        let kib: usize = v
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("/proc/self/smaps: unexpected line {line:?}"))?;
        if kib << 10 != buf.len {
            return unavailable(format!(
                "only {kib} of {} KiB of the buffer became transparent huge pages (the kernel \
                 fell back to small pages, e.g. memory too fragmented or {THP_DIR}/defrag \
                 forbids compaction)",
                buf.len >> 10
            ));
        }
        return Ok(());
    }
    unavailable(format!(
        "/proc/self/smaps shows no AnonHugePages line for the buffer at {start:#x}"
    ))
}

/// Grows the 2 MiB hugetlb pool for a step and shrinks it back to its old size afterwards.
pub(super) struct HugetlbPool {
    /// `nr_hugepages` to write back, when the pool was grown.
    restore: Option<u64>,
}

impl HugetlbPool {
    const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

    /// Unreserved free 2 MiB huge pages.
    fn available() -> Result<u64> {
        let free = read_u64(&format!("{HUGETLB_DIR}/free_hugepages"))?;
        let resv = read_u64(&format!("{HUGETLB_DIR}/resv_hugepages"))?;
        Ok(free.saturating_sub(resv))
    }

    /// Makes sure `need` unreserved free huge pages exist, growing the pool (root only) if not.
    /// Unavailable when that is impossible.
    pub(super) fn ensure(need: u64) -> Outcome<Self> {
        let avail = Self::available()?;
        if avail >= need {
            return Ok(HugetlbPool { restore: None });
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return unavailable(format!(
                "{avail} free 2 MiB huge pages, {need} needed, and only root may grow the pool \
                 ({})",
                Self::NR
            ));
        }
        let old = read_u64(Self::NR)?;
        let target = old + (need - avail);
        // From here on, dropping `pool` writes `old` back.
        let pool = HugetlbPool { restore: Some(old) };
        if let Err(e) = std::fs::write(Self::NR, target.to_string()) {
            return unavailable(format!(
                "cannot grow the 2 MiB hugetlb pool from {old} to {target} pages: write {}: {e}",
                Self::NR
            ));
        }
        let now = Self::available()?;
        if now < need {
            let got = read_u64(Self::NR)?;
            return unavailable(format!(
                "asked for {target} 2 MiB hugetlb pages, the kernel found memory for {got} \
                 ({now} free, {need} needed)"
            ));
        }
        Ok(pool)
    }

    /// Shrinks the pool back, reporting a failure (drop does the same silently).
    pub(super) fn restore(mut self) -> Result<()> {
        if let Some(old) = self.restore.take() {
            std::fs::write(Self::NR, old.to_string()).with_context(|| {
                format!(
                    "restore {} to {old} after growing the hugetlb pool",
                    Self::NR
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for HugetlbPool {
    fn drop(&mut self) {
        if let Some(old) = self.restore.take() {
            let _ = std::fs::write(Self::NR, old.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selected_choice_is_the_one_in_brackets() {
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("[never]"), Some("never"));
        assert_eq!(selected("inherit"), None);
    }
}
