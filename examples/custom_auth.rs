//! Your own users: an [`Authenticator`] over the host's own user store (here a `HashMap`),
//! with a home directory, permissions and a rate limit per user.
//!
//! ```sh
//! cargo run --example custom_auth -- /tmp/ftp-homes 127.0.0.1:2121
//! curl -T report.pdf ftp://alice:wonderland@127.0.0.1:2121/   # lands in /tmp/ftp-homes/alice
//! curl ftp://auditor:readonly@127.0.0.1:2121/alice/             # may read everything
//! ```
//!
//! Both arguments are optional (default: a directory under the system temp dir, and
//! `127.0.0.1:2121`).

use std::collections::HashMap;

use ringftp::{AuthError, Authenticator, FsStorage, Permissions, Server, User};

/// What the host knows about a user; in a real system, a database row or a directory entry.
struct Account {
    /// Store a hash in real life (`ringftp::auth::hash_password` makes argon2 ones).
    password: &'static str,
    home: &'static str,
    permissions: Permissions,
    /// Bytes per second, shared by all of the user's transfers.
    rate_limit: Option<u64>,
}

struct Directory {
    accounts: HashMap<&'static str, Account>,
}

impl Authenticator for Directory {
    /// Runs on the session's shard thread: a slow check (a hash, a network call) should be
    /// awaited or moved to a blocking pool rather than done inline.
    async fn authenticate(&self, username: &str, password: &[u8]) -> Result<User, AuthError> {
        let account = self.accounts.get(username).ok_or(AuthError::BadCredentials)?;
        if !constant_time_eq(account.password.as_bytes(), password) {
            return Err(AuthError::BadCredentials);
        }
        let mut user = User::new(username).home(account.home).permissions(account.permissions);
        if let Some(rate) = account.rate_limit {
            user = user.rate_limit(rate);
        }
        Ok(user)
    }
}

/// Compares without stopping at the first difference, so timing does not leak the password.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args.next().map_or_else(|| std::env::temp_dir().join("ringftp-custom-auth"), Into::into);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into()).parse()?;

    let accounts = HashMap::from([
        // Confined to <root>/alice, may do anything there, at most 1 MB/s.
        (
            "alice",
            Account {
                password: "wonderland",
                home: "alice",
                permissions: Permissions::ALL,
                rate_limit: Some(1_000_000),
            },
        ),
        // Sees the whole root, may only download.
        (
            "auditor",
            Account { password: "readonly", home: "", permissions: Permissions::READ_ONLY, rate_limit: None },
        ),
        // May upload and create directories in <root>/dropbox, but not read, delete or rename.
        (
            "dropbox",
            Account {
                password: "drop",
                home: "dropbox",
                permissions: Permissions { write: true, mkdir: true, ..Permissions::NONE },
                rate_limit: None,
            },
        ),
    ]);
    // Homes must exist: the storage serves what is there.
    for account in accounts.values() {
        std::fs::create_dir_all(root.join(account.home))?;
    }

    let server = Server::builder(FsStorage::new(&root)?, Directory { accounts }).listen(addr).build()?;
    let handle = server.start()?;
    for addr in handle.local_addrs() {
        println!("custom_auth listening on {addr}, serving {}", root.display());
    }
    handle.wait(); // until the process is killed
    Ok(())
}
