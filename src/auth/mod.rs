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
    fn authenticate(&self, username: &str, password: &[u8]) -> impl Future<Output = Result<User, AuthError>>;
}

/// A logged-in user: who, where their files are, what they may do, and their limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The login name.
    pub name: String,
    /// The user's root, relative to the storage root (empty: the storage root itself). The
    /// user sees it as `/` and cannot leave it.
    pub home: PathBuf,
    /// What the user may do; a refused action gets 550.
    pub permissions: Permissions,
    /// The most sessions this user may have at once, over all shards (`None`: no limit).
    pub max_sessions: Option<u32>,
    /// Bytes per second shared by all of this user's transfers, each direction (`None`: no
    /// limit).
    pub rate_limit: Option<u64>,
}

impl User {
    /// A user with every permission whose home is the storage root.
    pub fn new(name: impl Into<String>) -> Self {
        User {
            name: name.into(),
            home: PathBuf::new(),
            permissions: Permissions::ALL,
            max_sessions: None,
            rate_limit: None,
        }
    }

    /// Sets the home directory, relative to the storage root.
    pub fn home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = home.into();
        self
    }

    /// Makes the user read-only ([`Permissions::READ_ONLY`]), or gives every permission.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.permissions = if read_only { Permissions::READ_ONLY } else { Permissions::ALL };
        self
    }

    /// Sets the permissions.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Limits the user's concurrent sessions; beyond it a login gets 421.
    pub fn max_sessions(mut self, n: u32) -> Self {
        self.max_sessions = Some(n);
        self
    }

    /// Limits the user's transfer rate in bytes per second, shared by all their sessions.
    pub fn rate_limit(mut self, bytes_per_second: u64) -> Self {
        self.rate_limit = Some(bytes_per_second);
        self
    }

    /// Whether the user may change nothing.
    pub fn is_read_only(&self) -> bool {
        !self.permissions.write
            && !self.permissions.delete
            && !self.permissions.rename
            && !self.permissions.mkdir
    }
}

/// What a user may do. Listing and changing directory are always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Download files (RETR).
    pub read: bool,
    /// Upload files (STOR, APPE, STOU), including overwriting.
    pub write: bool,
    /// Delete files and directories (DELE, RMD).
    pub delete: bool,
    /// Rename (RNFR, RNTO).
    pub rename: bool,
    /// Create directories (MKD).
    pub mkdir: bool,
}

impl Permissions {
    /// Everything.
    pub const ALL: Permissions =
        Permissions { read: true, write: true, delete: true, rename: true, mkdir: true };
    /// Download and list only.
    pub const READ_ONLY: Permissions =
        Permissions { read: true, write: false, delete: false, rename: false, mkdir: false };
    /// Nothing but listing.
    pub const NONE: Permissions =
        Permissions { read: false, write: false, delete: false, rename: false, mkdir: false };
}

/// Why a login failed; every kind answers 530, the kinds are for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown user or wrong password (not distinguished to the client).
    BadCredentials,
    /// The authenticator could not decide (backend down); the client may retry.
    Unavailable,
    /// The user has as many sessions as [`User::max_sessions`] allows (421, then close).
    TooManySessions,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::BadCredentials => "bad credentials",
            AuthError::Unavailable => "authentication unavailable",
            AuthError::TooManySessions => "too many sessions for this user",
        })
    }
}

impl std::error::Error for AuthError {}
