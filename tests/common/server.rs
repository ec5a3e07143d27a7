//! The server under test: a real `ringftpd` process per test, serving a fresh temporary root,
//! started by [`ServerBuilder`] and killed when its [`TestServer`] drops.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Scratch, BIN, PASS, USER};

/// How long a server may take to print its listening addresses.
/// How long a server may take to print its listening lines: 10 s, or
/// `RINGFTP_TEST_STARTUP_SECS` (tests/ktls-vm.sh raises it: an emulated guest on a loaded host
/// once took longer).
fn startup_timeout() -> Duration {
    let secs = std::env::var("RINGFTP_TEST_STARTUP_SECS").ok().and_then(|v| v.parse().ok());
    Duration::from_secs(secs.unwrap_or(10))
}

/// How to start a [`TestServer`].
pub struct ServerBuilder {
    scratch: Scratch,
    args: Vec<String>,
    listen: Vec<String>,
    default_user: bool,
    /// Pass `--root` (off when a config file names the root).
    root_flag: bool,
    /// The server's working directory, if not the test's.
    cwd: Option<PathBuf>,
    log_level: String,
    /// Runs in the child between fork and exec (e.g. a setrlimit); see [`ServerBuilder::pre_exec`].
    pre_exec: Option<PreExec>,
}

/// A closure for [`std::os::unix::process::CommandExt::pre_exec`].
type PreExec = Box<dyn FnMut() -> io::Result<()> + Send + Sync + 'static>;

impl ServerBuilder {
    /// An extra command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, T>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Listen on this address instead of the default `127.0.0.1:0` (repeatable).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen.push(addr.to_string());
        self
    }

    /// Do not add `--user bob:secret`.
    pub fn no_default_user(mut self) -> Self {
        self.default_user = false;
        self
    }

    /// Do not pass `--root`: the server takes its root from a config file.
    pub fn no_root(mut self) -> Self {
        self.root_flag = false;
        self
    }

    /// Starts the server in `dir` rather than in the test's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// The served directory, which exists before the server starts.
    pub fn root(&self) -> PathBuf {
        self.scratch.join("root")
    }

    /// A directory for client-side files (sources, downloads, a users file...), outside the
    /// served root.
    pub fn work(&self) -> PathBuf {
        self.scratch.join("work")
    }

    /// Runs `f` in the server process after fork and before exec, e.g. to set a resource
    /// limit (`libc::setrlimit`). It must be async-signal-safe: no allocation, no locks.
    pub fn pre_exec(mut self, f: impl FnMut() -> io::Result<()> + Send + Sync + 'static) -> Self {
        self.pre_exec = Some(Box::new(f));
        self
    }

    pub fn start(mut self) -> TestServer {
        let root = self.root();
        let work = self.work();
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&work).unwrap();
        let listen =
            if self.listen.is_empty() { vec!["127.0.0.1:0".to_string()] } else { self.listen.clone() };
        let mut args: Vec<String> = Vec::new();
        if self.root_flag {
            args.push("--root".into());
            args.push(root.display().to_string());
        }
        for l in &listen {
            args.push("--listen".into());
            args.push(l.clone());
        }
        args.push("--log-level".into());
        args.push(self.log_level.clone());
        if self.default_user {
            args.push("--user".into());
            args.push(format!("{USER}:{PASS}"));
        }
        if !self.args.iter().any(|a| a == "--passive-ports") {
            args.push("--passive-ports".into());
            args.push(passive_block());
        }
        if let Some(engine) = engine_arg() {
            if !self.args.iter().any(|a| a == "--engine" || a.starts_with("--engine=")) {
                args.push("--engine".into());
                args.push(engine);
            }
        }
        args.extend(self.args.iter().cloned());

        let stderr_path = self.scratch.join("ringftpd.stderr.log");
        let stderr_file = File::create(&stderr_path).unwrap();
        let mut command = Command::new(BIN);
        command.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(stderr_file));
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        if let Some(f) = self.pre_exec.take() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the callers' closures only make async-signal-safe calls (setrlimit).
            unsafe { command.pre_exec(f) };
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));

        // A thread forwards stdout lines, so the startup wait can be bounded and the pipe
        // never fills up afterwards.
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }

        let mut server = TestServer {
            child: Some(child),
            addrs: Vec::new(),
            stdout_lines: lines,
            stderr_path,
            args,
            scratch: self.scratch,
            log_shown: AtomicBool::new(false),
        };
        let deadline = Instant::now() + startup_timeout();
        // Implicit FTPS listeners print their own lines after the --listen ones.
        let expected = listen.len() + self.args.iter().filter(|a| *a == "--implicit-listen").count();
        while server.addrs.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("ringftpd listening on ") {
                        let addr: SocketAddr = addr
                            .trim()
                            .parse()
                            .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
                        server.addrs.push(addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let log = server.stderr_log();
                    panic!(
                        "ringftpd did not print its {} listening address(es) within {:?}\n\
                         args: {:?}\nstdout: {:?}\nstderr:\n{log}",
                        listen.len(),
                        startup_timeout(),
                        server.args,
                        server.stdout_lines()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.wait_exit(Duration::from_secs(5));
                    let log = server.stderr_log();
                    panic!(
                        "ringftpd exited during startup ({status:?})\nargs: {:?}\nstderr:\n{log}",
                        server.args
                    );
                }
            }
        }
        server
    }
}

/// The engine every test server runs on: `RINGFTP_TEST_ENGINE` (auto, uring or epoll) if
/// set, else ringftpd's default. Tests that pass `--engine` themselves keep theirs.
pub fn engine_arg() -> Option<String> {
    let name = std::env::var("RINGFTP_TEST_ENGINE").ok().filter(|v| !v.is_empty())?;
    assert!(
        matches!(name.as_str(), "auto" | "uring" | "epoll"),
        "RINGFTP_TEST_ENGINE={name:?}: expected auto, uring or epoll"
    );
    Some(name)
}

/// [`engine_arg`] for servers a test embeds with the library API.
pub fn engine() -> ringftp::Engine {
    match engine_arg().as_deref() {
        Some("uring") => ringftp::Engine::Uring,
        Some("epoll") => ringftp::Engine::Epoll,
        _ => ringftp::Engine::Auto,
    }
}

/// A passive port range of its own for each server of this test process (below the
/// kernel's ephemeral ports, so client sockets do not take them), so that parallel tests
/// never compete for passive ports.
fn passive_block() -> String {
    const FIRST: u32 = 20_000;
    const SIZE: u32 = 32;
    const BLOCKS: u32 = (32_000 - FIRST) / SIZE;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
    let block = (std::process::id().wrapping_mul(37).wrapping_add(n)) % BLOCKS;
    let lo = FIRST + block * SIZE;
    format!("{lo}-{}", lo + SIZE - 1)
}

/// A running `ringftpd` serving its own temporary root; killed on drop.
pub struct TestServer {
    child: Option<Child>,
    addrs: Vec<SocketAddr>,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    stderr_path: PathBuf,
    args: Vec<String>,
    scratch: Scratch,
    /// Whether a failure message already included the log (so Drop does not repeat it).
    log_shown: AtomicBool,
}

impl TestServer {
    /// A builder for a server with the defaults: `--listen 127.0.0.1:0 --log-level debug
    /// --user bob:secret`. `tag` names the temporary directory.
    pub fn builder(tag: &str) -> ServerBuilder {
        ServerBuilder {
            scratch: Scratch::new(tag),
            args: Vec::new(),
            listen: Vec::new(),
            default_user: true,
            root_flag: true,
            cwd: None,
            log_level: "debug".into(),
            pre_exec: None,
        }
    }

    /// A server with the defaults.
    pub fn start(tag: &str) -> TestServer {
        Self::builder(tag).start()
    }

    /// A server with the defaults and some extra arguments.
    pub fn with_args(tag: &str, args: &[&str]) -> TestServer {
        Self::builder(tag).args(args.iter().copied()).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The host part of the first address as a client spells it (`127.0.0.1` or `::1`).
    pub fn host(&self) -> String {
        self.addr().ip().to_string()
    }

    pub fn root(&self) -> PathBuf {
        self.scratch.join("root")
    }

    /// A directory for client-side files, outside the served root.
    pub fn work(&self) -> PathBuf {
        self.scratch.join("work")
    }

    /// `ftp://HOST:PORT/path` for the first address, with the path percent-encoded.
    pub fn url(&self, path: &str) -> String {
        url_for(self.addr(), path)
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// Everything the server logged so far, without ANSI colour codes.
    pub fn stderr_log(&self) -> String {
        fs::read(&self.stderr_path).map(|b| strip_ansi(&String::from_utf8_lossy(&b))).unwrap_or_default()
    }

    /// Waits (bounded) until the log satisfies `pred`; returns whether it did.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.stderr_log()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }

    /// Waits up to `timeout` for the server to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log, prefixed for a failure message: all of it if it is short, else its first and
    /// last lines (a runaway log can be huge).
    pub fn log_for_failure(&self) -> String {
        self.log_shown.store(true, Ordering::Relaxed);
        const EDGE: usize = 60;
        let log = self.log_edges(256 * 1024);
        let lines: Vec<&str> = log.lines().collect();
        let body = if lines.len() <= 3 * EDGE {
            lines.join("\n")
        } else {
            format!(
                "{}\n[... {} lines or more left out ...]\n{}",
                lines[..EDGE].join("\n"),
                lines.len() - 2 * EDGE,
                lines[lines.len() - EDGE..].join("\n")
            )
        };
        format!("---- ringftpd {:?} stderr ----\n{body}\n---- end of ringftpd stderr ----", self.args)
    }

    /// The whole log if it is at most `2 * edge` bytes, else its first and last `edge` bytes.
    fn log_edges(&self, edge: u64) -> String {
        use std::io::{Seek, SeekFrom};
        let Ok(mut f) = File::open(&self.stderr_path) else {
            return String::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let mut bytes = Vec::new();
        if len <= 2 * edge {
            let _ = f.read_to_end(&mut bytes);
        } else {
            let mut head = vec![0u8; edge as usize];
            let _ = f.read_exact(&mut head);
            let _ = f.seek(SeekFrom::End(-(edge as i64)));
            let mut tail = Vec::new();
            let _ = f.read_to_end(&mut tail);
            bytes.extend_from_slice(&head);
            bytes.extend_from_slice(
                format!("\n[... {} bytes of log left out ...]\n", len - 2 * edge).as_bytes(),
            );
            bytes.extend_from_slice(&tail);
        }
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if thread::panicking() && !self.log_shown.load(Ordering::Relaxed) {
            eprintln!("{}", self.log_for_failure());
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own child, which has not been reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), which the tracing subscriber writes
/// even into a file.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `ftp://HOST:PORT/path` with the path percent-encoded (spaces, non-ASCII...).
pub fn url_for(addr: SocketAddr, path: &str) -> String {
    let path = path.strip_prefix('/').unwrap_or(path);
    let mut encoded = String::new();
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    match addr {
        SocketAddr::V4(a) => format!("ftp://{}:{}/{encoded}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("ftp://[{}]:{}/{encoded}", a.ip(), a.port()),
    }
}

/// A passive port range of its own (the same allocator as [`TestServer`]'s), for a server the
/// test configures itself: a library server, or `--passive-ports` with part of the block.
pub fn passive_ports_block() -> (u16, u16) {
    let block = passive_block();
    let (lo, hi) = block.split_once('-').expect("MIN-MAX");
    (lo.parse().expect("port"), hi.parse().expect("port"))
}
