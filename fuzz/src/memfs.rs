//! A small in-memory storage: a map from virtual path (`/`, `/a`, `/a/b`) to node. It executes
//! the session's storage requests for real, so a script's MKD, RNFR/RNTO, STOR... change
//! what later commands see, with the error kinds a Unix filesystem would give.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringftp::proto::path::file_name;
use ringftp::session::{FsOutcome, FsRequest};
use ringftp::storage::{DirEntry, ErrorKind, FileKind, Metadata, WriteMode};

/// One file, directory, link or other node.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: FileKind,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub mode: u32,
    pub nlink: u64,
}

impl Node {
    pub fn dir() -> Self {
        Node { kind: FileKind::Dir, len: 4096, modified: None, mode: 0o755, nlink: 2 }
    }

    pub fn file(len: u64) -> Self {
        Node { kind: FileKind::File, len, modified: None, mode: 0o644, nlink: 1 }
    }

    pub fn metadata(&self) -> Metadata {
        let mut m = Metadata::new(self.kind, self.len).mode(self.mode);
        if let Some(t) = self.modified {
            m = m.modified(t);
        }
        m.nlink = self.nlink;
        m
    }
}

/// The whole tree. `/` always exists and is a directory.
#[derive(Debug, Clone)]
pub struct MemFs {
    pub nodes: BTreeMap<Vec<u8>, Node>,
}

impl Default for MemFs {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(b"/".to_vec(), Node::dir());
        MemFs { nodes }
    }
}

/// The parent of a virtual path (`None` for `/`).
pub fn parent(p: &[u8]) -> Option<&[u8]> {
    if p == b"/" {
        return None;
    }
    match p.iter().rposition(|&b| b == b'/') {
        Some(0) => Some(b"/"),
        Some(i) => Some(&p[..i]),
        None => None,
    }
}

fn child_prefix(dir: &[u8]) -> Vec<u8> {
    let mut prefix = dir.to_vec();
    if prefix != b"/" {
        prefix.push(b'/');
    }
    prefix
}

impl MemFs {
    /// A tree with a few of everything, including awkward names, and times that are recent,
    /// old, unknown, in the future and before 1970 against the wall clock `wall`.
    pub fn sample(wall: SystemTime) -> Self {
        let mut fs = MemFs::default();
        let day = Duration::from_secs(86_400);
        let times = [
            Some(wall - Duration::from_secs(3600)),
            Some(wall - 400 * day),
            None,
            Some(wall + day),
            UNIX_EPOCH.checked_sub(day),
        ];
        let t = |i: usize| times[i % times.len()];
        let mut add = |p: &[u8], mut n: Node, i: usize| {
            n.modified = t(i);
            fs.nodes.insert(p.to_vec(), n);
        };
        add(b"/pub", Node::dir(), 0);
        add(b"/pub/file.txt", Node::file(1234), 1);
        add(b"/pub/sub", Node::dir(), 2);
        add(b"/pub/sub/deep.bin", Node::file(1 << 20), 3);
        add(b"/readme", Node::file(0), 4);
        add(b"/a b", Node::file(7), 5);
        add(b"/new\nline", Node::file(1), 6);
        add(b"/cr\rname", Node::file(2), 7);
        add(b"/\xff\xfe", Node::dir(), 8);
        add(b"/empty", Node::dir(), 9);
        let mut link = Node::file(9);
        link.kind = FileKind::Symlink;
        link.mode = 0o777;
        add(b"/link", link, 10);
        let mut fifo = Node::file(0);
        fifo.kind = FileKind::Other;
        fifo.mode = u32::MAX;
        fifo.nlink = u64::MAX;
        add(b"/fifo", fifo, 11);
        fs
    }

    /// Asserts the tree is a tree: `/` is a directory and every other node's parent is one.
    pub fn check(&self) {
        assert!(self.nodes.get(&b"/"[..]).is_some_and(|n| n.kind == FileKind::Dir));
        for p in self.nodes.keys() {
            if let Some(parent) = parent(p) {
                assert!(self.nodes.get(parent).is_some_and(|n| n.kind == FileKind::Dir), "orphan {p:?}");
            }
        }
    }

    fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let prefix = child_prefix(dir);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains(&b'/'))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn descendants(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let prefix = child_prefix(dir);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Why `p` does not exist: a file in the way, or just missing.
    fn missing(&self, p: &[u8]) -> ErrorKind {
        let mut cur = parent(p);
        while let Some(dir) = cur {
            if let Some(n) = self.nodes.get(dir) {
                return if n.kind == FileKind::Dir { ErrorKind::NotFound } else { ErrorKind::NotADirectory };
            }
            cur = parent(dir);
        }
        ErrorKind::NotFound
    }

    /// The parent of `p` must be an existing directory to create `p`.
    fn check_parent(&self, p: &[u8]) -> Result<(), ErrorKind> {
        let Some(dir) = parent(p) else {
            return Err(ErrorKind::PermissionDenied);
        };
        match self.nodes.get(dir) {
            Some(n) if n.kind == FileKind::Dir => Ok(()),
            Some(_) => Err(ErrorKind::NotADirectory),
            None => Err(self.missing(dir)),
        }
    }

    pub fn metadata(&self, p: &[u8]) -> Result<Metadata, ErrorKind> {
        match self.nodes.get(p) {
            Some(n) => Ok(n.metadata()),
            None => Err(self.missing(p)),
        }
    }

    /// A directory's entries (what its `FsRequest::ListPage`s add up to), or the one entry
    /// of anything else.
    pub fn list(&self, p: &[u8]) -> Result<Vec<DirEntry>, ErrorKind> {
        let meta = self.metadata(p)?;
        if !meta.is_dir() {
            return Ok(vec![DirEntry { name: file_name(p).to_vec(), metadata: meta }]);
        }
        Ok(self
            .children(p)
            .into_iter()
            .map(|c| DirEntry { name: file_name(&c).to_vec(), metadata: self.nodes[&c].metadata() })
            .collect())
    }

    pub fn make_dir(&mut self, p: &[u8], now: SystemTime) -> Result<(), ErrorKind> {
        if self.nodes.contains_key(p) {
            return Err(ErrorKind::AlreadyExists);
        }
        self.check_parent(p)?;
        let mut n = Node::dir();
        n.modified = Some(now);
        self.nodes.insert(p.to_vec(), n);
        Ok(())
    }

    pub fn remove_dir(&mut self, p: &[u8]) -> Result<(), ErrorKind> {
        let kind = self.nodes.get(p).map(|n| n.kind);
        match kind {
            None => Err(self.missing(p)),
            Some(_) if p == b"/" => Err(ErrorKind::Unavailable),
            Some(FileKind::Dir) if !self.children(p).is_empty() => Err(ErrorKind::DirectoryNotEmpty),
            Some(FileKind::Dir) => {
                self.nodes.remove(p);
                Ok(())
            }
            Some(_) => Err(ErrorKind::NotADirectory),
        }
    }

    pub fn remove_file(&mut self, p: &[u8]) -> Result<(), ErrorKind> {
        let kind = self.nodes.get(p).map(|n| n.kind);
        match kind {
            None => Err(self.missing(p)),
            Some(FileKind::Dir) => Err(ErrorKind::IsADirectory),
            Some(_) => {
                self.nodes.remove(p);
                Ok(())
            }
        }
    }

    /// rename(2): replaces a file, or an empty directory with a directory.
    pub fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), ErrorKind> {
        let Some(src) = self.nodes.get(from).cloned() else {
            return Err(self.missing(from));
        };
        if from == b"/" || to == b"/" {
            return Err(ErrorKind::Unavailable);
        }
        self.check_parent(to)?;
        if from == to {
            return Ok(());
        }
        if to.starts_with(&child_prefix(from)) {
            // A directory into itself: EINVAL.
            return Err(ErrorKind::InvalidName);
        }
        if let Some(dst) = self.nodes.get(to) {
            match (src.kind == FileKind::Dir, dst.kind == FileKind::Dir) {
                (false, true) => return Err(ErrorKind::IsADirectory),
                (true, false) => return Err(ErrorKind::NotADirectory),
                (true, true) if !self.children(to).is_empty() => return Err(ErrorKind::DirectoryNotEmpty),
                _ => {}
            }
            self.nodes.remove(to);
        }
        let moved = self.descendants(from);
        self.nodes.remove(from);
        self.nodes.insert(to.to_vec(), src);
        let old_prefix = child_prefix(from);
        let new_prefix = child_prefix(to);
        for old in moved {
            let node = self.nodes.remove(&old).expect("descendant exists");
            let mut new = new_prefix.clone();
            new.extend_from_slice(&old[old_prefix.len()..]);
            self.nodes.insert(new, node);
        }
        Ok(())
    }

    /// Opening for RETR: the size of a readable file.
    pub fn open_read(&self, p: &[u8]) -> Result<u64, ErrorKind> {
        match self.nodes.get(p) {
            None => Err(self.missing(p)),
            Some(n) if n.kind == FileKind::Dir => Err(ErrorKind::IsADirectory),
            Some(n) => Ok(n.len),
        }
    }

    /// Opening for an upload: as open(2) does, a new file exists (empty) from here on, and
    /// `Truncate` empties it; `Replace` changes nothing until the upload is committed.
    pub fn open_write(&mut self, p: &[u8], mode: WriteMode, now: SystemTime) -> Result<(), ErrorKind> {
        match self.nodes.get_mut(p) {
            Some(_) if mode == WriteMode::CreateNew => return Err(ErrorKind::AlreadyExists),
            Some(n) if n.kind == FileKind::Dir => return Err(ErrorKind::IsADirectory),
            Some(n) => {
                if mode == WriteMode::Truncate {
                    n.len = 0;
                    n.modified = Some(now);
                }
                return Ok(());
            }
            None => self.check_parent(p)?,
        }
        if mode != WriteMode::Replace {
            let mut n = Node::file(0);
            n.modified = Some(now);
            self.nodes.insert(p.to_vec(), n);
        }
        Ok(())
    }

    /// An upload that moved `bytes` bytes (all of them, or up to a failure).
    pub fn write_done(&mut self, p: &[u8], mode: WriteMode, bytes: u64, now: SystemTime) {
        let old = self.nodes.get(p).map_or(0, |n| n.len);
        let len = match mode {
            WriteMode::Append => old.saturating_add(bytes),
            WriteMode::Resume(offset) => offset.min(old).saturating_add(bytes),
            _ => bytes,
        };
        if self.check_parent(p).is_ok() && self.nodes.get(p).is_none_or(|n| n.kind != FileKind::Dir) {
            let mut n = Node::file(len);
            n.modified = Some(now);
            self.nodes.insert(p.to_vec(), n);
        }
    }

    /// Runs a storage request of the session.
    pub fn run(&mut self, req: &FsRequest, now: SystemTime) -> FsOutcome {
        let done = |r: Result<(), ErrorKind>| r.map_or_else(FsOutcome::Failed, |()| FsOutcome::Done);
        match req {
            FsRequest::Metadata(p) => self.metadata(p).map_or_else(FsOutcome::Failed, FsOutcome::Metadata),
            FsRequest::OpenList(p) => match self.metadata(p) {
                Ok(m) if m.is_dir() => FsOutcome::Opened { size: None },
                Ok(_) => FsOutcome::Failed(ErrorKind::NotADirectory),
                Err(kind) => FsOutcome::Failed(kind),
            },
            FsRequest::OpenRead { path, .. } => self
                .open_read(path)
                .map_or_else(FsOutcome::Failed, |len| FsOutcome::Opened { size: Some(len) }),
            FsRequest::OpenWrite { path, mode } => self
                .open_write(path, *mode, now)
                .map_or_else(FsOutcome::Failed, |()| FsOutcome::Opened { size: None }),
            FsRequest::MakeDir(p) => done(self.make_dir(p, now)),
            FsRequest::RemoveDir(p) => done(self.remove_dir(p)),
            FsRequest::RemoveFile(p) => done(self.remove_file(p)),
            FsRequest::Rename { from, to } => done(self.rename(from, to)),
            _ => FsOutcome::Failed(ErrorKind::Local),
        }
    }
}
