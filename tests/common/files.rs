//! Files and directories: scratch directories, deterministic file contents, checksums.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::TestServer;

/// A unique directory under the system temp dir, removed on drop.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag: String =
            tag.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
        let path =
            std::env::temp_dir().join(format!("ringftp-e2e-{}-{n}-{nanos:x}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A deterministic pseudo-random byte stream (xorshift64*), the same for the same seed.
pub struct Pattern {
    state: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    /// Fills `buf` (whose length is a multiple of 8) with the next bytes of the stream.
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_exact_mut(8) {
            let mut s = self.state;
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            self.state = s;
            word.copy_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
    }
}

/// Writes `len` bytes of the deterministic [`Pattern`] of `seed` to `path`.
pub fn make_file(path: &Path, len: u64, seed: u64) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    let f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut pattern = Pattern::new(seed);
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        pattern.fill(&mut chunk);
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
        w.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

/// The first `len` bytes of the [`Pattern`] of `seed` (what [`make_file`] writes).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len.div_ceil(8) * 8];
    let mut p = Pattern::new(seed);
    // Same chunking as make_file, so the bytes agree.
    for chunk in buf.chunks_mut(1 << 20) {
        let mut full = vec![0u8; 1 << 20];
        p.fill(&mut full);
        let n = chunk.len();
        chunk.copy_from_slice(&full[..n]);
    }
    buf.truncate(len);
    buf
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts two files have the same length and SHA-256.
pub fn assert_same_file(expected: &Path, actual: &Path, server: &TestServer) {
    let want_len = fs::metadata(expected).unwrap_or_else(|e| panic!("{}: {e}", expected.display())).len();
    let got_len = match fs::metadata(actual) {
        Ok(m) => m.len(),
        Err(e) => panic!(
            "{} is missing ({e}); expected a copy of {}\n{}",
            actual.display(),
            expected.display(),
            server.log_for_failure()
        ),
    };
    assert_eq!(
        got_len,
        want_len,
        "{} has {got_len} bytes, {} has {want_len}\n{}",
        actual.display(),
        expected.display(),
        server.log_for_failure()
    );
    let (want, got) = (sha256_file(expected), sha256_file(actual));
    assert_eq!(
        got,
        want,
        "sha256 of {} differs from {}\n{}",
        actual.display(),
        expected.display(),
        server.log_for_failure()
    );
}
