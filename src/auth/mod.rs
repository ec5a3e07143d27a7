//! Authentication: the [`Authenticator`] trait a host implements, the [`User`] it returns, and
//! the built-in [`UserList`] (argon2 password hashes, optional anonymous access).

mod userlist;

pub use userlist::{hash_password, UserList};

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

/// Checks a USER/PASS pair and says who logged in.
///
/// The future need not be `Send` (it runs on the session's shard). Slow checks, such as a
/// password hash, should not block the shard's thread: [`UserList`] runs argon2 on tokio's
/// blocking pool.
pub trait Authenticator: Send + Sync + 'static {
    /// Returns the user for a correct name and password, or why not.
    fn authenticate(
        &self,
        username: &str,
        password: &[u8],
    ) -> impl Future<Output = Result<User, AuthError>>;
}

/// A logged-in user: who, where their files are, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The login name.
    pub name: String,
    /// The user's root, relative to the storage root (empty: the storage root itself). The
    /// user sees it as `/` and cannot leave it.
    pub home: PathBuf,
    /// Whether writes (STOR, APPE, STOU, DELE, RNFR, MKD, RMD) are refused with 550.
    pub read_only: bool,
}

impl User {
    /// A read-write user whose home is the storage root.
    pub fn new(name: impl Into<String>) -> Self {
        User {
            name: name.into(),
            home: PathBuf::new(),
            read_only: false,
        }
    }

    /// Sets the home directory, relative to the storage root.
    pub fn home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = home.into();
        self
    }

    /// Makes the user read-only.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// Why a login failed; every kind answers 530, the kinds are for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown user or wrong password (not distinguished to the client).
    BadCredentials,
    /// The authenticator could not decide (backend down); the client may retry.
    Unavailable,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::BadCredentials => "bad credentials",
            AuthError::Unavailable => "authentication unavailable",
        })
    }
}

impl std::error::Error for AuthError {}
