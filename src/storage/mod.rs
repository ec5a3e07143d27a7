//! Storage: the trait a host implements to serve files, its error kinds, and the built-in
//! filesystem backend.
//!
//! Every error carries an [`ErrorKind`] that *is* the FTP reply the client gets (RFC 959 §4.2:
//! 550 for a missing or forbidden file, 452 for a full disk, 552 for an exceeded quota), so a
//! backend never formats replies. `From<io::Error>` maps errno values onto those kinds.
//!
//! Paths given to a backend are relative to the user's home (see [`crate::User::home`]),
//! already normalised by the session: no `..`, no `.`, no empty or absolute components. The
//! empty path is the home itself. A backend must still confine itself (the filesystem backend
//! lets the kernel do it with `openat2(RESOLVE_BENEATH)`), because symlinks are resolved below it.

mod fs;
#[cfg(feature = "object")]
mod object;

pub use fs::FsStorage;
#[cfg(feature = "object")]
pub use object::{ObjectStorage, S3Config};

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::time::SystemTime;

use crate::auth::User;

/// The result type of storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// What a host implements to serve its files over FTP.
///
/// Methods take `&self` and return futures that need not be `Send`: each shard runs on one
/// thread and drives its own sessions, so a backend can keep per-call state in the future.
/// The backend itself is shared by all shards, hence `Send + Sync`.
pub trait Storage: Send + Sync + 'static {
    /// Metadata of `path`, following symlinks (MLST, SIZE, MDTM, CWD, RNFR).
    fn metadata(&self, user: &User, path: &Path) -> impl Future<Output = Result<Metadata>>;

    /// The entries of the directory `path`, without `.` and `..` (LIST, NLST, MLSD).
    fn list(&self, user: &User, path: &Path) -> impl Future<Output = Result<Vec<DirEntry>>>;

    /// Opens `path` for reading, positioned at `offset` (RETR, after REST).
    fn open_read(&self, user: &User, path: &Path, offset: u64) -> impl Future<Output = Result<DataSource>>;

    /// Opens `path` for writing as `mode` says (STOR, APPE, STOU, REST + STOR).
    fn open_write(&self, user: &User, path: &Path, mode: WriteMode)
        -> impl Future<Output = Result<DataSink>>;

    /// Creates the directory `path` (MKD).
    fn make_dir(&self, user: &User, path: &Path) -> impl Future<Output = Result<()>>;

    /// Removes the empty directory `path` (RMD).
    fn remove_dir(&self, user: &User, path: &Path) -> impl Future<Output = Result<()>>;

    /// Removes the file `path` (DELE).
    fn remove_file(&self, user: &User, path: &Path) -> impl Future<Output = Result<()>>;

    /// Renames `from` to `to`, replacing a file at `to` (RNFR + RNTO).
    fn rename(&self, user: &User, from: &Path, to: &Path) -> impl Future<Output = Result<()>>;

    /// Makes a finished upload opened with [`WriteMode::Replace`] appear under `path`, all at
    /// once. Called only after every byte arrived; an upload that fails is dropped instead and
    /// must leave no trace. The default does nothing (backends without `Replace` support).
    /// Stream sinks commit in `poll_shutdown`, which the data path calls only on success.
    fn commit_write(
        &self,
        user: &User,
        path: &Path,
        file: &std::fs::File,
    ) -> impl Future<Output = Result<()>> {
        let _ = (user, path, file);
        std::future::ready(Ok(()))
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

/// How [`Storage::open_write`] opens a file.
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
    /// [`Storage::commit_write`] is called; until then readers see the old file, or none
    /// ([`UploadPolicy::Atomic`]).
    Replace,
}

/// Where the bytes of a download come from.
#[non_exhaustive]
pub enum DataSource {
    /// A file descriptor positioned at the requested offset: the data path splices from it
    /// (file -> pipe -> socket) without copying through user space.
    File(std::fs::File),
    /// Any other byte stream, already at the requested offset; copied through a buffer.
    Stream(Pin<Box<dyn tokio::io::AsyncRead>>),
}

/// Where the bytes of an upload go.
#[non_exhaustive]
pub enum DataSink {
    /// A file descriptor positioned where writing starts (or opened with `O_APPEND`): the data
    /// path splices into it (socket -> pipe -> file).
    File(std::fs::File),
    /// Any other byte stream; copied through a buffer and shut down at the end.
    Stream(Pin<Box<dyn tokio::io::AsyncWrite>>),
}

impl fmt::Debug for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::File(file) => f.debug_tuple("File").field(file).finish(),
            DataSource::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl fmt::Debug for DataSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSink::File(file) => f.debug_tuple("File").field(file).finish(),
            DataSink::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only in listings, which do not follow links).
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
}

impl Metadata {
    /// Metadata with the given kind and size; mode 0o644 (0o755 for directories), no time.
    pub fn new(kind: FileKind, len: u64) -> Self {
        let mode = if kind == FileKind::Dir { 0o755 } else { 0o644 };
        Metadata { kind, len, modified: None, mode, nlink: 1 }
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
    /// Its metadata; symlinks are not followed.
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
    /// The backend cannot do this at all, e.g. append to an object (504, "not implemented for
    /// that parameter"): unlike 550, it tells the client that retrying will not help.
    NotSupported,
}

impl ErrorKind {
    /// The FTP reply code for this kind (RFC 959 §4.2.1).
    pub fn reply_code(self) -> u16 {
        match self {
            ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::AlreadyExists
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::DirectoryNotEmpty => 550,
            ErrorKind::InvalidName => 553,
            ErrorKind::InsufficientStorage => 452,
            ErrorKind::QuotaExceeded => 552,
            ErrorKind::Unavailable => 450,
            ErrorKind::Local => 451,
            ErrorKind::NotSupported => 504,
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

/// A storage failure: a kind (the reply) and, for logs, the underlying cause.
#[derive(Debug)]
pub struct StorageError {
    kind: ErrorKind,
    source: Option<io::Error>,
}

impl StorageError {
    /// An error of the given kind with no underlying cause.
    pub fn new(kind: ErrorKind) -> Self {
        StorageError { kind, source: None }
    }

    /// An error of the given kind with its cause, for backends whose errors are not
    /// `io::Error`s (the cause is logged, the kind answers the client).
    pub fn with_source(kind: ErrorKind, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StorageError { kind, source: Some(io::Error::other(source)) }
    }

    /// The kind, which decides the reply.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<ErrorKind> for StorageError {
    fn from(kind: ErrorKind) -> Self {
        StorageError::new(kind)
    }
}

impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> Self {
        let kind = match err.raw_os_error() {
            Some(errno) => ErrorKind::from_errno(errno),
            None => match err.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                _ => ErrorKind::Local,
            },
        };
        StorageError { kind, source: Some(err) }
    }
}

impl From<nix::errno::Errno> for StorageError {
    fn from(errno: nix::errno::Errno) -> Self {
        StorageError::from(io::Error::from(errno))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(err) => write!(f, "{}: {err}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
