//! What ringftpd serves: a directory (`--root`) or a bucket (`--storage s3://BUCKET/PREFIX`).

use std::fs::File;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use ringftp::storage::{
    DataSink, DataSource, DirEntry, FsLister, Lister, Metadata, ObjectLister, ObjectStorage, Result,
    S3Config, WriteMode,
};
use ringftp::{FsStorage, Storage, User};

use crate::config::FileConfig;

/// The object-storage flags (the same keys, with `s3_access_key_id` and
/// `s3_secret_access_key`, are in the config file).
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Serve a bucket instead of --root: s3://BUCKET/PREFIX (credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the config file).
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// The S3 endpoint, e.g. http://127.0.0.1:9000 (default: AWS).
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The S3 region (default: us-east-1).
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// Path-style bucket addressing (endpoint/bucket), which MinIO and most self-hosted stores
    /// need.
    #[arg(long)]
    s3_path_style: bool,
    /// Keys per ListObjectsV2 page, 1-1000 (default 1000): a listing holds one page.
    #[arg(long, value_name = "KEYS")]
    s3_list_page: Option<usize>,
    /// Upload parts with their CRC32, which the store checks before it keeps them (costs
    /// Garage 1.7x the CPU per upload; stores older than S3's flexible checksums refuse it).
    #[arg(long)]
    s3_checksums: bool,
}

/// Either backend, so the server stays generic over one type.
pub enum AnyStorage {
    Fs(FsStorage),
    Object(ObjectStorage),
}

/// Opens what the flags and the file say to serve: the bucket if `storage` is set, else `root`.
pub fn open(
    args: &StorageArgs,
    matches: &ArgMatches,
    file: &FileConfig,
    root: &Path,
) -> std::result::Result<AnyStorage, String> {
    let url = args.storage.clone().or_else(|| file.storage.clone());
    let Some(url) = url else {
        return FsStorage::new(root)
            .map(AnyStorage::Fs)
            .map_err(|e| format!("cannot serve {}: {e}", root.display()));
    };
    if crate::given(matches, "root") {
        return Err("--root and --storage are exclusive: serve a directory or a bucket".into());
    }
    let mut config = S3Config::from_url(&url).map_err(|e| e.to_string())?;
    if let Some(endpoint) = args.s3_endpoint.clone().or_else(|| file.s3_endpoint.clone()) {
        config = config.endpoint(endpoint);
    }
    if let Some(region) = args.s3_region.clone().or_else(|| file.s3_region.clone()) {
        config = config.region(region);
    }
    config = config.path_style(args.s3_path_style || file.s3_path_style == Some(true));
    config = config.checksums(args.s3_checksums || file.s3_checksums == Some(true));
    if let Some(keys) = args.s3_list_page.or(file.s3_list_page) {
        config = config.list_page(keys);
    }
    match (&file.s3_access_key_id, &file.s3_secret_access_key) {
        (Some(id), Some(secret)) => config = config.credentials(id, secret),
        (None, None) => {}
        _ => {
            return Err(
                "the config file needs both s3_access_key_id and s3_secret_access_key, or neither".into()
            )
        }
    }
    let storage = ObjectStorage::new(config).map_err(|e| format!("cannot serve {url}: {e}"))?;
    tracing::info!(%url, "serving object storage");
    Ok(AnyStorage::Object(storage))
}

impl AnyStorage {
    /// The directory served, for checks on users' homes (none for a bucket).
    pub fn root(&self) -> Option<PathBuf> {
        match self {
            AnyStorage::Fs(fs) => Some(fs.root().to_owned()),
            AnyStorage::Object(_) => None,
        }
    }
}

/// Calls the same method on whichever backend this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStorage::Fs($s) => $call.await,
            AnyStorage::Object($s) => $call.await,
        }
    };
}

/// Either backend's listing.
pub enum AnyLister {
    Fs(FsLister),
    Object(ObjectLister),
}

impl Lister for AnyLister {
    async fn next_page(&mut self, out: &mut Vec<DirEntry>) -> Result<bool> {
        match self {
            AnyLister::Fs(l) => l.next_page(out).await,
            AnyLister::Object(l) => l.next_page(out).await,
        }
    }
}

impl Storage for AnyStorage {
    type Lister = AnyLister;

    async fn metadata(&self, user: &User, path: &Path) -> Result<Metadata> {
        each!(self, s => s.metadata(user, path))
    }
    async fn list(&self, user: &User, path: &Path) -> Result<AnyLister> {
        match self {
            AnyStorage::Fs(s) => s.list(user, path).await.map(AnyLister::Fs),
            AnyStorage::Object(s) => s.list(user, path).await.map(AnyLister::Object),
        }
    }
    async fn open_read(&self, user: &User, path: &Path, offset: u64) -> Result<DataSource> {
        each!(self, s => s.open_read(user, path, offset))
    }
    async fn open_write(&self, user: &User, path: &Path, mode: WriteMode) -> Result<DataSink> {
        each!(self, s => s.open_write(user, path, mode))
    }
    async fn make_dir(&self, user: &User, path: &Path) -> Result<()> {
        each!(self, s => s.make_dir(user, path))
    }
    async fn remove_dir(&self, user: &User, path: &Path) -> Result<()> {
        each!(self, s => s.remove_dir(user, path))
    }
    async fn remove_file(&self, user: &User, path: &Path) -> Result<()> {
        each!(self, s => s.remove_file(user, path))
    }
    async fn rename(&self, user: &User, from: &Path, to: &Path) -> Result<()> {
        each!(self, s => s.rename(user, from, to))
    }
    async fn commit_write(&self, user: &User, path: &Path, file: &File) -> Result<()> {
        each!(self, s => s.commit_write(user, path, file))
    }
    async fn set_modified(&self, user: &User, path: &Path, time: std::time::SystemTime) -> Result<()> {
        each!(self, s => s.set_modified(user, path, time))
    }
    async fn set_mode(&self, user: &User, path: &Path, mode: u32) -> Result<()> {
        each!(self, s => s.set_mode(user, path, mode))
    }
    async fn available_space(&self, user: &User, path: &Path) -> Result<u64> {
        each!(self, s => s.available_space(user, path))
    }
    async fn hash(&self, user: &User, path: &Path, algo: ringftp::storage::HashAlgo) -> Result<Vec<u8>> {
        each!(self, s => s.hash(user, path, algo))
    }
    async fn store_digest(
        &self,
        user: &User,
        path: &Path,
        file: &File,
        algo: ringftp::storage::HashAlgo,
        digest: &[u8],
    ) -> Result<()> {
        each!(self, s => s.store_digest(user, path, file, algo, digest))
    }
}
