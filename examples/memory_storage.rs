//! Your own storage: files kept in memory, served through streams instead of file
//! descriptors (the buffered data path; a backend with real files should return
//! `DataSource::File`/`DataSink::File` so the server can splice them).
//!
//! ```sh
//! cargo run --example memory_storage -- 127.0.0.1:2121
//! curl -T photo.jpg ftp://demo:demo@127.0.0.1:2121/
//! curl ftp://demo:demo@127.0.0.1:2121/photo.jpg -o copy.jpg
//! ```
//!
//! Everything is gone when the process ends. The address is optional (port 0: any free port).

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use ringftp::storage::{DirEntry, FileKind, Metadata, Result, WriteMode};
use ringftp::{DataSink, DataSource, ErrorKind, Server, Storage, User, UserList};
use tokio::io::AsyncWrite;

enum Node {
    Dir,
    File(Vec<u8>),
}

/// Every file and directory, by path from the storage root ("" is the root itself). The
/// storage is shared by the server's threads, hence a `Mutex` (held only briefly).
type Tree = BTreeMap<PathBuf, Node>;

#[derive(Default)]
struct MemoryStorage {
    tree: Arc<Mutex<Tree>>,
}

fn lock(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    // A panic elsewhere while holding the lock leaves the map consistent enough to go on.
    tree.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The storage path of `path`, which the server gives relative to the user's home.
fn key(user: &User, path: &Path) -> PathBuf {
    user.home.join(path)
}

fn is_dir(tree: &Tree, key: &Path) -> bool {
    key.as_os_str().is_empty() || matches!(tree.get(key), Some(Node::Dir))
}

/// Whether the directory that would hold `key` exists.
fn parent_exists(tree: &Tree, key: &Path) -> bool {
    key.parent().is_some_and(|parent| is_dir(tree, parent))
}

fn metadata_of(tree: &Tree, key: &Path) -> Result<Metadata> {
    match tree.get(key) {
        Some(Node::File(bytes)) => Ok(Metadata::new(FileKind::File, bytes.len() as u64)),
        Some(Node::Dir) => Ok(Metadata::new(FileKind::Dir, 0)),
        None if key.as_os_str().is_empty() => Ok(Metadata::new(FileKind::Dir, 0)),
        None => Err(ErrorKind::NotFound.into()),
    }
}

impl Storage for MemoryStorage {
    /// The directories here are small: each is listed into a `Vec`, sent as one page.
    type Lister = std::vec::IntoIter<DirEntry>;

    async fn metadata(&self, user: &User, path: &Path) -> Result<Metadata> {
        metadata_of(&lock(&self.tree), &key(user, path))
    }

    async fn list(&self, user: &User, path: &Path) -> Result<Self::Lister> {
        let dir = key(user, path);
        let tree = lock(&self.tree);
        if !metadata_of(&tree, &dir)?.is_dir() {
            return Err(ErrorKind::NotADirectory.into());
        }
        let children = tree.keys().filter(|k| k.parent() == Some(dir.as_path()));
        children
            .map(|k| {
                let name = k.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
                Ok(DirEntry { name, metadata: metadata_of(&tree, k)? })
            })
            .collect::<Result<Vec<_>>>()
            .map(Vec::into_iter)
    }

    async fn open_read(&self, user: &User, path: &Path, offset: u64) -> Result<DataSource> {
        match lock(&self.tree).get(&key(user, path)) {
            Some(Node::File(bytes)) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                // A copy, so the lock is not held while the client downloads.
                let stream = Cursor::new(bytes[start..].to_vec());
                Ok(DataSource::Stream(Box::pin(stream)))
            }
            Some(Node::Dir) => Err(ErrorKind::IsADirectory.into()),
            None => Err(ErrorKind::NotFound.into()),
        }
    }

    async fn open_write(&self, user: &User, path: &Path, mode: WriteMode) -> Result<DataSink> {
        let key = key(user, path);
        let tree = lock(&self.tree);
        if !parent_exists(&tree, &key) {
            return Err(ErrorKind::NotFound.into());
        }
        let existing = match tree.get(&key) {
            Some(Node::File(bytes)) => Some(bytes),
            Some(Node::Dir) => return Err(ErrorKind::IsADirectory.into()),
            None => None,
        };
        let data = match mode {
            WriteMode::Truncate | WriteMode::Replace => Vec::new(),
            WriteMode::Append => existing.cloned().unwrap_or_default(),
            WriteMode::Resume(offset) => {
                let mut data = existing.cloned().unwrap_or_default();
                data.truncate(usize::try_from(offset).unwrap_or(usize::MAX));
                data
            }
            WriteMode::CreateNew if existing.is_some() => return Err(ErrorKind::AlreadyExists.into()),
            WriteMode::CreateNew => Vec::new(),
            _ => return Err(ErrorKind::Local.into()),
        };
        Ok(DataSink::Stream(Box::pin(Upload { tree: Arc::clone(&self.tree), key, data })))
    }

    async fn make_dir(&self, user: &User, path: &Path) -> Result<()> {
        let key = key(user, path);
        let mut tree = lock(&self.tree);
        if !parent_exists(&tree, &key) {
            return Err(ErrorKind::NotFound.into());
        }
        if tree.contains_key(&key) {
            return Err(ErrorKind::AlreadyExists.into());
        }
        tree.insert(key, Node::Dir);
        Ok(())
    }

    async fn remove_dir(&self, user: &User, path: &Path) -> Result<()> {
        let key = key(user, path);
        let mut tree = lock(&self.tree);
        match tree.get(&key) {
            Some(Node::Dir) if tree.keys().any(|k| k.parent() == Some(key.as_path())) => {
                Err(ErrorKind::DirectoryNotEmpty.into())
            }
            Some(Node::Dir) => {
                tree.remove(&key);
                Ok(())
            }
            Some(Node::File(_)) => Err(ErrorKind::NotADirectory.into()),
            None => Err(ErrorKind::NotFound.into()),
        }
    }

    async fn remove_file(&self, user: &User, path: &Path) -> Result<()> {
        let key = key(user, path);
        let mut tree = lock(&self.tree);
        match tree.get(&key) {
            Some(Node::File(_)) => {
                tree.remove(&key);
                Ok(())
            }
            Some(Node::Dir) => Err(ErrorKind::IsADirectory.into()),
            None => Err(ErrorKind::NotFound.into()),
        }
    }

    async fn rename(&self, user: &User, from: &Path, to: &Path) -> Result<()> {
        let (from, to) = (key(user, from), key(user, to));
        let mut tree = lock(&self.tree);
        if !tree.contains_key(&from) {
            return Err(ErrorKind::NotFound.into());
        }
        if !parent_exists(&tree, &to) || to.starts_with(&from) || is_dir(&tree, &to) {
            return Err(ErrorKind::PermissionDenied.into());
        }
        // A directory moves with everything below it.
        let moved: Vec<PathBuf> = tree.keys().filter(|k| k.starts_with(&from)).cloned().collect();
        for old in moved {
            if let (Some(node), Ok(rest)) = (tree.remove(&old), old.strip_prefix(&from)) {
                tree.insert(to.join(rest), node);
            }
        }
        Ok(())
    }
}

/// An upload in progress: collects the bytes and stores the file when the server shuts the
/// stream down, which it does only once the upload is complete. An interrupted upload leaves
/// the old file, or nothing.
struct Upload {
    tree: Arc<Mutex<Tree>>,
    key: PathBuf,
    data: Vec<u8>,
}

impl AsyncWrite for Upload {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().data.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let data = std::mem::take(&mut this.data);
        lock(&this.tree).insert(this.key.clone(), Node::File(data));
        Poll::Ready(Ok(()))
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:2121".into()).parse()?;
    let storage = MemoryStorage::default();
    lock(&storage.tree).insert("README.txt".into(), Node::File(b"Served from memory.\n".to_vec()));

    let users = UserList::new().user_with_password(User::new("demo"), b"demo").anonymous("");
    let handle = Server::builder(storage, users).listen(addr).build()?.start()?;
    for addr in handle.local_addrs() {
        println!("memory_storage listening on {addr}");
    }
    handle.wait(); // until the process is killed
    Ok(())
}
