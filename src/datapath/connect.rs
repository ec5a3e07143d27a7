//! Making data connections: passive listeners on leased ports, and active connects.
//!
//! A passive listener accepts only from the control connection's peer address; a connection
//! from anywhere else (a hijack attempt) is closed and the wait goes on until the deadline.
//! Behind a balancer that forwards the passive range, data connections come from the
//! balancer: with the PROXY protocol on data connections, its header names the client that
//! is checked; without, a connection from a balancer address is taken as the client's.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::proto::address::canonical;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::ports::{PortLease, PortPool};

/// A passive listener on a leased port, waiting for its transfer command.
///
/// Nothing watches it until then: the client connects before it sends RETR or STOR, so the
/// connection is usually in the accept queue already and is taken without waiting, and the
/// shard is not woken once for the connect and again for the command. Dropping it closes the
/// listener and frees the port at once.
#[derive(Debug)]
pub(crate) struct PendingAccept {
    listener: Socket,
    policy: AcceptPolicy,
    /// Declared after the listener: the port goes back to the pool only once it is closed.
    _lease: PortLease,
}

/// Who may connect to a passive port.
#[derive(Debug, Clone)]
pub(crate) struct AcceptPolicy {
    pub(crate) peer: IpAddr,
    pub(crate) allow_foreign: bool,
    /// The PROXY protocol balancers (empty: none).
    pub(crate) balancers: Arc<[ipnet::IpNet]>,
    /// Whether the balancers send a PROXY header on data connections too.
    pub(crate) balancer_header: bool,
}

fn bind_listener(ip: IpAddr, port: u16) -> io::Result<Socket> {
    let addr = SocketAddr::new(ip, port);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(8)?;
    Ok(socket)
}

/// Opens a passive listener on `ip` with a port from the shard's pool.
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
            Ok(listener) => {
                let port = lease.port();
                return Ok(Some((port, PendingAccept { listener, policy, _lease: lease })));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                tracing::debug!(port = lease.port(), "passive port busy, skipping");
                busy.push(lease);
            }
            Err(e) => return Err(e),
        }
    }
}

impl PendingAccept {
    /// The client's data connection. Connections from other addresses are closed and the
    /// wait goes on, until the session's data-connection deadline drops this future.
    pub(crate) async fn accept(self) -> io::Result<TcpStream> {
        let PendingAccept { listener, policy, _lease: lease } = self;
        let result = accept_from(listener, &policy).await;
        // The listener is closed by now; only then may the port go back to the pool.
        drop(lease);
        result
    }
}

async fn accept_from(listener: Socket, policy: &AcceptPolicy) -> io::Result<TcpStream> {
    // What is already queued first, without registering the listener with the reactor.
    loop {
        match listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
            Ok((sock, from)) => {
                let Some(from) = from.as_socket() else { continue };
                if policy.balancers.is_empty() {
                    if policy.allows(from) {
                        return TcpStream::from_std(sock.into());
                    }
                } else if let Some(stream) = policy.admit(TcpStream::from_std(sock.into())?, from).await {
                    return Ok(stream);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let listener = TcpListener::from_std(listener.into())?;
    loop {
        match listener.accept().await {
            Err(e) => return Err(e),
            Ok((sock, from)) => {
                if let Some(stream) = policy.admit(sock, from).await {
                    return Ok(stream);
                }
            }
        }
    }
}

impl AcceptPolicy {
    /// The policy for a passive listener of a session whose client is `peer`.
    pub(crate) fn new(config: &crate::config::Config, peer: IpAddr) -> Self {
        AcceptPolicy {
            peer: canonical(peer),
            allow_foreign: config.dangerous_foreign_data,
            balancers: Arc::clone(&config.proxy_protocol_from),
            balancer_header: config.proxy_protocol_data,
        }
    }

    /// `stream` if it may serve the session; balancer connections are resolved to the
    /// client behind them first (see the module doc).
    async fn admit(&self, stream: TcpStream, from: SocketAddr) -> Option<TcpStream> {
        let client = if self.balancer_header {
            match crate::engine::proxy::admit(&self.balancers, &stream, from).await {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(%from, error = %e, "refused data connection: PROXY protocol");
                    return None;
                }
            }
        } else if crate::engine::proxy::trusted(&self.balancers, from.ip()) {
            return Some(stream);
        } else {
            from
        };
        self.allows(client).then_some(stream)
    }

    fn allows(&self, from: SocketAddr) -> bool {
        if self.allow_foreign || canonical(from.ip()) == canonical(self.peer) {
            return true;
        }
        tracing::warn!(%from, peer = %self.peer, "refused data connection from a foreign address");
        false
    }
}

/// Connects to the client for PORT/EPRT, from the control connection's local address and,
/// when asked, from `source_port` (control port − 1, RFC 959's port 20). That port needs the
/// privilege to bind it and may be busy; the connection then comes from an ephemeral port.
pub(crate) async fn connect_active(
    local_ip: IpAddr,
    source_port: Option<u16>,
    target: SocketAddr,
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
    // The session's data-connection deadline bounds this wait.
    socket.connect(target).await
}
