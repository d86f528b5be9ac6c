//! Thin wrappers over libc shared by the workloads: errno, errors that name the failed call, the
//! page size, byte counts and C paths.

use std::ffi::{CString, c_int};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Result, anyhow};

/// `pages` pages of `page` bytes, in bytes.
pub(super) fn byte_len(pages: usize, page: usize) -> Result<usize> {
    pages
        .checked_mul(page)
        .ok_or_else(|| anyhow!("{pages} pages of {page} bytes overflow usize"))
}

/// The current errno as an error, with "what" (the syscall and its arguments) as context.
pub(super) fn os_error(what: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(io::Error::last_os_error()).context(what.into())
}

pub(super) fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(super) fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("path {} contains a NUL byte", path.display()))
}
