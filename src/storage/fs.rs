//! The filesystem backend. (stub: filled in by a helper)
use std::path::{Path, PathBuf};

use super::*;

/// Serves a directory tree, confined to it by the kernel.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Serves the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(FsStorage { root: root.into() })
    }
}

impl Storage for FsStorage {
    async fn metadata(&self, _user: &User, _path: &Path) -> Result<Metadata> {
        Err(ErrorKind::Local.into())
    }
    async fn list(&self, _user: &User, _path: &Path) -> Result<Vec<DirEntry>> {
        Err(ErrorKind::Local.into())
    }
    async fn open_read(&self, _user: &User, _path: &Path, _offset: u64) -> Result<DataSource> {
        Err(ErrorKind::Local.into())
    }
    async fn open_write(&self, _user: &User, _path: &Path, _mode: WriteMode) -> Result<DataSink> {
        Err(ErrorKind::Local.into())
    }
    async fn make_dir(&self, _user: &User, _path: &Path) -> Result<()> {
        Err(ErrorKind::Local.into())
    }
    async fn remove_dir(&self, _user: &User, _path: &Path) -> Result<()> {
        Err(ErrorKind::Local.into())
    }
    async fn remove_file(&self, _user: &User, _path: &Path) -> Result<()> {
        Err(ErrorKind::Local.into())
    }
    async fn rename(&self, _user: &User, _from: &Path, _to: &Path) -> Result<()> {
        Err(ErrorKind::Local.into())
    }
}
