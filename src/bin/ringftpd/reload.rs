//! Users that change while the server runs: SIGHUP rereads the users file and the config
//! file's `[[users]]` and swaps the new list in; an invalid file keeps the old list.
//!
//! Logins read the current list with one atomic load (`ArcSwap`): no lock on the login path,
//! and a reload never waits for logins in progress, which finish against the list they
//! started with. Sessions already logged in keep their user until they end.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ringftp::auth::{AuthError, Credentials};
use ringftp::{Authenticator, User, UserList};

/// An [`Authenticator`] over a [`UserList`] that [`Reloadable::store`] replaces.
#[derive(Clone)]
pub struct Reloadable(Arc<ArcSwap<UserList>>);

impl Reloadable {
    pub fn new(users: UserList) -> Self {
        Reloadable(Arc::new(ArcSwap::from_pointee(users)))
    }

    /// Makes `users` the list every later login checks against.
    pub fn store(&self, users: UserList) {
        self.0.store(Arc::new(users));
    }
}

impl Authenticator for Reloadable {
    async fn authenticate(&self, username: &str, password: &[u8]) -> Result<User, AuthError> {
        // An owned Arc, not a guard: the check awaits argon2 on the blocking pool.
        let users = self.0.load_full();
        users.authenticate(username, password).await
    }

    async fn login(&self, credentials: &Credentials<'_>) -> Result<User, AuthError> {
        let users = self.0.load_full();
        users.login(credentials).await
    }
}
