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
mod hash;
#[cfg(feature = "object")]
mod object;
#[cfg(feature = "object")]
mod s3_api;
mod stored_digest;

pub use fs::{FsLister, FsStorage};
pub use hash::MAX_HASH_JOBS;
#[cfg(feature = "object")]
pub use object::{ObjectLister, ObjectStorage, S3Config};

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;

use crate::auth::User;
pub use crate::types::{DirEntry, ErrorKind, FileKind, HashAlgo, Metadata, UploadPolicy, WriteMode};

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

    /// What [`Storage::list`] returns.
    type Lister: Lister;

    /// Opens the directory `path` for listing (LIST, NLST, MLSD, STAT): its entries, without
    /// `.` and `..`, come a page at a time from the returned [`Lister`], and the data path
    /// (or, for STAT, the control connection) writes each page to the client before it asks
    /// for the next, so a listing holds one page, not the directory. A directory that cannot be listed fails here, before the 150.
    fn list(&self, user: &User, path: &Path) -> impl Future<Output = Result<Self::Lister>>;

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
    /// Stream sinks commit in `poll_shutdown`, which the data path calls only on success, and
    /// only while the client still holds its control connection.
    fn commit_write(
        &self,
        user: &User,
        path: &Path,
        file: &std::fs::File,
    ) -> impl Future<Output = Result<()>> {
        let _ = (user, path, file);
        std::future::ready(Ok(()))
    }

    /// Sets the modification time of `path` (MFMT, SITE UTIME). The session has checked
    /// [`crate::Permissions::write`]. The default refuses with [`ErrorKind::NotSupported`].
    fn set_modified(
        &self,
        user: &User,
        path: &Path,
        time: std::time::SystemTime,
    ) -> impl Future<Output = Result<()>> {
        let _ = (user, path, time);
        std::future::ready(Err(ErrorKind::NotSupported.into()))
    }

    /// Sets the permission bits (at most `0o777`) of `path` (SITE CHMOD). The session has
    /// checked [`crate::Permissions::write`]. The default refuses with
    /// [`ErrorKind::NotSupported`].
    fn set_mode(&self, user: &User, path: &Path, mode: u32) -> impl Future<Output = Result<()>> {
        let _ = (user, path, mode);
        std::future::ready(Err(ErrorKind::NotSupported.into()))
    }

    /// Bytes the user may still store at `path` (AVBL). The default refuses with
    /// [`ErrorKind::NotSupported`].
    fn available_space(&self, user: &User, path: &Path) -> impl Future<Output = Result<u64>> {
        let _ = (user, path);
        std::future::ready(Err(ErrorKind::NotSupported.into()))
    }

    /// Keeps `digest`, the digest of every byte just written into `file` by a whole upload
    /// (STOR or STOU from offset 0, with [`crate::ServerBuilder::hash_uploads`]), so that
    /// [`Storage::hash`] can answer later without reading the file. Called after the upload
    /// is complete (and committed); a failed or aborted upload keeps nothing. Best effort:
    /// an error is logged, not reported to the client. The default keeps nothing.
    fn store_digest(
        &self,
        user: &User,
        path: &Path,
        file: &std::fs::File,
        algo: HashAlgo,
        digest: &[u8],
    ) -> impl Future<Output = Result<()>> {
        let _ = (user, path, file, algo, digest);
        std::future::ready(Ok(()))
    }

    /// The digest of the whole file `path` (HASH, XCRC, XMD5, XSHA1, XSHA256).
    ///
    /// The default reads the file through [`Storage::open_read`]: a [`DataSource::File`] on
    /// tokio's blocking pool, off the shard, a stream on the shard. At most [`MAX_HASH_JOBS`]
    /// run at once in the process, counted by a backend that overrides this too if it calls
    /// [`hash_permit`]; beyond that [`ErrorKind::Unavailable`] (450), so HASH cannot be used
    /// to load the server.
    fn hash(&self, user: &User, path: &Path, algo: HashAlgo) -> impl Future<Output = Result<Vec<u8>>> {
        async move {
            let permit = hash_permit()?;
            let source = self.open_read(user, path, 0).await?;
            hash::hash_source(source, algo, permit).await
        }
    }
}

/// A directory being read, a page at a time (see [`Storage::list`]).
///
/// Listings are in no particular order (RFC 959 asks for none); the built-in backends sort
/// each page by name, so a directory that fits in one page is listed sorted.
pub trait Lister: 'static {
    /// Appends the next page of entries to `out` (which the caller empties between pages)
    /// and says whether there was one: `Ok(false)` once the directory is exhausted. A page
    /// may be empty. Its size is the backend's memory bound: [`FsStorage`] reads up to
    /// 1,024 entries (a few `getdents` calls), `ObjectStorage` one `ListObjectsV2` page.
    fn next_page(&mut self, out: &mut Vec<DirEntry>) -> impl Future<Output = Result<bool>>;
}

/// A listing already in memory, as one page: for backends whose directories are small.
impl Lister for std::vec::IntoIter<DirEntry> {
    async fn next_page(&mut self, out: &mut Vec<DirEntry>) -> Result<bool> {
        if self.len() == 0 {
            return Ok(false);
        }
        out.extend(self);
        Ok(true)
    }
}

#[cfg(feature = "object")]
pub(crate) use hash::BlockHasher;
pub(crate) use hash::Hasher;
pub use hash::{hash_permit, HashPermit};

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
    /// A byte stream that keeps the upload's digest itself, for a store that can only take it
    /// with the bytes (S3 sets object metadata in the request that creates the object). With
    /// [`crate::ServerBuilder::hash_uploads`], the data path hashes a whole upload as it
    /// copies it and puts the digest in the [`DigestSlot`] before it calls `poll_shutdown`;
    /// [`Storage::store_digest`] is not called. The stream keeps a clone of the slot.
    StreamWithDigest(Pin<Box<dyn tokio::io::AsyncWrite>>, DigestSlot),
}

/// Where the data path hands a [`DataSink::StreamWithDigest`] its upload's digest: a shared
/// cell (one upload, one shard: no lock). The stream may also say early that it can no longer
/// use one, and the data path stops hashing.
#[derive(Debug, Clone, Default)]
pub struct DigestSlot(std::rc::Rc<std::cell::RefCell<DigestState>>);

#[derive(Debug, Default)]
enum DigestState {
    /// The data path has not said whether it hashes this upload.
    #[default]
    Wanted,
    /// The data path hashes this upload with this algorithm.
    Hashing(HashAlgo),
    /// The stream hashes the bytes itself ([`DigestSlot::take_over`]).
    TakenOver,
    Unwanted,
    Digest(HashAlgo, Vec<u8>),
}

impl DigestSlot {
    /// An empty slot that wants a digest.
    pub fn new() -> Self {
        DigestSlot::default()
    }

    /// The digest the data path left (once, at shutdown), if it computed one.
    pub fn take(&self) -> Option<(HashAlgo, Vec<u8>)> {
        match std::mem::replace(&mut *self.0.borrow_mut(), DigestState::Unwanted) {
            DigestState::Digest(algo, digest) => Some((algo, digest)),
            _ => None,
        }
    }

    /// Tells the data path not to compute a digest for this upload any more.
    pub fn refuse(&self) {
        *self.0.borrow_mut() = DigestState::Unwanted;
    }

    /// Takes the hashing over from the data path, before the first byte: the algorithm the
    /// data path would hash this upload with (none if it hashes none), after which it hashes
    /// nothing and leaves no digest. For a stream that holds the bytes in large buffers anyway
    /// and can hash them off the shard (an S3 upload's parts).
    #[cfg_attr(not(feature = "object"), allow(dead_code))]
    pub(crate) fn take_over(&self) -> Option<HashAlgo> {
        let mut state = self.0.borrow_mut();
        match *state {
            DigestState::Hashing(algo) => {
                *state = DigestState::TakenOver;
                Some(algo)
            }
            _ => None,
        }
    }

    /// Says that the data path hashes this upload, before its first byte.
    pub(crate) fn begin(&self, algo: HashAlgo) {
        let mut state = self.0.borrow_mut();
        if matches!(*state, DigestState::Wanted) {
            *state = DigestState::Hashing(algo);
        }
    }

    /// Whether the data path should (still) hash the upload.
    pub(crate) fn wanted(&self) -> bool {
        matches!(*self.0.borrow(), DigestState::Wanted | DigestState::Hashing(_))
    }

    /// Leaves the digest, if one is still wanted.
    pub(crate) fn put(&self, algo: HashAlgo, digest: Vec<u8>) {
        let mut state = self.0.borrow_mut();
        if matches!(*state, DigestState::Wanted | DigestState::Hashing(_)) {
            *state = DigestState::Digest(algo, digest);
        }
    }
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
            DataSink::StreamWithDigest(_, _) => f.write_str("StreamWithDigest"),
        }
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
