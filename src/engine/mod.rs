//! The thread-per-core runtime: one shard per core, each a thread with its own runtime, its
//! own control listeners (SO_REUSEPORT: the kernel spreads connections over the shards), its
//! own pipes and its own slice of the passive ports.
//!
//! Two engines run this same shard code; all of it is shared except what `uring.rs` and
//! `epoll.rs` hold, which is two things: how the shard thread's runtime is built
//! (tokio-uring, or a plain tokio current-thread runtime; both are a `LocalSet`, so tasks are
//! spawned with `spawn_local` alike), and how the data path does file I/O that may wait for
//! the disk ([`FileIo`]: io_uring operations, or the runtime's blocking pool). Every socket
//! (listeners, control and data connections) is a `tokio::net` socket driven by readiness on
//! both. [`Engine::Auto`] probes io_uring once at start and falls back to epoll.
//!
//! A session lives and dies on the shard that accepted it, with its data connections, so
//! per-shard state is plain `Rc`/`Cell`: nothing is locked per command or per byte. The only
//! things shared between threads are the configuration, the storage and authenticator
//! (immutable, behind `Arc`), the lock-free port pool, and the shutdown signal.

mod control;
mod epoll;
mod limits;
pub(crate) mod proxy;
mod public;
mod uring;
mod users;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::ban::BanList;
use crate::config::Config;
use crate::datapath::{FileIo, PassivePorts, PipePool};
use crate::ports::PortPool;
use crate::server::{Engine, ServerHandle, StartError};
use crate::storage::Storage;
pub(crate) use limits::{Limits, LiveTimeouts};
use users::UserRegistry;

use crate::events::EventListener;
use crate::metrics::{self, Metrics};

/// What every task of one shard shares.
pub(crate) struct Shard<S, A> {
    pub(crate) id: usize,
    pub(crate) config: Arc<Config>,
    pub(crate) storage: Arc<S>,
    pub(crate) auth: Arc<A>,
    /// The passive ports, shared by all shards.
    pub(crate) ports: Arc<PassivePorts>,
    pub(crate) limits: Arc<Limits>,
    /// The login, idle, data and stall timeouts in force (a reload changes them).
    pub(crate) timeouts: Arc<LiveTimeouts>,
    pub(crate) users: Arc<UserRegistry>,
    pub(crate) metrics: Arc<Metrics>,
    /// Addresses and user names refused after too many failures, shared by all shards.
    pub(crate) bans: Option<Arc<BanList>>,
    pub(crate) events: Option<Arc<dyn EventListener>>,
    /// Pipes for downloads, and larger ones for uploads (see `Config::upload_pipe_size`).
    pub(crate) pipes: Rc<PipePool>,
    pub(crate) upload_pipes: Rc<PipePool>,
    /// How the data path does file I/O that may block: the one thing the engines' shards do
    /// differently.
    pub(crate) file_io: FileIo,
    pub(crate) sessions: Cell<usize>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Where control connections are read into: one buffer per shard, not per session.
    pub(crate) scratch: RefCell<Box<[u8]>>,
}

/// How long start-up retries a bind that fails with "address in use": right after `kill -9`
/// the kernel takes a few milliseconds to tear down the old process's sockets.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// [`try_bind_listeners`], retried for up to [`BIND_RETRY`] while the address is in use.
fn bind_listeners(addr: SocketAddr, shards: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let deadline = std::time::Instant::now() + BIND_RETRY;
    loop {
        match try_bind_listeners(addr, shards) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Binds one listener per shard on `addr` with SO_REUSEPORT; port 0 becomes the port the
/// first one got, so all shards share it.
fn try_bind_listeners(addr: SocketAddr, shards: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // SO_REUSEPORT would let this server silently share the port with another process
        // (another ringftpd left running takes half the connections). A probe bound without
        // it fails with "address in use" if anything listens there already.
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        if addr.is_ipv6() {
            probe.set_only_v6(true)?;
        }
        probe.bind(&addr.into())?;
        drop(probe);
    }
    let mut addr = addr;
    let mut out = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            // So that [::]:21 and 0.0.0.0:21 can both be given.
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

/// A listener the host made ([`crate::ServerBuilder::listener`]): one duplicate of it per
/// shard, all accepting from the same queue; and its address.
fn inherited_listeners(
    listener: &std::net::TcpListener,
    shards: usize,
) -> Result<(SocketAddr, Vec<std::net::TcpListener>), StartError> {
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let addr = listener.local_addr().map_err(|e| StartError::Bind(unknown, e))?;
    // The shards' accept loops need it non-blocking; the flag is on the shared file
    // description, so one call covers every duplicate.
    listener.set_nonblocking(true).map_err(|e| StartError::Bind(addr, e))?;
    let dups = (0..shards).map(|_| listener.try_clone()).collect::<io::Result<Vec<_>>>();
    Ok((addr, dups.map_err(|e| StartError::Bind(addr, e))?))
}

/// Binds the listeners, starts the shards, and returns once all of them run.
pub(crate) fn start<S: Storage, A: Authenticator>(
    config: Config,
    storage: Arc<S>,
    auth: Arc<A>,
    events: Option<Arc<dyn EventListener>>,
) -> Result<ServerHandle, StartError> {
    let kind = choose(config.engine);
    public::start_resolver(&config)?;
    let shards = config.cores;
    // Each listener with whether it is implicit FTPS (TLS from the first byte).
    let mut per_shard: Vec<Vec<(std::net::TcpListener, bool)>> = (0..shards).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::new();
    let implicit = if config.tls.is_some() { &config.implicit_listen[..] } else { &[] };
    let bound = config.listen.iter().map(|a| (a, false)).chain(implicit.iter().map(|a| (a, true)));
    for (&addr, implicit) in bound {
        let listeners = bind_listeners(addr, shards).map_err(|e| StartError::Bind(addr, e))?;
        if let Some(first) = listeners.first() {
            local_addrs.push(first.local_addr().map_err(|e| StartError::Bind(addr, e))?);
        }
        for (slot, l) in per_shard.iter_mut().zip(listeners) {
            slot.push((l, implicit));
        }
    }
    for listener in &config.listeners {
        let (addr, listeners) = inherited_listeners(listener, shards)?;
        local_addrs.push(addr);
        for (slot, l) in per_shard.iter_mut().zip(listeners) {
            slot.push((l, false));
        }
    }
    let ports = PortPool::new(config.passive_ports.clone(), shards);
    let limits = Limits::new(config.max_sessions, config.max_sessions_per_ip);
    let timeouts = LiveTimeouts::new(config.timeouts);
    let users = Arc::new(UserRegistry::default());
    let bans = config.ban.clone().map(|policy| Arc::new(BanList::new(policy, std::time::Instant::now())));
    let metrics = Metrics::new(Arc::clone(&ports));
    let ports = PassivePorts::new(ports, config.passive_ports.clone());
    let metrics_listener = match config.metrics {
        Some(addr) => Some(metrics::bind(addr).map_err(|e| StartError::Bind(addr, e))?),
        None => None,
    };
    let tls = config.tls.clone();
    let config = Arc::new(config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
    let mut threads = Vec::with_capacity(shards);
    for (id, listeners) in per_shard.into_iter().enumerate() {
        let config = Arc::clone(&config);
        let storage = Arc::clone(&storage);
        let auth = Arc::clone(&auth);
        let ports = Arc::clone(&ports);
        let limits = Arc::clone(&limits);
        let timeouts = Arc::clone(&timeouts);
        let users = Arc::clone(&users);
        let metrics = Arc::clone(&metrics);
        let bans = bans.clone();
        let events = events.clone();
        let shutdown = shutdown_rx.clone();
        let ready = ready_tx.clone();
        let file_io = kind.file_io();
        let shard = move || async move {
            let shard = Rc::new(Shard {
                id,
                pipes: PipePool::new(config.pipe_size),
                upload_pipes: PipePool::new(config.upload_pipe_size),
                file_io,
                config,
                storage,
                auth,
                ports,
                limits,
                timeouts,
                users,
                metrics,
                bans,
                events,
                sessions: Cell::new(0),
                shutdown,
                scratch: RefCell::new(vec![0; control::READ_BUF].into_boxed_slice()),
            });
            run_shard(shard, listeners).await;
        };
        let spawned =
            std::thread::Builder::new().name(format!("ringftp-shard-{id}")).spawn(move || match kind {
                Kind::Uring => uring::run(shard, &ready),
                Kind::Epoll => epoll::run(shard, &ready),
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                let _ = shutdown_tx.send(true);
                return Err(StartError::Thread(e));
            }
        }
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = shutdown_tx.send(true);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
            Err(_) => break,
        }
    }
    let mut metrics_addr = None;
    let mut metrics_thread = None;
    if let Some(listener) = metrics_listener {
        metrics_addr = listener.local_addr().ok();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ringftp-metrics".into())
            .spawn(move || metrics::serve(listener, metrics, flag))
            .map_err(StartError::Thread)?;
        metrics_thread = Some((thread, stop));
    }
    tracing::info!(addrs = ?local_addrs, shards, engine = kind.name(), "ringftp listening");
    Ok(ServerHandle {
        local_addrs,
        metrics_addr,
        shutdown: shutdown_tx,
        threads,
        metrics: metrics_thread,
        tls,
        live: crate::server::LiveLimits { limits, timeouts, bans },
    })
}

/// The engine a server runs on, once `auto` is resolved.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Uring,
    Epoll,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Uring => "uring",
            Kind::Epoll => "epoll",
        }
    }

    fn file_io(self) -> FileIo {
        match self {
            Kind::Uring => uring::FILE_IO,
            Kind::Epoll => epoll::FILE_IO,
        }
    }
}

/// Resolves [`Engine::Auto`] by creating (and dropping) one small io_uring: if the kernel
/// refuses, one warning names the cause and the server runs on epoll.
fn choose(engine: Engine) -> Kind {
    match engine {
        Engine::Uring => Kind::Uring,
        Engine::Epoll => Kind::Epoll,
        Engine::Auto => match uring::probe() {
            Ok(()) => Kind::Uring,
            Err(e) => {
                tracing::warn!(
                    "io_uring is not available ({e}): {}; running the epoll engine",
                    uring::refusal_cause(&e)
                );
                Kind::Epoll
            }
        },
    }
}

async fn run_shard<S: Storage, A: Authenticator>(
    shard: Rc<Shard<S, A>>,
    listeners: Vec<(std::net::TcpListener, bool)>,
) {
    let mut accepting = Vec::new();
    for (l, implicit) in listeners {
        match tokio::net::TcpListener::from_std(l) {
            Ok(listener) => {
                accepting.push(tokio::task::spawn_local(accept_loop(Rc::clone(&shard), listener, implicit)))
            }
            Err(e) => tracing::error!(error = %e, shard = shard.id, "cannot register a listener"),
        }
    }
    let mut shutdown = shard.shutdown.clone();
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    // Stop accepting; sessions see the signal themselves and close once their transfer ends.
    for task in &accepting {
        task.abort();
    }
    // Sessions with a transfer get the grace period, then a moment to send 426 and 421.
    let deadline = tokio::time::Instant::now() + shard.config.shutdown_grace + Duration::from_secs(1);
    while shard.sessions.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give sessions that were told to close a moment to flush their 421.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn accept_loop<S: Storage, A: Authenticator>(
    shard: Rc<Shard<S, A>>,
    listener: tokio::net::TcpListener,
    implicit: bool,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::task::spawn_local(control::serve(Rc::clone(&shard), stream, peer, implicit));
            }
            Err(e) => {
                // EMFILE/ENFILE: back off instead of spinning; the backlog holds the clients.
                tracing::warn!(error = %e, shard = shard.id, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
