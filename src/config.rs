//! The server configuration as the engines take it: built and checked by
//! [`crate::ServerBuilder`], shared read-only by every shard.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ipnet::IpNet;

use crate::storage::UploadPolicy;

/// Everything the engine needs to know; built and checked by [`ServerBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) listen: Vec<SocketAddr>,
    /// Listening sockets made by the host (socket activation); see
    /// [`crate::ServerBuilder::listener`].
    pub(crate) listeners: Vec<std::sync::Arc<std::net::TcpListener>>,
    pub(crate) passive_ports: RangeInclusive<u16>,
    pub(crate) public_address: Option<IpAddr>,
    pub(crate) cores: usize,
    pub(crate) greeting: String,
    /// The starting timeouts; the engine keeps the ones in force (a reload changes them).
    pub(crate) timeouts: crate::types::Timeouts,
    pub(crate) max_sessions: usize,
    pub(crate) max_sessions_per_ip: u32,
    pub(crate) max_line: usize,
    pub(crate) max_login_failures: u32,
    pub(crate) shutdown_grace: Duration,
    pub(crate) pipe_size: usize,
    pub(crate) upload_pipe_size: usize,
    pub(crate) splice: bool,
    pub(crate) hash_uploads: Option<crate::types::HashAlgo>,
    pub(crate) uploads: UploadPolicy,
    pub(crate) dangerous_foreign_data: bool,
    pub(crate) active_source_port: bool,
    pub(crate) metrics: Option<SocketAddr>,
    /// The ban list's policy (`None`: no ban list); see [`crate::ServerBuilder::ban_policy`].
    pub(crate) ban: Option<crate::ban::BanPolicy>,
    pub(crate) engine: crate::Engine,
    /// FTPS: the certificate and its settings (`None`: no TLS at all).
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
    /// TLS policy of control connections (AUTH TLS) and of data connections (PROT P).
    pub(crate) tls_control: crate::session::TlsPolicy,
    pub(crate) tls_data: crate::session::TlsPolicy,
    /// Anonymous logins may stay in clear text where TLS is required.
    pub(crate) tls_anonymous_exempt: bool,
    /// Implicit FTPS listeners: TLS from the first byte.
    pub(crate) implicit_listen: Vec<SocketAddr>,
    /// PASV addresses per client network, first match wins; see
    /// [`crate::ServerBuilder::public_address_for`].
    pub(crate) public_address_rules: Vec<(IpNet, IpAddr)>,
    /// A DNS name announced in PASV replies, resolved at start and then on a timer into
    /// `public_resolved` (read lock-free on every PASV).
    pub(crate) public_host: Option<String>,
    pub(crate) public_resolved: Arc<ArcSwapOption<IpAddr>>,
    /// Balancers whose connections start with a PROXY protocol header; see
    /// [`crate::ServerBuilder::proxy_protocol_from`].
    pub(crate) proxy_protocol_from: Arc<[IpNet]>,
    /// Whether the balancers also send the header on passive data connections.
    pub(crate) proxy_protocol_data: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            listeners: Vec::new(),
            passive_ports: 49152..=65534,
            public_address: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            greeting: "ringftp ready".into(),
            timeouts: crate::types::Timeouts::default(),
            max_sessions: 20_000,
            max_sessions_per_ip: 256,
            max_line: 4096,
            max_login_failures: 3,
            shutdown_grace: Duration::from_secs(10),
            pipe_size: 256 * 1024,
            upload_pipe_size: 1024 * 1024,
            splice: true,
            hash_uploads: None,
            uploads: UploadPolicy::Keep,
            dangerous_foreign_data: false,
            active_source_port: false,
            metrics: None,
            ban: None,
            engine: crate::Engine::Auto,
            tls: None,
            tls_control: crate::session::TlsPolicy::Off,
            tls_data: crate::session::TlsPolicy::Off,
            tls_anonymous_exempt: false,
            implicit_listen: Vec::new(),
            public_address_rules: Vec::new(),
            public_host: None,
            public_resolved: Arc::new(ArcSwapOption::empty()),
            proxy_protocol_from: Arc::from(Vec::new()),
            proxy_protocol_data: false,
        }
    }
}
