//! A real S3 API server for the end-to-end tests: moto's (`python3 -m moto.server`) on a
//! loopback port, one per test, and boto3 beside it to check what landed in a bucket without
//! going through ringftpd. Shared by tests/s3.rs and tests/haproxy.rs.
//!
//! Needs `pip install 'moto[server]' boto3` (tests/run.sh installs them); installed here with
//! pip if Python cannot import them.
//!
//! With `RINGFTP_TEST_GARAGE=/path/to/garage` the server is Garage instead (a distributed
//! object store run in production; `cargo install garage@2.5.0 --locked`): one node per test,
//! replication 1, its own directories, the test key imported and allowed to create buckets.
//!
//! boto3 runs with `BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE=true`: botocore sends
//! `Expect: 100-continue` with an empty body too, and when the server answers such a request
//! at once (as Garage does, rightly: there is no body to wait for) the pooled connection keeps
//! that answer's status line and misreads the next response on it, so the next PutObject stalls
//! until the 60 s read timeout and is retried (boto/botocore#3755). Seen as 60 s stalls of the
//! non-empty PutObject after each empty one while `large_directory_listing` seeds its objects.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::run_timeout;

/// The pip command that provides the S3 server and client.
const PIP_INSTALL: &[&str] = &["-m", "pip", "install", "--quiet", "moto[server]", "boto3"];

/// moto accepts any credentials, Garage these after they are imported (its key IDs are `GK`
/// and 24 hex digits, its secrets 64); ringftpd and boto3 read them from the environment.
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An S3 server (moto, or Garage: see the module docs) on a loopback port, killed on drop.
pub struct Moto {
    child: Option<Child>,
    port: u16,
    garage: Option<Garage>,
}

/// A Garage node's binary and directory (its configuration, metadata, data and log).
struct Garage {
    bin: PathBuf,
    dir: PathBuf,
}

impl Moto {
    pub fn start() -> Moto {
        static SETUP: Once = Once::new();
        SETUP.call_once(|| {
            ensure_python_packages();
            // Before any server or client starts, so every child inherits them.
            std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
            std::env::set_var("AWS_DEFAULT_REGION", "us-east-1");
            std::env::set_var("BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE", "true");
        });
        let garage = std::env::var_os("RINGFTP_TEST_GARAGE").map(|bin| {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ringftp-garage-{}-{n}", std::process::id()));
            Garage { bin: bin.into(), dir }
        });
        let mut moto = Moto { child: None, port: free_port(), garage };
        moto.spawn();
        moto
    }

    /// A Garage command on this node's configuration, run to completion (bounded).
    fn garage(&self, args: &[&str]) -> String {
        let g = self.garage.as_ref().expect("garage");
        let mut cmd = Command::new(&g.bin);
        cmd.arg("-c").arg(g.dir.join("garage.toml")).args(args);
        let out = run_timeout(&mut cmd, Duration::from_secs(30));
        assert!(out.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a fresh Garage node: empty directories, layout, key.
    fn spawn_garage(&mut self) {
        let g = self.garage.as_ref().expect("garage");
        let _ = std::fs::remove_dir_all(&g.dir);
        std::fs::create_dir_all(&g.dir).unwrap();
        let rpc = free_port();
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut secret).unwrap();
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let config = format!(
            "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"lmdb\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"us-east-1\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
             root_domain = \".s3.localhost\"\n",
            meta = g.dir.join("meta"),
            data = g.dir.join("data"),
            port = self.port,
        );
        std::fs::write(g.dir.join("garage.toml"), config).unwrap();
        let log = std::fs::File::create(g.dir.join("garage.log")).unwrap();
        let child = Command::new(&g.bin)
            .arg("-c")
            .arg(g.dir.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start garage");
        self.child = Some(child);
        self.wait_listening("garage");
        let node = self.garage(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap_or_default().to_string();
        self.garage(&["layout", "assign", "-z", "dc1", "-c", "10G", &node]);
        self.garage(&["layout", "apply", "--version", "1"]);
        self.garage(&["key", "import", "--yes", "-n", "test", KEY_ID, SECRET]);
        self.garage(&["key", "allow", "--create-bucket", "test"]);
    }

    fn wait_listening(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not listen on {addr} within 30 s");
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{what} exited at start: {status}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the store refuses a part whose checksum does not match its bytes (Garage
    /// does; moto keeps it).
    pub fn checks_checksums(&self) -> bool {
        self.garage.is_some()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        if self.garage.is_some() {
            return self.spawn_garage();
        }
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start python3 -m moto.server");
        self.child = Some(child);
        self.wait_listening("moto");
    }

    /// Kills the server (SIGKILL) and waits for it: the store goes away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (moto keeps everything in memory; Garage's
    /// directories are made anew).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Makes a bucket.
    pub fn bucket(&self, name: &str) {
        self.py(name, "s3.create_bucket(Bucket=B)");
    }

    /// Runs Python with `s3` (a boto3 client for this server) and `B` (the bucket) defined;
    /// returns stdout, failing the test if the script fails.
    pub fn py(&self, bucket: &str, code: &str) -> String {
        let script = format!("{PRELUDE}\n{code}\n");
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).env("S3_URL", self.url()).env("BUCKET", bucket);
        let out = run_timeout(&mut cmd, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "python failed:\n{code}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `key size sha256` for every object under `prefix`, sorted by key.
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, u64, String)> {
        let code = format!(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket=B, Prefix={prefix:?}):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       h = hashlib.sha256()\n\
             \x20       for chunk in s3.get_object(Bucket=B, Key=o['Key'])['Body'].iter_chunks(1 << 20): h.update(chunk)\n\
             \x20       print(o['Key'], o['Size'], h.hexdigest())"
        );
        let mut objects: Vec<(String, u64, String)> = self
            .py(bucket, &code)
            .lines()
            .map(|l| {
                let mut it = l.split(' ');
                let (k, s, h) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
                (k.to_string(), s.parse().unwrap(), h.to_string())
            })
            .collect();
        objects.sort();
        objects
    }

    /// The keys of multipart uploads not completed or aborted.
    pub fn pending_uploads(&self, bucket: &str) -> Vec<String> {
        let out = self
            .py(bucket, "for u in s3.list_multipart_uploads(Bucket=B).get('Uploads', []): print(u['Key'])");
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
        if let Some(g) = &self.garage {
            let _ = std::fs::remove_dir_all(&g.dir);
        }
    }
}

pub const PRELUDE: &str = "\
import hashlib, os, socket, sys, time, ftplib, struct
import boto3
from botocore.config import Config
s3 = boto3.client('s3', endpoint_url=os.environ['S3_URL'], config=Config(s3={'addressing_style': 'path'}))
B = os.environ['BUCKET']";

/// Installs moto and boto3 with pip if Python cannot import them, or fails with the command.
fn ensure_python_packages() {
    let probe = |_: ()| {
        Command::new("python3")
            .args(["-c", "import moto.server, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if probe(()) {
        return;
    }
    let out = run_timeout(Command::new("python3").args(PIP_INSTALL), Duration::from_secs(300));
    assert!(
        out.status.success() && probe(()),
        "these tests need moto's S3 server and boto3; install them with:\n  python3 {}\n{}",
        PIP_INSTALL.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
