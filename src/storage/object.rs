//! The object-storage backend: a bucket of an S3-compatible store (AWS S3, MinIO, Ceph RGW,
//! Garage, ...) served as a directory tree, through [opendal]'s S3 service.
//!
//! # The tree over keys
//! A path is a key below the configured prefix and the user's home (`prefix/home/a/b.txt`).
//! Directories are key prefixes ending in `/`: MKD writes an empty `dir/` marker object so an
//! empty directory can exist; RMD removes that marker, and only when nothing else is below it.
//! A prefix that has objects below it is a directory with or without a marker (CWD, LIST work).
//! Listings page through `ListObjectsV2` with delimiter `/`, and each page goes to the client
//! before the next is asked for ([`ObjectLister`]): a listing holds one page (1,000 keys), not
//! the directory.
//!
//! # Transfers
//! RETR is a ranged GET (REST offset = the range start), streamed. STOR is a multipart upload
//! in [`PART_SIZE`] parts, sent by [`S3Api`] rather than opendal's writer, each streaming to
//! the store as it fills while the part before it finishes: an upload holds at most two parts
//! in memory, 16 MiB, plus the data path's 64 KiB read buffer ([`ObjectWriter`]). The object appears only
//! when the upload completes (S3 writes are atomic), so [`WriteMode::Replace`] needs no commit
//! step. An upload that ends any other way (ABOR, the client resets, a storage error) aborts
//! its multipart upload on the store, from the sink's `Drop`, so no parts are left behind; a
//! server killed mid-upload leaves them to the bucket's `AbortIncompleteMultipartUpload`
//! lifecycle rule.
//! APPE and REST + STOR get 504 ([`ErrorKind::NotSupported`]): an object cannot be appended to.
//! With [`crate::ServerBuilder::hash_uploads`], an upload keeps its digest as user metadata
//! (`x-amz-meta-ringftp-sha256: <hex>`) and HASH answers from a HEAD. An upload of one part
//! at most (8 MiB) is one PutObject that carries it. A larger upload is multipart, and S3
//! takes metadata only when the upload is created, before any byte: once it has completed,
//! a CopyObject of the object onto itself with `x-amz-metadata-directive: REPLACE` adds the
//! digest ([`S3Api`], signed here as opendal 0.59's copy cannot set the directive),
//! on condition that the object still has the ETag the completion returned, so an object
//! someone else wrote meanwhile is never stamped with this upload's digest. Past 5 GiB, which
//! one CopyObject cannot copy, it is a multipart copy onto itself in 1 GiB parts, each on the
//! same condition. The copy is S3's, on the store (no byte comes back), and gives the object
//! a new ETag (the MD5 of its bytes, or `<md5 of part md5s>-<parts>` of the copy's parts) and
//! modification time; the 226 waits for it, so a HASH right after it answers from the
//! metadata. A failed copy is logged and the upload still succeeds: the HASH of that object
//! is computed on demand (the object downloaded and hashed). A rename's CopyObject keeps the
//! metadata with the bytes.
//! RNFR/RNTO of a file is a server-side copy and a delete (not atomic; S3's single CopyObject
//! limits it to 5 GiB); of a directory, 504. The largest upload is 10,000 parts, 78 GiB.
//!
//! # Runtime and retries
//! Every shard gets its own opendal operator and HTTP client, built on first use on that
//! shard's thread: requests, connection-pool tasks and their sockets stay on the shard's
//! current-thread tokio runtime (opendal spawns no tasks for single PUTs and single-stream
//! reads, and needs no multi-threaded runtime; an upload's part goes out from a task spawned
//! on the shard). Reads, listings, HEAD, copy, delete and each upload part are retried with
//! backoff when the store reports a temporary failure; a single PUT, the creation and the
//! completion of a multipart upload are not (a retried CreateMultipartUpload whose reply was
//! lost would leave an orphaned upload): a failed upload gets 451 and the client sends it
//! again.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::path::{Component, Path};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use opendal::layers::RetryLayer;
use opendal::{EntryMode, HttpTransporter, OperationContext, Operator};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::s3_api::{Failure, S3Api, SentPart, Upload, MAX_COPY, MIN_PART, PART_TIMEOUT};
use super::{
    hash, hash_permit, stored_digest, BlockHasher, DataSink, DataSource, DigestSlot, DirEntry, ErrorKind,
    FileKind, HashAlgo, Lister, Metadata, Result, Storage, StorageError, WriteMode,
};
use crate::auth::{Permissions, User};

/// The size of an upload's parts. S3 requires at least 5 MiB (but the last) and allows 10,000
/// parts; an upload buffers up to two of them. [`ObjectWriter`] cuts the parts itself.
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many parts that took more than one request an upload keeps until it completes, to
/// send them again if the completion is refused ([`S3Api::complete_upload`]): rare, and
/// bounded so a store that fails every part does not hold the whole upload in memory.
const KEPT_PARTS: usize = 2;

/// Where the objects are and how to reach them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The key prefix everything is stored under (empty: the whole bucket).
    pub prefix: String,
    /// The store's URL (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`); default:
    /// AWS.
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`, which most other stores accept).
    pub region: Option<String>,
    /// Address the bucket as `endpoint/bucket` rather than `bucket.endpoint` (MinIO, moto and
    /// most self-hosted stores need it).
    pub path_style: bool,
    /// Static credentials; without them the usual `AWS_*` environment variables, the AWS config
    /// files and the instance metadata service are asked, in that order.
    pub access_key_id: Option<String>,
    /// The secret for [`S3Config::access_key_id`].
    pub secret_access_key: Option<String>,
    /// Keys per `ListObjectsV2` page (`max-keys`, 1 to 1,000; default 1,000): what a listing
    /// holds in memory at once, against one request per page.
    pub list_page: usize,
    /// The largest object the digest stamp copies in one CopyObject ([`S3Config::copy_limit`]).
    pub(super) copy_limit: u64,
    /// Upload parts carry their CRC32 for the store to check (default off; see
    /// [`S3Config::checksums`]).
    pub checksums: bool,
}

impl S3Config {
    /// A bucket with no prefix, on AWS, virtual-host style, credentials from the environment.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            list_page: LIST_PAGE,
            copy_limit: MAX_COPY,
            checksums: false,
        }
    }

    /// Parses `s3://BUCKET/PREFIX` (the prefix is optional).
    pub fn from_url(url: &str) -> io::Result<Self> {
        let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?}: {msg}"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| invalid("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket name"));
        }
        Ok(S3Config::new(bucket).prefix(prefix))
    }

    /// Stores everything under this key prefix (`a/b` and `/a/b/` are the same).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_matches('/').to_owned();
        self
    }

    /// The store's URL.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Path-style addressing (`endpoint/bucket/key`).
    pub fn path_style(mut self, on: bool) -> Self {
        self.path_style = on;
        self
    }

    /// Whether multipart uploads declare CRC32 and each part carries the CRC32 of its bytes,
    /// which the store checks before it keeps the part (as AWS's SDKs do since 2025): the
    /// bytes' integrity from ringftpd to the disk, where plain HTTP has only TCP's checksum.
    /// Off by default, for what it costs the store: a part streamed as it arrives carries its
    /// CRC as an `aws-chunked` trailer, and Garage 2.5 spends 1.7 times the CPU on such a
    /// part (its chunk parser copies the bytes), so uploads to it run at two thirds of the
    /// speed. It makes moto faster (without a declared algorithm moto computes a CRC64NVME
    /// of the whole object in Python). Stores that predate flexible checksums (Ceph RGW
    /// before 18, MinIO before 2023) refuse it.
    pub fn checksums(mut self, on: bool) -> Self {
        self.checksums = on;
        self
    }

    /// Keys per `ListObjectsV2` page, clamped to 1..=1,000 (S3's maximum).
    pub fn list_page(mut self, keys: usize) -> Self {
        self.list_page = keys.clamp(1, LIST_PAGE);
        self
    }

    /// Lowers the size past which the digest stamp copies the object in parts rather than in
    /// one CopyObject (S3's 5 GiB), to at least 5 MiB, S3's smallest part: for tests, which
    /// cannot upload 5 GiB to exercise the multipart copy.
    #[doc(hidden)]
    pub fn copy_limit(mut self, bytes: u64) -> Self {
        self.copy_limit = bytes.clamp(MIN_PART, MAX_COPY);
        self
    }

    /// Static credentials.
    pub fn credentials(mut self, access_key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret.into());
        self
    }
}

/// Serves a bucket (or a prefix of it) as a directory tree; see the [module docs](self).
#[derive(Debug)]
pub struct ObjectStorage {
    /// Tells this storage's per-thread operators from another instance's.
    id: u64,
    config: S3Config,
}

/// One shard's operators: `retrying` for idempotent calls, `once` for single-part uploads, and
/// `api` for what opendal cannot send (or not as an upload needs it).
#[derive(Clone)]
struct Operators {
    retrying: Operator,
    once: Operator,
    api: Arc<S3Api>,
}

thread_local! {
    /// The operators of every [`ObjectStorage`] used on this thread, by id.
    static OPERATORS: RefCell<Vec<(u64, Operators)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl ObjectStorage {
    /// Serves the bucket `config` names. Checks the configuration but does not contact the
    /// store (which may be down at start and up later).
    pub fn new(config: S3Config) -> io::Result<Self> {
        let storage = ObjectStorage { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), config };
        storage.build().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(storage)
    }

    /// The configuration as given.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn build(&self) -> std::result::Result<Operators, String> {
        let c = &self.config;
        let mut b = opendal::services::S3::default()
            .bucket(&c.bucket)
            .root(&format!("/{}", c.prefix))
            .region(c.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &c.endpoint {
            b = b.endpoint(endpoint);
        }
        if !c.path_style {
            b = b.enable_virtual_host_style();
        }
        if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
            b = b.access_key_id(id).secret_access_key(secret);
        }
        // Bounded waits on a store that accepts connections but stops answering.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let transport =
            HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(client.clone()));
        let api = Arc::new(S3Api::new(c, client, transport.clone()));
        let once = Operator::new(b)
            .map_err(|e| format!("bad S3 configuration: {e}"))?
            .with_context(OperationContext::new().with_http_transport(transport));
        let retrying = once.clone().layer(
            RetryLayer::new()
                .with_max_times(3)
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_jitter(),
        );
        Ok(Operators { retrying, once, api })
    }

    /// This shard's operators, built on first use.
    fn ops(&self) -> Result<Operators> {
        OPERATORS.with(|cell| {
            let mut all = cell.borrow_mut();
            if let Some((_, ops)) = all.iter().find(|(id, _)| *id == self.id) {
                return Ok(ops.clone());
            }
            let ops = self.build().map_err(|e| StorageError::with_source(ErrorKind::Local, e))?;
            all.push((self.id, ops.clone()));
            Ok(ops)
        })
    }
}

/// The key of a path: below the prefix, without a leading or trailing `/`, and how much of it
/// is the user's home (which is always a directory, even before anything is stored in it).
struct Key {
    key: String,
    home: usize,
}

impl Key {
    fn is_home(&self) -> bool {
        self.key.len() <= self.home
    }

    /// The parent directory (the home's parent is the home: nothing above it is reachable).
    fn parent(&self) -> Key {
        let parent = if self.is_home() { &self.key } else { parent(&self.key) };
        Key { key: parent.to_owned(), home: self.home.min(parent.len()) }
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.key
    }
}

/// The key of `path` below the user's home.
fn key(user: &User, path: &Path) -> Result<Key> {
    let home = join(user.home.components())?;
    let rest = join(path.components())?;
    let key = match (home.is_empty(), rest.is_empty()) {
        (_, true) => home.clone(),
        (true, false) => rest,
        (false, false) => format!("{home}/{rest}"),
    };
    Ok(Key { key, home: home.len() })
}

/// Path components as a key (`a/b`).
fn join<'a>(components: impl Iterator<Item = Component<'a>>) -> Result<String> {
    let mut key = String::new();
    for part in components {
        match part {
            Component::Normal(name) => {
                // Keys are UTF-8; `/` inside a name cannot occur in a path component.
                let name = name.to_str().ok_or(ErrorKind::InvalidName)?;
                if !key.is_empty() {
                    key.push('/');
                }
                key.push_str(name);
            }
            Component::CurDir => {}
            // The session normalises paths; a home with `..` is refused rather than followed.
            _ => return Err(ErrorKind::PermissionDenied.into()),
        }
    }
    Ok(key)
}

/// The directory form of a key, as opendal spells it (`a/b/`; the root is `/`).
fn dir(key: &str) -> String {
    if key.is_empty() {
        "/".to_owned()
    } else {
        format!("{key}/")
    }
}

/// The key's parent (empty for a top-level key).
fn parent(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn permit(user: &User, allowed: fn(&Permissions) -> bool) -> Result<()> {
    if allowed(&user.permissions) {
        Ok(())
    } else {
        Err(ErrorKind::PermissionDenied.into())
    }
}

/// The reply an opendal error deserves.
fn kind_of(err: &opendal::Error) -> ErrorKind {
    use opendal::ErrorKind as K;
    match err.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::AlreadyExists | K::ConditionNotMatch => ErrorKind::AlreadyExists,
        K::IsADirectory => ErrorKind::IsADirectory,
        K::NotADirectory => ErrorKind::NotADirectory,
        K::RateLimited => ErrorKind::Unavailable,
        K::Unsupported => ErrorKind::NotSupported,
        // Network errors, 5xx answers, and anything opendal cannot classify.
        _ => ErrorKind::Local,
    }
}

fn error(err: opendal::Error) -> StorageError {
    let kind = kind_of(&err);
    if kind == ErrorKind::Local || kind == ErrorKind::Unavailable {
        tracing::warn!(error = %err, "object store request failed");
    }
    StorageError::with_source(kind, err)
}

/// An opendal error as the `io::Error` a stream returns (the data path maps it to 451).
fn io_error(err: opendal::Error) -> io::Error {
    tracing::warn!(error = %err, "object store transfer failed");
    let kind = match kind_of(&err) {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

fn to_metadata(meta: &opendal::Metadata) -> Metadata {
    let m = match meta.mode() {
        EntryMode::DIR => Metadata::new(FileKind::Dir, 0),
        _ => Metadata::new(FileKind::File, meta.content_length()),
    };
    match meta.last_modified() {
        Some(t) => m.modified(SystemTime::from(t)),
        None => m,
    }
}

/// The user metadata name an upload's digest is kept under (`ringftp-sha256`; S3 sends it as
/// `x-amz-meta-ringftp-sha256`).
fn metadata_key(algo: HashAlgo) -> String {
    format!("ringftp-{}", stored_digest::short_name(algo))
}

/// The digest kept in the object's metadata for `algo`, if there is a well-formed one.
fn stored(meta: &opendal::Metadata, algo: HashAlgo) -> Option<Vec<u8>> {
    let hex = meta.user_metadata()?.get(&metadata_key(algo))?;
    // Of the algorithm's length: anything else was not written by us.
    stored_digest::from_hex(hex.trim().as_bytes())
        .filter(|d| d.len() == super::Hasher::new(algo).finish().len())
}

impl ObjectStorage {
    /// The object `key`, if there is one (HEAD).
    async fn head(&self, ops: &Operators, key: &str) -> Result<Option<opendal::Metadata>> {
        if key.is_empty() {
            return Ok(None);
        }
        match ops.retrying.stat(key).await {
            Ok(meta) if meta.mode() == EntryMode::FILE => Ok(Some(meta)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(e)),
        }
    }

    /// Up to `limit` entries directly below the prefix `key/`, not counting its marker, and
    /// whether the marker exists.
    async fn peek_dir(&self, ops: &Operators, key: &str, limit: usize) -> Result<(usize, bool)> {
        let prefix = dir(key);
        let mut lister = ops.retrying.lister_with(&prefix).limit(limit + 1).await.map_err(error)?;
        let (mut children, mut marker) = (0, false);
        while let Some(entry) = next_entry(&mut lister).await? {
            if entry.path() == prefix {
                marker = true;
            } else {
                children += 1;
            }
            if children >= limit {
                break;
            }
        }
        Ok((children, marker))
    }

    /// Whether `key` is a directory: the home, a marker, or a prefix with objects below it.
    async fn is_dir(&self, ops: &Operators, key: &Key) -> Result<bool> {
        if key.is_home() {
            return Ok(true);
        }
        let (children, marker) = self.peek_dir(ops, key, 1).await?;
        Ok(children > 0 || marker)
    }

    /// Fails unless the parent of `key` is a directory (as a filesystem would).
    async fn require_parent(&self, ops: &Operators, key: &Key) -> Result<()> {
        let parent = key.parent();
        if self.is_dir(ops, &parent).await? {
            Ok(())
        } else if self.head(ops, &parent).await?.is_some() {
            Err(ErrorKind::NotADirectory.into())
        } else {
            Err(ErrorKind::NotFound.into())
        }
    }
}

/// Keys a `ListObjectsV2` page asks for (`max-keys`) by default: S3's maximum.
const LIST_PAGE: usize = 1000;

/// A directory of [`ObjectStorage`] being listed: each [`Lister::next_page`] is what one
/// `ListObjectsV2` page (up to [`S3Config::list_page`] keys and common prefixes) holds,
/// sorted by name.
pub struct ObjectLister {
    /// `None` once the listing is exhausted or failed.
    lister: Option<opendal::Lister>,
    /// The directory's prefix (`a/b/`), whose own marker object is not listed.
    prefix: String,
    /// Keys per page.
    page: usize,
}

impl std::fmt::Debug for ObjectLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLister").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Lister for ObjectLister {
    async fn next_page(&mut self, out: &mut Vec<DirEntry>) -> Result<bool> {
        let Some(lister) = &mut self.lister else {
            return Ok(false);
        };
        let start = out.len();
        // opendal fetches a page when its buffer runs dry: take what it has without waiting
        // again, so a page of entries becomes a page of the listing.
        let (mut seen, mut done) = (0usize, false);
        let polled = std::future::poll_fn(|cx| loop {
            if seen >= self.page {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut *lister).poll_next(cx) {
                Poll::Ready(Some(Ok(entry))) => {
                    seen += 1;
                    let name = entry.name().trim_end_matches('/');
                    if entry.path() != self.prefix && !name.is_empty() {
                        let metadata = to_metadata(entry.metadata());
                        out.push(DirEntry { name: name.as_bytes().to_vec(), metadata });
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(error(e))),
                Poll::Ready(None) => {
                    done = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if seen > 0 => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        if done || polled.is_err() {
            self.lister = None;
        }
        polled?;
        if let Some(page) = out.get_mut(start..) {
            page.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        }
        if seen > 0 {
            tracing::debug!(prefix = %self.prefix, keys = seen, "listing page");
        }
        Ok(seen > 0)
    }
}

async fn next_entry(lister: &mut opendal::Lister) -> Result<Option<opendal::Entry>> {
    std::future::poll_fn(|cx| Pin::new(&mut *lister).poll_next(cx)).await.transpose().map_err(error)
}

impl Storage for ObjectStorage {
    async fn metadata(&self, user: &User, path: &Path) -> Result<Metadata> {
        let key = key(user, path)?;
        if key.is_home() {
            return Ok(Metadata::new(FileKind::Dir, 0));
        }
        let ops = self.ops()?;
        if let Some(meta) = self.head(&ops, &key).await? {
            return Ok(to_metadata(&meta));
        }
        if self.is_dir(&ops, &key).await? {
            return Ok(Metadata::new(FileKind::Dir, 0));
        }
        Err(ErrorKind::NotFound.into())
    }

    type Lister = ObjectLister;

    async fn list(&self, user: &User, path: &Path) -> Result<ObjectLister> {
        let prefix = dir(&key(user, path)?);
        let ops = self.ops()?;
        let page = self.config.list_page.clamp(1, LIST_PAGE);
        let lister = ops.retrying.lister_with(&prefix).limit(page).await.map_err(error)?;
        Ok(ObjectLister { lister: Some(lister), prefix, page })
    }

    async fn open_read(&self, user: &User, path: &Path, offset: u64) -> Result<DataSource> {
        permit(user, |p| p.read)?;
        let key = key(user, path)?;
        let ops = self.ops()?;
        // HEAD first, so a missing file gets 550 before the 150, not 451 after it.
        let Some(meta) = self.head(&ops, &key).await? else {
            return Err(if self.is_dir(&ops, &key).await? {
                ErrorKind::IsADirectory
            } else {
                ErrorKind::NotFound
            }
            .into());
        };
        let len = meta.content_length();
        if offset >= len {
            // REST at or past the end reads nothing (S3 would answer 416).
            return Ok(DataSource::Stream(Box::pin(tokio::io::empty())));
        }
        let reader = ops.retrying.reader(&key).await.map_err(error)?;
        let stream = reader.into_bytes_stream(offset..len).await.map_err(error)?;
        Ok(DataSource::Stream(Box::pin(ObjectReader { stream, chunk: Bytes::new() })))
    }

    async fn open_write(&self, user: &User, path: &Path, mode: WriteMode) -> Result<DataSink> {
        permit(user, |p| p.write)?;
        let key = key(user, path)?;
        match mode {
            WriteMode::Truncate | WriteMode::Replace | WriteMode::CreateNew => {}
            // An object cannot be appended to or rewritten from the middle.
            _ => return Err(ErrorKind::NotSupported.into()),
        }
        if key.is_home() {
            return Err(ErrorKind::IsADirectory.into());
        }
        let ops = self.ops()?;
        if mode == WriteMode::CreateNew && self.head(&ops, &key).await?.is_some() {
            return Err(ErrorKind::AlreadyExists.into());
        }
        if self.is_dir(&ops, &key).await? {
            return Err(ErrorKind::IsADirectory.into());
        }
        self.require_parent(&ops, &key).await?;
        let digest = DigestSlot::new();
        let writer = ObjectWriter {
            filling: None,
            parts: 0,
            key: key.key,
            digest: digest.clone(),
            hash: None,
            size: 0,
            op: ops.once,
            api: ops.api,
            upload: None,
            sent: Vec::new(),
            sending: None,
            step: None,
            done: false,
            failed: false,
        };
        Ok(DataSink::StreamWithDigest(Box::pin(writer), digest))
    }

    /// The digest in the object's metadata (kept by an upload with
    /// [`crate::ServerBuilder::hash_uploads`]) at the cost of a HEAD; else the whole object,
    /// downloaded and hashed. Metadata belongs to the object, so an overwrite by anyone
    /// drops it: no size or time check is needed.
    async fn hash(&self, user: &User, path: &Path, algo: HashAlgo) -> Result<Vec<u8>> {
        permit(user, |p| p.read)?;
        let key = key(user, path)?;
        let ops = self.ops()?;
        if let Some(digest) = self.head(&ops, &key).await?.and_then(|meta| stored(&meta, algo)) {
            return Ok(digest);
        }
        let permit = hash_permit()?;
        let source = self.open_read(user, path, 0).await?;
        hash::hash_source(source, algo, permit).await
    }

    async fn make_dir(&self, user: &User, path: &Path) -> Result<()> {
        permit(user, |p| p.mkdir)?;
        let key = key(user, path)?;
        let ops = self.ops()?;
        if key.is_home() || self.head(&ops, &key).await?.is_some() || self.is_dir(&ops, &key).await? {
            return Err(ErrorKind::AlreadyExists.into());
        }
        self.require_parent(&ops, &key).await?;
        ops.retrying.create_dir(&dir(&key)).await.map_err(error)
    }

    async fn remove_dir(&self, user: &User, path: &Path) -> Result<()> {
        permit(user, |p| p.delete)?;
        let key = key(user, path)?;
        if key.is_home() {
            return Err(ErrorKind::PermissionDenied.into());
        }
        let ops = self.ops()?;
        let (children, marker) = self.peek_dir(&ops, &key, 1).await?;
        if children > 0 {
            return Err(ErrorKind::DirectoryNotEmpty.into());
        }
        if !marker {
            let kind = if self.head(&ops, &key).await?.is_some() {
                ErrorKind::NotADirectory
            } else {
                ErrorKind::NotFound
            };
            return Err(kind.into());
        }
        ops.retrying.delete(&dir(&key)).await.map_err(error)
    }

    async fn remove_file(&self, user: &User, path: &Path) -> Result<()> {
        permit(user, |p| p.delete)?;
        let key = key(user, path)?;
        let ops = self.ops()?;
        // S3 deletes a missing key without complaint: look first, for the right reply.
        if self.head(&ops, &key).await?.is_none() {
            let kind =
                if self.is_dir(&ops, &key).await? { ErrorKind::IsADirectory } else { ErrorKind::NotFound };
            return Err(kind.into());
        }
        ops.retrying.delete(&key).await.map_err(error)
    }

    async fn rename(&self, user: &User, from: &Path, to: &Path) -> Result<()> {
        permit(user, |p| p.rename)?;
        let (from, to) = (key(user, from)?, key(user, to)?);
        let ops = self.ops()?;
        if self.head(&ops, &from).await?.is_none() {
            // Renaming a directory would copy every object below it, one by one.
            let kind =
                if self.is_dir(&ops, &from).await? { ErrorKind::NotSupported } else { ErrorKind::NotFound };
            return Err(kind.into());
        }
        if from.is_home() {
            return Err(ErrorKind::PermissionDenied.into());
        }
        if to.key == from.key {
            return Ok(());
        }
        if self.is_dir(&ops, &to).await? {
            return Err(ErrorKind::IsADirectory.into());
        }
        self.require_parent(&ops, &to).await?;
        ops.retrying.copy(&from, &to).await.map_err(error)?;
        ops.retrying.delete(&from).await.map_err(error)
    }
}

/// A download: the GET's body as an `AsyncRead`.
struct ObjectReader {
    stream: opendal::FuturesBytesStream,
    /// What is left of the last chunk the stream gave.
    chunk: Bytes,
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.chunk.is_empty() {
            match ready!(Pin::new(&mut this.stream).poll_next(cx)) {
                Some(Ok(chunk)) => this.chunk = chunk,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "object store download failed");
                    return Poll::Ready(Err(e));
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// A request an upload waits for before it goes on: the creation of its multipart upload, its
/// single PutObject, or its completion.
type Step = Pin<Box<dyn Future<Output = io::Result<Stepped>> + Send>>;

/// What a [`Step`] achieved.
enum Stepped {
    Created(Upload),
    /// The object exists: nothing is left to abort.
    Stored,
}

/// A part's request, a task on the shard: the part as the store has it.
type PartTask = tokio::task::JoinHandle<std::result::Result<SentPart, Failure>>;

/// The part being filled.
struct Filling {
    part: PartFiller,
    /// Its request, streaming the part as it fills; none for the first part, which waits to
    /// learn whether it is the only one.
    request: Option<PartTask>,
}

/// An upload: an `AsyncWrite` that cuts the bytes into [`PART_SIZE`] parts.
///
/// `poll_write` copies bytes into the part being filled, and from the second part on, that
/// part's UploadPart request (sent by [`S3Api`] from a task of its own on the shard) streams
/// it to the store as it fills: it declares a whole part, so when the upload ends short of
/// that the request is cut off and the part sent again, its real length, from the buffer. A
/// full part's request goes on finishing while the next part fills and streams, and the next
/// full part waits for it: at most two parts in flight and two in memory per upload (each a
/// [`PartBuf`], kept until its request is done, so a part that fails on the way is sent again
/// from it, and up to [`KEPT_PARTS`] more until completion once one did), whatever the
/// allocator keeps. `poll_shutdown` sends the last part and completes
/// the upload, and only then does the object exist. Dropped before that, it aborts the
/// multipart upload (on the current shard's runtime).
///
/// The upload is created late, because S3 takes user metadata only in the request that
/// creates the object (PutObject, or CreateMultipartUpload before the first part): the first
/// part is held here until a byte past it arrives (then the upload is multipart, and its
/// digest is stamped after completion), or until shutdown, when the upload is one PutObject
/// (through opendal) and its digest goes with it as `x-amz-meta-ringftp-<algo>`.
///
/// With [`crate::ServerBuilder::hash_uploads`] the writer hashes the upload itself (it takes
/// the [`DigestSlot`] over): the first part as it fills, on the shard in the data path's
/// 64 KiB steps, as the digest must be ready when it turns out to be the only part; every
/// later part on tokio's blocking pool once it is full ([`BlockHasher`]): an upload waits
/// for its digest only when hashing a part takes longer than sending one, and its shard
/// serves its other sessions meanwhile.
struct ObjectWriter {
    filling: Option<Filling>,
    /// Parts begun so far: the number of the part being filled.
    parts: u32,
    key: String,
    digest: DigestSlot,
    /// The upload's digest, when this writer computes it ([`DigestSlot::take_over`]).
    hash: Option<BlockHasher>,
    /// Bytes written so far.
    size: u64,
    /// For the single PutObject.
    op: Operator,
    api: Arc<S3Api>,
    /// The multipart upload, once created.
    upload: Option<Upload>,
    /// The parts sent, in order: each part's request is waited for before the next part ends.
    sent: Vec<SentPart>,
    /// The last full part's request.
    sending: Option<PartTask>,
    step: Option<Step>,
    /// The object exists: the writer takes no more bytes, and there is nothing to abort.
    done: bool,
    /// A request failed: the writer takes no more bytes, and `Drop` aborts the upload.
    failed: bool,
}

impl ObjectWriter {
    /// Waits for the step under way; an error fails the upload, for `Drop` to abort.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(io::Error::other("the upload failed")));
        }
        if let Some(step) = &mut self.step {
            let stepped = ready!(step.as_mut().poll(cx));
            self.step = None;
            match stepped.inspect_err(|_| self.failed = true)? {
                Stepped::Created(upload) => self.upload = Some(upload),
                Stepped::Stored => self.done = true,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for the step under way, the last full part's request and its hash.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_step(cx))?;
        if let Some(sending) = &mut self.sending {
            let sent = ready!(Pin::new(sending).poll(cx));
            self.sending = None;
            let sent = sent
                .map_err(|e| io::Error::other(format!("the part's task failed: {e}")))
                .and_then(|sent| sent.map_err(Failure::into_io));
            let mut sent = sent.inspect_err(|_| self.failed = true)?;
            if self.sent.iter().filter(|p| p.again.is_some()).count() >= KEPT_PARTS {
                sent.again = None;
            }
            self.sent.push(sent);
        }
        if let Some(hash) = &mut self.hash {
            ready!(hash.poll_ready(cx));
        }
        Poll::Ready(Ok(()))
    }

    /// Starts `step` and waits for it.
    fn start(&mut self, cx: &mut Context<'_>, step: Step) -> Poll<io::Result<()>> {
        self.step = Some(step);
        self.poll_step(cx)
    }

    /// The bytes in the part being filled.
    fn part_len(&self) -> usize {
        self.filling.as_ref().map_or(0, |f| f.part.len())
    }

    /// A new part to fill, streaming from its first byte when the upload is multipart.
    fn begin_part(&mut self) -> io::Result<()> {
        let part = PartFiller::new()?;
        self.parts += 1;
        let number = self.parts;
        let request = self.upload.clone().map(|upload| {
            let (api, part) = (self.api.clone(), part.shared());
            tokio::spawn(async move { stream_part(&api, &upload, number, part).await })
        });
        self.filling = Some(Filling { part, request });
        Ok(())
    }

    /// Ends the part being filled (the upload must be created, and the last part's request
    /// done): its streaming request goes on, or, for a short or the first part, the part is
    /// sent whole.
    fn end_part(&mut self) {
        let (Some(upload), Some(filling)) = (&self.upload, self.filling.take()) else {
            return;
        };
        let part = filling.part.shared();
        if let Some(hash) = &mut self.hash {
            hash.push(part.bytes(), self.size);
        }
        let full = part.len() == PART_SIZE;
        self.sending = Some(match filling.request {
            Some(request) if full => request,
            request => {
                // Declared whole, it can never complete: cut it off.
                if let Some(request) = request {
                    request.abort();
                }
                let (api, upload, number) = (self.api.clone(), upload.clone(), self.parts);
                tokio::spawn(async move { api.upload_part(&upload, number, part.bytes()).await })
            }
        });
    }
}

/// Streams part `number` of `upload` from `part` as it fills; if that fails, sends it again
/// whole once it is full. The wait past the part's last byte is bounded (the store may stop
/// reading).
async fn stream_part(
    api: &S3Api,
    upload: &Upload,
    number: u32,
    part: Arc<PartBuf>,
) -> std::result::Result<SentPart, Failure> {
    let streamed = tokio::select! {
        sent = api.stream_part(upload, number, PART_SIZE, part.chunks()) => sent,
        () = async { part.full().await; tokio::time::sleep(PART_TIMEOUT).await } => Err(Failure::timed_out("a part")),
    };
    match streamed {
        // Whatever the failure: the bytes are all in the buffer, and a stream can fail for
        // reasons a whole part does not meet (S3 answers 400 RequestTimeout to a body that
        // pauses for 20 s, as a slow FTP client's may). The whole part's own retries decide.
        Err(e) => {
            tracing::debug!(error = %e, number, "sending the streamed part again, whole");
            part.full().await;
            let sent = api.upload_part(upload, number, part.bytes()).await?;
            Ok(sent.sent_again(part.bytes()))
        }
        sent => sent,
    }
}

/// Stamps a completed multipart upload with its digest ([`S3Api::replace_metadata`]). Best
/// effort: the upload has succeeded either way, and without the stamp HASH computes the digest.
async fn stamp_digest(api: &S3Api, key: &str, size: u64, etag: &str, metadata: &[(String, String)]) {
    match api.replace_metadata(key, size, etag, metadata).await {
        Ok(()) => tracing::debug!(key, "digest kept in the object's metadata"),
        Err(e) => tracing::warn!(key, error = %e, "cannot keep the upload's digest in its metadata"),
    }
}

/// An upload part's buffer: an anonymous mapping of [`PART_SIZE`] bytes rather than the
/// allocator's memory. The one [`PartFiller`] appends to it; its request and its hash read
/// what is filled, as [`Bytes`] that share it. When the last of them drops, the mapping is
/// unmapped and its memory is the kernel's again at once; an allocator (mimalloc) keeps freed
/// 8 MiB blocks resident for reuse, half a MiB or more per upload beyond its two parts. Pages
/// are touched only as the part fills.
struct PartBuf {
    map: memmap2::MmapRaw,
    /// How many bytes are filled: they are never written again. Grows only, after the bytes
    /// are in; its receivers are woken as it does.
    filled: tokio::sync::watch::Sender<usize>,
}

impl PartBuf {
    fn len(&self) -> usize {
        *self.filled.borrow()
    }

    /// The filled bytes from `start`.
    fn filled_from(&self, start: usize) -> &[u8] {
        let end = self.len();
        let start = start.min(end);
        // SAFETY: the mapping is PART_SIZE bytes and `end` at most that; the bytes below
        // `filled` are written and never written again (PartFiller::fill writes past it only).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), end - start) }
    }

    /// The filled bytes, sharing the buffer.
    fn bytes(self: &Arc<Self>) -> Bytes {
        Bytes::from_owner(Filled { part: self.clone(), start: 0 })
    }

    /// Waits until the part is full.
    async fn full(&self) {
        let mut filled = self.filled.subscribe();
        drop(filled.wait_for(|&n| n == PART_SIZE).await);
    }

    /// The part's bytes as they are filled, in chunks of what is new, up to [`PART_SIZE`].
    fn chunks(self: &Arc<Self>) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let state = (self.clone(), self.filled.subscribe(), 0usize);
        futures_util::stream::unfold(state, |(part, mut filled, sent)| async move {
            if sent == PART_SIZE {
                return None;
            }
            // The sender is in `part`, which this holds: the wait fails never.
            drop(filled.wait_for(|&n| n > sent).await.ok()?);
            let chunk = Bytes::from_owner(Filled { part: part.clone(), start: sent });
            let sent = sent + chunk.len();
            Some((Ok::<_, io::Error>(chunk), (part, filled, sent)))
        })
    }
}

/// What a part held filled from `start` on, when it was made.
struct Filled {
    part: Arc<PartBuf>,
    start: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        self.part.filled_from(self.start)
    }
}

/// The one handle that appends to a [`PartBuf`].
struct PartFiller(Arc<PartBuf>);

impl PartFiller {
    fn new() -> io::Result<PartFiller> {
        let map = memmap2::MmapMut::map_anon(PART_SIZE)?.into();
        Ok(PartFiller(Arc::new(PartBuf { map, filled: tokio::sync::watch::Sender::new(0) })))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn shared(&self) -> Arc<PartBuf> {
        self.0.clone()
    }

    /// Copies as much of `buf` as fits; how much that was.
    fn fill(&mut self, buf: &[u8]) -> usize {
        let len = self.len();
        let n = buf.len().min(PART_SIZE - len);
        // SAFETY: `len + n` is at most PART_SIZE, the mapping's length; no slice reaches past
        // `len` (`filled_from` stops there), and this is the one writer (`&mut self` of the
        // one PartFiller), so the bytes written are borrowed by no one.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.0.map.as_mut_ptr().add(len), n) };
        self.0.filled.send_replace(len + n);
        n
    }
}

impl AsyncWrite for ObjectWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_step(cx))?;
        if self.done {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload already finished")));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.size == 0 && self.hash.is_none() {
            self.hash = self.digest.take_over().map(BlockHasher::new);
        }
        if self.part_len() == PART_SIZE {
            // A full part and more bytes: the first one makes the upload multipart, whose
            // metadata comes after completion (see `poll_shutdown`).
            if self.upload.is_none() {
                self.digest.refuse();
                let (api, key) = (self.api.clone(), self.key.clone());
                let create = async move {
                    api.create_upload(&key).await.map(Stepped::Created).map_err(Failure::into_io)
                };
                ready!(self.start(cx, Box::pin(create)))?;
            }
            ready!(self.poll_idle(cx))?;
            self.end_part();
        }
        if self.filling.is_none() {
            self.begin_part()?;
        }
        let Some(filling) = &mut self.filling else {
            return Poll::Ready(Ok(0));
        };
        let n = filling.part.fill(buf);
        let bytes = buf.get(..n).unwrap_or_default();
        self.size += n as u64;
        // The first part is hashed as it fills, as it may be the only one and its digest must
        // be ready for the PutObject at once; later parts on the blocking pool once full.
        let multipart = self.upload.is_some();
        if let (false, Some(hash)) = (multipart, &mut self.hash) {
            hash.update(bytes);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_idle(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_idle(cx))?;
        if self.done {
            return Poll::Ready(Ok(()));
        }
        if self.upload.is_none() {
            // One part at most: a single PutObject, which can carry the digest.
            let digest = match self.hash.take() {
                Some(hash) => hash.finish(),
                None => self.digest.take(),
            };
            let metadata = digest.map(|(algo, digest)| (metadata_key(algo), stored_digest::to_hex(&digest)));
            let part = self.filling.take().map(|f| f.part.shared().bytes()).unwrap_or_default();
            let (op, key) = (self.op.clone(), self.key.clone());
            let put = async move {
                let mut put = op.write_with(&key, part);
                if let Some(pair) = metadata {
                    put = put.user_metadata([pair]);
                }
                put.await.map(|_| Stepped::Stored).map_err(io_error)
            };
            return self.start(cx, Box::pin(put));
        }
        if self.filling.is_some() {
            self.end_part();
            ready!(self.poll_idle(cx))?;
        }
        // A multipart upload hashed here: its digest goes on after completion.
        let stamp = self.hash.take().and_then(|hash| {
            tracing::debug!(key = self.key, waited = ?hash.waited(), "upload hashed");
            let (algo, digest) = hash.finish()?;
            Some([(metadata_key(algo), stored_digest::to_hex(&digest))])
        });
        let (api, key, size) = (self.api.clone(), self.key.clone(), self.size);
        let (upload, mut parts) = (self.upload.clone(), std::mem::take(&mut self.sent));
        let complete = async move {
            let Some(upload) = upload else { return Ok(Stepped::Stored) };
            let etag = api.complete_upload(&upload, &mut parts).await.map_err(Failure::into_io)?;
            if let Some(metadata) = stamp {
                stamp_digest(&api, &key, size, &etag, &metadata).await;
            }
            Ok(Stepped::Stored)
        };
        self.start(cx, Box::pin(complete))
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.done || (self.upload.is_none() && self.step.is_none()) {
            // Stored, or nothing sent: nothing to abort.
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = self.key, "no runtime to abort an unfinished upload on");
            return;
        };
        let (api, step, sending, mut upload) =
            (self.api.clone(), self.step.take(), self.sending.take(), self.upload.take());
        // The filling part's request can never complete: cut it off.
        if let Some(request) = self.filling.take().and_then(|f| f.request) {
            request.abort();
        }
        let abort = async move {
            // A completion or a single put under way is let finish (the client sent every
            // byte); once the object exists there is nothing to abort. A creation is waited
            // for, to abort what it created.
            if let Some(step) = step {
                match step.await {
                    Ok(Stepped::Stored) => return,
                    Ok(Stepped::Created(created)) => upload = Some(created),
                    Err(_) => {}
                }
            }
            // A part under way is cut short: S3 may keep a part that completes after the
            // abort, so the abort waits for it.
            if let Some(sending) = sending {
                sending.abort();
                drop(sending.await);
            }
            if let Some(upload) = upload {
                api.abort_upload(&upload).await;
            }
        };
        // On a shard's current-thread runtime, the task runs on the shard.
        drop(runtime.spawn(abort));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A part's stream gives every byte once, in order, as the filler appends, and ends at a
    /// full part; the buffer's bytes are those written.
    #[test]
    fn a_part_streams_what_is_filled() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut filler = PartFiller::new().unwrap();
            let part = filler.shared();
            let reader = tokio::spawn({
                let part = part.clone();
                async move {
                    let mut got = Vec::new();
                    let mut chunks = 0;
                    let mut stream = std::pin::pin!(part.chunks());
                    while let Some(chunk) = stream.next().await {
                        got.extend_from_slice(&chunk.unwrap());
                        chunks += 1;
                    }
                    (got, chunks)
                }
            });
            let piece: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
            let mut sent = Vec::new();
            while filler.len() < PART_SIZE {
                let n = filler.fill(&piece);
                sent.extend_from_slice(&piece[..n]);
                // Let the reader take what is there, sometimes.
                if sent.len() % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            assert_eq!(filler.fill(b"more"), 0, "a full part takes no more");
            let (got, chunks) = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
            assert_eq!(got.len(), PART_SIZE);
            assert!(got == sent, "streamed bytes differ from those filled");
            assert!(chunks > 1, "the stream waited for bytes, {chunks} chunk(s)");
            assert!(part.bytes() == sent, "the buffer differs from what was filled");
        });
    }
}
