//! Two ringftpd nodes behind a real HAProxy (TCP mode, `send-proxy-v2`) on one S3 bucket
//! (moto's server, tests/moto), issue 12 §3: an upload through the balancer lands on one node,
//! the downloads alternate between both, every node sees the client (127.0.0.2), not the
//! balancer (127.0.0.1), and boto3 finds the object in the bucket with the uploaded bytes.
//!
//! Layout on loopback: the balancer listens on 127.0.0.3 (the control port, and each node's
//! passive range forwarded to that node), the nodes on 127.0.0.1, the client binds 127.0.0.2,
//! the store on 127.0.0.1. The nodes share nothing but the bucket.
//!
//! HAProxy is the Debian package `haproxy`; the test installs it with apt-get when it is
//! missing and it runs as root, and fails with that advice otherwise.

mod common;
mod moto;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, TestServer, MIB};
use moto::Moto;

const BALANCER: &str = "127.0.0.3";
const CLIENT: &str = "127.0.0.2";

/// The bucket both nodes serve and the key prefix below which they store.
const BUCKET: &str = "shared";
const PREFIX: &str = "ha";

/// The store both nodes serve, as ringftpd arguments (credentials: the `AWS_*` variables
/// [`Moto::start`] set, which every node inherits).
fn shared_store(moto: &Moto) -> Vec<String> {
    vec![
        "--storage".into(),
        format!("s3://{BUCKET}/{PREFIX}"),
        "--s3-endpoint".into(),
        moto.url(),
        "--s3-path-style".into(),
    ]
}

/// The haproxy binary, installed with apt-get if missing (as root).
fn haproxy() -> PathBuf {
    let found = || {
        ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    // One install at a time: the tests run in parallel and apt-get takes a lock.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = found() {
        return p;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let _ = common::run_timeout(
            Command::new("apt-get")
                .args(["install", "-y", "haproxy"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            Duration::from_secs(300),
        );
    }
    found().expect(
        "haproxy is not installed and could not be: `apt-get install -y haproxy` (Debian package `haproxy`)",
    )
}

/// A free port on `ip` (bound and released; the balancer binds it right after).
fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// The test's haproxy.cfg: the shape of examples/haproxy/haproxy.cfg on loopback.
fn config(control: u16, nodes: &[(SocketAddr, (u16, u16))]) -> String {
    let mut cfg = format!(
        "global\n    maxconn 512\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    \
         timeout server 60s\n\nfrontend ftp_control\n    bind {BALANCER}:{control}\n    default_backend ftp_nodes\n\n\
         backend ftp_nodes\n    balance roundrobin\n"
    );
    for (i, (addr, _)) in nodes.iter().enumerate() {
        cfg += &format!("    server node{} {addr} send-proxy-v2\n", i + 1);
    }
    for (i, (addr, (lo, hi))) in nodes.iter().enumerate() {
        let n = i + 1;
        cfg += &format!(
            "\nfrontend node{n}_passive\n    bind {BALANCER}:{lo}-{hi}\n    default_backend node{n}_passive\n\n\
             backend node{n}_passive\n    server node{n} {} send-proxy-v2\n",
            addr.ip()
        );
    }
    cfg
}

/// HAProxy in the foreground, killed on drop.
struct Balancer {
    child: Child,
    log: PathBuf,
}

impl Balancer {
    fn start(bin: &Path, cfg: &Path, log: PathBuf, control: u16) -> Balancer {
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg("-f")
            .arg(cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start haproxy");
        let mut b = Balancer { child, log };
        // Listening once the control port can no longer be bound (no probe connection: it
        // would take a turn of the round robin).
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpListener::bind((BALANCER, control)).is_ok() {
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!("haproxy exited: {status}\n{}", b.log());
            }
            assert!(Instant::now() < deadline, "haproxy did not listen\n{}", b.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ftplib from 127.0.0.2 through the balancer: `put` or `get`, using the PASV address the
/// node announces (ftplib ignores it unless told to trust it).
fn ftplib(control: u16, op: &str, remote: &str, local: &Path) -> common::Ran {
    const SCRIPT: &str = r#"
import ftplib, sys
host, port, op, remote, local = sys.argv[1:6]
f = ftplib.FTP(source_address=("127.0.0.2", 0), timeout=30)
f.trust_server_pasv_ipv4_address = True
f.connect(host, int(port))
f.login("bob", "secret")
if op == "put":
    with open(local, "rb") as src:
        print(f.storbinary("STOR " + remote, src))
else:
    with open(local, "wb") as out:
        print(f.retrbinary("RETR " + remote, out.write))
f.quit()
"#;
    let mut c = Command::new("python3");
    c.args(["-c", SCRIPT, BALANCER, &control.to_string(), op, remote]).arg(local);
    common::run_text_timeout(&mut c, Duration::from_secs(90))
}

/// The xferlog lines a node wrote so far (written by a thread: waited for, bounded).
fn xferlog_lines(path: &Path, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> =
            std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect();
        if lines.len() >= at_least || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_nodes_behind_haproxy_share_one_bucket_and_see_the_client() {
    let bin = haproxy();
    let scratch = Scratch::new("haproxy");
    let moto = Moto::start();
    moto.bucket(BUCKET);
    // Each node its own passive range, below the kernel's ephemeral ports and the other
    // tests' blocks (20000-32000).
    let base = 12_000 + (std::process::id() % 120) as u16 * 64;
    let ranges = [(base, base + 15), (base + 16, base + 31)];
    let mut nodes = Vec::new();
    for (i, (lo, hi)) in ranges.iter().enumerate() {
        let b = TestServer::builder(&format!("haproxy-node{}", i + 1)).no_root();
        let xferlog = b.work().join("xferlog");
        let node = b
            .args(shared_store(&moto))
            .args(["--proxy-protocol-from", "127.0.0.1/32", "--proxy-protocol-data"])
            .args(["--public-address", BALANCER, "--passive-ports", &format!("{lo}-{hi}")])
            .arg("--xferlog")
            .arg(xferlog.display().to_string())
            .start();
        nodes.push((node, xferlog));
    }
    let control = free_port(BALANCER);
    let cfg_path = scratch.join("haproxy.cfg");
    let spec: Vec<_> = nodes.iter().zip(ranges).map(|((n, _), r)| (n.addr(), r)).collect();
    std::fs::write(&cfg_path, config(control, &spec)).unwrap();
    let balancer = Balancer::start(&bin, &cfg_path, scratch.join("haproxy.log"), control);
    let why = |extra: &str| {
        format!(
            "{extra}\nhaproxy:\n{}\nnode1:\n{}\nnode2:\n{}",
            balancer.log(),
            nodes[0].0.stderr_log(),
            nodes[1].0.stderr_log()
        )
    };

    let src = scratch.join("src.bin");
    common::make_file(&src, 8 * MIB + 7, 12);
    let want = common::sha256_file(&src);

    // 1: the upload (two parts of a multipart upload), PASV to the announced balancer address.
    let ran = ftplib(control, "put", "up.bin", &src);
    assert!(ran.status.success() && ran.stdout.contains("226"), "{}", why(&ran.describe()));
    // 2: a download, on the other node (round robin), from the bucket.
    let got = scratch.join("got1.bin");
    let ran = ftplib(control, "get", "up.bin", &got);
    assert!(ran.status.success() && ran.stdout.contains("226"), "{}", why(&ran.describe()));
    assert_eq!(common::sha256_file(&got), want);
    // 3 and 4: curl, PASV then EPSV (the port only; curl connects to the balancer).
    for (i, epsv) in [(3, false), (4, true)] {
        let got = scratch.join(format!("got{i}.bin"));
        let mut c = Command::new("curl");
        c.args(["-sS", "-v", "--max-time", "60", "--user", "bob:secret", "--interface", CLIENT]);
        if !epsv {
            c.arg("--disable-epsv");
        }
        c.arg("-o").arg(&got).arg(format!("ftp://{BALANCER}:{control}/up.bin"));
        let ran = common::run_text_timeout(&mut c, Duration::from_secs(90));
        assert!(ran.status.success(), "{}", why(&ran.describe()));
        let sent = common::curl_sent(&ran.stderr);
        let verb = if epsv { "EPSV" } else { "PASV" };
        assert!(sent.iter().any(|l| l == verb), "{verb} not sent: {sent:?}");
        assert_eq!(common::sha256_file(&got), want);
    }

    // What landed in the bucket, seen by boto3: the one object, whole, no upload left open.
    let key = format!("{PREFIX}/up.bin");
    assert_eq!(moto.objects(BUCKET, ""), [(key, 8 * MIB + 7, want.clone())], "{}", why(""));
    assert_eq!(moto.pending_uploads(BUCKET), Vec::<String>::new());

    // Who served what: sessions 1 and 3 on one node, 2 and 4 on the other.
    let logs: Vec<Vec<String>> = nodes.iter().map(|(_, x)| xferlog_lines(x, 2)).collect();
    let uploads = |l: &[String]| l.iter().filter(|l| l.contains("/up.bin b _ i ")).count();
    let downloads = |l: &[String]| l.iter().filter(|l| l.contains("/up.bin b _ o ")).count();
    let (up, down) = if uploads(&logs[0]) == 1 { (0, 1) } else { (1, 0) };
    assert_eq!(uploads(&logs[up]), 1, "{logs:?}");
    assert_eq!(downloads(&logs[up]), 1, "{logs:?}");
    assert_eq!((uploads(&logs[down]), downloads(&logs[down])), (0, 2), "{logs:?}");
    for (i, (node, _)) in nodes.iter().enumerate() {
        // xferlog: `... transfer-time remote-host size ...`: the client, never the balancer.
        for line in &logs[i] {
            assert_eq!(line.split_whitespace().nth(6), Some(CLIENT), "node{}: {line}", i + 1);
        }
        let log = node.stderr_log();
        let logins: Vec<&str> = log.lines().filter(|l| l.contains(" login ")).collect();
        assert_eq!(logins.len(), 2, "node{}: {logins:?}", i + 1);
        assert!(logins.iter().all(|l| l.contains("peer=127.0.0.2:")), "node{}: {logins:?}", i + 1);
        assert!(!log.contains("refused data connection"), "{}", why(""));
    }

    // Around the balancer, straight to a node: a stranger's header is refused (closed, or
    // at worst answered as an unknown command, never believed); the balancer's address
    // without a header is closed unanswered.
    let node = nodes[0].0.addr();
    let mut s = connect_from(CLIENT, node);
    s.write_all(format!("PROXY TCP4 10.9.9.9 {} 1234 {}\r\n", node.ip(), node.port()).as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.is_empty() || reply.contains("\r\n500 "), "{reply:?}");
    let mut s = connect_from("127.0.0.1", node);
    s.write_all(b"USER bob\r\nPASS secret\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.is_empty(), "greeted without a PROXY header: {reply:?}");
    assert!(!nodes[0].0.stderr_log().contains("10.9.9.9"), "{}", why(""));
}

/// A connection from `from` to `to`, reads bounded.
fn connect_from(from: &str, to: SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&SocketAddr::new(from.parse().unwrap(), 0).into()).unwrap();
    socket.connect_timeout(&to.into(), Duration::from_secs(10)).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

#[test]
fn the_example_configuration_is_valid() {
    let bin = haproxy();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/haproxy/haproxy.cfg");
    let ran =
        common::run_text_timeout(Command::new(bin).arg("-c").arg("-f").arg(&cfg), Duration::from_secs(30));
    assert!(ran.status.success(), "{}", ran.describe());
}
