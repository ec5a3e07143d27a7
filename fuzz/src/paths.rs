//! Invariants of virtual paths: what `proto::path::resolve` returns is absolute, normalised,
//! and cannot name anything outside the user's root once turned into a storage path.

use std::path::Component;

use ringftp::proto::path::{resolve, storage_path, PathError, MAX_PATH};

/// Asserts that `p` is what the session may hand to storage: starts with `/`, no empty, `.`
/// or `..` component, no NUL, no trailing `/` (except `/` itself), at most `MAX_PATH` bytes,
/// and its storage path is relative with only normal components.
pub fn check_virtual(p: &[u8]) {
    assert_eq!(p.first(), Some(&b'/'), "not absolute: {p:?}");
    assert!(!p.contains(&0), "NUL in path: {p:?}");
    assert!(p.len() <= MAX_PATH, "path too long: {}", p.len());
    if p != b"/" {
        for part in p[1..].split(|&b| b == b'/') {
            assert!(!part.is_empty() && part != b"." && part != b"..", "path not normalised: {p:?}");
        }
    }
    let sp = storage_path(p);
    assert!(!sp.is_absolute(), "storage path is absolute: {sp:?}");
    for c in sp.components() {
        assert!(matches!(c, Component::Normal(_)), "storage path has {c:?}: {sp:?}");
    }
}

/// Resolves `arg` against `cwd` and checks the result and its properties:
/// a NUL is refused; the result is a normalised absolute path; resolving it again (from any
/// directory) gives itself; a relative `arg` resolves like `cwd/arg` from `/`.
pub fn check_resolve(cwd: &[u8], arg: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match resolve(cwd, arg, &mut out) {
        Err(PathError::Nul) => {
            assert!(arg.contains(&0), "Nul error without a NUL");
            None
        }
        Err(PathError::TooLong) => {
            assert!(cwd.len() + arg.len() + 2 > MAX_PATH, "TooLong for a short path");
            None
        }
        Ok(()) => {
            assert!(!arg.contains(&0), "a NUL was accepted");
            check_virtual(&out);
            let mut again = Vec::new();
            resolve(b"/somewhere/else", &out, &mut again).expect("a resolved path resolves");
            assert_eq!(again, out, "resolve is not idempotent");
            if arg.first() != Some(&b'/') {
                let mut joined = cwd.to_vec();
                joined.push(b'/');
                joined.extend_from_slice(arg);
                let mut from_root = Vec::new();
                if resolve(b"/", &joined, &mut from_root).is_ok() {
                    assert_eq!(from_root, out, "cwd + arg differs from arg in cwd");
                }
            }
            Some(out)
        }
    }
}
