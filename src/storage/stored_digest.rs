//! Upload digests kept with the file in an extended attribute, for the filesystem backend (the
//! object backend keeps them as object metadata, with the names and hex helpers below).
//!
//! `user.ringftp.<algo>` (`sha256`, `sha1`, `md5`, `crc32`) holds `<size> <mtime ns> <hex>`:
//! the file's size and modification time when the digest was stored, and the digest. A HASH
//! trusts it only while both still match, so a file changed since (APPE, a rewrite by another
//! program, a truncation) is read and hashed again. What it cannot see is a change that keeps
//! the size and restores the mtime to the nanosecond (`touch -r` after an in-place edit).
//!
//! The attribute lives on the inode, so it follows the file through the rename that commits
//! an atomic upload. A filesystem without user xattrs (tmpfs before Linux 6.6, some network
//! filesystems) stores nothing and HASH computes as it would without the option.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::sys::stat::fstat;

use super::HashAlgo;

/// The short lowercase name of `algo` (`sha256`), as S3 metadata names use it.
#[cfg_attr(not(feature = "object"), allow(dead_code))]
pub(super) fn short_name(algo: HashAlgo) -> &'static str {
    match algo {
        HashAlgo::Sha1 => "sha1",
        HashAlgo::Md5 => "md5",
        HashAlgo::Crc32 => "crc32",
        _ => "sha256",
    }
}

/// `digest` in lowercase hex.
pub(super) fn to_hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex digest (either case); `None` for anything else or for nothing.
pub(super) fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2)
        .map(|pair| match pair {
            &[hi, lo] => Some(nibble(hi)? << 4 | nibble(lo)?),
            _ => None,
        })
        .collect()
}

/// The attribute's name for `algo`.
fn name(algo: HashAlgo) -> &'static CStr {
    match algo {
        HashAlgo::Sha1 => c"user.ringftp.sha1",
        HashAlgo::Md5 => c"user.ringftp.md5",
        HashAlgo::Crc32 => c"user.ringftp.crc32",
        _ => c"user.ringftp.sha256",
    }
}

/// Longest value read back: two decimal numbers and a SHA-256 in hex fit with room to spare.
const MAX_VALUE: usize = 160;

/// Size and mtime (ns since the epoch) of `file` now.
fn stamp(file: &File) -> io::Result<(u64, i128)> {
    let st = fstat(file)?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    Ok((size, i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec)))
}

/// Stores `digest` of `file` as it is now.
pub(super) fn store(file: &File, algo: HashAlgo, digest: &[u8]) -> io::Result<()> {
    let (size, mtime) = stamp(file)?;
    let value = format!("{size} {mtime} {}", to_hex(digest));
    // SAFETY: a valid descriptor, a NUL-terminated name, and a value pointer and length that
    // describe a live buffer.
    let rc = unsafe {
        libc::fsetxattr(file.as_raw_fd(), name(algo).as_ptr(), value.as_ptr().cast(), value.len(), 0)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The stored digest of `file`, if there is one for `algo` and the file's size and mtime are
/// still those it was stored with.
pub(super) fn load(file: &File, algo: HashAlgo) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_VALUE];
    // SAFETY: a valid descriptor, a NUL-terminated name, and `buf` is writable for its length.
    let n =
        unsafe { libc::fgetxattr(file.as_raw_fd(), name(algo).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    // ENODATA (none stored), ENOTSUP (no user xattrs here), ERANGE (not ours): compute.
    let value = buf.get(..usize::try_from(n).ok()?)?;
    let (size, mtime, digest) = parse(value)?;
    (stamp(file).ok()? == (size, mtime)).then_some(digest)
}

/// `<size> <mtime ns> <hex>`; `None` if it is anything else.
fn parse(value: &[u8]) -> Option<(u64, i128, Vec<u8>)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let size = parts.next()?.parse().ok()?;
    let mtime = parts.next()?.parse().ok()?;
    let digest = from_hex(parts.next()?.as_bytes())?;
    if parts.next().is_some() {
        return None;
    }
    Some((size, mtime, digest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_what_it_writes() {
        assert_eq!(parse(b"3 17 0aff"), Some((3, 17, vec![0x0a, 0xff])));
        assert_eq!(parse(b"3 -5 00"), Some((3, -5, vec![0])));
        for bad in [&b""[..], b"3 17", b"3 17 0", b"3 17 zz", b"x 17 00", b"3 17 00 x", b"3  00"] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn stored_digest_follows_size_and_mtime() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("ringftp-xattr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&path)
            .unwrap();
        file.write_all(b"abc").unwrap();
        match store(&file, HashAlgo::Md5, &[1, 2]) {
            Ok(()) => {
                assert_eq!(load(&file, HashAlgo::Md5), Some(vec![1, 2]));
                assert_eq!(load(&file, HashAlgo::Sha256), None);
                file.write_all(b"d").unwrap();
                assert_eq!(load(&file, HashAlgo::Md5), None);
            }
            // No user xattrs on this filesystem: nothing to check.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP)),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
