//! Passive listeners (RFC 959 PASV, RFC 2428 EPSV), on a port range that may be narrower than
//! the number of sessions waiting at once.
//!
//! A PASV takes a port of its own from the lock-free [`PortPool`] while there is one. Firewalls
//! and cloud balancers often open only a handful of ports, though (AWS Transfer clients
//! hard-code 8192-8200), so once every port is taken a session joins a listener that others
//! already wait on, as long as none of them has the same client address: a data connection is
//! then told apart by where it comes from. Two sessions of one address never wait on one port
//! at once; when no port is left without one, the answer is 425 as before.
//!
//! ```text
//!   port 8192 ── listener ── waiters: 10.0.0.7 (shard 0), 10.0.0.9 (shard 1), ...
//!                  │ accept (whichever waiter is in RETR/STOR and woken first)
//!                  ├─ from the accepting waiter's client: its data connection
//!                  ├─ from another waiter's client: handed over (a std TcpStream on a oneshot)
//!                  └─ from nobody waiting: closed (a hijack attempt)
//! ```
//!
//! Each waiter registers its own duplicate of the listener with its own shard's reactor, so a
//! connection is accepted wherever a waiter is in a transfer command and lands on the right
//! shard. The table (a mutex per port) is touched on PASV, when a waiter leaves, and for a
//! connection that is not the accepting waiter's own; never on the transfer path. The listener
//! closes, and its port goes back to the pool, when its last waiter leaves.
//!
//! A session whose data connections cannot be matched by address (`--dangerous-foreign-data`,
//! or balancers that send no PROXY header on data connections) keeps its port to itself.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::connect::{AcceptPolicy, Admission};
use crate::ports::{PortLease, PortPool};

/// How many connections a passive listener queues: enough for every client of a shared port
/// to connect before any of them sends its transfer command.
const BACKLOG: i32 = 128;

/// The passive ports of one server: the pool that hands out free ports, and which sessions
/// wait on each port that has a listener.
pub(crate) struct PassivePorts {
    pool: Arc<PortPool>,
    /// First port of the range; `table[i]` is port `start + i`.
    start: u16,
    /// One slot per port of the range; the entry is allocated the first time the port is bound
    /// and kept for reuse.
    table: Box<[Mutex<Option<Box<Entry>>>]>,
    /// Where the next search for a port to share starts, so joiners spread over the range.
    cursor: AtomicUsize,
}

/// A port's listener and the sessions waiting on it.
#[derive(Default)]
struct Entry {
    bound: Option<Arc<Bound>>,
    waiters: Vec<Waiter>,
}

/// A bound listener. Every waiter holds it, so it closes (and then frees its port) only when
/// the last one has left.
#[derive(Debug)]
struct Bound {
    socket: Socket,
    ip: IpAddr,
    port: u16,
    /// Whether other sessions may join: the first waiter's data connections can be told apart
    /// by address.
    shareable: bool,
    /// Declared after the socket: the port goes back to the pool only once it is closed.
    _lease: PortLease,
}

struct Waiter {
    /// The client address its data connection comes from (canonical).
    peer: IpAddr,
    /// Where another waiter hands over a connection from `peer`; taken by the first hand-over.
    handoff: Option<oneshot::Sender<std::net::TcpStream>>,
}

/// A session's place on a passive listener, waiting for its transfer command.
///
/// Nothing watches the listener until then: the client connects before it sends RETR or
/// STOR, so the connection is usually in the accept queue already and is taken without
/// waiting, and the shard is not woken once for the connect and again for the command.
/// Dropping it leaves the listener (closing it if this was the last waiter).
pub(crate) struct PendingAccept {
    ports: Arc<PassivePorts>,
    bound: Arc<Bound>,
    policy: AcceptPolicy,
    handoff: oneshot::Receiver<std::net::TcpStream>,
}

impl std::fmt::Debug for PendingAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAccept")
            .field("port", &self.bound.port)
            .field("peer", &self.policy.peer)
            .finish()
    }
}

fn bind_listener(ip: IpAddr, port: u16) -> io::Result<Socket> {
    let addr = SocketAddr::new(ip, port);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the table consistent enough to go on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PassivePorts {
    /// The passive ports of a server whose pool is `pool`, over the range `range`
    /// (the one the pool was built from).
    pub(crate) fn new(pool: Arc<PortPool>, range: std::ops::RangeInclusive<u16>) -> Arc<Self> {
        // The same normalisation as PortPool::new: port 0 is left out.
        let start = (*range.start()).max(1);
        let len = pool.len();
        let table = (0..len).map(|_| Mutex::new(None)).collect();
        Arc::new(PassivePorts { pool, start, table, cursor: AtomicUsize::new(0) })
    }

    fn slot(&self, port: u16) -> Option<&Mutex<Option<Box<Entry>>>> {
        self.table.get(usize::from(port.checked_sub(self.start)?))
    }

    /// A passive listener on `ip` for a session whose policy is `policy`: a port of its own
    /// while the pool has one (ports that another program holds are skipped), else a share
    /// of a port no session of the same client address waits on. `Ok(None)`: neither.
    pub(crate) fn open(
        self: &Arc<Self>,
        shard: usize,
        ip: IpAddr,
        policy: AcceptPolicy,
    ) -> io::Result<Option<(u16, PendingAccept)>> {
        if let Some(bound) = self.bind_free(shard, ip, &policy)? {
            let port = bound.port;
            let (tx, rx) = oneshot::channel();
            if let Some(slot) = self.slot(port) {
                let mut slot = lock(slot);
                let entry = slot.get_or_insert_with(Box::default);
                // A port comes out of the pool only after its last waiter left and its
                // listener closed, so the entry is empty here.
                entry.waiters.clear();
                entry.bound = Some(Arc::clone(&bound));
                entry.waiters.push(Waiter { peer: policy.peer, handoff: Some(tx) });
            }
            return Ok(Some((port, PendingAccept { ports: Arc::clone(self), bound, policy, handoff: rx })));
        }
        if !policy.shareable() {
            return Ok(None);
        }
        Ok(self.join(ip, policy).map(|pending| (pending.bound.port, pending)))
    }

    /// A listener on a port of its own, if the pool has one.
    fn bind_free(&self, shard: usize, ip: IpAddr, policy: &AcceptPolicy) -> io::Result<Option<Arc<Bound>>> {
        // Leases of ports that failed to bind are held until a port works, so the pool does
        // not hand the same busy port out again within this call.
        let mut busy: Vec<PortLease> = Vec::new();
        loop {
            let Some(lease) = self.pool.acquire(shard) else {
                return Ok(None);
            };
            match bind_listener(ip, lease.port()) {
                Ok(socket) => {
                    let port = lease.port();
                    let shareable = policy.shareable();
                    return Ok(Some(Arc::new(Bound { socket, ip, port, shareable, _lease: lease })));
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tracing::debug!(port = lease.port(), "passive port busy, skipping");
                    busy.push(lease);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A place on a listener that others wait on and no session of `policy.peer` does.
    fn join(self: &Arc<Self>, ip: IpAddr, policy: AcceptPolicy) -> Option<PendingAccept> {
        let len = self.table.len();
        let first = self.cursor.fetch_add(1, Ordering::Relaxed);
        for k in 0..len {
            let Some(slot) = self.table.get((first.wrapping_add(k)) % len) else { continue };
            let mut slot = lock(slot);
            let Some(entry) = slot.as_deref_mut() else { continue };
            let Some(bound) = &entry.bound else { continue };
            if !bound.shareable || bound.ip != ip || entry.waiters.iter().any(|w| w.peer == policy.peer) {
                continue;
            }
            let bound = Arc::clone(bound);
            let (tx, rx) = oneshot::channel();
            entry.waiters.push(Waiter { peer: policy.peer, handoff: Some(tx) });
            tracing::debug!(port = bound.port, waiters = entry.waiters.len(), "sharing a passive port");
            return Some(PendingAccept { ports: Arc::clone(self), bound, policy, handoff: rx });
        }
        None
    }

    /// Gives `stream`, a connection from `from` accepted on `bound`, to the session waiting
    /// for it there; closes it if there is none.
    fn hand_over(&self, bound: &Arc<Bound>, stream: std::net::TcpStream, from: IpAddr) {
        let sender = self.slot(bound.port).and_then(|slot| {
            let mut slot = lock(slot);
            let entry = slot.as_deref_mut()?;
            if !entry.bound.as_ref().is_some_and(|b| Arc::ptr_eq(b, bound)) {
                return None;
            }
            entry.waiters.iter_mut().find(|w| w.peer == from)?.handoff.take()
        });
        match sender {
            // A waiter that has just gone drops the stream, which closes it.
            Some(sender) => {
                let _ = sender.send(stream);
            }
            None => {
                tracing::warn!(
                    %from,
                    port = bound.port,
                    "refused data connection from a foreign address: no session of it waits here"
                );
            }
        }
    }
}

impl PendingAccept {
    /// The client's data connection. Connections from other addresses go to the session that
    /// waits for them on this port, or are closed; the wait goes on until the session's
    /// data-connection deadline drops this future.
    pub(crate) async fn accept(mut self) -> io::Result<TcpStream> {
        if let Ok(stream) = self.handoff.try_recv() {
            return TcpStream::from_std(stream);
        }
        // What is already queued first, without registering the listener with the reactor.
        loop {
            match self.bound.socket.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
                Ok((sock, from)) => {
                    let Some(from) = from.as_socket() else { continue };
                    if let Some(stream) = self.sort(sock.into(), from).await? {
                        return Ok(stream);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A duplicate for this shard's reactor: other waiters may be watching the listener
        // from theirs. Dropped (and deregistered) before `self` leaves the listener.
        let listener = TcpListener::from_std(self.bound.socket.try_clone()?.into())?;
        let mut handoff_open = true;
        loop {
            tokio::select! {
                handed = &mut self.handoff, if handoff_open => match handed {
                    Ok(stream) => return TcpStream::from_std(stream),
                    Err(_) => handoff_open = false,
                },
                accepted = listener.accept() => {
                    let (sock, from) = accepted?;
                    if let Some(stream) = self.sort(sock.into_std()?, from).await? {
                        return Ok(stream);
                    }
                }
            }
        }
    }

    /// `Some(stream)` if `stream`, accepted from `from`, is this session's; otherwise it is
    /// handed over to the session it belongs to, or closed.
    async fn sort(&self, stream: std::net::TcpStream, from: SocketAddr) -> io::Result<Option<TcpStream>> {
        match self.policy.admit(stream, from).await? {
            Admission::Mine(stream) => Ok(Some(stream)),
            Admission::Other(stream, client) if self.bound.shareable => {
                self.ports.hand_over(&self.bound, stream, client);
                Ok(None)
            }
            Admission::Other(_, client) => {
                tracing::warn!(%client, peer = %self.policy.peer, "refused data connection from a foreign address");
                Ok(None)
            }
            Admission::Refused => Ok(None),
        }
    }
}

impl Drop for PendingAccept {
    fn drop(&mut self) {
        let Some(slot) = self.ports.slot(self.bound.port) else { return };
        // The listener is dropped outside the lock.
        let _last = {
            let mut slot = lock(slot);
            let Some(entry) = slot.as_deref_mut() else { return };
            if !entry.bound.as_ref().is_some_and(|b| Arc::ptr_eq(b, &self.bound)) {
                return;
            }
            entry.waiters.retain(|w| w.peer != self.policy.peer);
            if entry.waiters.is_empty() {
                entry.bound.take()
            } else {
                None
            }
        };
    }
}
