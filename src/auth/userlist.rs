//! A fixed list of users with argon2 password hashes. (stub: filled in by a helper)
use super::{AuthError, Authenticator, User};

/// A fixed list of users with argon2 password hashes, and optional anonymous read-only access.
#[derive(Debug, Default, Clone)]
pub struct UserList {}

impl UserList {
    /// An empty list.
    pub fn new() -> Self {
        UserList {}
    }
}

/// Hashes a password with argon2 into a PHC string.
pub fn hash_password(_password: &[u8]) -> String {
    String::new()
}

impl Authenticator for UserList {
    async fn authenticate(&self, _username: &str, _password: &[u8]) -> Result<User, AuthError> {
        Err(AuthError::BadCredentials)
    }
}
