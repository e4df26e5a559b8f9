//! systemd's notification protocol for `Type=notify` units: `READY=1` once the workers run,
//! `STOPPING=1` when a graceful shutdown begins, and `WATCHDOG=1` from the scheduler's
//! one-second loop while it keeps turning.
//!
//! Every function here does nothing unless systemd asked for it (`NOTIFY_SOCKET`, and for
//! the watchdog `WATCHDOG_USEC` meant for this process), so `syncd run` in a terminal or a
//! test behaves as before. A notification that cannot be sent is logged and otherwise
//! ignored: it must never stop the daemon from working.
//!
//! Why the scheduler loop carries the watchdog: it is the one loop that must come round
//! every second for schedules to fire, and it touches the state database on every pass. If
//! it stalls (a wedged database, a dead runtime), pings stop and systemd restarts the
//! service after `WatchdogSec=`, which beats a daemon that looks alive and syncs nothing.

use sd_notify::NotifyState;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn send(states: &[NotifyState], what: &str) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot send {what} to systemd");
    }
}

/// Tells systemd the service is up (`READY=1`): the queue workers have been started.
pub fn ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        info!("telling systemd the service is ready");
    }
    send(
        &[NotifyState::Ready, NotifyState::Status("processing jobs")],
        "READY=1",
    );
    if let Some(every) = watchdog_interval() {
        info!(
            timeout = %crate::duration::format(every),
            "systemd watchdog enabled; the scheduler loop pings it"
        );
    }
}

/// Tells systemd a graceful shutdown has begun (`STOPPING=1`).
pub fn stopping() {
    send(
        &[
            NotifyState::Stopping,
            NotifyState::Status("shutting down: finishing in-flight jobs"),
        ],
        "STOPPING=1",
    );
}

/// Sends `STOPPING=1` as soon as `shutdown` fires; spawned by `syncd run`.
pub async fn stopping_on(shutdown: CancellationToken) {
    shutdown.cancelled().await;
    stopping();
}

/// The watchdog timeout systemd set for this process, if any.
pub fn watchdog_interval() -> Option<Duration> {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    *INTERVAL.get_or_init(sd_notify::watchdog_enabled)
}

/// Pings the watchdog (`WATCHDOG=1`) when systemd enabled it; called once per scheduler
/// pass. One datagram a second is far below anything that matters, and keeps the margin to
/// `WatchdogSec=` as wide as it can be.
pub fn watchdog_ping() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if watchdog_interval().is_some()
        && let Err(e) = sd_notify::notify(&[NotifyState::Watchdog])
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        // Once: a socket that is gone stays gone, and this runs every second.
        warn!(error = %e, "cannot ping the systemd watchdog");
    }
}
