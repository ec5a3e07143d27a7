//! kTLS end to end: a rustls handshake over loopback, the keys handed to the kernel, a file
//! spliced to the encrypted socket, and a rustls client that decrypts and checks every byte;
//! the upload direction is read as plaintext from the socket, and the client's close_notify
//! arrives as a record. Needs a kernel with kTLS: on one without (this project's build host)
//! it prints that and passes; `KTLS_REQUIRED=1` makes that a failure (tests/ktls-vm.sh runs
//! it in a QEMU guest with Debian 12's kernel).
//!
//! Then a real ringftpd serves curl and Python's ftplib over PROT P on both engines: on a
//! kernel with kTLS the transfers must take the kTLS path (its log line, its metric and the
//! kernel's own TLS counters say so), elsewhere the rustls one; checksums either way.
//! In the guest (`KTLS_GUEST`), ChaCha20-Poly1305's module is also unloaded, to show a kernel
//! with kTLS but without one cipher: that cipher stays on rustls, the others keep kTLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tls_common;

use std::io::{Read, Write};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use ringftp::tls::ktls::{self, Corked, Record};
use ringftp::tls::{rustls, KtlsMode, TlsAcceptor, TlsConfig, TlsInfo};
use tls_common::Pki;

const FILE_LEN: usize = (1 << 20) + 1;
const UPLOAD_LEN: usize = 100_000;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn tls_stat(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tls_stat").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next()? == name).then(|| parts.next()?.parse().ok())?
    })
}

/// file -> pipe -> socket with splice(2), both hops, until `len` bytes went.
fn splice_file(file: &std::fs::File, sock: &std::net::TcpStream, len: usize) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these two open descriptors, owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut off: libc::loff_t = 0;
    let mut sent = 0;
    while sent < len {
        // SAFETY: valid descriptors; off is a live loff_t.
        let n = unsafe {
            libc::splice(
                file.as_raw_fd(),
                &mut off,
                wr.as_raw_fd(),
                std::ptr::null_mut(),
                len - sent,
                libc::SPLICE_F_MOVE,
            )
        };
        assert!(n > 0, "splice file->pipe: {}", std::io::Error::last_os_error());
        let mut left = n as usize;
        while left > 0 {
            // SAFETY: valid descriptors; no offsets for a pipe and a socket.
            let m = unsafe {
                libc::splice(
                    rd.as_raw_fd(),
                    std::ptr::null_mut(),
                    sock.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    libc::SPLICE_F_MOVE,
                )
            };
            assert!(m > 0, "splice pipe->kTLS socket: {}", std::io::Error::last_os_error());
            left -= m as usize;
        }
        sent += n as usize;
    }
}

/// socket -> pipe with splice(2) until it fails; returns the bytes and the errno it failed with.
fn splice_upload(sock: &std::net::TcpStream) -> (Vec<u8>, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these two open descriptors, owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut pipe_out = std::fs::File::from(rd);
    let mut got = Vec::new();
    loop {
        // SAFETY: valid descriptors; no offsets for a socket and a pipe.
        let n = unsafe {
            libc::splice(
                sock.as_raw_fd(),
                std::ptr::null_mut(),
                wr.as_raw_fd(),
                std::ptr::null_mut(),
                65536,
                0,
            )
        };
        if n < 0 {
            return (got, std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        assert!(n > 0, "EOF before close_notify");
        let mut chunk = vec![0u8; n as usize];
        pipe_out.read_exact(&mut chunk).unwrap();
        got.extend_from_slice(&chunk);
    }
}

/// The rustls client: upload, close_notify, then read the download to its close_notify.
/// With `resume`, a control connection first, whose session the data connection resumes.
fn client(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    upload: Vec<u8>,
    resume: bool,
) -> Vec<u8> {
    let _control = resume.then(|| {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), Pki::name()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        // Reading the reply takes in the TLS 1.3 tickets sent after the handshake.
        let mut line = [0u8; 8];
        tls.read_exact(&mut line).unwrap();
        tls
    });
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let conn = rustls::ClientConnection::new(config, Pki::name()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(&upload).unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let mut got = Vec::new();
    // read_to_end fails with UnexpectedEof unless the server's close_notify arrived.
    tls.read_to_end(&mut got).expect("download ends with close_notify");
    got
}

fn round(
    pki: &Pki,
    acceptor: &TlsAcceptor,
    client_config: Arc<rustls::ClientConfig>,
    want: (&str, &str),
    resume: bool,
) {
    let dir = pki.dir.join(format!("f-{}", want.1));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    let content = pattern(FILE_LEN, want.1.len() as u32);
    std::fs::write(&path, &content).unwrap();
    let upload = pattern(UPLOAD_LEN, 7);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = upload.clone();
        let client = std::thread::spawn(move || client(client_config, addr, up, resume));
        let ctl = acceptor.control();
        let bound = Duration::from_secs(30);
        let _control = if resume {
            let (tcp, _) = tokio::time::timeout(bound, listener.accept()).await.unwrap().unwrap();
            let mut control = ctl.accept_control(tcp, bound).await.unwrap();
            control.write_all(b"200 ok\r\n").await.unwrap();
            control.flush().await.unwrap();
            Some(control)
        } else {
            None
        };
        let (tcp, _) = tokio::time::timeout(bound, listener.accept()).await.unwrap().unwrap();
        let stream = ctl.accept_data(Corked::new(tcp), bound).await.unwrap();
        assert_eq!(ringftp::tls::verify_data_resumed(stream.get_ref().1), resume);
        let info = TlsInfo::of(stream.get_ref().1).unwrap();
        assert_eq!((info.version, info.cipher), want);
        // The first call per cipher probes the kernel on a socket of its own; count after it.
        assert!(ktls::supported(stream.get_ref().1));
        let tx_before = tls_stat("TlsTxSw").unwrap_or(0);
        let ktls = ktls::enable(stream).map_err(|e| e.error).expect("kTLS enable");
        assert_eq!(tls_stat("TlsTxSw").unwrap_or(0), tx_before + 1, "the kernel counts a new TX socket");
        let mut sock = ktls.tcp.into_std().unwrap();
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();

        // Upload: plaintext straight from the socket (plus what rustls had decrypted), with
        // read() or, on resumed rounds, splice(2) socket -> pipe as STOR would; the client's
        // close_notify stops either (read: EIO, splice: EINVAL) and comes out of recv_record.
        let mut got = ktls.early;
        let mut buf = vec![0u8; 65536];
        let end = if resume {
            let (data, errno) = splice_upload(&sock);
            got.extend_from_slice(&data);
            assert!(matches!(errno, libc::EINVAL | libc::EIO), "splice stopped with errno {errno}");
            println!("  splice socket->pipe stopped at the alert with errno {errno}");
            ktls::recv_record(sock.as_raw_fd(), &mut buf).unwrap()
        } else {
            loop {
                match sock.read(&mut buf) {
                    Ok(0) => panic!("EOF before close_notify"),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        break ktls::recv_record(sock.as_raw_fd(), &mut buf).unwrap()
                    }
                    Err(e) => panic!("kTLS read: {e}"),
                }
            }
        };
        assert_eq!(end, Record::CloseNotify);
        assert!(got == upload, "upload corrupted ({} of {} bytes)", got.len(), upload.len());

        // Download: splice the file to the socket; the kernel encrypts.
        let file = std::fs::File::open(&path).unwrap();
        splice_file(&file, &sock, FILE_LEN);
        ktls::send_close_notify(sock.as_raw_fd()).unwrap();
        sock.shutdown(std::net::Shutdown::Write).unwrap();
        let downloaded = client.join().unwrap();
        assert!(
            downloaded == content,
            "download corrupted ({} of {} bytes)",
            downloaded.len(),
            content.len()
        );
    });
    let how = if resume { "resumed" } else { "full handshake" };
    println!("kTLS ok: {} {} {how} ({FILE_LEN} B spliced, {UPLOAD_LEN} B received)", want.0, want.1);
}

fn client_config(pki: &Pki, tls12: bool, suite: rustls::CipherSuite) -> Arc<rustls::ClientConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone()).unwrap();
            roots
        })
        .with_no_client_auth();
    c.alpn_protocols = vec![b"ftp".to_vec()];
    Arc::new(c)
}

/// Whether this kernel has kTLS; its absence fails the test where `KTLS_REQUIRED` is set (the
/// guest), and elsewhere lets the caller skip or check the rustls fallback.
fn ktls_present() -> bool {
    let have = ktls::available();
    assert!(
        have || std::env::var_os("KTLS_REQUIRED").is_none(),
        "KTLS_REQUIRED is set but this kernel has no kTLS"
    );
    have
}

#[test]
fn ktls_splice_both_directions() {
    if !ktls_present() {
        println!("kTLS absent on this kernel (setsockopt TCP_ULP \"tls\" failed): skipping");
        return;
    }
    let pki = Pki::new();
    let relaxed = TlsAcceptor::new(
        TlsConfig::new(&pki.cert, &pki.key).require_session_reuse(false).ktls(KtlsMode::Auto),
    )
    .unwrap();
    let strict = TlsAcceptor::new(TlsConfig::new(&pki.cert, &pki.key).ktls(KtlsMode::Auto)).unwrap();
    assert!(relaxed.ktls() && strict.ktls());
    use rustls::CipherSuite::*;
    for (tls12, suite, want) in [
        (false, TLS13_AES_128_GCM_SHA256, ("TLSv1_3", "TLS13_AES_128_GCM_SHA256")),
        (false, TLS13_AES_256_GCM_SHA384, ("TLSv1_3", "TLS13_AES_256_GCM_SHA384")),
        (false, TLS13_CHACHA20_POLY1305_SHA256, ("TLSv1_3", "TLS13_CHACHA20_POLY1305_SHA256")),
        (
            true,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ("TLSv1_2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        ),
        (
            true,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ("TLSv1_2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        ),
        (
            true,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ("TLSv1_2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        ),
    ] {
        // A data connection as FTPS clients open it (resuming the control session), and one
        // with a full handshake.
        round(&pki, &strict, client_config(&pki, tls12, suite), want, true);
        round(&pki, &relaxed, client_config(&pki, tls12, suite), want, false);
    }
}

#[test]
fn ktls_off_means_no_secret_extraction() {
    let pki = Pki::new();
    let acceptor = TlsAcceptor::new(TlsConfig::new(&pki.cert, &pki.key).ktls(KtlsMode::Off)).unwrap();
    assert!(!acceptor.ktls());
    assert!(!acceptor.control().control_config().enable_secret_extraction);
}

// ---------------------------------------------------------------------------------------------
// ringftpd end to end

/// File size of the end-to-end transfers (MiB); `KTLS_TEST_MIB` overrides it.
fn e2e_mib() -> u64 {
    std::env::var("KTLS_TEST_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

/// How long one client run may take: the kTLS guest emulates its CPU (TCG), so be generous.
const CLIENT_BOUND: &str = "300";

fn ftps_server(tag: &str, pki: &Pki, engine: &str, extra: &[&str]) -> common::TestServer {
    let mut args = vec![
        "--tls-cert".to_string(),
        pki.cert.display().to_string(),
        "--tls-key".to_string(),
        pki.key.display().to_string(),
        "--metrics".to_string(),
        "127.0.0.1:0".to_string(),
        "--engine".to_string(),
        engine.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    common::TestServer::builder(tag).args(args).start()
}

/// The server's Prometheus text, from the address it printed on stdout.
fn scrape(srv: &common::TestServer) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let found = srv.stdout_lines().iter().find_map(|l| {
            l.strip_prefix("ringftpd metrics on http://")?.strip_suffix("/metrics").map(str::to_string)
        });
        if let Some(a) = found {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "no metrics line: {:?}", srv.stdout_lines());
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    sock.read_to_string(&mut text).unwrap();
    text
}

/// The value of `ringftp_tls_data_connections_total{path="..."}`, 0 when absent.
fn data_path_count(metrics: &str, path: &str) -> u64 {
    let key = format!("ringftp_tls_data_connections_total{{path=\"{path}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(key.as_str())?.trim().parse().ok()).unwrap_or(0)
}

/// Whether two files hold the same bytes (a plain compare: the guest's emulated CPU makes a
/// debug-built hash slow).
fn same(a: &std::path::Path, b: &std::path::Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

fn curl_ftps(pki: &Pki, args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .args([CLIENT_BOUND, "curl", "-sS", "--ssl-reqd", "--cacert"])
        .arg(&pki.ca)
        .args(["-u", &format!("{}:{}", common::USER, common::PASS)])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("curl")
}

/// Python's ftplib through [`tls_common::PY_REUSING`], resuming the control session on data
/// connections (as FTPS clients do): STOR then RETR of the file at argv[3] as argv[4]; `unwrap()` on the upload sends
/// close_notify and waits for the server's, so an upload ends at a TLS alert record.
const PYTHON: &str = r#"
import ftplib, ssl, sys, io, hashlib
port, ca, src, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
f = Reusing(context=ssl.create_default_context(cafile=ca), timeout=120)
f.connect("localhost", port)
f.auth()
f.login("bob", "secret")
f.prot_p()
data = open(src, "rb").read()
f.storbinary("STOR " + name, io.BytesIO(data), blocksize=1 << 16)
out = io.BytesIO()
f.retrbinary("RETR " + name, out.write)
assert out.getvalue() == data, "round trip: %d of %d bytes" % (len(out.getvalue()), len(data))
print("python ok", hashlib.sha256(data).hexdigest(), f.sock.version())
f.quit()
"#;

#[test]
fn ringftpd_ftps_transfers_take_ktls_where_the_kernel_has_it() {
    let have = ktls_present();
    if !have {
        println!("kTLS absent: ringftpd must fall back to rustls");
    }
    let len = e2e_mib() * common::MIB;
    let pki = Pki::new();
    for engine in ["uring", "epoll"] {
        let srv = ftps_server(&format!("ktls-{engine}"), &pki, engine, &[]);
        let port = srv.port();
        let src = srv.work().join("src.bin");
        common::make_file(&src, len, 11);
        std::fs::copy(&src, srv.root().join("down.bin")).unwrap();
        let (tx0, rx0) = (tls_stat("TlsTxSw").unwrap_or(0), tls_stat("TlsRxSw").unwrap_or(0));
        let started = std::time::Instant::now();

        // curl: RETR (EPSV) and STOR (PASV), checked by SHA-256.
        let got = srv.work().join("got.bin");
        let out =
            curl_ftps(&pki, &["-o", got.to_str().unwrap(), &format!("ftp://localhost:{port}/down.bin")]);
        assert!(out.status.success(), "curl RETR: {out:?}\n{}", srv.log_for_failure());
        assert!(same(&got, &src), "curl RETR ({engine})");
        let t_retr = started.elapsed().as_secs_f64();
        let out = curl_ftps(
            &pki,
            &["--disable-epsv", "-T", src.to_str().unwrap(), &format!("ftp://localhost:{port}/up.bin")],
        );
        assert!(out.status.success(), "curl STOR: {out:?}\n{}", srv.log_for_failure());
        assert!(same(&srv.root().join("up.bin"), &src), "curl STOR ({engine})");
        let t_stor = started.elapsed().as_secs_f64() - t_retr;

        // Python: STOR ended by close_notify, then RETR.
        let small = srv.work().join("small.bin");
        common::make_file(&small, common::MIB + 1, 12);
        let out = tls_common::python_reusing(300, PYTHON)
            .arg(port.to_string())
            .arg(&pki.ca)
            .arg(&small)
            .arg("py.bin")
            .output()
            .expect("python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("python ok"),
            "python: {out:?}\n{}",
            srv.log_for_failure()
        );
        assert!(same(&srv.root().join("py.bin"), &small), "python STOR ({engine})");
        let secs = started.elapsed().as_secs_f64();

        // Four file transfers: each took kTLS, or each rustls.
        let metrics = scrape(&srv);
        let (on_ktls, on_rustls) = (data_path_count(&metrics, "ktls"), data_path_count(&metrics, "rustls"));
        let log = srv.stderr_log();
        let ktls_lines = log.matches("TLS data connection on kTLS").count();
        if have {
            assert_eq!((on_ktls, on_rustls), (4, 0), "{engine}: {metrics}\n{}", srv.log_for_failure());
            assert_eq!(ktls_lines, 4, "{engine}: the debug line per transfer");
            let (tx, rx) = (tls_stat("TlsTxSw").unwrap_or(0), tls_stat("TlsRxSw").unwrap_or(0));
            assert!(tx >= tx0 + 4 && rx >= rx0 + 4, "kernel TLS sockets: tx {tx0}->{tx}, rx {rx0}->{rx}");
        } else {
            assert_eq!((on_ktls, on_rustls), (0, 4), "{engine}: {metrics}\n{}", srv.log_for_failure());
            assert_eq!(ktls_lines, 0);
        }
        let path = if have { "kTLS" } else { "rustls" };
        println!(
            "{engine}: RETR + STOR of {} MiB (curl) and of 1 MiB (ftplib) over PROT P on {path}: \
             {t_retr:.1} s + {t_stor:.1} s, {secs:.1} s in all",
            len >> 20
        );
    }
}

/// `--ktls off` keeps every byte on rustls, even where the kernel has kTLS.
#[test]
fn ringftpd_ktls_off_stays_on_rustls() {
    let pki = Pki::new();
    let srv = ftps_server("ktls-off", &pki, "auto", &["--ktls", "off"]);
    let src = srv.work().join("src.bin");
    common::make_file(&src, 4 * common::MIB + 7, 13);
    std::fs::copy(&src, srv.root().join("down.bin")).unwrap();
    let got = srv.work().join("got.bin");
    let url = format!("ftp://localhost:{}/down.bin", srv.port());
    let out = curl_ftps(&pki, &["-o", got.to_str().unwrap(), &url]);
    assert!(out.status.success(), "curl RETR: {out:?}\n{}", srv.log_for_failure());
    assert!(same(&got, &src));
    let metrics = scrape(&srv);
    assert_eq!((data_path_count(&metrics, "ktls"), data_path_count(&metrics, "rustls")), (0, 1), "{metrics}");
}

/// User plus system CPU time of a process, from /proc/PID/stat (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).map(|v| v.parse().unwrap_or(0.0)).collect();
    f.iter().sum::<f64>() / 100.0
}

/// Throughput of a big RETR and STOR on kTLS against rustls, same machine, one curl each, when
/// `KTLS_BENCH_MIB` is set (tests/ktls-vm.sh --bench); skipped otherwise. Prints MB/s and the
/// server's CPU seconds per GB of each, then the kTLS/rustls ratios.
#[test]
fn ringftpd_ktls_vs_rustls_retr_throughput() {
    let Some(mib) = std::env::var("KTLS_BENCH_MIB").ok().and_then(|v| v.parse::<u64>().ok()) else {
        println!("KTLS_BENCH_MIB not set: skipped");
        return;
    };
    let pki = Pki::new();
    let gb = (mib << 20) as f64 / 1e9;
    // (MB/s, CPU s/GB) of RETR then STOR, for --ktls auto then off.
    let mut figures = Vec::new();
    for mode in ["auto", "off"] {
        let srv = ftps_server(&format!("ktls-bench-{mode}"), &pki, "auto", &["--ktls", mode]);
        let src = srv.root().join("big.bin");
        common::make_file(&src, mib * common::MIB, 14);
        let timed = |dir: &str, args: &[&str], transfers: u64| {
            let cpu0 = cpu_seconds(srv.pid());
            let started = std::time::Instant::now();
            let out = curl_ftps(&pki, args);
            let secs = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds(srv.pid()) - cpu0;
            assert!(out.status.success(), "curl {dir}: {out:?}\n{}", srv.log_for_failure());
            let path = if data_path_count(&scrape(&srv), "ktls") == transfers { "kTLS" } else { "rustls" };
            let (mbps, cpu_gb) = (gb * 1e3 / secs, cpu / gb);
            println!(
                "bench: {dir} {mib} MiB --ktls {mode} ({path}): {mbps:.1} MB/s, server CPU {cpu_gb:.2} s/GB ({secs:.1} s)"
            );
            ((mbps, cpu_gb), String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let url = format!("ftp://localhost:{}/big.bin", srv.port());
        let (retr, size) = timed("RETR", &["-o", "/dev/null", "-w", "%{size_download}", &url], 1);
        assert_eq!(size, (mib * common::MIB).to_string(), "RETR bytes");
        // And back: the same bytes uploaded, checked on disk by digest (no second copy in memory).
        let up = format!("ftp://localhost:{}/up.bin", srv.port());
        let (stor, _) = timed("STOR", &["-T", src.to_str().unwrap(), &up], 2);
        assert_eq!(common::sha256_file(&srv.root().join("up.bin")), common::sha256_file(&src), "STOR bytes");
        figures.push((retr, stor));
    }
    if let [(k_retr, k_stor), (r_retr, r_stor)] = figures[..] {
        for (dir, k, r) in [("RETR", k_retr, r_retr), ("STOR", k_stor, r_stor)] {
            println!(
                "bench: {dir} {mib} MiB kTLS/rustls: MB/s x{:.2}, server CPU per GB x{:.2}",
                k.0 / r.0,
                k.1 / r.1
            );
        }
    }
}

/// A minimal FTPS client over rustls, for what real clients do not send.
struct Ftps {
    tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    config: Arc<rustls::ClientConfig>,
}

impl Ftps {
    fn login(pki: &Pki, addr: std::net::SocketAddr) -> Ftps {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut plain = std::io::BufReader::new(sock.try_clone().unwrap());
        assert!(line(&mut plain).starts_with("220"));
        sock.write_all(b"AUTH TLS\r\n").unwrap();
        assert!(line(&mut plain).starts_with("234"));
        let (config, _) = pki.client(false, false);
        let conn = rustls::ClientConnection::new(config.clone(), Pki::name()).unwrap();
        let mut ftps = Ftps { tls: rustls::StreamOwned::new(conn, sock), config };
        for (cmd, code) in [
            ("USER bob", "331"),
            ("PASS secret", "230"),
            ("PBSZ 0", "200"),
            ("PROT P", "200"),
            ("TYPE I", "200"),
        ] {
            let reply = ftps.cmd(cmd);
            assert!(reply.starts_with(code), "{cmd}: {reply}");
        }
        ftps
    }

    fn cmd(&mut self, cmd: &str) -> String {
        self.tls.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    fn reply(&mut self) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            assert_eq!(self.tls.read(&mut b).unwrap(), 1, "control connection closed");
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// EPSV, then `cmd`; returns the data connection with its TLS handshake done (resuming
    /// the control session, as the server requires).
    fn data(&mut self, cmd: &str) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        let reply = self.cmd("EPSV");
        let port: u16 = reply.split("|||").nth(1).and_then(|s| s.split('|').next()).unwrap().parse().unwrap();
        self.tls.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let reply = self.reply();
        assert!(reply.starts_with("150"), "{cmd}: {reply}");
        let conn = rustls::ClientConnection::new(self.config.clone(), Pki::name()).unwrap();
        let mut data = rustls::StreamOwned::new(conn, sock);
        while data.conn.is_handshaking() {
            data.conn.complete_io(&mut data.sock).unwrap();
        }
        data
    }
}

fn line(r: &mut impl std::io::BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s
}

/// An upload that meets a TLS 1.3 KeyUpdate: rustls follows it (226, every byte stored);
/// kTLS cannot here, so the upload is aborted with 426 and the control connection goes on.
/// Then an upload ended by close_notify alone stores every byte on either path.
#[test]
fn ringftpd_upload_record_other_than_data() {
    let pki = Pki::new();
    for engine in ["uring", "epoll"] {
        let srv = ftps_server(&format!("ktls-keyupdate-{engine}"), &pki, engine, &[]);
        let mut ftps = Ftps::login(&pki, srv.addr());
        let first = pattern(300_000, 3);
        let second = pattern(200_000, 4);
        let mut data = ftps.data("STOR ku.bin");
        data.write_all(&first).unwrap();
        data.flush().unwrap();
        data.conn.refresh_traffic_keys().unwrap();
        // The server may already have closed the connection (kTLS): later writes can fail.
        let _ = data.write_all(&second).and_then(|()| data.flush());
        data.conn.send_close_notify();
        let _ = data.flush();
        let reply = ftps.reply();
        drop(data);
        if ktls::available() {
            assert!(reply.starts_with("426"), "{engine}: {reply}\n{}", srv.log_for_failure());
        } else {
            assert!(reply.starts_with("226"), "{engine}: {reply}\n{}", srv.log_for_failure());
            let stored = std::fs::read(srv.root().join("ku.bin")).unwrap();
            assert!(stored.len() == first.len() + second.len() && stored[..first.len()] == first[..]);
            assert!(stored[first.len()..] == second[..]);
        }
        assert!(ftps.cmd("NOOP").starts_with("200"), "control connection still usable");

        let mut data = ftps.data("STOR cn.bin");
        data.write_all(&first).unwrap();
        data.conn.send_close_notify();
        data.flush().unwrap();
        // The server answers our close_notify with its own.
        let mut rest = Vec::new();
        data.read_to_end(&mut rest).expect("the server's close_notify");
        let reply = ftps.reply();
        assert!(reply.starts_with("226"), "{engine}: {reply}\n{}", srv.log_for_failure());
        assert!(std::fs::read(srv.root().join("cn.bin")).unwrap() == first, "{engine}: close_notify upload");
        let path = if ktls::available() { "ktls" } else { "rustls" };
        assert_eq!(data_path_count(&scrape(&srv), path), 2, "{engine}");
    }
}

// ---------------------------------------------------------------------------------------------
// A kernel that has kTLS but lacks one cipher

/// The module that provides the kernel's `rfc7539(chacha20,poly1305)` AEAD.
const CHACHA_MODULE: &str = "chacha20poly1305";

/// Sets zero TLS 1.3 ChaCha20-Poly1305 TX keys on a fresh loopback socket, asking the kernel
/// directly: ringftp's own probe answers once per process, and this process's later tests
/// need a fresh answer.
fn kernel_sets_chacha() -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let _server = listener.accept()?;
    let fd = client.as_raw_fd();
    let ulp = b"tls";
    // SAFETY: fd is an open socket; the value is a valid buffer of the given length.
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_TCP, libc::TCP_ULP, ulp.as_ptr().cast(), 3) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let info = libc::tls12_crypto_info_chacha20_poly1305 {
        info: libc::tls_crypto_info {
            version: libc::TLS_1_3_VERSION,
            cipher_type: libc::TLS_CIPHER_CHACHA20_POLY1305,
        },
        iv: [0; 12],
        key: [0; 32],
        salt: [0; 0],
        rec_seq: [0; 8],
    };
    let len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: fd is an open socket; info is a plain C struct of `len` bytes.
    let rc =
        unsafe { libc::setsockopt(fd, libc::SOL_TLS, libc::TLS_TX, std::ptr::addr_of!(info).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The modules /proc/modules says use `name` (its fourth field), or None when `name` is not
/// a loaded module (built in, or absent).
fn module_users(name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/modules").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&name)).then(|| {
            f.get(3).map_or(vec![], |u| {
                u.split(',').filter(|u| !u.is_empty() && *u != "-").map(String::from).collect()
            })
        })
    })
}

/// Unloads `name` and, first, the modules that use it (delete_module(2): no kmod on the host
/// root the guest runs in). Returns the names unloaded.
fn unload(name: &str) -> Vec<String> {
    let mut gone = Vec::new();
    for user in module_users(name).unwrap_or_default() {
        gone.extend(unload(&user));
    }
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: c is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, c.as_ptr(), libc::O_NONBLOCK) };
    assert_eq!(
        rc,
        0,
        "delete_module({name}): {} (in use: did a test before this one take it on kTLS in this \
         process? run with --test-threads=1 as tests/ktls-vm.sh does)",
        std::io::Error::last_os_error()
    );
    gone.push(name.to_string());
    gone
}

/// Stops the kernel loading modules on demand while it lives (kernel.modprobe = /bin/false,
/// so request_module fails), and restores the old helper on drop, even on a failed assert:
/// then a module unloaded comes back on its next use.
struct NoAutoload(String);

impl NoAutoload {
    const PATH: &'static str = "/proc/sys/kernel/modprobe";

    fn new() -> NoAutoload {
        let old = std::fs::read_to_string(Self::PATH).unwrap().trim().to_string();
        std::fs::write(Self::PATH, "/bin/false").unwrap();
        NoAutoload(old)
    }
}

impl Drop for NoAutoload {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// A kernel with kTLS but without one cipher's implementation: the guest's ChaCha20-Poly1305
/// is a module, unloaded here with autoload stopped. TLS 1.3 ChaCha20 transfers both ways
/// stay on rustls (every byte checked by SHA-256; the data-path metric and one debug line per
/// connection say so), and an AES-GCM transfer right after still takes kTLS, on both engines.
///
/// It changes the kernel's state, so it runs only where `KTLS_GUEST` is set (tests/ktls-vm.sh's
/// throwaway guest), as root. Its name sorts it before the tests that take ChaCha20 on kTLS
/// in this process (libtest runs them in name order with --test-threads=1): those keep the
/// module in use. It restores autoload at the end, and the module comes back on demand.
#[test]
fn kernel_lacking_chacha20_serves_it_on_rustls() {
    if !ktls_present() {
        println!("kTLS absent on this kernel: skipping");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if std::env::var_os("KTLS_GUEST").is_none() || unsafe { libc::geteuid() } != 0 {
        println!("not root in a throwaway kTLS guest (KTLS_GUEST unset): not unloading a cipher; skipping");
        return;
    }
    kernel_sets_chacha().expect("ChaCha20-Poly1305 on kTLS before the unload");
    if module_users(CHACHA_MODULE).is_none() {
        println!(
            "{CHACHA_MODULE} is built into this kernel (not in /proc/modules): cannot remove it; skipping"
        );
        return;
    }
    let autoload = NoAutoload::new();
    let gone = unload(CHACHA_MODULE);
    let err = kernel_sets_chacha().expect_err("ChaCha20 keys still taken with its module unloaded");
    println!("unloaded {gone:?}; TLS_TX with ChaCha20-Poly1305 now fails: {err}");

    let pki = Pki::new();
    let chacha: &[&str] = &["--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"];
    let aes: &[&str] = &["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"];
    for engine in ["uring", "epoll"] {
        let srv = ftps_server(&format!("ktls-nochacha-{engine}"), &pki, engine, &[]);
        let want = curl_retr(&pki, &srv, chacha);
        let src = srv.work().join("src.bin");
        let url = format!("ftp://localhost:{}/up.bin", srv.port());
        let out = curl_ftps(&pki, &[chacha, &["-T", src.to_str().unwrap(), &url]].concat());
        assert!(out.status.success(), "curl STOR: {out:?}\n{}", srv.log_for_failure());
        assert_eq!(common::sha256_file(&srv.root().join("up.bin")), want, "STOR ({engine})");
        let metrics = scrape(&srv);
        let paths = (data_path_count(&metrics, "ktls"), data_path_count(&metrics, "rustls"));
        assert_eq!(paths, (0, 2), "{engine}: ChaCha20 transfers\n{}", srv.log_for_failure());
        let log = srv.stderr_log();
        assert_eq!(
            log.matches("kTLS not taken; TLS data connection on rustls").count(),
            2,
            "{engine}: {log}"
        );
        assert_eq!(log.matches("kTLS does not take this cipher").count(), 1, "{engine}: one probe: {log}");
        assert!(log.contains("Chacha20Poly1305"), "{engine}: the probe names the cipher: {log}");

        // AES-GCM right after: kTLS.
        curl_retr(&pki, &srv, aes);
        let metrics = scrape(&srv);
        let paths = (data_path_count(&metrics, "ktls"), data_path_count(&metrics, "rustls"));
        assert_eq!(paths, (1, 2), "{engine}: AES-GCM transfer\n{}", srv.log_for_failure());
        assert_eq!(srv.stderr_log().matches("TLS data connection on kTLS").count(), 1, "{engine}");
        println!(
            "{engine}: TLS 1.3 ChaCha20 RETR + STOR on rustls, then AES-128-GCM RETR on kTLS; SHA-256 ok"
        );
    }

    // With the module back, a server that took ChaCha20 on kTLS keeps it loaded (its probe
    // socket holds it), so its later connections' TLS_TX cannot fail for want of it.
    drop(autoload);
    kernel_sets_chacha().expect("ChaCha20-Poly1305 back on kTLS once autoload is restored");
    println!("autoload restored: {CHACHA_MODULE} loaded again on demand");
    let srv = ftps_server("ktls-chacha-pinned", &pki, "auto", &[]);
    curl_retr(&pki, &srv, chacha);
    assert_eq!(
        data_path_count(&scrape(&srv), "ktls"),
        1,
        "ChaCha20 on kTLS again\n{}",
        srv.log_for_failure()
    );
    let c = std::ffi::CString::new(CHACHA_MODULE).unwrap();
    // SAFETY: c is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, c.as_ptr(), libc::O_NONBLOCK) };
    let err = std::io::Error::last_os_error();
    assert!(
        rc != 0 && matches!(err.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)),
        "unloaded: {rc} {err}"
    );
    println!("{CHACHA_MODULE} cannot be unloaded under a server that took it on kTLS: {err}");
    // Once that server is gone, nothing holds it; autoload brings it back for the next tests.
    drop(srv);
    assert_eq!(unload(CHACHA_MODULE), [CHACHA_MODULE]);
    kernel_sets_chacha().expect("ChaCha20-Poly1305 autoloaded again");
}

/// RETR of a fresh 2 MiB + 1 file with these curl TLS options, checked by SHA-256; returns
/// the digest (the source is `work/src.bin`).
fn curl_retr(pki: &Pki, srv: &common::TestServer, tls: &[&str]) -> String {
    let src = srv.work().join("src.bin");
    if !src.exists() {
        common::make_file(&src, 2 * common::MIB + 1, 15);
        std::fs::copy(&src, srv.root().join("down.bin")).unwrap();
    }
    let want = common::sha256_file(&src);
    let got = srv.work().join("got.bin");
    let _ = std::fs::remove_file(&got);
    let url = format!("ftp://localhost:{}/down.bin", srv.port());
    let out = curl_ftps(pki, &[tls, &["-o", got.to_str().unwrap(), &url]].concat());
    assert!(out.status.success(), "curl RETR: {out:?}\n{}", srv.log_for_failure());
    assert_eq!(common::sha256_file(&got), want, "RETR");
    want
}
