//! The user's request to stop (SIGINT or SIGTERM), listened for from start-up.
//!
//! Loading the eBPF programs takes seconds (the verifier; 40 s under TCG), and a signal that
//! arrives then must not be lost: a background job of a non-interactive shell inherits SIGINT
//! ignored, so before a handler existed `kill -INT` during loading did nothing and the tracer
//! ran on until killed. [`listen`] installs the handlers once, before anything slow; the
//! session's loading loop asks [`pending`] between programs, and the commands await
//! [`requested`].

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::Notify,
};

static PENDING: AtomicBool = AtomicBool::new(false);
static NOTIFY: Notify = Notify::const_new();
static LISTENING: OnceLock<()> = OnceLock::new();

/// Starts listening for SIGINT and SIGTERM (once; later calls do nothing). Needs the tokio
/// runtime; the listener runs on another worker while this one loads programs.
pub fn listen() {
    LISTENING.get_or_init(|| {
        let streams = signal(SignalKind::interrupt())
            .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
        let (mut int, mut term) = match streams {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot listen for SIGINT/SIGTERM ({e}): stop with SIGKILL");
                return;
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            PENDING.store(true, Ordering::SeqCst);
            NOTIFY.notify_waiters();
        });
    });
}

/// Whether a stop was asked for (the loading loop's check between programs).
pub fn pending() -> bool {
    PENDING.load(Ordering::SeqCst)
}

/// Resolves when the user asks to stop, at once if they already did.
pub async fn requested() {
    listen();
    let notified = NOTIFY.notified();
    tokio::pin!(notified);
    // Registered before the check, so a signal between the two is not missed.
    notified.as_mut().enable();
    if pending() {
        return;
    }
    notified.await;
}
