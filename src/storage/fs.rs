//! The filesystem backend.
//!
//! Confinement is the kernel's job, not ours: every lookup is an `openat2` relative to a
//! directory descriptor with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so `..`, absolute
//! symlinks, relative symlinks that climb out and `/proc` magic links all fail (EXDEV/ELOOP,
//! which map to 550 Permission denied). Because the check happens inside the one syscall that
//! resolves the path, there is no window in which a concurrent rename or a freshly planted
//! symlink could redirect a path that was checked as a string first.
//!
//! Operations that create, remove or rename resolve the *parent* directory that way and then
//! act on the last component as a plain name (`mkdirat`, `unlinkat`, `renameat`), which never
//! follows a symlink in that position.
//!
//! The trait's methods are `async` but the syscalls here are quick metadata operations, so they
//! run inline on the caller's thread, except the pages of a large directory's listing, which
//! are read on the runtime's blocking pool; the bulk data moves through the returned
//! descriptors.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{
    openat, openat2, readlinkat, renameat, AtFlags, FcntlArg, OFlag, OpenHow, ResolveFlag, AT_FDCWD,
};
use nix::sys::stat::{
    fchmodat, fstat, fstatat, mkdirat, utimensat, FchmodatFlags, FileStat, Mode, UtimensatFlags,
};
use nix::sys::statvfs::fstatvfs;
use nix::sys::time::TimeSpec;
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

use super::{
    hash, hash_permit, stored_digest, DataSink, DataSource, DirEntry, ErrorKind, FileKind, HashAlgo,
    Metadata, Result, Storage, WriteMode,
};
use crate::auth::{Permissions, User};

/// Resolution flags for every lookup: stay below the starting directory, and refuse
/// `/proc/*/fd`-style magic links, which jump anywhere regardless of `RESOLVE_BENEATH`'s
/// ancestry check on their target.
const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// How often a lookup is retried when `openat2` reports EAGAIN: the kernel returns it when a
/// concurrent rename made it unable to prove a `..` stayed beneath; a retry usually succeeds.
const EAGAIN_RETRIES: usize = 4;

/// Permission bits of new files and directories (before the umask).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Serves a directory tree, confined to it by the kernel.
///
/// Holds the root open as an `O_PATH` descriptor, so renaming or replacing the root's path
/// after start-up does not change what is served.
#[derive(Debug)]
pub struct FsStorage {
    /// The root as given, for logs.
    root: PathBuf,
    /// The root directory, opened once; every lookup starts here.
    root_fd: Arc<OwnedFd>,
}

impl FsStorage {
    /// Serves the directory `root`.
    ///
    /// Fails if `root` is not an existing directory, or if the kernel lacks `openat2`
    /// (Linux 5.6+), without which confinement cannot be guaranteed.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root_fd = nix::fcntl::open(&root, flags, Mode::empty()).map_err(|errno| {
            let what = match errno {
                Errno::ENOENT => "does not exist",
                Errno::ENOTDIR => "is not a directory",
                _ => "cannot be opened",
            };
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("storage root {}: {what} ({errno})", root.display()),
            )
        })?;
        // Probe now, so a kernel or seccomp filter without openat2 fails at start-up rather
        // than on every client request.
        let probe = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(RESOLVE);
        if let Err(errno) = openat2(&root_fd, ".", probe) {
            let msg = match errno {
                Errno::ENOSYS => "openat2 is not available (needs Linux 5.6 or newer)".to_owned(),
                _ => format!("openat2 failed on the storage root {}: {errno}", root.display()),
            };
            return Err(io::Error::new(io::Error::from(errno).kind(), msg));
        }
        Ok(FsStorage { root, root_fd: Arc::new(root_fd) })
    }

    /// The root directory as given to [`FsStorage::new`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The user's home directory as a descriptor that can move to another thread.
    fn home_owned(&self, user: &User) -> Result<DirFd<'static>> {
        if user.home.as_os_str().is_empty() {
            return Ok(DirFd::Shared(Arc::clone(&self.root_fd)));
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        open_beneath(self.root_fd.as_fd(), &user.home, flags, 0).map(DirFd::Owned)
    }

    /// The user's home directory, below the root.
    fn home(&self, user: &User) -> Result<DirFd<'_>> {
        if user.home.as_os_str().is_empty() {
            return Ok(DirFd::Borrowed(self.root_fd.as_fd()));
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        open_beneath(self.root_fd.as_fd(), &user.home, flags, 0).map(DirFd::Owned)
    }
}

/// A directory to resolve from: the root or home kept open elsewhere, or one opened just now.
enum DirFd<'a> {
    Borrowed(BorrowedFd<'a>),
    Shared(Arc<OwnedFd>),
    Owned(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Borrowed(fd) => *fd,
            DirFd::Shared(fd) => fd.as_fd(),
            DirFd::Owned(fd) => fd.as_fd(),
        }
    }
}

/// Opens `path` beneath `dir` (the empty path is `dir` itself), never leaving `dir`.
fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: OFlag, mode: u32) -> Result<OwnedFd> {
    Ok(openat2_beneath(dir, path, flags, mode)?)
}

/// [`open_beneath`] with the raw errno, for callers that remap some of them.
fn openat2_beneath(dir: BorrowedFd<'_>, path: &Path, flags: OFlag, mode: u32) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    let how =
        OpenHow::new().flags(flags | OFlag::O_CLOEXEC).mode(Mode::from_bits_truncate(mode)).resolve(RESOLVE);
    let mut retries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if retries < EAGAIN_RETRIES => retries += 1,
            result => return result,
        }
    }
}

/// Splits a path into its parent (relative to the home; empty for the home itself) and its
/// last component. The home itself has no parent within reach, so it cannot be the target of
/// a create, remove or rename.
fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(ErrorKind::PermissionDenied.into()),
    }
}

/// Opens the parent directory of `path` beneath `home` and returns it with the last component.
fn parent_beneath<'h, 'p>(home: &'h DirFd<'_>, path: &'p Path) -> Result<(DirFd<'h>, &'p OsStr)> {
    let (parent, name) = split(path)?;
    if parent.as_os_str().is_empty() {
        return Ok((DirFd::Borrowed(home.as_fd()), name));
    }
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let fd = open_beneath(home.as_fd(), parent, flags, 0)?;
    Ok((DirFd::Owned(fd), name))
}

/// Refuses writes for read-only users even if the session forgot to check: the storage is
/// the last line of defence.
fn permit(user: &User, allowed: fn(&Permissions) -> bool) -> Result<()> {
    if allowed(&user.permissions) {
        Ok(())
    } else {
        Err(ErrorKind::PermissionDenied.into())
    }
}

/// Data can only flow through regular files: a directory gets its own reply, and devices,
/// fifos and sockets (which could block or have side effects) are refused.
fn require_regular(stat: &FileStat) -> Result<()> {
    match file_kind(stat.st_mode) {
        FileKind::File => Ok(()),
        FileKind::Dir => Err(ErrorKind::IsADirectory.into()),
        _ => Err(ErrorKind::PermissionDenied.into()),
    }
}

/// Clears the `O_NONBLOCK` used while opening (so a fifo could not block the open), leaving
/// the data path a plain blocking descriptor (an io_uring read of an O_NONBLOCK file may fail
/// with EAGAIN rather than wait). `opened` are the flags the file was opened with: F_SETFL
/// looks only at its own, so no F_GETFL is needed.
fn clear_nonblock(fd: &OwnedFd, opened: OFlag) -> Result<()> {
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(opened - OFlag::O_NONBLOCK))?;
    Ok(())
}

fn file_kind(st_mode: libc::mode_t) -> FileKind {
    match st_mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// A `stat` timestamp as a `SystemTime`; `None` if it is out of range.
fn system_time(secs: i64, nsecs: i64) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::try_from(nsecs).ok().filter(|&n| n < 1_000_000_000)?);
    let base = match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs))?,
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?,
    };
    base.checked_add(nanos)
}

fn to_metadata(stat: &FileStat) -> Metadata {
    Metadata {
        kind: file_kind(stat.st_mode),
        len: u64::try_from(stat.st_size).unwrap_or(0),
        modified: system_time(stat.st_mtime, stat.st_mtime_nsec),
        mode: stat.st_mode & 0o7777,
        // `nlink_t` is u64 on some targets and u32 on others.
        #[allow(clippy::useless_conversion)]
        nlink: u64::from(stat.st_nlink),
        link_target: None,
        link_resolved: None,
        // `dev_t` and `ino_t` differ in width between targets.
        #[allow(clippy::useless_conversion)]
        unique: Some((u64::from(stat.st_dev), u64::from(stat.st_ino))),
        owner: Some((stat.st_uid, stat.st_gid)),
    }
}

/// Opens `path` beneath `home` as an `O_PATH` descriptor (following symlinks, but only within
/// the root, as every lookup here) and returns the `/proc/self/fd` name of what it resolved
/// to, for the calls that have no descriptor form for an `O_PATH` file (`chmod`, `utimensat`):
/// the name reaches exactly that inode, so no symlink planted since can redirect the call.
fn resolved_name(home: &DirFd<'_>, path: &Path) -> Result<(OwnedFd, String)> {
    let fd = open_beneath(home.as_fd(), path, OFlag::O_PATH, 0)?;
    let stat = fstat(&fd)?;
    if !matches!(file_kind(stat.st_mode), FileKind::File | FileKind::Dir) {
        return Err(ErrorKind::PermissionDenied.into());
    }
    let name = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok((fd, name))
}

/// Directories whose size (`st_size`) is below this are listed on the calling thread.
const LIST_INLINE_BYTES: i64 = 32 * 1024;

/// Entries per page of a listing: a few `getdents` calls' worth, and what a listing holds in
/// memory at once.
const LIST_PAGE: usize = 1024;

/// A directory of [`FsStorage`] being listed, a page at a time (see [`Storage::list`]).
///
/// Each page is read and stat'ed (one `fstatat`, and for links a `readlinkat` and a lookup,
/// per entry) on the calling thread for a small directory, and on the runtime's blocking pool
/// for a large one: 100,000 entries would stall every other session of the shard for a tenth
/// of a second. Each page is sorted by name; the directory as a whole is in `readdir` order.
pub struct FsLister {
    /// `None` once the directory is exhausted or failed.
    state: Option<Box<ListState>>,
    inline: bool,
}

impl std::fmt::Debug for FsLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsLister").field("done", &self.state.is_none()).finish_non_exhaustive()
    }
}

/// What a page read needs, moved to the blocking pool and back.
struct ListState {
    entries: nix::dir::OwningIter,
    /// The same directory, for the `*at` calls (the iterator owns its descriptor).
    dir: OwnedFd,
    home: DirFd<'static>,
    /// The directory below `home`, for resolving links.
    path: PathBuf,
}

impl ListState {
    /// Appends up to [`LIST_PAGE`] entries to `out`, sorted by name; whether more may follow.
    fn read_page(&mut self, out: &mut Vec<DirEntry>) -> Result<bool> {
        let start = out.len();
        let mut more = false;
        for entry in self.entries.by_ref() {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            match fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => {
                    let mut metadata = to_metadata(&stat);
                    if metadata.kind == FileKind::Symlink {
                        metadata = symlink_metadata(metadata, &self.home, &self.path, &self.dir, name);
                    }
                    out.push(DirEntry { name: name.to_bytes().to_vec(), metadata })
                }
                // Removed since readdir saw it: it is simply not there any more.
                Err(Errno::ENOENT) => {}
                Err(errno) => return Err(errno.into()),
            }
            if out.len() - start >= LIST_PAGE {
                more = true;
                break;
            }
        }
        if let Some(page) = out.get_mut(start..) {
            page.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(more)
    }
}

impl super::Lister for FsLister {
    async fn next_page(&mut self, out: &mut Vec<DirEntry>) -> Result<bool> {
        let Some(mut state) = self.state.take() else {
            return Ok(false);
        };
        let more = if self.inline {
            state.read_page(out)?
        } else {
            // The caller's buffer goes along and comes back, so its allocation is reused.
            let mut page = std::mem::take(out);
            let read = tokio::task::spawn_blocking(move || {
                let more = state.read_page(&mut page);
                (state, page, more)
            });
            let (back, page, more) = read.await.map_err(io::Error::other)?;
            *out = page;
            state = back;
            more?
        };
        if more {
            self.state = Some(state);
        }
        Ok(true)
    }
}

/// Adds to the metadata of the symlink `name` in `dir` (the directory `path` of `home`) its
/// target, and what that resolves to by the same confined lookup a RETR or CWD through the
/// link would make, so a listing agrees with what using the link does: a link that is
/// dangling, loops or leaves the root resolves to nothing.
fn symlink_metadata(meta: Metadata, home: &DirFd<'_>, path: &Path, dir: &OwnedFd, name: &CStr) -> Metadata {
    let Ok(target) = readlinkat(dir, name) else {
        // Replaced since fstatat saw it: list it as it was, without a target.
        return meta;
    };
    let through = path.join(OsStr::from_bytes(name.to_bytes()));
    let resolved = open_beneath(home.as_fd(), &through, OFlag::O_PATH, 0)
        .ok()
        .and_then(|fd| fstat(&fd).ok())
        .map(|stat| to_metadata(&stat));
    meta.symlink(target.into_vec(), resolved)
}

impl Storage for FsStorage {
    async fn metadata(&self, user: &User, path: &Path) -> Result<Metadata> {
        let home = self.home(user)?;
        // O_PATH follows symlinks (within the root) and needs no read permission.
        let fd = open_beneath(home.as_fd(), path, OFlag::O_PATH, 0)?;
        Ok(to_metadata(&fstat(&fd)?))
    }

    type Lister = FsLister;

    async fn list(&self, user: &User, path: &Path) -> Result<FsLister> {
        let home = self.home_owned(user)?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let dir = open_beneath(home.as_fd(), path, flags, 0)?;
        // A small directory is cheaper read here than handed over. Directory sizes are a
        // rough guide (tmpfs: ~20 bytes an entry, ext4: blocks).
        let inline = fstat(&dir)?.st_size < LIST_INLINE_BYTES;
        let at = dir.try_clone()?;
        let entries = Dir::from_fd(dir)?.into_iter();
        let state = ListState { entries, dir: at, home, path: path.to_owned() };
        Ok(FsLister { state: Some(Box::new(state)), inline })
    }

    async fn open_read(&self, user: &User, path: &Path, offset: u64) -> Result<DataSource> {
        permit(user, |p| p.read)?;
        let home = self.home(user)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = open_beneath(home.as_fd(), path, flags, 0)?;
        require_regular(&fstat(&fd)?)?;
        clear_nonblock(&fd, flags)?;
        let mut file = File::from(fd);
        // Past the end is fine: reading then yields nothing, as REST beyond EOF should.
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(DataSource::File(file))
    }

    async fn open_write(&self, user: &User, path: &Path, mode: WriteMode) -> Result<DataSink> {
        permit(user, |p| p.write)?;
        let home = self.home(user)?;
        let mut flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        match mode {
            WriteMode::Truncate => flags |= OFlag::O_TRUNC,
            WriteMode::Append => flags |= OFlag::O_APPEND,
            WriteMode::Resume(_) => {}
            WriteMode::CreateNew => flags |= OFlag::O_EXCL,
            WriteMode::Replace => {}
        }
        if mode == WriteMode::Replace {
            return open_unnamed(&home, path);
        }
        let fd = match openat2_beneath(home.as_fd(), path, flags, FILE_MODE) {
            // A fifo or socket without a reader: not something to upload into.
            Err(Errno::ENXIO) => return Err(ErrorKind::PermissionDenied.into()),
            result => result?,
        };
        require_regular(&fstat(&fd)?)?;
        clear_nonblock(&fd, flags)?;
        let mut file = File::from(fd);
        if let WriteMode::Resume(offset) = mode {
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(DataSink::File(file))
    }

    async fn make_dir(&self, user: &User, path: &Path) -> Result<()> {
        permit(user, |p| p.mkdir)?;
        let home = self.home(user)?;
        let (parent, name) = parent_beneath(&home, path)?;
        mkdirat(&parent, name, Mode::from_bits_truncate(DIR_MODE))?;
        Ok(())
    }

    async fn remove_dir(&self, user: &User, path: &Path) -> Result<()> {
        permit(user, |p| p.delete)?;
        let home = self.home(user)?;
        let (parent, name) = parent_beneath(&home, path)?;
        unlinkat(&parent, name, UnlinkatFlags::RemoveDir)?;
        Ok(())
    }

    async fn remove_file(&self, user: &User, path: &Path) -> Result<()> {
        permit(user, |p| p.delete)?;
        let home = self.home(user)?;
        let (parent, name) = parent_beneath(&home, path)?;
        // On a directory this fails with EISDIR, which is the reply we want.
        unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }

    async fn rename(&self, user: &User, from: &Path, to: &Path) -> Result<()> {
        permit(user, |p| p.rename)?;
        let home = self.home(user)?;
        let (from_parent, from_name) = parent_beneath(&home, from)?;
        let (to_parent, to_name) = parent_beneath(&home, to)?;
        renameat(&from_parent, from_name, &to_parent, to_name)?;
        Ok(())
    }

    async fn set_modified(&self, user: &User, path: &Path, time: SystemTime) -> Result<()> {
        permit(user, |p| p.write)?;
        let home = self.home(user)?;
        let (_fd, name) = resolved_name(&home, path)?;
        let since = |t: SystemTime| -> Option<TimeSpec> {
            let d = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => return Some(TimeSpec::from_duration(d)),
                Err(e) => e.duration(),
            };
            // Before 1970: a negative second count with a positive fraction.
            let secs = i64::try_from(d.as_secs()).ok()?;
            let nanos = i64::from(d.subsec_nanos());
            Some(if nanos == 0 {
                TimeSpec::new(-secs, 0)
            } else {
                TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
            })
        };
        let mtime = since(time).ok_or(ErrorKind::InvalidName)?;
        utimensat(AT_FDCWD, name.as_str(), &TimeSpec::UTIME_OMIT, &mtime, UtimensatFlags::FollowSymlink)?;
        Ok(())
    }

    async fn set_mode(&self, user: &User, path: &Path, mode: u32) -> Result<()> {
        permit(user, |p| p.write)?;
        if mode > 0o777 {
            return Err(ErrorKind::PermissionDenied.into());
        }
        let home = self.home(user)?;
        let (_fd, name) = resolved_name(&home, path)?;
        let mode = Mode::from_bits_truncate(mode as libc::mode_t);
        fchmodat(AT_FDCWD, name.as_str(), mode, FchmodatFlags::FollowSymlink)?;
        Ok(())
    }

    async fn available_space(&self, user: &User, path: &Path) -> Result<u64> {
        let home = self.home(user)?;
        let fd = open_beneath(home.as_fd(), path, OFlag::O_PATH, 0)?;
        let st = fstatvfs(&fd)?;
        // The blocks an unprivileged writer may still use.
        #[allow(clippy::useless_conversion)]
        let (blocks, size) = (u64::from(st.blocks_available()), u64::from(st.fragment_size()));
        Ok(blocks.saturating_mul(size))
    }

    async fn store_digest(
        &self,
        user: &User,
        path: &Path,
        file: &File,
        algo: HashAlgo,
        digest: &[u8],
    ) -> Result<()> {
        let _ = (user, path);
        match stored_digest::store(file, algo, digest) {
            // No user xattrs on this filesystem: HASH computes, as without the option.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            other => Ok(other?),
        }
    }

    /// A digest stored by [`Storage::store_digest`] while the file is as it was then, at
    /// once and without a [`hash_permit`]; else the whole file, read off the shard.
    async fn hash(&self, user: &User, path: &Path, algo: HashAlgo) -> Result<Vec<u8>> {
        let source = self.open_read(user, path, 0).await?;
        if let DataSource::File(file) = &source {
            if let Some(digest) = stored_digest::load(file, algo) {
                return Ok(digest);
            }
        }
        let permit = hash_permit()?;
        hash::hash_source(source, algo, permit).await
    }

    async fn commit_write(&self, user: &User, path: &Path, file: &File) -> Result<()> {
        permit(user, |p| p.write)?;
        let home = self.home(user)?;
        let (parent, name) = parent_beneath(&home, path)?;
        // Give the unnamed file a temporary name, then rename it over the target: rename is
        // atomic, so a reader sees the old file or the whole new one, never a part.
        let tmp =
            format!(".ringftp-{}-{}.part", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed));
        let linked = linkat(file.as_fd(), "", &parent, tmp.as_str(), AtFlags::AT_EMPTY_PATH).or_else(|_| {
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link works for anyone.
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            linkat(AT_FDCWD, proc_path.as_str(), &parent, tmp.as_str(), AtFlags::AT_SYMLINK_FOLLOW)
        });
        linked?;
        if let Err(e) = renameat(&parent, tmp.as_str(), &parent, name) {
            let _ = unlinkat(&parent, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e.into());
        }
        Ok(())
    }
}

/// Names the temporaries of atomic uploads, unique within this process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Opens an unnamed file (`O_TMPFILE`) in the directory of `path`, for an atomic upload: it
/// has no name until [`FsStorage::commit_write`] links it in, so if the upload fails, or the
/// server is killed, the kernel frees it and nothing is left behind.
fn open_unnamed(home: &DirFd<'_>, path: &Path) -> Result<DataSink> {
    let (parent, name) = parent_beneath(home, path)?;
    // Refuse early what the final rename would refuse late.
    match fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if file_kind(st.st_mode) == FileKind::Dir => return Err(ErrorKind::IsADirectory.into()),
        _ => {}
    }
    let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    match openat(&parent, ".", flags, Mode::from_bits_truncate(FILE_MODE)) {
        Ok(fd) => Ok(DataSink::File(File::from(fd))),
        Err(Errno::EOPNOTSUPP | Errno::EISDIR) => {
            tracing::warn!("this filesystem has no O_TMPFILE: atomic uploads are not possible here");
            Err(ErrorKind::Local.into())
        }
        Err(e) => Err(e.into()),
    }
}
