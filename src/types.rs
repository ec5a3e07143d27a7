//! The plain vocabulary the protocol core, the session, storage and authentication share:
//! who is logged in and what they may do, what a file is, and what went wrong.
//!
//! Nothing here knows a runtime, a socket or a file descriptor, so `proto/` and `session/`
//! can use it and stay sans-IO; [`crate::storage`] and [`crate::auth`] re-export it.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::proto::reply::{code, ReplyCode};

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
    /// This user's policy for the control connection, over the server's (`None`: the
    /// server's). `Required` refuses the login on a clear control connection with 530, once
    /// the authenticator has named the user (the server-wide policy refuses at USER, before
    /// any password). Anything else cannot lift a server-wide `Required`, which is applied
    /// before the user is known.
    pub tls: Option<TlsPolicy>,
    /// This user's policy for data connections, over the server's (`None`: the server's).
    /// `Required`: transfers need PROT P (521 otherwise), even for an anonymous user the
    /// server exempts; `Optional` or `Off`: they do not, even where the server requires it.
    pub tls_data: Option<TlsPolicy>,
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
            tls: None,
            tls_data: None,
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

    /// Sets this user's control connection TLS policy (see the field `tls`).
    pub fn tls(mut self, policy: TlsPolicy) -> Self {
        self.tls = Some(policy);
        self
    }

    /// Sets this user's data connection TLS policy (see the field `tls_data`).
    pub fn tls_data(mut self, policy: TlsPolicy) -> Self {
        self.tls_data = Some(policy);
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

/// How much TLS a server asks of its control or data connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// No TLS: AUTH, PBSZ and PROT are 502 and FEAT does not list them.
    #[default]
    Off,
    /// TLS when the client asks for it.
    Optional,
    /// Clear text is refused (USER for the control connection, transfers for data).
    Required,
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

// Setting a file's time (MFMT, SITE UTIME) and mode (SITE CHMOD) changes the file as an
// upload does, so both need `write`: a new field would break every host that builds
// `Permissions` with a struct literal, and no server we know separates them by default.

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

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only in listings, which do not follow links; see
    /// [`Metadata::link_target`]).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// What the server needs to know about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// File, directory or link.
    pub kind: FileKind,
    /// Size in bytes.
    pub len: u64,
    /// Last modification, if the backend knows it.
    pub modified: Option<SystemTime>,
    /// Unix permission bits (`0o755`), shown in LIST and MLSD `UNIX.mode`.
    pub mode: u32,
    /// Number of hard links, shown in LIST.
    pub nlink: u64,
    /// For a symbolic link in a listing: what it points to, as `readlink` returns it (LIST
    /// shows `name -> target`, as `ls -l` does).
    pub link_target: Option<Vec<u8>>,
    /// For a symbolic link in a listing: the metadata of what it resolves to inside the
    /// user's root, which MLSD reports as MLST does for the same path (`None`: dangling, or
    /// pointing outside the root).
    pub link_resolved: Option<Box<Metadata>>,
    /// What tells this file apart from every other on the server (device and inode on a
    /// filesystem): the MLSx `unique` fact (RFC 3659 §7.5.2), which lets a client see
    /// hard links and loops. `None`: the backend has no such identity.
    pub unique: Option<(u64, u64)>,
    /// The numeric owner and group, the MLSx `UNIX.owner` / `UNIX.group` facts.
    pub owner: Option<(u32, u32)>,
}

impl Metadata {
    /// Metadata with the given kind and size; mode 0o644 (0o755 for directories), no time.
    pub fn new(kind: FileKind, len: u64) -> Self {
        let mode = if kind == FileKind::Dir { 0o755 } else { 0o644 };
        Metadata {
            kind,
            len,
            modified: None,
            mode,
            nlink: 1,
            link_target: None,
            link_resolved: None,
            unique: None,
            owner: None,
        }
    }

    /// Sets the identity behind the MLSx `unique` fact (e.g. device and inode).
    pub fn unique(mut self, a: u64, b: u64) -> Self {
        self.unique = Some((a, b));
        self
    }

    /// Sets the numeric owner and group.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// Sets the modification time.
    pub fn modified(mut self, time: SystemTime) -> Self {
        self.modified = Some(time);
        self
    }

    /// Sets the Unix permission bits.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Makes this a symbolic link to `target`, which resolves to `resolved` (`None`:
    /// dangling); the kind becomes [`FileKind::Symlink`].
    pub fn symlink(mut self, target: impl Into<Vec<u8>>, resolved: Option<Metadata>) -> Self {
        self.kind = FileKind::Symlink;
        self.link_target = Some(target.into());
        self.link_resolved = resolved.map(Box::new);
        self
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name as bytes (names need not be UTF-8).
    pub name: Vec<u8>,
    /// Its metadata; a symlink is not followed, but carries its target
    /// ([`Metadata::link_target`], [`Metadata::link_resolved`]).
    pub metadata: Metadata,
}

/// What went wrong in a storage operation; each kind is one FTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such file or directory (550).
    NotFound,
    /// The user may not do this (550).
    PermissionDenied,
    /// The target exists already (550).
    AlreadyExists,
    /// A directory was expected (550).
    NotADirectory,
    /// A file was expected but this is a directory (550).
    IsADirectory,
    /// RMD of a directory that is not empty (550).
    DirectoryNotEmpty,
    /// The file name is not allowed (553).
    InvalidName,
    /// The disk is full (452).
    InsufficientStorage,
    /// The user's quota is exceeded (552).
    QuotaExceeded,
    /// Temporarily unavailable, e.g. busy (450).
    Unavailable,
    /// Anything else: a local error in processing (451).
    Local,
    /// The backend cannot do this at all, e.g. append to an object or set a file's time (504,
    /// "not implemented for that parameter"): unlike 550, it tells the client that retrying
    /// will not help.
    NotSupported,
}

impl ErrorKind {
    /// The FTP reply code for this kind (RFC 959 §4.2.1).
    pub fn reply_code(self) -> ReplyCode {
        match self {
            ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::AlreadyExists
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::DirectoryNotEmpty => code::FILE_NOT_FOUND,
            ErrorKind::InvalidName => code::BAD_FILE_NAME,
            ErrorKind::InsufficientStorage => code::INSUFFICIENT_STORAGE,
            ErrorKind::QuotaExceeded => code::EXCEEDED_STORAGE,
            ErrorKind::Unavailable => code::FILE_UNAVAILABLE,
            ErrorKind::Local => code::LOCAL_ERROR,
            ErrorKind::NotSupported => code::PARAMETER_NOT_IMPLEMENTED,
        }
    }

    /// A short text for the reply.
    pub fn text(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "No such file or directory",
            ErrorKind::PermissionDenied => "Permission denied",
            ErrorKind::AlreadyExists => "File exists",
            ErrorKind::NotADirectory => "Not a directory",
            ErrorKind::IsADirectory => "Is a directory",
            ErrorKind::DirectoryNotEmpty => "Directory not empty",
            ErrorKind::InvalidName => "File name not allowed",
            ErrorKind::InsufficientStorage => "Insufficient storage space",
            ErrorKind::QuotaExceeded => "Disk quota exceeded",
            ErrorKind::Unavailable => "Resource temporarily unavailable",
            ErrorKind::Local => "Local error in processing",
            ErrorKind::NotSupported => "Not supported by this storage",
        }
    }

    /// Maps an errno to a kind.
    pub fn from_errno(errno: i32) -> ErrorKind {
        match errno {
            libc::ENOENT => ErrorKind::NotFound,
            libc::EACCES | libc::EPERM | libc::EROFS | libc::EXDEV | libc::ELOOP => {
                ErrorKind::PermissionDenied
            }
            libc::EEXIST => ErrorKind::AlreadyExists,
            libc::ENOTDIR => ErrorKind::NotADirectory,
            libc::EISDIR => ErrorKind::IsADirectory,
            libc::ENOTEMPTY => ErrorKind::DirectoryNotEmpty,
            libc::ENAMETOOLONG | libc::EINVAL | libc::EILSEQ => ErrorKind::InvalidName,
            libc::ENOSPC | libc::EFBIG => ErrorKind::InsufficientStorage,
            libc::EDQUOT => ErrorKind::QuotaExceeded,
            libc::EAGAIN | libc::EBUSY | libc::ETXTBSY => ErrorKind::Unavailable,
            _ => ErrorKind::Local,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// What happens to an upload that does not complete (client disconnect, ABOR, server stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UploadPolicy {
    /// The partial file stays under its name, so the client can resume with REST (vsftpd's
    /// behaviour).
    #[default]
    Keep,
    /// A STOR writes to a hidden file that replaces the target only when the transfer
    /// completes: a reader never sees half a file under the final name, and an interrupted
    /// upload (even by SIGKILL) leaves nothing. APPE and REST + STOR still write in place.
    Atomic,
}

/// How [`crate::Storage::open_write`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteMode {
    /// Create or truncate, write from the start (STOR).
    Truncate,
    /// Create if missing, write at the end (APPE).
    Append,
    /// Keep the first `offset` bytes, drop the rest, write from there (REST + STOR).
    Resume(u64),
    /// Create a file that must not exist yet (STOU).
    CreateNew,
    /// Write a new file that takes the place of `path` only when
    /// [`crate::Storage::commit_write`] is called; until then readers see the old file, or none
    /// ([`UploadPolicy::Atomic`]).
    Replace,
}

/// A digest HASH (draft-bryan-ftpext-hash) and XCRC/XMD5/XSHA1/XSHA256 compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlgo {
    /// SHA-256, the default.
    Sha256,
    /// SHA-1.
    Sha1,
    /// MD5.
    Md5,
    /// CRC-32 (IEEE, as zlib), 4 bytes big-endian.
    Crc32,
}

impl HashAlgo {
    /// Every algorithm, in the order FEAT lists them.
    pub const ALL: [HashAlgo; 4] = [HashAlgo::Sha256, HashAlgo::Sha1, HashAlgo::Md5, HashAlgo::Crc32];

    /// The name the HASH draft gives it (`SHA-256`, `SHA-1`, `MD5`, `CRC32`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "SHA-256",
            HashAlgo::Sha1 => "SHA-1",
            HashAlgo::Md5 => "MD5",
            HashAlgo::Crc32 => "CRC32",
        }
    }

    /// The algorithm with this name, case-insensitively.
    pub fn from_name(name: &[u8]) -> Option<HashAlgo> {
        HashAlgo::ALL.into_iter().find(|a| a.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// The timeouts of a session, which a running server can change
/// ([`crate::LiveLimits::set_timeouts`]); each is the [`crate::ServerBuilder`] option of the
/// same name, and none may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To log in ([`crate::ServerBuilder::login_timeout`]).
    pub login: std::time::Duration,
    /// Without a command outside a transfer ([`crate::ServerBuilder::idle_timeout`]).
    pub idle: std::time::Duration,
    /// For a data connection to be made ([`crate::ServerBuilder::data_timeout`]).
    pub data: std::time::Duration,
    /// For a transfer that moves no byte ([`crate::ServerBuilder::stall_timeout`]).
    pub stall: std::time::Duration,
}

impl Default for Timeouts {
    /// 60 s to log in, 300 s idle, 30 s for a data connection, 300 s stalled.
    fn default() -> Self {
        use std::time::Duration;
        Timeouts {
            login: Duration::from_secs(60),
            idle: Duration::from_secs(300),
            data: Duration::from_secs(30),
            stall: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// Whether every timeout is longer than zero.
    pub(crate) fn valid(&self) -> bool {
        !(self.login.is_zero() || self.idle.is_zero() || self.data.is_zero() || self.stall.is_zero())
    }
}
