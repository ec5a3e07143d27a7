//! The embedding API: a builder that validates the configuration, and a handle to a running
//! server.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::ban::BanPolicy;
use crate::config::Config;
use crate::engine;
use crate::events::EventListener;
use crate::session::TlsPolicy;
use crate::storage::{Storage, UploadPolicy};
use crate::tls::{TlsAcceptor, TlsError};
use crate::types::HashAlgo;

/// An FTP server, configured and ready to run.
///
/// ```no_run
/// use ringftp::{FsStorage, Server, User, UserList};
///
/// let storage = FsStorage::new("/srv/ftp")?;
/// let users = UserList::new().user_with_password(User::new("alice"), b"secret");
/// let server = Server::builder(storage, users)
///     .listen("127.0.0.1:2121".parse()?)
///     .passive_ports(50000..=50999)
///     .build()?;
/// server.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server<S, A> {
    config: Config,
    storage: Arc<S>,
    auth: Arc<A>,
    events: Option<Arc<dyn EventListener>>,
}

impl<S, A> fmt::Debug for Server<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<S: Storage, A: Authenticator> Server<S, A> {
    /// Starts configuring a server that serves `storage` to the users `auth` accepts.
    pub fn builder(storage: S, auth: A) -> ServerBuilder<S, A> {
        ServerBuilder { config: Config::default(), storage, auth, events: None }
    }

    /// Runs the server on the calling thread until it fails; one shard thread per core.
    pub fn run(self) -> Result<(), StartError> {
        self.start()?.wait();
        Ok(())
    }

    /// Starts the server in the background and returns a handle to it. Returns once every
    /// shard is accepting, or with the reason one could not start.
    pub fn start(self) -> Result<ServerHandle, StartError> {
        engine::start(self.config, self.storage, self.auth, self.events)
    }
}

/// Configures a [`Server`]; every option has a safe default.
pub struct ServerBuilder<S, A> {
    config: Config,
    storage: S,
    auth: A,
    events: Option<Arc<dyn EventListener>>,
}

impl<S, A> fmt::Debug for ServerBuilder<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<S: Storage, A: Authenticator> ServerBuilder<S, A> {
    /// Adds an address to listen on (repeat for IPv4 and IPv6). Port 0 picks a free port,
    /// shared by all shards; [`ServerHandle::local_addrs`] tells which. Default
    /// `127.0.0.1:2121` when none is given.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen.push(addr);
        self
    }

    /// Serves a listening socket made elsewhere: by systemd socket activation, or a supervisor
    /// that binds port 21 and drops its privileges. Every shard accepts on a duplicate of it,
    /// so they share its one queue (no SO_REUSEPORT spreading). Repeatable, and combines with
    /// [`ServerBuilder::listen`]; when neither is given the server listens on `127.0.0.1:2121`.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.config.listeners.push(Arc::new(listener));
        self
    }

    /// The passive data port range (default 49152-65534), split between the shards. It may be
    /// narrower than the number of sessions: once every port is taken, sessions of different
    /// client addresses share a port, their data connections told apart by address.
    pub fn passive_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.config.passive_ports = ports;
        self
    }

    /// The address announced in PASV replies, for a server behind NAT (default: the address
    /// the client connected to).
    pub fn public_address(mut self, ip: IpAddr) -> Self {
        self.config.public_address = Some(ip);
        self
    }

    /// The address announced in PASV replies to clients in `net` (matched on the client's
    /// real address, after the PROXY protocol); rules are tried in the order given, and the
    /// first match wins over [`public_address`](Self::public_address) and
    /// [`public_host`](Self::public_host). For a server that clients reach through
    /// different NATs, or both directly and from outside.
    pub fn public_address_for(mut self, net: ipnet::IpNet, ip: IpAddr) -> Self {
        self.config.public_address_rules.push((net, ip));
        self
    }

    /// A DNS name whose address is announced in PASV replies (an IPv4 address if it has
    /// one): resolved at start (a name that does not resolve stops the start) and again
    /// every minute in a background thread, so a balancer whose address changes is
    /// followed without a restart. Wins over [`public_address`](Self::public_address).
    pub fn public_host(mut self, name: impl Into<String>) -> Self {
        self.config.public_host = Some(name.into());
        self
    }

    /// Trusts connections from `net` (a load balancer) to start with a PROXY protocol
    /// header (v1 or v2) naming the real client, whose address then drives limits, bans,
    /// the data-connection checks, logs and events. From these addresses the header is
    /// required; from any other address a connection that starts with one is refused.
    /// Call once per network.
    pub fn proxy_protocol_from(mut self, net: ipnet::IpNet) -> Self {
        let mut nets = self.config.proxy_protocol_from.to_vec();
        nets.push(net);
        self.config.proxy_protocol_from = nets.into();
        self
    }

    /// Whether the balancers of [`proxy_protocol_from`](Self::proxy_protocol_from) also
    /// send the header on passive data connections (default off). On, a data connection
    /// is checked against the client its header names; off, a data connection from a
    /// balancer address is accepted as the client's, since nothing says who is behind it.
    pub fn proxy_protocol_data(mut self, on: bool) -> Self {
        self.config.proxy_protocol_data = on;
        self
    }

    /// Number of shards, one thread and io_uring each (default: available cores).
    pub fn cores(mut self, cores: usize) -> Self {
        self.config.cores = cores;
        self
    }

    /// The text of the 220 greeting.
    pub fn greeting(mut self, text: impl Into<String>) -> Self {
        self.config.greeting = text.into();
        self
    }

    /// Closes a control connection with no command for this long (default 300 s); no
    /// timeout runs while a transfer is in progress.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.idle = timeout;
        self
    }

    /// Closes a connection that has not logged in after this long (default 60 s), with 421.
    pub fn login_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.login = timeout;
        self
    }

    /// The most sessions at once, over all shards (default 20,000; 0: no limit). Beyond it a
    /// new connection gets 421 and is closed.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.config.max_sessions = n;
        self
    }

    /// The most sessions at once from one client address (default 256; 0: no limit).
    pub fn max_sessions_per_ip(mut self, n: u32) -> Self {
        self.config.max_sessions_per_ip = n;
        self
    }

    /// How long to wait for a data connection to be made (default 30 s), then 425. The wait
    /// starts at the transfer command. A passive port opened by PASV/EPSV that no transfer
    /// claims within this time is closed and its port returned to the pool.
    pub fn data_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.data = timeout;
        self
    }

    /// Aborts a transfer that moves no byte for this long (default 300 s), with 426, in
    /// either direction: a client that stops reading a download or stops sending an upload
    /// does not hold its data connection, pipe and socket buffers forever (vsftpd's
    /// `data_connection_timeout`, proftpd's `TimeoutStalled`).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.stall = timeout;
        self
    }

    /// The longest command line accepted (default 4096 bytes); longer ones get 500.
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.config.max_line = bytes;
        self
    }

    /// Failed logins after which the connection is closed (default 3).
    pub fn max_login_failures(mut self, n: u32) -> Self {
        self.config.max_login_failures = n;
        self
    }

    /// How long [`ServerHandle::shutdown`] lets running transfers finish (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// The size of the pipes downloads splice through (default 256 KiB; the kernel may grant
    /// less: `/proc/sys/fs/pipe-max-size`, and a per-user budget for non-root servers,
    /// `fs.pipe-user-pages-soft`, 64 MiB by default).
    pub fn pipe_size(mut self, bytes: usize) -> Self {
        self.config.pipe_size = bytes;
        self
    }

    /// The size of the pipes uploads splice through (default 1 MiB). Each pipeful written to
    /// the file is one io_uring round trip through a kernel worker; a full 1 MiB pipe makes
    /// a quarter of the round trips of 256 KiB, which took STOR from about 0.83 to 0.62 CPU
    /// seconds per GB (`ringftp-bench stor --size 1G`, tmpfs, 2 vCPUs). Downloads splice
    /// cached data on the shard itself and gain nothing from larger pipes.
    pub fn upload_pipe_size(mut self, bytes: usize) -> Self {
        self.config.upload_pipe_size = bytes;
        self
    }

    /// Which runtime the shards run on (default [`Engine::Auto`]: io_uring where the kernel
    /// allows it, else epoll).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.config.engine = engine;
        self
    }

    /// Whether binary transfers of files move by splice through a pipe (default), or
    /// through a userspace buffer (for comparison, or for filesystems without splice).
    pub fn splice(mut self, enabled: bool) -> Self {
        self.config.splice = enabled;
        self
    }

    /// Computes the digest of every whole upload (STOR or STOU from offset 0) while it streams
    /// and keeps it with the file ([`crate::Storage::store_digest`]; the filesystem backend
    /// uses an extended attribute; a [`crate::DataSink::StreamWithDigest`] gets it before its
    /// shutdown, and the S3 backend keeps it as object metadata), so
    /// that HASH and the X digests answer at once while the file keeps its size and mtime
    /// (default `None`: off). Spliced uploads feed the hasher from a `tee(2)` of their pipe,
    /// on a thread of their own past the first 2 MiB.
    pub fn hash_uploads(mut self, algo: Option<HashAlgo>) -> Self {
        self.config.hash_uploads = algo;
        self
    }

    /// What an interrupted upload leaves: the partial file ([`UploadPolicy::Keep`], the
    /// default, so REST can resume it) or nothing ([`UploadPolicy::Atomic`]).
    pub fn uploads(mut self, policy: UploadPolicy) -> Self {
        self.config.uploads = policy;
        self
    }

    /// Makes active-mode (PORT/EPRT) data connections come from the control port minus one
    /// (port 20 for a server on 21), as RFC 959 describes and some firewalls expect. Binding
    /// a port below 1024 needs CAP_NET_BIND_SERVICE; without it, or when the port is busy,
    /// the connection comes from an ephemeral port. Default off.
    pub fn active_source_port(mut self, enabled: bool) -> Self {
        self.config.active_source_port = enabled;
        self
    }

    /// Allows PORT/EPRT to an address other than the client's or to a port below 1024, and
    /// passive connections from other addresses. This enables FTP bounce attacks and data
    /// connection hijacking; only for closed networks with FXP-style setups.
    pub fn dangerous_allow_foreign_data_connections(mut self, allow: bool) -> Self {
        self.config.dangerous_foreign_data = allow;
        self
    }

    /// Receives [`Event`](crate::events::Event)s: logins, finished transfers, deletions...
    /// It is called on shard threads and must not block; [`crate::events::channel`] gives a
    /// bounded queue that counts what a slow host misses.
    pub fn events(mut self, listener: impl EventListener) -> Self {
        self.events = Some(Arc::new(listener));
        self
    }

    /// Keeps a ban list shared by all shards: addresses whose logins fail (or that are refused)
    /// too often are turned away at accept with 421 for a time that grows on repeat, and user
    /// names can be locked out after failures from any address; see [`crate::ban`]. Default:
    /// no ban list (failures count per connection only, see `max_login_failures`).
    pub fn ban_policy(mut self, policy: BanPolicy) -> Self {
        self.config.ban = Some(policy);
        self
    }

    /// Serves Prometheus metrics at `http://ADDR/metrics` (port 0: any free port, see
    /// [`ServerHandle::metrics_addr`]).
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.config.metrics = Some(addr);
        self
    }

    /// FTPS (RFC 4217): AUTH TLS on the control listeners, and TLS data connections after
    /// PROT P. Both are optional for the client until [`ServerBuilder::tls_control`] or
    /// [`ServerBuilder::tls_data`] says `Required`.
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.config.tls = Some(acceptor);
        self
    }

    /// Whether clients must use AUTH TLS before USER (default optional once
    /// [`ServerBuilder::tls`] is set; `Off` leaves AUTH TLS unanswered).
    pub fn tls_control(mut self, policy: TlsPolicy) -> Self {
        self.config.tls_control = policy;
        self
    }

    /// Whether data connections must be TLS (PROT P): a transfer in clear is then 521.
    pub fn tls_data(mut self, policy: TlsPolicy) -> Self {
        self.config.tls_data = policy;
        self
    }

    /// Let anonymous logins use clear text where TLS is required (public read-only mirrors).
    pub fn tls_anonymous_exempt(mut self, exempt: bool) -> Self {
        self.config.tls_anonymous_exempt = exempt;
        self
    }

    /// Adds an implicit FTPS listener (TLS from the first byte, PROT P implied; port 990 by
    /// convention). Needs [`ServerBuilder::tls`]. In [`ServerHandle::local_addrs`] these come
    /// after the [`ServerBuilder::listen`] addresses and before host-made listeners.
    pub fn implicit_listen(mut self, addr: SocketAddr) -> Self {
        self.config.implicit_listen.push(addr);
        self
    }

    /// Checks the configuration.
    pub fn build(mut self) -> Result<Server<S, A>, BuildError> {
        let c = &mut self.config;
        if c.tls.is_some() {
            // A certificate with no policy given means TLS when the client asks.
            if c.tls_control == TlsPolicy::Off {
                c.tls_control = TlsPolicy::Optional;
            }
            if c.tls_data == TlsPolicy::Off {
                c.tls_data = TlsPolicy::Optional;
            }
        } else if !c.implicit_listen.is_empty() {
            return Err(BuildError::ImplicitWithoutTls);
        }
        if c.listen.is_empty() && c.listeners.is_empty() {
            c.listen.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2121));
        }
        if c.passive_ports.is_empty() || *c.passive_ports.start() == 0 {
            return Err(BuildError::PassivePorts);
        }
        if c.cores == 0 || c.cores > 1024 {
            return Err(BuildError::Cores);
        }
        if c.max_line < 16 {
            return Err(BuildError::MaxLineLength);
        }
        if c.greeting.contains(['\r', '\n']) {
            return Err(BuildError::Greeting);
        }
        if !c.timeouts.valid() {
            return Err(BuildError::Timeout);
        }
        Ok(Server {
            config: self.config,
            storage: Arc::new(self.storage),
            auth: Arc::new(self.auth),
            events: self.events,
        })
    }
}

/// A configuration [`ServerBuilder::build`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The passive port range is empty or includes port 0.
    PassivePorts,
    /// Zero cores, or more than 1024.
    Cores,
    /// A maximum line length under 16 bytes would refuse ordinary commands.
    MaxLineLength,
    /// The greeting contains a line break.
    Greeting,
    /// A timeout of zero.
    Timeout,
    /// An implicit FTPS listener without a certificate ([`ServerBuilder::tls`]).
    ImplicitWithoutTls,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildError::PassivePorts => "the passive port range is empty or includes port 0",
            BuildError::Cores => "cores must be between 1 and 1024",
            BuildError::MaxLineLength => "the maximum line length must be at least 16 bytes",
            BuildError::Greeting => "the greeting must be one line",
            BuildError::Timeout => "timeouts must be longer than zero",
            BuildError::ImplicitWithoutTls => "implicit FTPS listeners need a TLS certificate",
        })
    }
}

impl std::error::Error for BuildError {}

/// The runtime the shards run on. Both serve the same protocol with the same sessions,
/// listeners, port pools and pipes, and drive every socket by readiness; they differ only in
/// how file I/O that may wait for the disk leaves the shard thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Engine {
    /// io_uring if `io_uring_setup` works here, else epoll (with one warning that names why).
    #[default]
    Auto,
    /// tokio-uring: file I/O runs in kernel io-wq workers. Fails to start where io_uring is
    /// blocked (seccomp, `kernel.io_uring_disabled`, old kernels).
    Uring,
    /// Plain tokio (epoll): file I/O runs on a small blocking-thread pool per shard. Works
    /// wherever Linux does, e.g. under Docker's default seccomp profile.
    Epoll,
}

/// Why a server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A listen address could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// io_uring is unavailable; the message names the cause and the fix.
    IoUring(std::io::Error),
    /// A shard thread could not be started.
    Thread(std::io::Error),
    /// The [`ServerBuilder::public_host`] name did not resolve.
    Resolve(String, std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::IoUring(e) => {
                let cause = match e.raw_os_error() {
                    Some(libc::EPERM) => {
                        "blocked: kernel.io_uring_disabled is set, or a container seccomp profile \
                         forbids io_uring_setup (Docker 25+ does by default). Fix: `sysctl -w \
                         kernel.io_uring_disabled=0`, or run the container with a seccomp \
                         profile that allows io_uring (e.g. --security-opt seccomp=unconfined)"
                    }
                    Some(libc::ENOSYS) => "this kernel has no io_uring (Linux 5.7 or newer is needed)",
                    Some(libc::ENOMEM) => {
                        "not enough locked memory for the ring. Fix: raise `ulimit -l` (RLIMIT_MEMLOCK)"
                    }
                    _ => "io_uring_setup failed",
                };
                write!(f, "io_uring is not available ({e}): {cause}")
            }
            StartError::Thread(e) => write!(f, "cannot start a shard thread: {e}"),
            StartError::Resolve(name, e) => write!(f, "cannot resolve the public address {name:?}: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind(_, e)
            | StartError::IoUring(e)
            | StartError::Thread(e)
            | StartError::Resolve(_, e) => Some(e),
        }
    }
}

/// A running server.
///
/// Dropping the handle starts a graceful shutdown (as [`ShutdownTrigger::trigger`] does, even
/// while clones of the trigger live) and stops the metrics endpoint, but does not wait for the
/// shards: they finish in the background within the grace period. Call [`shutdown`] to wait
/// for the end, or [`wait`] to keep serving until a trigger fires.
///
/// [`shutdown`]: ServerHandle::shutdown
/// [`wait`]: ServerHandle::wait
#[derive(Debug)]
pub struct ServerHandle {
    pub(crate) local_addrs: Vec<SocketAddr>,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
    /// The metrics thread and its stop flag.
    pub(crate) metrics: Option<(std::thread::JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>)>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) live: LiveLimits,
}

impl ServerHandle {
    /// The addresses the server listens on (with the real port where 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The metrics address, if [`ServerBuilder::metrics`] was set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting, lets running transfers finish within the grace period, closes
    /// every session with 421, and waits for the shards to end.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait();
    }

    /// Waits until the server ends: after a [`ShutdownTrigger`] fires, or never.
    pub fn wait(mut self) {
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        self.stop_metrics();
    }

    /// Reads the TLS certificate and key again: new connections use them, open sessions
    /// keep theirs. On error the old ones stay. Without TLS this does nothing.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.as_ref().map_or(Ok(()), TlsAcceptor::reload)
    }

    /// The limits, timeouts and ban policy that can change while the server runs (for a
    /// reload), cheap to clone and send.
    pub fn live_limits(&self) -> LiveLimits {
        self.live.clone()
    }

    /// A signal that shuts the server down from another thread (e.g. a Ctrl-C handler).
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.shutdown.clone())
    }

    /// Stops the metrics thread and waits for it: at most its 50 ms poll, or the end of a
    /// scrape it is answering (bounded by 2 s socket timeouts).
    fn stop_metrics(&mut self) {
        if let Some((thread, stop)) = self.metrics.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    /// Signals shutdown, stops the metrics thread (so its port is free when this returns),
    /// and leaves the shard threads to end on their own.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.stop_metrics();
    }
}

/// The settings a running server takes new values of (a reload): the session limits of
/// [`ServerBuilder::max_sessions`] and [`ServerBuilder::max_sessions_per_ip`], the login, idle,
/// data and stall timeouts, and the ban list's policy. New values apply to connections accepted
/// from then on; sessions over a lowered limit stay until they end. Every shard sees them at
/// its next accept, and an open session at its next wake-up (atomics and one `ArcSwap`, no
/// lock).
#[derive(Debug, Clone)]
pub struct LiveLimits {
    pub(crate) limits: Arc<crate::engine::Limits>,
    pub(crate) timeouts: Arc<crate::engine::LiveTimeouts>,
    pub(crate) bans: Option<Arc<crate::ban::BanList>>,
}

impl LiveLimits {
    /// Sessions in total and per client address (`0`: no limit).
    pub fn set_max_sessions(&self, total: usize, per_ip: u32) {
        self.limits.set(total, per_ip);
    }

    /// New timeouts: new sessions start with them, and an open session uses them for each
    /// deadline it sets from its next command on (the one running now stays), while a
    /// running transfer's data and stall limits change at once. A zero timeout is refused
    /// ([`BuildError::Timeout`]) and nothing changes.
    pub fn set_timeouts(&self, timeouts: crate::Timeouts) -> Result<(), BuildError> {
        if !timeouts.valid() {
            return Err(BuildError::Timeout);
        }
        self.timeouts.set(timeouts);
        Ok(())
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> crate::Timeouts {
        self.timeouts.get().1
    }

    /// Replaces the ban list's allow-list; `false` (and nothing done) when the server has no
    /// ban list ([`ServerBuilder::ban_policy`]).
    pub fn set_ban_allow(&self, nets: impl IntoIterator<Item = crate::ban::IpNet>) -> bool {
        match &self.bans {
            Some(bans) => {
                bans.set_allow(nets);
                true
            }
            None => false,
        }
    }

    /// Replaces the ban list's thresholds, window, ban times and allow-list (not its table
    /// size; see [`crate::ban::BanList::set_policy`]); `false` (and nothing done) when the
    /// server has no ban list. A policy with both thresholds 0 turns banning off until the
    /// next change.
    pub fn set_ban_policy(&self, policy: &BanPolicy) -> bool {
        match &self.bans {
            Some(bans) => {
                bans.set_policy(policy);
                true
            }
            None => false,
        }
    }
}

/// Shuts the server down when triggered; cheap to clone and send.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(tokio::sync::watch::Sender<bool>);

impl ShutdownTrigger {
    /// Starts a graceful shutdown.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}
