//! `ringftp-bench` against a real `ringftpd`: every workload in passive and active mode, and
//! the error paths (refused login, nothing listening). Every wait is bounded.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::TestServer;

/// A running `ringftpd` for the bench: user bench:bench, anonymous access, one core, and a
/// root with a 3 MiB file and an empty `up` directory.
struct Server {
    server: TestServer,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let args = ["--user", "bench:bench", "--anonymous", "--cores", "1"];
        let builder = TestServer::builder("bench-client").no_default_user().log_level("warn").args(args);
        let root = builder.root();
        std::fs::create_dir_all(&root).unwrap();
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(root.join("big.bin"), data).unwrap();
        std::fs::create_dir(root.join("up")).unwrap();
        let server = builder.start();
        let port = server.port();
        Server { server, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.server.root().join(name)
    }
}

/// Runs `ringftp-bench` with `args` (and `--timeout 10` unless given), killed if it runs
/// over a minute.
fn bench(port: u16, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringftp-bench"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "10"]);
    }
    let mut child =
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Drain both pipes in threads so a full pipe cannot stall the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringftp-bench {args:?} ran over a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() }
}

/// The number after `"name":` in a flat JSON object.
fn field(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let at = json.find(&key).unwrap_or_else(|| panic!("no {name} in {json}"));
    json[at + key.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {json}"))
}

/// Runs a workload in JSON mode and checks it succeeded without errors; returns the JSON.
fn run_ok(port: u16, args: &[&str]) -> String {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = bench(port, &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed ({}): {stdout} {stderr}", out.status);
    let json = stdout.trim();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert_eq!(field(json, "error_count"), 0, "{json}");
    assert!(json.contains("\"errors\":{}"), "{json}");
    assert!(field(json, "ops") > 0, "{json}");
    json.to_string()
}

/// Runs every workload in `mode` with `sessions` concurrent sessions for the transfers.
fn workloads(mode: &str, sessions: &str) {
    let server = Server::start();
    let p = server.port;
    let rw = ["--user", "bench", "--pass", "bench", "--mode", mode];
    let expect = server.path("big.bin");
    let expect = expect.to_str().unwrap();

    let j = run_ok(
        p,
        &[
            "--mode",
            mode,
            "--sessions",
            sessions,
            "--repeat",
            "3",
            "--verify",
            "retr",
            "--path",
            "big.bin",
            "--expect",
            expect,
        ],
    );
    let n: u64 = sessions.parse().unwrap();
    assert_eq!(field(&j, "bytes"), n * 3 * (3 << 20), "{j}");
    assert_eq!(field(&j, "bytes_verified"), n * 3 * (3 << 20), "{j}");

    // Unverified downloads are spliced to /dev/null; every byte must still be counted.
    let j =
        run_ok(p, &["--mode", mode, "--sessions", sessions, "--repeat", "2", "retr", "--path", "big.bin"]);
    assert_eq!(field(&j, "bytes"), n * 2 * (3 << 20), "{j}");
    assert_eq!(field(&j, "bytes_verified"), 0, "{j}");
    let j = run_ok(p, &["--mode", mode, "--sink", "buffer", "--repeat", "1", "retr", "--path", "big.bin"]);
    assert_eq!(field(&j, "bytes"), 3 << 20, "{j}");

    let mut args = rw.to_vec();
    args.extend([
        "--sessions",
        sessions,
        "--repeat",
        "2",
        "--verify",
        "stor",
        "--size",
        "1M",
        "--dir",
        "up",
        "--cleanup",
    ]);
    let j = run_ok(p, &args);
    assert_eq!(field(&j, "bytes"), n * (2 << 20), "{j}");
    assert_eq!(field(&j, "bytes_verified"), n * (2 << 20), "{j}");
    // --cleanup removed every upload.
    assert_eq!(std::fs::read_dir(server.path("up")).unwrap().count(), 0);

    let dir = format!("small-{mode}");
    let mut args = rw.to_vec();
    args.extend([
        "--verify",
        "--repeat",
        "2",
        "small",
        "--dir",
        &dir,
        "--count",
        "20",
        "--file-size",
        "1000",
        "--setup",
    ]);
    let j = run_ok(p, &args);
    assert_eq!(field(&j, "ops"), 40, "{j}");
    assert_eq!(field(&j, "bytes_verified"), 40_000, "{j}");

    let j = run_ok(p, &["--mode", mode, "list", "--dir", &dir]);
    assert_eq!(field(&j, "entries"), 20, "{j}");
    assert!(field(&j, "bytes") > 0, "{j}");
    let j = run_ok(p, &["--mode", mode, "list", "--dir", &dir, "--mlsd"]);
    assert_eq!(field(&j, "entries"), 20, "{j}");

    let mut args = rw.to_vec();
    args.extend(["--sessions", "4", "--repeat", "5", "login"]);
    let j = run_ok(p, &args);
    assert_eq!(field(&j, "ops"), 20, "{j}");

    let ready = server.path("ready");
    let j = run_ok(
        p,
        &[
            "--sessions",
            "20",
            "--duration",
            "1",
            "idle",
            "--noop-interval",
            "0.3",
            "--ready-file",
            ready.to_str().unwrap(),
        ],
    );
    assert_eq!(field(&j, "held"), 20, "{j}");
    assert_eq!(std::fs::read_to_string(&ready).unwrap().trim(), "20");
}

// One session at a time in passive mode: the PortPool on this branch is still the stub that
// always hands out the first port, so a second concurrent passive transfer cannot bind (and
// the shard spins in open_passive). Use 2 once the real pool is merged.
#[test]
fn workloads_over_epsv() {
    workloads("epsv", "1");
}

#[test]
fn workloads_over_port() {
    workloads("port", "2");
}

#[test]
fn refused_login_is_one_line_and_fails() {
    let server = Server::start();
    let out = bench(server.port, &["--user", "bench", "--pass", "wrong", "--json", "login"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("530"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `--help` says what the tool is and lists its options (a doc comment in the wrong place once
/// replaced the description with the crate's).
#[test]
fn help_describes_the_tool() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringftp-bench")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("A load generator for FTP servers"), "{text}");
    assert!(text.contains("--sink") && text.contains("--verify"), "{text}");
}

#[test]
fn nothing_listening_fails() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = bench(port, &["login"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn silent_server_times_out() {
    // Accepts but never greets: the bench must give up after --timeout, not hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let start = Instant::now();
    let out = bench(port, &["--timeout", "1", "login"]);
    drop(listener);
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no answer"), "{stderr}");
}
