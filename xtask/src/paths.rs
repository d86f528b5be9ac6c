//! Where xtask keeps things: the workspace and its `target/` caches. At the bottom of xtask's
//! modules (it imports none of them), so that every task and layer can share these paths
//! without importing each other.

use std::path::{Path, PathBuf};

/// The workspace root: xtask's own crate directory lives in it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// `<workspace>/target`: derived from the workspace, not from CARGO_TARGET_DIR, so that every
/// build of xtask shares one cache.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// `<workspace>/target/vm`: kernels, apt state, initramfs images, disks and guest logs.
pub fn vm_dir() -> PathBuf {
    target_dir().join("vm")
}
