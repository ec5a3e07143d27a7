//! systemd integration (see `contrib/systemd/`): socket activation, and readiness and reload
//! notifications for `Type=notify`.
//!
//! Both are no-ops outside systemd: without `LISTEN_PID`/`LISTEN_FDS` the server binds its
//! `--listen` addresses, and without `NOTIFY_SOCKET` nothing is sent.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};

use sd_notify::NotifyState;

/// The listening sockets the service manager passed (`sd_listen_fds(3)`: fds from 3, only
/// if `LISTEN_PID` is this process), or none. Unsets the variables so that nothing started
/// later takes them for its own.
///
/// # Safety
///
/// Call it before any other thread exists: it changes the environment.
pub unsafe fn take_listeners() -> Result<Vec<TcpListener>, String> {
    // SAFETY: the caller promises no other thread runs, so none reads the environment now.
    let fds: Vec<RawFd> = unsafe { sd_notify::listen_fds_and_unset_env() }
        .map_err(|e| format!("socket activation: {e}"))?
        .collect();
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: sd_listen_fds semantics: the manager passed fds 3..3+LISTEN_FDS to this
        // very process (LISTEN_PID was checked) for it to own; nothing else here uses them.
        let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
        let stream = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM);
        if !stream || !socket.is_listener().unwrap_or(false) {
            return Err(format!(
                "socket activation: fd {fd} is not a listening TCP socket (ListenStream= in the .socket unit)"
            ));
        }
        listeners.push(TcpListener::from(socket));
    }
    Ok(listeners)
}

/// Tells the service manager that every listener is bound and accepting.
pub fn ready(addrs: &[SocketAddr]) {
    let status = format!("listening on {}", list(addrs));
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload begins (`RELOADING=1`); [`reloaded`] ends it.
pub fn reloading() {
    let now = sd_notify::NotifyState::monotonic_usec_now();
    match now {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended, well or not (`READY=1` and what happened, as `STATUS=`).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
