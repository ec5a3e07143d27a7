//! A fixed list of users with argon2 password hashes, and optional anonymous access.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), so each carries its
//! own parameters: a file may mix hashes made with different costs, and raising the cost later
//! does not invalidate old entries.
//!
//! Verification is deliberately slow, so it runs on a small pool of its own rather than on the
//! session's shard thread. An unknown name is checked against a dummy hash of the same cost,
//! so the reply time does not tell a client which names exist.
//!
//! # The verified-credential cache
//!
//! After a password passes argon2, the list remembers a keyed BLAKE2b MAC of (user, stored
//! hash, password) under a key drawn at random when the list is built, for a bounded time
//! (default 10 minutes) and a bounded number of users. The next login with the same password
//! is checked against that MAC in microseconds instead of argon2's milliseconds; a wrong
//! password never matches the MAC and still pays the full argon2 check, so guessing is as
//! slow as before. The trade-off (SFTPGo makes the same one): while an entry lives, a process
//! memory dump reveals a MAC that lets an attacker who also has the key test guesses quickly;
//! the password itself is never kept. Changing the list (a reload, a new hash) starts a new,
//! empty cache under a new key. [`UserList::password_cache`] turns it off or sets the time.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::{AuthError, Authenticator, User};

/// Login names that mean anonymous access (RFC 1635), compared without regard to case.
const ANONYMOUS_NAMES: [&str; 2] = ["anonymous", "ftp"];

/// The name anonymous users get, whichever of [`ANONYMOUS_NAMES`] they logged in with.
const ANONYMOUS_USER: &str = "anonymous";

/// Cost of [`UserList::user_with_password`]: 1 MiB, one pass. Those hashes are made at start-up
/// from a password typed on the command line and never stored, so offline cracking is not the
/// threat; a fast login is what matters.
const CHEAP_M_COST: u32 = 1024;
const CHEAP_T_COST: u32 = 1;
const CHEAP_P_COST: u32 = 1;

/// What unknown names are verified against when no configured user's hash can stand in: a
/// hash of a random, discarded password with argon2's default (that is, [`hash_password`]'s)
/// parameters.
const DEFAULT_DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$xFfScDI9lPTTeqLLttmt0Q$vjZs2ARCWh+XwEDmC/3nh9XQWNujWzS5MKgMMAHhzH4";

/// A fixed list of users with argon2 password hashes, and optional anonymous read-only access.
///
/// Cheap to clone: the users are shared behind an `Arc`, which also lets a verification
/// running on the blocking pool own what it reads.
#[derive(Clone)]
pub struct UserList {
    users: Arc<HashMap<String, Account>>,
    /// The user anonymous logins become, if anonymous access is on.
    anonymous: Option<User>,
    /// Passwords verified lately (see the module docs); `None`: off.
    cache: Option<Arc<CredentialCache>>,
}

impl Default for UserList {
    fn default() -> Self {
        UserList {
            users: Arc::default(),
            anonymous: None,
            cache: CredentialCache::new(DEFAULT_CACHE_LIFETIME),
        }
    }
}

/// How long a verified password is remembered by default.
const DEFAULT_CACHE_LIFETIME: Duration = Duration::from_secs(600);
/// Users remembered at most; past it, new logins are not cached until entries expire.
const CACHE_USERS: usize = 4096;

type Mac = blake2::Blake2bMac512;

/// Keyed MACs of passwords that passed argon2, per user name, with their expiry.
struct CredentialCache {
    key: [u8; 64],
    lifetime: Duration,
    entries: Mutex<HashMap<String, ([u8; 64], Instant)>>,
}

impl CredentialCache {
    /// `None` when `lifetime` is zero or no random key can be had (then there is no cache).
    fn new(lifetime: Duration) -> Option<Arc<Self>> {
        let mut key = [0u8; 64];
        if lifetime.is_zero() || OsRng.try_fill_bytes(&mut key).is_err() {
            return None;
        }
        Some(Arc::new(CredentialCache { key, lifetime, entries: Mutex::new(HashMap::new()) }))
    }

    fn mac(&self, name: &str, hash: &str, password: &[u8]) -> [u8; 64] {
        use blake2::digest::{FixedOutput, KeyInit, Update};
        // A key of 64 bytes is always valid for BLAKE2b-512.
        let mut mac =
            <Mac as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| Mac::new(&Default::default()));
        for part in [name.as_bytes(), hash.as_bytes(), password] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize_fixed().into()
    }

    /// Whether `password` is the one verified lately for `name` with `hash`.
    fn hit(&self, name: &str, hash: &str, password: &[u8], now: Instant) -> bool {
        use subtle::ConstantTimeEq;
        let mac = self.mac(name, hash, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(name).is_some_and(|(known, until)| now < *until && bool::from(known.ct_eq(&mac)))
    }

    fn remember(&self, name: &str, hash: &str, password: &[u8], now: Instant) {
        let mac = self.mac(name, hash, password);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_USERS && !entries.contains_key(name) {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CACHE_USERS {
                return;
            }
        }
        entries.insert(name.to_owned(), (mac, now + self.lifetime));
    }
}

/// One configured user and their password hash.
#[derive(Clone)]
struct Account {
    user: User,
    /// A PHC string; one that does not parse never verifies.
    hash: String,
}

impl UserList {
    /// An empty list: nobody can log in.
    pub fn new() -> Self {
        UserList::default()
    }

    /// Adds (or replaces) `user`, whose password has the argon2 PHC hash `password_hash` (as
    /// made by [`hash_password`]). A hash that does not parse never verifies; use
    /// [`UserList::from_file`] to have hashes checked up front.
    pub fn user(mut self, user: User, password_hash: impl Into<String>) -> Self {
        let hash = password_hash.into();
        if let Err(err) = check_hash(&hash) {
            tracing::warn!(user = %user.name, "unusable password hash ({err}): the user cannot log in");
        }
        Arc::make_mut(&mut self.users).insert(user.name.clone(), Account { user, hash });
        // A changed list must not inherit what the old one verified.
        self.cache = self.cache.as_ref().and_then(|c| CredentialCache::new(c.lifetime));
        self
    }

    /// How long a verified password is remembered, so that the next login with it skips
    /// argon2 (default 10 minutes; zero turns the cache off). See the module docs for the
    /// trade-off. A wrong password always gets the full check.
    pub fn password_cache(mut self, lifetime: Duration) -> Self {
        self.cache = CredentialCache::new(lifetime);
        self
    }

    /// Adds (or replaces) `user` with a plain-text password, hashed now with cheap parameters
    /// so that logins stay fast (see the module docs for why that is acceptable here).
    pub fn user_with_password(self, user: User, password: &[u8]) -> Self {
        let hash = cheap_hasher().and_then(|argon| hash_with(&argon, password));
        match hash {
            Ok(hash) => self.user(user, hash),
            Err(err) => {
                // Not expected to happen (fixed valid parameters); the empty hash never
                // verifies, so the failure locks the user out instead of letting anyone in.
                tracing::error!(user = %user.name, "cannot hash password: {err}");
                self.user(user, String::new())
            }
        }
    }

    /// Allows anonymous logins: `anonymous` or `ftp` (any case) with any password become a
    /// read-only user named `anonymous` whose home is `home`, relative to the storage root.
    ///
    /// A configured user with one of those names keeps their password: explicit entries win.
    pub fn anonymous(mut self, home: impl Into<PathBuf>) -> Self {
        self.anonymous = Some(User::new(ANONYMOUS_USER).home(home).read_only(true));
        self
    }

    /// Reads a users file: one user per line, `name:phc_hash:home:ro|rw`.
    ///
    /// `home` is relative to the storage root and may be empty (the root itself); `ro` makes
    /// the user read-only. Blank lines and lines starting with `#` are ignored. A malformed
    /// line fails the whole load with [`io::ErrorKind::InvalidData`], naming the line, so a
    /// typo never silently locks someone out or lets someone in.
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let text = fs::read_to_string(path)
            .map_err(|err| io::Error::new(err.kind(), format!("users file {}: {err}", path.display())))?;
        UserList::parse(&text)
            .map_err(|err| io::Error::new(err.kind(), format!("users file {}, {err}", path.display())))
    }

    /// Parses the contents of a users file (see [`UserList::from_file`]).
    pub fn parse(text: &str) -> io::Result<Self> {
        let mut list = UserList::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |what: &str| {
                io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {what}", index + 1))
            };
            let account = parse_line(line).map_err(|what| invalid(&what))?;
            if list.users.contains_key(&account.user.name) {
                return Err(invalid(&format!("duplicate user {:?}", account.user.name)));
            }
            list = list.user(account.user, account.hash);
        }
        Ok(list)
    }

    /// The number of configured users (not counting anonymous access).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is configured (anonymous access aside).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// A hash to verify unknown names against. Borrowing a configured user's hash gives the
    /// same cost as a real check (the result is discarded); the built-in dummy covers an
    /// empty list.
    fn dummy_hash(&self) -> String {
        self.users
            .values()
            .map(|account| &account.hash)
            .find(|hash| check_hash(hash).is_ok())
            .map_or(DEFAULT_DUMMY_HASH, String::as_str)
            .to_owned()
    }
}

/// Lists users without their hashes, which must not end up in logs.
impl fmt::Debug for UserList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&User> = self.users.values().map(|account| &account.user).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        f.debug_struct("UserList")
            .field("users", &users)
            .field("anonymous", &self.anonymous.as_ref().map(|user| &user.home))
            .finish()
    }
}

/// Parses `name:phc_hash:home:ro|rw`; the error says what is wrong.
fn parse_line(line: &str) -> Result<Account, String> {
    // The flag is split off the end so a home may itself contain ':'.
    let (rest, flag) = line.rsplit_once(':').ok_or("expected name:hash:home:ro|rw")?;
    let mut fields = rest.splitn(3, ':');
    let (Some(name), Some(hash), Some(home)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected name:hash:home:ro|rw".into());
    };
    if name.is_empty() {
        return Err("empty user name".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("user name {name:?} contains whitespace or control characters"));
    }
    check_hash(hash).map_err(|err| format!("password hash of {name:?}: {err}"))?;
    let home = PathBuf::from(home);
    if !home.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!(
            "home {:?} of {name:?} must be relative to the storage root, without '..'",
            home.display().to_string()
        ));
    }
    let read_only = match flag {
        "ro" => true,
        "rw" => false,
        other => return Err(format!("access {other:?} of {name:?} is neither ro nor rw")),
    };
    Ok(Account { user: User::new(name).home(home).read_only(read_only), hash: hash.to_owned() })
}

/// Checks that `hash` is an argon2 PHC string with parameters argon2 accepts.
fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|err| format!("not a PHC string ({err})"))?;
    Algorithm::try_from(parsed.algorithm)
        .map_err(|_| format!("algorithm {} is not argon2", parsed.algorithm))?;
    Params::try_from(&parsed).map_err(|err| format!("bad argon2 parameters ({err})"))?;
    if parsed.hash.is_none() {
        return Err("no hash output".into());
    }
    Ok(())
}

/// The argon2 instance for [`UserList::user_with_password`].
fn cheap_hasher() -> Result<Argon2<'static>, password_hash::Error> {
    let params = Params::new(CHEAP_M_COST, CHEAP_T_COST, CHEAP_P_COST, None)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt.
fn hash_with(argon: &Argon2<'_>, password: &[u8]) -> Result<String, password_hash::Error> {
    let mut salt = [0u8; 16];
    // try_fill_bytes, not SaltString::generate: the latter panics if the OS has no randomness.
    OsRng.try_fill_bytes(&mut salt).map_err(|_| password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(argon.hash_password(password, &salt)?.to_string())
}

/// Hashes a password with argon2id and argon2's default parameters into a PHC string, for a
/// users file.
pub fn hash_password(password: &[u8]) -> Result<String, password_hash::Error> {
    hash_with(&Argon2::default(), password)
}

/// Whether `password` matches the PHC string `hash`. The parameters come from the hash; a
/// hash that does not parse matches nothing.
fn verify(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A fixed pool of threads, one per core, that checks passwords. Argon2 is deliberately
/// slow and memory-hungry, so it runs off the shard threads, and on a bounded number of
/// threads: a flood of PASS commands queues up instead of starting a thread per attempt
/// (tokio's blocking pool would grow to hundreds, each keeping its stack and heap).
mod verifier {
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Arc, Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    fn pool() -> Option<&'static Mutex<Sender<Job>>> {
        static POOL: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
        POOL.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut started = 0;
            for i in 0..threads {
                let rx = Arc::clone(&rx);
                let spawned =
                    std::thread::Builder::new().name(format!("ringftp-auth-{i}")).spawn(move || work(&rx));
                started += usize::from(spawned.is_ok());
            }
            (started > 0).then(|| Mutex::new(tx))
        })
        .as_ref()
    }

    fn work(rx: &Mutex<Receiver<Job>>) {
        loop {
            // The lock is held only while taking a job, not while running it.
            let job = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(poisoned) => poisoned.into_inner().recv(),
            };
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
        }
    }

    /// Runs `check` on the pool and waits for its answer without blocking the caller's
    /// thread; `None` if the pool cannot run it. Without any pool thread it runs inline.
    pub(super) async fn run(check: impl FnOnce() -> bool + Send + 'static) -> Option<bool> {
        let Some(pool) = pool() else { return Some(check()) };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(check());
        });
        let sent = match pool.lock() {
            Ok(sender) => sender.send(job).is_ok(),
            Err(poisoned) => poisoned.into_inner().send(job).is_ok(),
        };
        if !sent {
            return None;
        }
        rx.await.ok()
    }
}

impl Authenticator for UserList {
    async fn authenticate(&self, username: &str, password: &[u8]) -> Result<User, AuthError> {
        let (user, hash) = match self.users.get(username) {
            Some(account) => {
                if let Some(cache) = &self.cache {
                    if cache.hit(username, &account.hash, password, Instant::now()) {
                        return Ok(account.user.clone());
                    }
                }
                (Some(account.user.clone()), account.hash.clone())
            }
            None => {
                if let Some(anonymous) = &self.anonymous {
                    if ANONYMOUS_NAMES.iter().any(|n| n.eq_ignore_ascii_case(username)) {
                        return Ok(anonymous.clone());
                    }
                }
                (None, self.dummy_hash())
            }
        };
        let owned = password.to_vec();
        let check = move || {
            let mut password = owned;
            let ok = verify(&hash, &password);
            // Best effort not to leave the password lying around in freed memory.
            password.fill(0);
            std::hint::black_box(&password);
            ok
        };
        let ok = verifier::run(check).await.ok_or_else(|| {
            tracing::error!("password verification failed to run");
            AuthError::Unavailable
        })?;
        match user {
            Some(user) if ok => {
                if let (Some(cache), Some(account)) = (&self.cache, self.users.get(username)) {
                    cache.remember(username, &account.hash, password, Instant::now());
                }
                Ok(user)
            }
            _ => Err(AuthError::BadCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dummy_hash_is_usable_and_matches_hash_password_cost() {
        check_hash(DEFAULT_DUMMY_HASH).unwrap();
        let dummy = PasswordHash::new(DEFAULT_DUMMY_HASH).unwrap();
        let fresh = hash_password(b"x").unwrap();
        let fresh = PasswordHash::new(&fresh).unwrap();
        assert_eq!(dummy.algorithm, fresh.algorithm);
        assert_eq!(dummy.params, fresh.params);
    }

    #[test]
    fn verified_passwords_are_cached_wrong_ones_are_not() {
        let list = UserList::new().user_with_password(User::new("a"), b"pw");
        let cache = list.cache.as_ref().unwrap();
        let hash = &list.users["a"].hash;
        let now = Instant::now();
        assert!(!cache.hit("a", hash, b"pw", now));
        cache.remember("a", hash, b"pw", now);
        assert!(cache.hit("a", hash, b"pw", now));
        assert!(!cache.hit("a", hash, b"pw2", now));
        assert!(!cache.hit("a", "other-hash", b"pw", now));
        assert!(!cache.hit("b", hash, b"pw", now));
        // Entries expire.
        assert!(!cache.hit("a", hash, b"pw", now + DEFAULT_CACHE_LIFETIME));
        // A changed list starts empty; zero turns it off.
        let list = list.user_with_password(User::new("b"), b"x");
        assert!(!list.cache.as_ref().unwrap().hit("a", &list.users["a"].hash, b"pw", now));
        assert!(UserList::new().password_cache(Duration::ZERO).cache.is_none());
    }

    #[test]
    fn user_with_password_uses_cheap_params() {
        let list = UserList::new().user_with_password(User::new("a"), b"pw");
        let hash = &list.users["a"].hash;
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(verify(hash, b"pw"));
        assert!(!verify(hash, b"pw2"));
        // Unknown names are checked against a hash of the same cost.
        assert_eq!(&list.dummy_hash(), hash);
        assert_eq!(UserList::new().dummy_hash(), DEFAULT_DUMMY_HASH);
    }
}
