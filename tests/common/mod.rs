//! Shared harness of the end-to-end tests: a real `ringftpd` process per test, serving a fresh
//! temporary root, driven by real clients (curl, Python's ftplib, lftp) that run with a hard
//! timeout each.
//!
//! Every wait here is bounded; nothing listens on a fixed port; everything stays on loopback.

// Each test crate uses a different subset of the helpers.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The server binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringftpd");
/// The read-write user every server gets unless told otherwise.
pub const USER: &str = "bob";
pub const PASS: &str = "secret";

/// How long a server may take to print its listening addresses.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client command may run unless the test says otherwise.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Temporary directories

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

// ---------------------------------------------------------------------------------------------
// The server

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
        let deadline = Instant::now() + STARTUP_TIMEOUT;
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
                        STARTUP_TIMEOUT,
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

/// A passive port range of its own for each server of this test process (below the
/// kernel's ephemeral ports, so client sockets do not take them), so that parallel tests
/// never compete for passive ports.
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

// ---------------------------------------------------------------------------------------------
// Running clients

/// Runs a client command with [`CLIENT_TIMEOUT`]; see [`run_timeout`].
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, CLIENT_TIMEOUT)
}

/// Runs a command to completion, capturing its output; kills it and fails the test if it
/// runs longer than `timeout`.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, timeout, None)
}

/// [`run_timeout`], writing `input` (if any) to the command's stdin and then closing it.
pub fn run_with_input(cmd: &mut Command, timeout: Duration, input: Option<&[u8]>) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (is the client installed? it is required)"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small inputs only (a password): this cannot block on a full pipe.
        let _ = stdin.write_all(input);
    }
    let out_reader = spawn_reader(child.stdout.take().unwrap());
    let err_reader = spawn_reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_reader.join().unwrap_or_default();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "client timed out after {timeout:?} and was killed: {what}\n\
                     stdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Stdout and stderr of a finished command, for assertions and messages.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Ran {
    pub fn describe(&self) -> String {
        format!(
            "{}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// Fails the test (with the output and the server log) unless the command succeeded.
    pub fn ok(self, server: &TestServer) -> Ran {
        assert!(self.status.success(), "client failed:\n{}\n{}", self.describe(), server.log_for_failure());
        self
    }

    /// Fails the test (with the output and the server log) if the command succeeded.
    pub fn fails(self, server: &TestServer) -> Ran {
        assert!(
            !self.status.success(),
            "client should have failed:\n{}\n{}",
            self.describe(),
            server.log_for_failure()
        );
        self
    }

    /// Output lines of the Python client that start with `prefix`.
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.stdout.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect()
    }
}

/// Runs a command (bounded) and returns its output as text.
pub fn run_text(cmd: &mut Command) -> Ran {
    run_text_timeout(cmd, CLIENT_TIMEOUT)
}

pub fn run_text_timeout(cmd: &mut Command, timeout: Duration) -> Ran {
    let what = format!("{cmd:?}");
    let out = run_timeout(cmd, timeout);
    Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}

/// curl, verbose (the sent commands appear in stderr as `> CMD`), logged in as bob, bounded.
pub fn curl(server: &TestServer) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "-v", "--max-time", "60", "--user"]).arg(format!("{USER}:{PASS}"));
    // Each URL comes from `server.url()`; the server is taken for symmetry with the others.
    let _ = server;
    c
}

/// The FTP commands curl sent (`> CMD` lines of its verbose output).
pub fn curl_sent(stderr: &str) -> Vec<String> {
    stderr.lines().filter_map(|l| l.strip_prefix("> ")).map(str::to_string).collect()
}

/// The path of the Python ftplib client.
pub fn ftpclient_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ftpclient.py")
}

/// `python3 tests/clients/ftpclient.py --host H --port P`, then the caller adds options and
/// steps (see the script's docstring).
pub fn ftpclient(server: &TestServer) -> Command {
    let mut c = Command::new("python3");
    c.arg(ftpclient_script()).arg("--host").arg(server.host()).arg("--port").arg(server.port().to_string());
    c
}

/// Runs the Python client with these steps, logged in as bob in passive mode.
pub fn py(server: &TestServer, steps: &[&str]) -> Ran {
    let mut c = ftpclient(server);
    c.args(["--user", USER, "--password", PASS]);
    c.args(steps);
    run_text(&mut c)
}

/// Runs the Python client with options (before the steps) and steps.
pub fn py_opts(server: &TestServer, opts: &[&str], steps: &[&str]) -> Ran {
    let mut c = ftpclient(server);
    c.args(opts);
    c.args(steps);
    run_text(&mut c)
}

/// `lftp -c '<settings>; open -u bob,secret -p PORT HOST; <script>'`, with the working
/// directory set to `cwd`.
pub fn lftp(server: &TestServer, cwd: &Path, script: &str) -> Command {
    lftp_with(server, cwd, script, false)
}

/// [`lftp`] with `-d`: the protocol dialogue (`---> CMD`, `<--- reply`) goes to stderr.
pub fn lftp_debug(server: &TestServer, cwd: &Path, script: &str) -> Command {
    lftp_with(server, cwd, script, true)
}

fn lftp_with(server: &TestServer, cwd: &Path, script: &str, debug: bool) -> Command {
    let mut c = Command::new("lftp");
    if debug {
        c.arg("-d");
    }
    let host = match server.addr() {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let full = format!(
        "set net:max-retries 1; set net:timeout 10; set net:reconnect-interval-base 1; \
         set ftp:passive-mode on; set cmd:fail-exit yes; set xfer:clobber on; \
         open -u {USER},{PASS} -p {} {host}; {script}",
        server.port()
    );
    c.arg("-c").arg(full).current_dir(cwd);
    c
}

// ---------------------------------------------------------------------------------------------
// A bare control connection (for what no client exposes: unsolicited replies, timing)

/// A raw FTP control connection: one command line out, one (multi-line) reply in.
pub struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    /// Connects and reads the 220 greeting; every read is bounded by `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Control {
        let stream =
            TcpStream::connect_timeout(&addr, timeout).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        let mut c = Control { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let (code, text) = c.reply().expect("greeting");
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// Reads one reply: `(code, all its text lines joined with \n)`.
    pub fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut first = String::new();
        if self.reader.read_line(&mut first)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let code: u16 = first
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not a reply: {first:?}")))?;
        let mut text = first.trim_end().to_string();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                text.push('\n');
                text.push_str(line.trim_end());
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    /// Sends one command line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line);
        self.reply().unwrap_or_else(|e| panic!("reply to {line:?}: {e}"))
    }

    pub fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    }

    /// Sends bytes as they are (no CRLF added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap_or_else(|e| panic!("send {bytes:?}: {e}"));
    }

    /// USER + PASS; asserts 230.
    pub fn login(&mut self, user: &str, pass: &str) {
        let (code, text) = self.cmd(&format!("USER {user}"));
        assert_eq!(code, 331, "USER: {text}");
        let (code, text) = self.cmd(&format!("PASS {pass}"));
        assert_eq!(code, 230, "PASS: {text}");
    }

    /// Whether the server closes the connection (EOF or reset) before the read timeout,
    /// with nothing more sent.
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 256];
        match self.reader.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files

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

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers for the limits, uploads and embedding tests

/// A passive port range of its own (the same allocator as [`TestServer`]'s), for a server the
/// test configures itself: a library server, or `--passive-ports` with part of the block.
pub fn passive_ports_block() -> (u16, u16) {
    let block = passive_block();
    let (lo, hi) = block.split_once('-').expect("MIN-MAX");
    (lo.parse().expect("port"), hi.parse().expect("port"))
}

/// `python3 tests/clients/ftpclient.py --host H --port P` for any address (a library server).
pub fn ftpclient_at(addr: SocketAddr) -> Command {
    let mut c = Command::new("python3");
    c.arg(ftpclient_script())
        .arg("--host")
        .arg(addr.ip().to_string())
        .arg("--port")
        .arg(addr.port().to_string());
    c
}

impl Control {
    /// A control connection over an already connected stream; reads nothing yet (call
    /// [`Control::reply`] for the greeting). Every read and write is bounded by `timeout`.
    pub fn over(stream: TcpStream, timeout: Duration) -> Control {
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        Control { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    /// Connects and reads the first reply, whatever it is (220, or 421 from a full server).
    pub fn connect_any(addr: SocketAddr, timeout: Duration) -> (Control, io::Result<(u16, String)>) {
        let stream =
            TcpStream::connect_timeout(&addr, timeout).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let mut c = Control::over(stream, timeout);
        let first = c.reply();
        (c, first)
    }

    /// The control socket (to clone it, shut it down, or write without the panicking helpers).
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// EPSV, then a data connection to the announced port on the server's address.
    pub fn epsv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "EPSV: {text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|rest| rest.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text:?}"));
        let ip = self.writer.peer_addr().unwrap().ip();
        let timeout = self.writer.read_timeout().unwrap().unwrap_or(Duration::from_secs(20));
        let data = TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout)
            .unwrap_or_else(|e| panic!("data connection to port {port}: {e}"));
        data.set_read_timeout(Some(timeout)).unwrap();
        data.set_write_timeout(Some(timeout)).unwrap();
        data
    }

    /// TYPE I, EPSV, STOR `name` with `content`; the final reply (or the refusal).
    pub fn upload(&mut self, name: &str, content: &[u8]) -> (u16, String) {
        assert_eq!(self.cmd("TYPE I").0, 200);
        let mut data = self.epsv();
        let (code, text) = self.cmd(&format!("STOR {name}"));
        if code != 150 && code != 125 {
            return (code, text);
        }
        data.write_all(content).unwrap_or_else(|e| panic!("upload of {name}: {e}"));
        data.shutdown(std::net::Shutdown::Write).unwrap();
        drop(data);
        self.reply().unwrap_or_else(|e| panic!("reply after STOR {name}: {e}"))
    }

    /// TYPE I, EPSV, RETR `name`: the bytes (after a 226), or the reply that refused or
    /// ended it.
    pub fn download(&mut self, name: &str) -> Result<Vec<u8>, (u16, String)> {
        assert_eq!(self.cmd("TYPE I").0, 200);
        let mut data = self.epsv();
        let (code, text) = self.cmd(&format!("RETR {name}"));
        if code != 150 && code != 125 {
            return Err((code, text));
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).unwrap_or_else(|e| panic!("download of {name}: {e}"));
        let (code, text) = self.reply().unwrap_or_else(|e| panic!("reply after RETR {name}: {e}"));
        if code == 226 {
            Ok(content)
        } else {
            Err((code, text))
        }
    }
}
