//! TLS for FTPS (RFC 4217): the server configuration, its reload, per-control-connection
//! session binding for data connections, and the handshake helpers both engines use.
//!
//! ```text
//!  TlsConfig (paths, options) ──► TlsAcceptor ── ArcSwap<ServerConfig> (base; reload() swaps it)
//!                                      │ control()  one per control connection
//!                                      ▼
//!                                 ControlTls ── own session store (never shared)
//!                                   ├─ control_config(): base + that store
//!                                   └─ data() per data connection: base + that store; its
//!                                      own new tickets count only once it passed the check
//! ```
//!
//! **Crypto provider: ring.** It builds with a C compiler alone; aws-lc-rs needs cmake (and
//! nasm for its assembly) on a fresh Debian machine and takes several times longer to build.
//! Both give AES-GCM and ChaCha20-Poly1305 with hardware acceleration, which is all FTPS needs;
//! FIPS, the one thing only aws-lc-rs offers, is not a goal here.
//!
//! **Session reuse (RFC 4217 §10, vsftpd's `require_ssl_reuse`).** A data connection must
//! resume the TLS session of its own control connection, so that whoever opens it has the
//! control connection's keys, not just its IP address. Each [`ControlTls`] derives its own
//! `ServerConfig`s from the base with a private session store, which is also its ticketer (no
//! stateless tickets): TLS 1.2 session IDs and tickets and TLS 1.3 tickets are keys into that
//! store alone, so a ticket or session ID from another control connection finds nothing and the
//! client falls back to a full handshake, which [`ControlTls::accept_data`] refuses. TLS 1.3
//! tickets stay valid for
//! several data connections (rustls would take them once): early data is off, so there is no
//! replay to guard against, and clients such as Python's ftplib and curl offer the control
//! connection's ticket again on every data connection. A data connection's own new session
//! (its TLS 1.3 ticket, or the ticket or session ID of a TLS 1.2 handshake) is kept only once the
//! handshake passed the check, so a refused handshake leaves nothing that could be resumed.
//! The store is small and bounded (4 control entries, 4 data entries), so an idle session
//! costs little.
//!
//! A data connection that may go to kTLS is accepted over [`ktls::Corked`]; when it stays on
//! rustls instead, call `stream.get_mut().0.uncork()` after the handshake.
//!
//! The module is runtime-free except for [`ControlTls::accept_control`],
//! [`ControlTls::accept_data`] and [`accept`], which drive a tokio socket; an engine that
//! wants to drive rustls itself uses [`ControlTls::control_config`] and [`ControlTls::data`].

pub mod ktls;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerConfig, StoresServerSessions, WebPkiClientVerifier};
use rustls::{HandshakeKind, RootCertStore, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls;
pub use tokio_rustls::server::TlsStream;

/// The ALPN protocol id for FTP (IANA registry, "ftp").
pub const ALPN_FTP: &[u8] = b"ftp";

/// Client certificates (mTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Do not ask for a client certificate.
    #[default]
    Off,
    /// Ask; a client without one still connects, one with a bad one is refused.
    Request,
    /// A client must present a certificate that chains to the client CA.
    Require,
}

/// Whether to hand data connection keys to the kernel (kTLS) when it can take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KtlsMode {
    /// Use kTLS when the kernel has it (probed once per process).
    #[default]
    Auto,
    /// Never; every byte goes through rustls.
    Off,
}

/// Where the certificate and key live, and the TLS options; [`TlsAcceptor::new`] loads it.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    cert: PathBuf,
    key: PathBuf,
    client_auth: ClientAuth,
    client_ca: Option<PathBuf>,
    require_session_reuse: bool,
    ktls: KtlsMode,
}

impl TlsConfig {
    /// A certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            client_auth: ClientAuth::Off,
            client_ca: None,
            require_session_reuse: true,
            ktls: KtlsMode::Auto,
        }
    }

    /// Client certificates checked against the CA certificates in `ca` (PEM).
    pub fn client_auth(mut self, mode: ClientAuth, ca: impl Into<PathBuf>) -> Self {
        self.client_auth = mode;
        self.client_ca = Some(ca.into());
        self
    }

    /// Whether data connections must resume their control connection's TLS session (default
    /// true). `false` is for clients that cannot resume; then anyone who can reach the data
    /// port and complete a handshake gets the data.
    pub fn require_session_reuse(mut self, on: bool) -> Self {
        self.require_session_reuse = on;
        self
    }

    /// kTLS for data connections (default [`KtlsMode::Auto`]).
    pub fn ktls(mut self, mode: KtlsMode) -> Self {
        self.ktls = mode;
        self
    }
}

/// Why a certificate, key or CA could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file holds no item of the kind needed.
    Missing {
        /// The file.
        path: PathBuf,
        /// "certificate", "private key" or "CA certificate".
        what: &'static str,
    },
    /// rustls refused the certificate and key (for example they do not match).
    Rustls(rustls::Error),
    /// The client CA could not be used for verification.
    ClientCa(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, reason } => write!(f, "{}: {reason}", path.display()),
            TlsError::Missing { path, what } => write!(f, "{}: no {what} in the file", path.display()),
            TlsError::Rustls(e) => write!(f, "certificate and key rejected: {e}"),
            TlsError::ClientCa(e) => write!(f, "client CA: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Why a TLS handshake on a control or data connection failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptError {
    /// The handshake did not finish within the bound.
    TimedOut,
    /// The peer sent something that is not TLS, or the handshake failed (the message says why).
    Handshake(io::Error),
    /// A data connection did a full handshake instead of resuming its control connection's
    /// session (RFC 4217 §10); reply 522 (or 425) and close it.
    NotResumed,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::TimedOut => f.write_str("TLS handshake timed out"),
            AcceptError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            AcceptError::NotResumed => {
                f.write_str("data connection did not resume the control connection's TLS session")
            }
        }
    }
}

impl std::error::Error for AcceptError {}

/// The loaded TLS configuration, shared by all shards (`Clone` is an `Arc` clone).
///
/// The accept path reads the current base configuration without a lock; [`reload`] swaps it.
///
/// [`reload`]: TlsAcceptor::reload
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: Arc<Shared>,
}

struct Shared {
    config: TlsConfig,
    ktls: bool,
    base: ArcSwap<ServerConfig>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("config", &self.inner.config)
            .field("ktls", &self.inner.ktls)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the certificate, key and client CA named by `config`.
    pub fn new(config: TlsConfig) -> Result<Self, TlsError> {
        let ktls = config.ktls == KtlsMode::Auto && ktls::available();
        let base = build(&config, ktls)?;
        Ok(TlsAcceptor { inner: Arc::new(Shared { config, ktls, base: ArcSwap::from_pointee(base) }) })
    }

    /// Reads the files again (SIGHUP, `ServerHandle::reload_tls`). On success new control
    /// connections use the new certificate; sessions already open keep the one they started
    /// with. On error nothing changes and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let base = build(&self.inner.config, self.inner.ktls)?;
        self.inner.base.store(Arc::new(base));
        Ok(())
    }

    /// The TLS context of a new control connection; keep it for the connection's life.
    pub fn control(&self) -> ControlTls {
        ControlTls {
            base: self.inner.base.load_full(),
            store: Arc::new(SessionStore::default()),
            control: OnceLock::new(),
            require_reuse: self.inner.config.require_session_reuse,
            ktls: self.inner.ktls,
        }
    }

    /// Whether data connections must resume their control connection's session.
    pub fn require_session_reuse(&self) -> bool {
        self.inner.config.require_session_reuse
    }

    /// Whether kTLS is on: asked for and the kernel has it; then the configurations allow
    /// secret extraction, which [`ktls::enable`] needs.
    pub fn ktls(&self) -> bool {
        self.inner.ktls
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(config: &TlsConfig, ktls: bool) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certs = load_certs(&config.cert, "certificate")?;
    let key =
        PrivateKeyDer::from_pem_file(&config.key).map_err(|e| pem_error(&config.key, e, "private key"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Rustls)?;
    let builder = match (config.client_auth, &config.client_ca) {
        (ClientAuth::Off, _) => builder.with_no_client_auth(),
        (_, None) => return Err(TlsError::ClientCa("client authentication needs a CA file".into())),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca, "CA certificate")? {
                roots.add(cert).map_err(|e| TlsError::ClientCa(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier =
                if mode == ClientAuth::Request { verifier.allow_unauthenticated() } else { verifier };
            builder
                .with_client_cert_verifier(verifier.build().map_err(|e| TlsError::ClientCa(e.to_string()))?)
        }
    };
    // with_single_cert checks that the key belongs to the leaf certificate.
    let mut server = builder.with_single_cert(certs, key).map_err(TlsError::Rustls)?;
    server.alpn_protocols = vec![ALPN_FTP.to_vec()];
    server.enable_secret_extraction = ktls;
    // The per-session store replaces this; a base config must never resume anything itself.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(server)
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e, what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e, what))?;
    if certs.is_empty() {
        return Err(TlsError::Missing { path: path.to_owned(), what });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error, what: &'static str) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing { path: path.to_owned(), what },
        rustls_pki_types::pem::Error::Io(e) => TlsError::Pem { path: path.to_owned(), reason: e.to_string() },
        e => TlsError::Pem { path: path.to_owned(), reason: format!("bad PEM: {e:?}") },
    }
}

/// The TLS context of one control connection: its configurations and its private session
/// store, which binds its data connections to it (see the module docs).
pub struct ControlTls {
    base: Arc<ServerConfig>,
    store: Arc<SessionStore>,
    control: OnceLock<Arc<ServerConfig>>,
    require_reuse: bool,
    ktls: bool,
}

impl fmt::Debug for ControlTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlTls")
            .field("require_reuse", &self.require_reuse)
            .field("ktls", &self.ktls)
            .finish_non_exhaustive()
    }
}

/// TLS 1.3 tickets issued on the control connection (rustls sends this many).
const CONTROL_TICKETS: usize = 2;
/// TLS 1.3 tickets issued on each data connection, for clients that use each ticket once.
const DATA_TICKETS: usize = 1;

impl ControlTls {
    /// The configuration for the control connection's handshake (AUTH TLS, or implicit FTPS).
    pub fn control_config(&self) -> Arc<ServerConfig> {
        self.control
            .get_or_init(|| {
                let mut c = (*self.base).clone();
                let view = Arc::new(StoreView::new(&self.base, self.store.clone(), None));
                c.session_storage = view.clone();
                c.ticketer = view;
                c.send_tls13_tickets = CONTROL_TICKETS;
                Arc::new(c)
            })
            .clone()
    }

    /// Starts one data connection's handshake: give [`DataTls::config`] to rustls, then
    /// call [`DataTls::finish`] when the handshake is done.
    pub fn data(&self) -> DataTls {
        self.data_with(DATA_TICKETS)
    }

    fn data_with(&self, tickets: usize) -> DataTls {
        // Sessions and tickets a data connection creates stay pending until it passes the
        // check: a refused full handshake must not leave a session someone could resume.
        let view = Arc::new(StoreView::new(&self.base, self.store.clone(), Some(Mutex::new(Vec::new()))));
        let mut c = (*self.base).clone();
        c.session_storage = view.clone();
        c.ticketer = view.clone();
        c.send_tls13_tickets = tickets;
        DataTls { config: Arc::new(c), view, require_reuse: self.require_reuse }
    }

    /// Whether data connections must resume this session.
    pub fn require_session_reuse(&self) -> bool {
        self.require_reuse
    }

    /// Whether its data connections may go to kTLS (see [`TlsAcceptor::ktls`]).
    pub fn ktls(&self) -> bool {
        self.ktls
    }

    /// Runs the control connection's handshake on `io`, bounded by `timeout`.
    pub async fn accept_control<IO>(&self, io: IO, timeout: Duration) -> Result<TlsStream<IO>, AcceptError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        accept(self.control_config(), io, timeout).await
    }

    /// Runs a data connection's handshake on `io`, bounded by `timeout`, and refuses it
    /// ([`AcceptError::NotResumed`]) when it did not resume this control connection's session
    /// while reuse is required. The stream is dropped then, which closes the socket.
    pub async fn accept_data<IO>(&self, io: IO, timeout: Duration) -> Result<TlsStream<IO>, AcceptError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_data_with(io, timeout, DATA_TICKETS).await
    }

    /// [`ControlTls::accept_data`] for an upload: no TLS 1.3 ticket is sent, because an
    /// uploading client only writes, and closing with the ticket unread makes its kernel
    /// answer with a reset that can destroy the last bytes of the upload (seen with curl).
    pub async fn accept_upload<IO>(&self, io: IO, timeout: Duration) -> Result<TlsStream<IO>, AcceptError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_data_with(io, timeout, 0).await
    }

    async fn accept_data_with<IO>(
        &self,
        io: IO,
        timeout: Duration,
        tickets: usize,
    ) -> Result<TlsStream<IO>, AcceptError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let data = self.data_with(tickets);
        let stream = accept(data.config(), io, timeout).await?;
        data.finish(stream.get_ref().1)?;
        Ok(stream)
    }
}

/// One data connection's handshake, from [`ControlTls::data`].
pub struct DataTls {
    config: Arc<ServerConfig>,
    view: Arc<StoreView>,
    require_reuse: bool,
}

impl fmt::Debug for DataTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataTls").field("require_reuse", &self.require_reuse).finish_non_exhaustive()
    }
}

impl DataTls {
    /// The configuration to run this handshake with (it resumes only the control
    /// connection's sessions).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Checks the finished handshake against the reuse policy; on success the tickets it
    /// issued become usable for later data connections of the same control connection.
    pub fn finish(self, conn: &ServerConnection) -> Result<(), AcceptError> {
        if self.require_reuse && !verify_data_resumed(conn) {
            return Err(AcceptError::NotResumed);
        }
        self.view.commit();
        Ok(())
    }
}

/// Whether `conn`'s handshake resumed a session (rustls's `handshake_kind()` is `Resumed`).
/// With a [`DataTls::config`] configuration, that session can only be its control connection's.
pub fn verify_data_resumed(conn: &ServerConnection) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// Runs a server handshake with `config` on `io`, bounded by `timeout`. Bytes that are not
/// TLS fail at once (rustls rejects the first record header); silence fails at the bound.
pub async fn accept<IO>(
    config: Arc<ServerConfig>,
    io: IO,
    timeout: Duration,
) -> Result<TlsStream<IO>, AcceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Err(_) => Err(AcceptError::TimedOut),
        Ok(Err(e)) => Err(AcceptError::Handshake(e)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// What a finished handshake negotiated, for the login event, metrics and the authenticator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsInfo {
    /// "TLSv1_3" or "TLSv1_2".
    pub version: &'static str,
    /// The cipher suite, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: &'static str,
    /// The client's certificate chain, leaf first, verified against the client CA; empty when
    /// client authentication is off or the client sent none (allowed with `Request`). A resumed
    /// session carries the chain of the handshake it resumes.
    pub peer_chain: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    /// Reads what `conn` negotiated; None while it is still handshaking.
    pub fn of(conn: &ServerConnection) -> Option<TlsInfo> {
        let version = conn.protocol_version()?.as_str().unwrap_or("unknown");
        let cipher = conn.negotiated_cipher_suite()?.suite().as_str().unwrap_or("unknown");
        let peer_chain = conn.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
        Some(TlsInfo { version, cipher, peer_chain })
    }
}

/// Sessions of one control connection. Entries the control connection created are kept apart
/// from those its data connections created, so that a client issuing many data connections
/// cannot push the control connection's own tickets out.
#[derive(Default)]
struct SessionStore {
    inner: Mutex<StoreInner>,
}

/// A session: its key (session ID or ticket) and rustls's encoding of it.
type Entry = (Vec<u8>, Vec<u8>);

#[derive(Default)]
struct StoreInner {
    pinned: VecDeque<Entry>,
    recent: VecDeque<Entry>,
}

/// Control-connection entries kept (tickets, plus a TLS 1.2 session ID after a re-AUTH).
const PINNED_MAX: usize = 4;
/// Data-connection entries kept.
const RECENT_MAX: usize = 4;

/// One configuration's handle on a [`SessionStore`]: the control connection's puts go in
/// directly, a data connection's wait in `pending` for [`DataTls::finish`].
///
/// It is also the configuration's ticketer: a ticket is a random key into the same store, not
/// the session encrypted (rustls's stateless tickets would be valid on any connection that
/// shares the ticket key). TLS 1.3 tickets are that already; TLS 1.2 tickets are what lets a
/// client that resumes only by ticket (Go's crypto/tls: rclone) reuse its control session.
struct StoreView {
    store: Arc<SessionStore>,
    pending: Option<Mutex<Vec<Entry>>>,
    random: &'static dyn rustls::crypto::SecureRandom,
}

impl StoreView {
    fn new(base: &ServerConfig, store: Arc<SessionStore>, pending: Option<Mutex<Vec<Entry>>>) -> StoreView {
        StoreView { store, pending, random: base.crypto_provider().secure_random }
    }

    fn commit(&self) {
        let Some(pending) = &self.pending else { return };
        let Ok(mut pending) = pending.lock() else { return };
        let Ok(mut inner) = self.store.inner.lock() else { return };
        for entry in pending.drain(..) {
            push_bounded(&mut inner.recent, entry, RECENT_MAX);
        }
    }
}

fn push_bounded(list: &mut VecDeque<Entry>, entry: Entry, max: usize) {
    if list.len() >= max {
        list.pop_front();
    }
    list.push_back(entry);
}

impl fmt::Debug for StoreView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreView").field("data", &self.pending.is_some()).finish_non_exhaustive()
    }
}

impl StoresServerSessions for StoreView {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        match &self.pending {
            Some(pending) => {
                let Ok(mut pending) = pending.lock() else { return false };
                if pending.len() < RECENT_MAX {
                    pending.push((key, value));
                }
            }
            None => {
                let Ok(mut inner) = self.store.inner.lock() else { return false };
                push_bounded(&mut inner.pinned, (key, value), PINNED_MAX);
            }
        }
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.store.inner.lock().ok()?;
        inner.pinned.iter().chain(inner.recent.iter()).find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Tickets are not consumed: see the module docs (no early data, clients reuse them).
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The lifetime rustls gives its own stateful TLS 1.3 tickets.
const TICKET_LIFETIME_SECS: u32 = 24 * 60 * 60;

impl rustls::server::ProducesTickets for StoreView {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut id = vec![0; 32];
        self.random.fill(&mut id).ok()?;
        self.put(id.clone(), plain.to_vec()).then_some(id)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.get(ticket)
    }
}
