//! Events: what happened, for the host (an upload finished: process it).
//!
//! The engine calls [`EventListener::on_event`] on the shard thread where it happened, so a
//! listener must not block. [`channel`] gives a ready-made listener: a bounded queue that a
//! host thread drains, and that counts (rather than waits for) what a slow host misses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Something that happened in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A login attempt.
    Login {
        /// The USER name.
        user: String,
        /// The client.
        peer: SocketAddr,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A logged-in session ended.
    Logout {
        /// The user.
        user: String,
        /// The client.
        peer: SocketAddr,
    },
    /// An upload ended (STOR, APPE, STOU).
    Upload(TransferRecord),
    /// A download ended (RETR).
    Download(TransferRecord),
    /// A file was deleted.
    Deleted {
        /// The user.
        user: String,
        /// The path as the user sees it.
        path: PathBuf,
    },
    /// A file or directory was renamed.
    Renamed {
        /// The user.
        user: String,
        /// The old path.
        from: PathBuf,
        /// The new path.
        to: PathBuf,
    },
    /// A directory was created.
    DirCreated {
        /// The user.
        user: String,
        /// The path.
        path: PathBuf,
    },
    /// A directory was removed.
    DirRemoved {
        /// The user.
        user: String,
        /// The path.
        path: PathBuf,
    },
    /// Failed logins (or refusals) from this address crossed the ban threshold: it is
    /// refused at accept for `duration`.
    Banned {
        /// The banned address.
        ip: std::net::IpAddr,
        /// How long the ban lasts.
        duration: Duration,
    },
    /// Failed logins for this name, from any address, crossed the lockout threshold.
    LockedOut {
        /// The user name.
        user: String,
        /// How long the lockout lasts.
        duration: Duration,
    },
}

/// How a transfer went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferRecord {
    /// The user.
    pub user: String,
    /// The client.
    pub peer: SocketAddr,
    /// The path as the user sees it (from their home).
    pub path: PathBuf,
    /// Bytes moved on the data connection.
    pub bytes: u64,
    /// From the command to the end.
    pub duration: Duration,
    /// Whether every byte arrived (false: aborted, connection lost, storage error).
    pub complete: bool,
    /// Whether the transfer was in ASCII mode (TYPE A: line endings converted), not binary.
    pub ascii: bool,
}

/// Receives events. Called on a shard thread: it must return quickly and never block.
pub trait EventListener: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync + 'static> EventListener for F {
    fn on_event(&self, event: Event) {
        self(event)
    }
}

/// A bounded event queue: the sending half is an [`EventListener`] for
/// [`crate::ServerBuilder::events`], the receiving half is drained by the host.
pub fn channel(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (EventSender { tx, dropped: Arc::clone(&dropped) }, EventReceiver { rx, dropped })
}

/// The sending half of [`channel`]: never blocks; a full queue counts the event as dropped.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::SyncSender<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventListener for EventSender {
    fn on_event(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The receiving half of [`channel`].
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventReceiver {
    /// Waits for the next event; `None` once the server is gone and the queue is empty.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_counts_drops() {
        let (tx, rx) = channel(2);
        let ev = || Event::Deleted { user: "u".into(), path: "/a".into() };
        for _ in 0..5 {
            tx.on_event(ev());
        }
        assert_eq!(rx.dropped(), 3);
        assert_eq!(rx.try_recv(), Some(ev()));
        assert_eq!(rx.try_recv(), Some(ev()));
        assert_eq!(rx.try_recv(), None);
    }
}
