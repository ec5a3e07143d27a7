//! Whether a file range is in the page cache, so a splice from it cannot wait for the disk.
//!
//! An io_uring SPLICE always runs in an io-wq worker: waking it and being woken back costs two
//! context switches per chunk, which is most of the server's time for a small file and a tenth
//! of a large one. When `cachestat(2)` (Linux 6.5) says every page of a chunk is resident, the
//! shard splices it itself; otherwise, or where the syscall is missing or filtered, the chunk
//! goes to io_uring as before, so a page-cache miss still never blocks a shard.
//!
//! Only on local filesystems: NFS, SMB or FUSE may go to the network or a daemon to revalidate
//! even pages they have cached, so their files always take the io_uring path.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::statfs::{
    fstatfs, FsType, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, F2FS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC,
    TMPFS_MAGIC, XFS_SUPER_MAGIC,
};

/// `cachestat`'s number, the same on every architecture (it came after the syscall table
/// unification); libc does not export it for x86_64 yet.
const SYS_CACHESTAT: libc::c_long = 451;

/// Set once the kernel has refused the syscall (ENOSYS, or EPERM from a seccomp filter), so a
/// kernel without it pays one failed call, not one per chunk.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Filesystems whose cached pages are read without any I/O or round trip.
const LOCAL: [FsType; 6] = [
    EXT4_SUPER_MAGIC,
    XFS_SUPER_MAGIC,
    BTRFS_SUPER_MAGIC,
    F2FS_SUPER_MAGIC,
    TMPFS_MAGIC,
    OVERLAYFS_SUPER_MAGIC,
];

/// Whether `file` lives on a filesystem the shard may read cached pages of inline (ext2/3/4
/// share one magic number).
pub(crate) fn is_local(file: &OwnedFd) -> bool {
    fstatfs(file).is_ok_and(|fs| LOCAL.contains(&fs.filesystem_type()))
}

/// Whether `file` lives in memory (tmpfs), where writing a cached page waits for no disk.
pub(crate) fn is_in_memory(file: &OwnedFd) -> bool {
    fstatfs(file).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC)
}

/// Pages the kernel counts in: 4 KiB on the architectures this runs on. A larger real page
/// size only makes the expected count too high, which errs towards io_uring.
const PAGE: u64 = 4096;

/// Whether all of `[offset, offset + len)` of `file` is in the page cache right now.
///
/// The answer can go stale at once (eviction); that costs one synchronous read of a page,
/// the same as a file read that races with reclaim anywhere. `len` must not reach past the
/// end of the file, or the pages past it count as missing.
pub(crate) fn is_cached(file: &OwnedFd, offset: u64, len: u64) -> bool {
    if len == 0 || UNSUPPORTED.load(Ordering::Relaxed) {
        return false;
    }
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers refer to live, correctly laid-out structs for the call's duration;
    // the kernel writes only `stat`.
    let res = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    if res != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error();
        if matches!(errno, Some(libc::ENOSYS | libc::EPERM)) {
            UNSUPPORTED.store(true, Ordering::Relaxed);
        }
        return false;
    }
    let pages = (offset + len - 1) / PAGE - offset / PAGE + 1;
    stat.nr_cache >= pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_just_written_is_cached_and_a_range_past_its_end_is_not() {
        let path = std::env::temp_dir().join(format!("ringftp-pagecache-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 3 * 4096 + 10]).unwrap();
        let fd = OwnedFd::from(std::fs::File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        // Pages just written sit in the page cache (tmpfs or a disk filesystem alike).
        let whole = is_cached(&fd, 0, 3 * 4096 + 10);
        if UNSUPPORTED.load(Ordering::Relaxed) {
            eprintln!("cachestat unavailable here; nothing to check");
            return;
        }
        assert!(whole);
        assert!(is_cached(&fd, 4095, 2));
        assert!(!is_cached(&fd, 0, 0));
        // Three pages past the end are not in the cache.
        assert!(!is_cached(&fd, 3 * 4096, 4 * 4096));
    }

    #[test]
    fn procfs_is_not_a_local_filesystem_for_inline_reads() {
        let proc_file = OwnedFd::from(std::fs::File::open("/proc/self/status").unwrap());
        assert!(!is_local(&proc_file));
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            let path = shm.join(format!("ringftp-local-{}", std::process::id()));
            let f = OwnedFd::from(std::fs::File::create(&path).unwrap());
            std::fs::remove_file(&path).unwrap();
            assert!(is_local(&f), "tmpfs counts as local");
        }
    }
}
