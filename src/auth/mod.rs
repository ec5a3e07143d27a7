//! Authentication: the [`Authenticator`] trait a host implements, the [`User`] it returns, and
//! the built-in [`UserList`] (argon2 password hashes, optional anonymous access).

mod userlist;

pub use userlist::{hash_password, UserList};

use std::future::Future;

pub use crate::types::{AuthError, Permissions, User};

/// Checks a USER/PASS pair and says who logged in.
///
/// The future need not be `Send` (it runs on the session's shard). Slow checks, such as a
/// password hash, should not block the shard's thread: [`UserList`] runs argon2 on tokio's
/// blocking pool.
pub trait Authenticator: Send + Sync + 'static {
    /// Returns the user for a correct name and password, or why not.
    fn authenticate(&self, username: &str, password: &[u8]) -> impl Future<Output = Result<User, AuthError>>;
}
