//! kTLS end to end: a rustls handshake over loopback, the keys handed to the kernel, a file
//! spliced to the encrypted socket, and a rustls client that decrypts and checks every byte;
//! the upload direction is read as plaintext from the socket, and the client's close_notify
//! arrives as a record. Needs a kernel with kTLS: on one without (this project's build host)
//! it prints that and passes; `KTLS_REQUIRED=1` makes that a failure (tests/ktls-vm.sh runs
//! it in a QEMU guest with Debian 12's kernel).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

#[test]
fn ktls_splice_both_directions() {
    if !ktls::available() {
        assert!(
            std::env::var_os("KTLS_REQUIRED").is_none(),
            "KTLS_REQUIRED is set but this kernel has no kTLS"
        );
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
