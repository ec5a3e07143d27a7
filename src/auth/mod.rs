//! Authentication: the [`Authenticator`] trait a host implements, the [`Credentials`] a client
//! presents (name, password, address, verified TLS client certificate chain), the [`User`] it
//! returns, and the built-in [`UserList`] (argon2 password hashes, optional anonymous access).

mod userlist;

pub use userlist::{hash_password, UserList};

use std::future::Future;
use std::net::SocketAddr;

use rustls_pki_types::CertificateDer;

pub use crate::types::{AuthError, Permissions, User};

/// What a client presented to log in: the USER and PASS arguments, where it connects from,
/// and the client certificate chain its control connection's TLS handshake verified.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Credentials<'a> {
    /// The USER name.
    pub username: &'a str,
    /// The PASS argument (possibly empty: a client with a certificate may send none).
    pub password: &'a [u8],
    /// The client's address (behind a PROXY-protocol balancer, the one its header names).
    pub peer: SocketAddr,
    /// Whether the control connection runs inside TLS.
    pub tls: bool,
    /// The client certificate chain, leaf first, already verified against the server's client
    /// CA (`--tls-client-ca`); empty when the connection is clear, client authentication is
    /// off, or the client sent none (allowed with `request`). Who the certificate names is
    /// for the authenticator to decide: the CA vouches for the chain, not for `username`.
    pub client_chain: &'a [CertificateDer<'static>],
}

impl<'a> Credentials<'a> {
    /// A name and password from `peer`, on a clear connection.
    pub fn new(username: &'a str, password: &'a [u8], peer: SocketAddr) -> Self {
        Credentials { username, password, peer, tls: false, client_chain: &[] }
    }

    /// The control connection is TLS and verified this client certificate chain (may be empty).
    pub fn tls(mut self, client_chain: &'a [CertificateDer<'static>]) -> Self {
        self.tls = true;
        self.client_chain = client_chain;
        self
    }
}

/// Checks a USER/PASS pair and says who logged in.
///
/// The future need not be `Send` (it runs on the session's shard). Slow checks, such as a
/// password hash, should not block the shard's thread: [`UserList`] runs argon2 on tokio's
/// blocking pool.
///
/// The server calls [`Authenticator::login`], which by default checks the name and password
/// with [`Authenticator::authenticate`]. An authenticator that also looks at the client's
/// address or TLS client certificate (mTLS) overrides `login`.
pub trait Authenticator: Send + Sync + 'static {
    /// Returns the user for a correct name and password, or why not.
    fn authenticate(&self, username: &str, password: &[u8]) -> impl Future<Output = Result<User, AuthError>>;

    /// Returns the user for these credentials, or why not; by default
    /// [`Authenticator::authenticate`] with the name and password alone.
    fn login(&self, credentials: &Credentials<'_>) -> impl Future<Output = Result<User, AuthError>> {
        self.authenticate(credentials.username, credentials.password)
    }
}
