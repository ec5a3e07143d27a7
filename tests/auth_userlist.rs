//! UserList: password checks, anonymous access, users files.

use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use ringftp::auth::hash_password;
use ringftp::{AuthError, Authenticator, User, UserList};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

fn list() -> UserList {
    UserList::new()
        .user_with_password(User::new("alice").home("alice"), b"wonderland")
        .user_with_password(User::new("bob").read_only(true), b"builder")
}

/// A users file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ringftp-auth-userlist-{}-{name}", std::process::id()));
        fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn userlist_is_shareable() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<UserList>();
}

#[test]
fn good_and_bad_passwords() {
    let users = list();
    block_on(async {
        let alice = users.authenticate("alice", b"wonderland").await.unwrap();
        assert_eq!(alice, User::new("alice").home("alice"));
        let bob = users.authenticate("bob", b"builder").await.unwrap();
        assert!(bob.is_read_only());

        assert_eq!(users.authenticate("alice", b"builder").await, Err(AuthError::BadCredentials));
        assert_eq!(users.authenticate("alice", b"").await, Err(AuthError::BadCredentials));
        assert_eq!(users.authenticate("Alice", b"wonderland").await, Err(AuthError::BadCredentials));
        assert_eq!(users.authenticate("carol", b"wonderland").await, Err(AuthError::BadCredentials));
        assert_eq!(users.authenticate("", b"").await, Err(AuthError::BadCredentials));
    });
}

#[test]
fn unknown_user_on_an_empty_list() {
    block_on(async {
        let users = UserList::new();
        assert_eq!(users.authenticate("root", b"toor").await, Err(AuthError::BadCredentials));
        assert_eq!(users.authenticate("anonymous", b"x").await, Err(AuthError::BadCredentials));
    });
}

#[test]
fn anonymous_logins() {
    let users = list().anonymous("pub");
    block_on(async {
        for name in ["anonymous", "ftp", "Anonymous", "FTP"] {
            let user = users.authenticate(name, b"guest@example.com").await.unwrap();
            assert_eq!(user.name, "anonymous");
            assert_eq!(user.home, Path::new("pub"));
            assert!(user.is_read_only());
        }
        assert!(users.authenticate("anonymous", b"").await.is_ok());
        // Real users still need their password.
        assert_eq!(users.authenticate("alice", b"x").await, Err(AuthError::BadCredentials));
    });
}

#[test]
fn configured_user_named_ftp_keeps_its_password() {
    let users = UserList::new().user_with_password(User::new("ftp"), b"pw").anonymous("");
    block_on(async {
        assert_eq!(users.authenticate("ftp", b"other").await, Err(AuthError::BadCredentials));
        assert!(!users.authenticate("ftp", b"pw").await.unwrap().is_read_only());
        assert!(users.authenticate("anonymous", b"other").await.unwrap().is_read_only());
    });
}

#[test]
fn hash_password_verifies_and_is_salted() {
    let hash = hash_password(b"secret").unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_ne!(hash, hash_password(b"secret").unwrap(), "salt must differ");
    let users = UserList::new().user(User::new("carol"), hash);
    block_on(async {
        assert!(users.authenticate("carol", b"secret").await.is_ok());
        assert_eq!(users.authenticate("carol", b"Secret").await, Err(AuthError::BadCredentials));
    });
}

#[test]
fn unusable_hash_never_verifies() {
    let users = UserList::new().user(User::new("dave"), "not a hash").user(User::new("erin"), "");
    block_on(async {
        assert_eq!(users.authenticate("dave", b"not a hash").await, Err(AuthError::BadCredentials));
        assert_eq!(users.authenticate("erin", b"").await, Err(AuthError::BadCredentials));
    });
}

#[test]
fn debug_does_not_show_hashes() {
    let hash = hash_password(b"pw").unwrap();
    let users = UserList::new().user(User::new("alice"), hash.clone()).anonymous("pub");
    let debug = format!("{users:?}");
    assert!(debug.contains("alice"), "{debug}");
    assert!(!debug.contains("argon2"), "{debug}");
    assert!(!debug.contains(&hash), "{debug}");
}

#[test]
fn from_file_reads_users() {
    let alice = hash_password(b"wonderland").unwrap();
    let bob = hash_password(b"builder").unwrap();
    let file = TempFile::new(
        "good",
        &format!("# users\n\nalice:{alice}:home/alice:rw\n  # indented comment\r\nbob:{bob}::ro\r\n"),
    );
    let users = UserList::from_file(file.path()).unwrap();
    assert_eq!(users.len(), 2);
    block_on(async {
        let user = users.authenticate("alice", b"wonderland").await.unwrap();
        assert_eq!(user, User::new("alice").home("home/alice"));
        let user = users.authenticate("bob", b"builder").await.unwrap();
        assert_eq!(user, User::new("bob").read_only(true));
        assert_eq!(users.authenticate("bob", b"wonderland").await, Err(AuthError::BadCredentials));
    });
}

#[test]
fn from_file_rejects_malformed_lines() {
    let hash = hash_password(b"pw").unwrap();
    let cases = [
        ("alice", "line 2", "expected name:hash:home:ro|rw"),
        ("alice:hash:rw", "line 2", "expected name:hash:home:ro|rw"),
        (":HASH::rw", "line 2", "empty user name"),
        ("alice:$argon2id$garbage::rw", "line 2", "password hash"),
        ("alice:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA::rw", "line 2", "not argon2"),
        ("alice:HASH:/etc:rw", "line 2", "must be relative"),
        ("alice:HASH:a/../..:rw", "line 2", "must be relative"),
        ("alice:HASH::rwx", "line 2", "neither ro nor rw"),
        ("alice:HASH::rw\nalice:HASH::ro", "line 3", "duplicate user"),
    ];
    for (i, (line, at, what)) in cases.into_iter().enumerate() {
        let contents = format!("# header\n{}\n", line.replace("HASH", &hash));
        let file = TempFile::new(&format!("bad-{i}"), &contents);
        let err = UserList::from_file(file.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{line}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(at) && msg.contains(what), "{line}: {msg}");
        assert!(!msg.contains(&hash), "the message must not echo a hash: {msg}");
    }
}

#[test]
fn from_file_missing_file() {
    let err = UserList::from_file("/nonexistent/ringftp-users").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/ringftp-users"), "{err}");
}
