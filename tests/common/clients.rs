//! External clients (curl, Python's ftplib, lftp, rclone) and the bounded runner they go through.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{TestServer, CLIENT_TIMEOUT, PASS, USER};

/// rclone for the FTP server at `host:port` as the test user, on no config file, with short
/// timeouts and one try (so a refused connection fails the run, not a retry): add its
/// `--ftp-*` flags and subcommand.
pub fn rclone(host: &str, port: u16) -> Command {
    let obscured = run(Command::new("rclone").args(["obscure", PASS]));
    assert!(obscured.status.success(), "rclone obscure failed (tests/run.sh installs rclone)");
    let pass = String::from_utf8(obscured.stdout).unwrap().trim().to_string();
    let mut c = Command::new("rclone");
    c.args(["--config", "/dev/null", "--contimeout", "10s", "--timeout", "30s"])
        .args(["--retries", "1", "--low-level-retries", "1"])
        .args(["--ftp-host", host, "--ftp-port", &port.to_string()])
        .args(["--ftp-user", USER, "--ftp-pass", &pass]);
    c
}

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
