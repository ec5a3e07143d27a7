//! Making data connections: passive listeners on leased ports, and active connects.
//!
//! A passive listener accepts only from the control connection's peer address; a connection
//! from anywhere else (a hijack attempt) is closed and the wait goes on until the deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::proto::address::canonical;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::ports::{PortLease, PortPool};

/// A passive listener waiting for the client; resolves to the data connection.
pub(crate) type PendingAccept = JoinHandle<io::Result<TcpStream>>;

/// Who may connect to a passive port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AcceptPolicy {
    pub(crate) peer: IpAddr,
    pub(crate) allow_foreign: bool,
    pub(crate) timeout: Duration,
}

fn bind_listener(ip: IpAddr, port: u16) -> io::Result<std::net::TcpListener> {
    let socket =
        Socket::new(Domain::for_address(SocketAddr::new(ip, port)), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&SocketAddr::new(ip, port).into())?;
    socket.listen(8)?;
    Ok(socket.into())
}

/// Opens a passive listener on `ip` with a port from the shard's pool and starts accepting.
/// Ports that another program holds are skipped. `Ok(None)`: the whole range is in use.
pub(crate) fn open_passive(
    pool: &Arc<PortPool>,
    shard: usize,
    ip: IpAddr,
    policy: AcceptPolicy,
) -> io::Result<Option<(u16, PendingAccept)>> {
    // Leases of ports that failed to bind are held until a port works, so the pool does not
    // hand the same busy port out again within this call.
    let mut busy: Vec<PortLease> = Vec::new();
    loop {
        let Some(lease) = pool.acquire(shard) else {
            return Ok(None);
        };
        match bind_listener(ip, lease.port()) {
            Ok(std_listener) => {
                let listener = TcpListener::from_std(std_listener)?;
                let port = lease.port();
                let task =
                    tokio::task::spawn_local(accept_from_peer(listener, lease, policy).in_current_span());
                return Ok(Some((port, task)));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                tracing::debug!(port = lease.port(), "passive port busy, skipping");
                busy.push(lease);
            }
            Err(e) => return Err(e),
        }
    }
}

async fn accept_from_peer(
    listener: TcpListener,
    lease: PortLease,
    policy: AcceptPolicy,
) -> io::Result<TcpStream> {
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let result = loop {
        let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
        match accepted {
            Err(_) => break Err(io::Error::new(io::ErrorKind::TimedOut, "no data connection")),
            Ok(Err(e)) => break Err(e),
            Ok(Ok((sock, from))) => {
                if policy.allow_foreign || canonical(from.ip()) == canonical(policy.peer) {
                    break Ok(sock);
                }
                tracing::warn!(%from, peer = %policy.peer, "refused data connection from a foreign address");
            }
        }
    };
    // The listener closes before the lease returns the port.
    drop(listener);
    drop(lease);
    result
}

/// Connects to the client for PORT/EPRT, from the control connection's local address and,
/// when asked, from `source_port` (control port − 1, RFC 959's port 20). That port needs the
/// privilege to bind it and may be busy; the connection then comes from an ephemeral port.
pub(crate) async fn connect_active(
    local_ip: IpAddr,
    source_port: Option<u16>,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = || -> io::Result<TcpSocket> {
        let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        Ok(socket)
    };
    let mut bound = None;
    if let Some(port) = source_port {
        // Every active connection binds the same source port; their 4-tuples still differ.
        let s = socket()?;
        s.set_reuseport(true)?;
        match s.bind(SocketAddr::new(local_ip, port)) {
            Ok(()) => bound = Some(s),
            Err(e) => tracing::debug!(port, error = %e, "cannot use the active source port, using any"),
        }
    }
    let socket = match bound {
        Some(s) => s,
        None => {
            let s = socket()?;
            s.bind(SocketAddr::new(local_ip, 0))?;
            s
        }
    };
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Ok(res) => res,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "active connect timed out")),
    }
}
