//! Making data connections: who may connect to a passive listener (`passive.rs` has the
//! listeners), and active connects.
//!
//! A passive listener accepts only from the control connection's peer address; a connection
//! from anywhere else is another session's on a shared port, or a hijack attempt, which is
//! closed while the wait goes on until the deadline.
//! Behind a balancer that forwards the passive range, data connections come from the
//! balancer: with the PROXY protocol on data connections, its header names the client that
//! is checked; without, a connection from a balancer address is taken as the client's.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::proto::address::canonical;
use std::sync::Arc;

use tokio::net::{TcpSocket, TcpStream};

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

/// What a connection accepted on a passive port is, for the session that accepted it.
pub(crate) enum Admission {
    /// Its data connection.
    Mine(TcpStream),
    /// A connection from this client, which may be another session's.
    Other(std::net::TcpStream, IpAddr),
    /// Closed already (a bad PROXY header).
    Refused,
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

    /// Whether its data connections can be told from other sessions' by address, so that it
    /// may share a passive port: not when any address may connect, nor when they all come
    /// from a balancer that does not say for whom.
    pub(crate) fn shareable(&self) -> bool {
        !self.allow_foreign && (self.balancers.is_empty() || self.balancer_header)
    }

    /// Whether `stream`, accepted from `from`, serves the session; balancer connections are
    /// resolved to the client behind them first (see the module doc).
    pub(crate) async fn admit(&self, stream: std::net::TcpStream, from: SocketAddr) -> io::Result<Admission> {
        if self.balancers.is_empty() {
            // Decided without the reactor: a connection that is not ours is not registered.
            return Ok(if self.allows(from) {
                Admission::Mine(TcpStream::from_std(stream)?)
            } else {
                Admission::Other(stream, canonical(from.ip()))
            });
        }
        let stream = TcpStream::from_std(stream)?;
        let client = if self.balancer_header {
            match crate::engine::proxy::admit(&self.balancers, &stream, from).await {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(%from, error = %e, "refused data connection: PROXY protocol");
                    return Ok(Admission::Refused);
                }
            }
        } else if crate::engine::proxy::trusted(&self.balancers, from.ip()) {
            return Ok(Admission::Mine(stream));
        } else {
            from
        };
        Ok(if self.allows(client) {
            Admission::Mine(stream)
        } else {
            Admission::Other(stream.into_std()?, canonical(client.ip()))
        })
    }

    fn allows(&self, from: SocketAddr) -> bool {
        self.allow_foreign || canonical(from.ip()) == self.peer
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
