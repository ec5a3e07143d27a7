//! Runs the examples for real: `appliance` (per-user homes, atomic uploads, events, metrics)
//! and `memory_storage` (the buffered stream path), driven by curl over loopback.
//!
//! The example binaries sit next to `ringftpd` in cargo's output (`.../debug/examples/NAME`).
//! `cargo test` builds them, but `cargo test --test examples` does not, so the test asks
//! cargo to build them first (a no-op when they are fresh). Every wait is bounded; the
//! examples are killed on drop.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);
/// A cold build of the examples on a small machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The path of example `name`, built by cargo if needed (once per test run).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<()>> = OnceLock::new();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ringftpd")).parent().unwrap();
    let guard = BUILT.get_or_init(|| Mutex::new(())).lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    // The same profile as this test, so the same output directory.
    match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    // The target directory: the one above the profile directory.
    if let Some(target) = bin_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = run_bounded(&mut cmd, BUILD_TIMEOUT);
    assert!(out.status.success(), "building example {name}: {}", String::from_utf8_lossy(&out.stderr));
    drop(guard);
    let path = bin_dir.join("examples").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Runs `cmd` to completion, killing it after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // The child is owned by the waiting thread; end it by its id.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(id as i32), nix::sys::signal::SIGKILL);
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// A temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("ringftp-examples-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running example, killed on drop; its stdout arrives line by line.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(path: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The first stdout line containing `needle`, waiting at most [`TIMEOUT`].
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?} on the example's stdout"),
            }
        }
    }

    /// The address after `prefix` on a stdout line (`... listening on 127.0.0.1:1234, ...`).
    fn addr_after(&self, prefix: &str) -> SocketAddr {
        let line = self.line_with(prefix);
        let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
        let addr = rest.split([',', ' ', '/']).find(|s| !s.is_empty()).unwrap();
        addr.parse().unwrap_or_else(|e| panic!("{addr:?} in {line:?}: {e}"))
    }
}

/// Runs curl with `args`, bounded in time; its output.
fn curl(args: &[&str]) -> Output {
    run_bounded(Command::new("curl").args(["-sS", "--max-time", "20"]).args(args), TIMEOUT * 2)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[test]
fn appliance_processes_uploads_in_per_user_homes() {
    let bin = example("appliance");
    let scratch = Scratch::new("appliance");
    let root = scratch.0.join("root");
    let app = Running::start(&bin, &[root.to_str().unwrap(), "127.0.0.1:0", "127.0.0.1:0"]);
    let addr = app.addr_after("listening on ");
    let metrics = app.addr_after("metrics on http://");

    let source = scratch.0.join("scan.bin");
    let data = payload(300 * 1024);
    fs::write(&source, &data).unwrap();
    let out = curl(&["-T", source.to_str().unwrap(), &format!("ftp://alice:alice-pw@{addr}/")]);
    assert!(out.status.success(), "upload: {}", String::from_utf8_lossy(&out.stderr));

    let line = app.line_with("processed scan.bin");
    assert!(line.contains("from alice") && line.contains(&format!("{} bytes", data.len())), "{line}");
    assert_eq!(fs::read(root.join("alice/processed/scan.bin")).unwrap(), data);
    assert!(!root.join("alice/scan.bin").exists());

    let back = scratch.0.join("back.bin");
    let url = format!("ftp://alice:alice-pw@{addr}/processed/scan.bin");
    let out = curl(&["-o", back.to_str().unwrap(), &url]);
    assert!(out.status.success(), "download: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(&back).unwrap(), data);

    // Bob is confined to his own home: alice's files are not there.
    let out = curl(&["--list-only", &format!("ftp://bob:bob-pw@{addr}/processed/")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "bob sees {:?}", String::from_utf8_lossy(&out.stdout));

    let out = curl(&[&format!("http://{metrics}/metrics")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty());
}

#[test]
fn memory_storage_round_trips_through_streams() {
    let bin = example("memory_storage");
    let scratch = Scratch::new("memory");
    let app = Running::start(&bin, &["127.0.0.1:0"]);
    let addr = app.addr_after("listening on ");

    let out = curl(&[&format!("ftp://{addr}/README.txt")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"Served from memory.\n");

    let source = scratch.0.join("up.bin");
    let data = payload(700 * 1024);
    fs::write(&source, &data).unwrap();
    let out =
        curl(&["--ftp-create-dirs", "-T", source.to_str().unwrap(), &format!("ftp://demo:demo@{addr}/dir/")]);
    assert!(out.status.success(), "upload: {}", String::from_utf8_lossy(&out.stderr));

    let out = curl(&[&format!("ftp://demo:demo@{addr}/dir/up.bin")]);
    assert!(out.status.success(), "download: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data, "downloaded {} bytes, expected {}", out.stdout.len(), data.len());

    let out = curl(&["--list-only", &format!("ftp://demo:demo@{addr}/")]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("README.txt") && listing.contains("dir"), "{listing}");
}
