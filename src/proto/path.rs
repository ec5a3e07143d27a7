//! Virtual paths: what the client names, resolved against the working directory into an
//! absolute, normalised path that cannot climb above `/` (RFC 959 §3.2 leaves path syntax to
//! the server; this is the Unix syntax every client expects).
//!
//! Normalising here is the first fence; the storage backend is the second (the filesystem one
//! lets the kernel refuse symlink escapes), so neither alone has to be perfect.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The longest virtual path accepted, in bytes (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// Why a path argument is refused (553).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path contains a NUL byte, which no Unix file name can.
    Nul,
    /// The resolved path is longer than [`MAX_PATH`].
    TooLong,
}

/// Resolves `arg` against the absolute directory `cwd` into `out` (cleared first): absolute,
/// starting with `/`, without `.`, `..` or empty components. `..` at the top stays at `/`.
pub fn resolve(cwd: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    if arg.contains(&0) {
        return Err(PathError::Nul);
    }
    out.clear();
    out.push(b'/');
    let base: &[u8] = if arg.first() == Some(&b'/') { b"" } else { cwd };
    for part in base.split(|&b| b == b'/').chain(arg.split(|&b| b == b'/')) {
        match part {
            b"" | b"." => {}
            b".." => {
                let keep = out.iter().rposition(|&b| b == b'/').unwrap_or(0).max(1);
                out.truncate(keep);
            }
            name => {
                if out.len() > 1 {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
                if out.len() > MAX_PATH {
                    return Err(PathError::TooLong);
                }
            }
        }
    }
    Ok(())
}

/// The path a storage backend gets: relative to the user's root, no leading `/`.
pub fn storage_path(virtual_path: &[u8]) -> &Path {
    let rel = virtual_path.strip_prefix(b"/").unwrap_or(virtual_path);
    Path::new(OsStr::from_bytes(rel))
}

/// The last component of a virtual path (the whole path for `/`).
pub fn file_name(virtual_path: &[u8]) -> &[u8] {
    match virtual_path.iter().rposition(|&b| b == b'/') {
        Some(i) if i + 1 < virtual_path.len() => virtual_path.get(i + 1..).unwrap_or_default(),
        _ => virtual_path,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn r(cwd: &str, arg: &[u8]) -> Result<String, PathError> {
        let mut out = Vec::new();
        resolve(cwd.as_bytes(), arg, &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn table() {
        let ok = [
            ("/", &b"a"[..], "/a"),
            ("/a", b"b/c", "/a/b/c"),
            ("/a", b"/x//y/", "/x/y"),
            ("/a/b", b"..", "/a"),
            ("/a/b", b"../../../../etc/passwd", "/etc/passwd"),
            ("/", b"..", "/"),
            ("/", b"/..", "/"),
            ("/a", b".", "/a"),
            ("/a", b"./b/./c/..", "/a/b"),
            ("/a", b"%2e%2e", "/a/%2e%2e"),
            ("/", b"...", "/..."),
        ];
        for (cwd, arg, want) in ok {
            assert_eq!(r(cwd, arg).as_deref(), Ok(want), "{cwd} + {}", String::from_utf8_lossy(arg));
        }
        assert_eq!(r("/", b"a\0b"), Err(PathError::Nul));
        assert_eq!(r("/", &[b'x'; MAX_PATH + 1]), Err(PathError::TooLong));
    }

    #[test]
    fn storage_and_names() {
        assert_eq!(storage_path(b"/"), Path::new(""));
        assert_eq!(storage_path(b"/a/b"), Path::new("a/b"));
        assert_eq!(file_name(b"/a/b"), b"b");
        assert_eq!(file_name(b"/"), b"/");
    }
}
