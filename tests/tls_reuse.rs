//! TLS machinery over real loopback TCP with a rustls client: data connections must resume
//! their own control connection's session (RFC 4217 §10), client certificates, reload, and
//! handshakes that are garbage or stall.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tls_common;

use std::sync::Arc;
use std::time::Duration;

use ringftp::tls::{rustls, AcceptError, ClientAuth, ControlTls, KtlsMode, TlsAcceptor, TlsConfig, TlsInfo};
use rustls::client::Tls12Resumption;
use tls_common::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

const BOUND: Duration = Duration::from_secs(10);

fn run<F: std::future::Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out") });
}

async fn tcp_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let (client, server) =
        tokio::join!(TcpStream::connect(listener.local_addr().unwrap()), listener.accept());
    (server.unwrap().0, client.unwrap())
}

/// A control connection: handshake, then a reply the client reads (which is when a TLS 1.3
/// client takes in the tickets the server sent after the handshake).
async fn control(
    listener: &TcpListener,
    ctl: &ControlTls,
    client: Arc<rustls::ClientConfig>,
) -> (ringftp::tls::TlsStream<TcpStream>, tokio_rustls::client::TlsStream<TcpStream>) {
    let (s, c) = tcp_pair(listener).await;
    let (server, client) =
        tokio::join!(ctl.accept_control(s, BOUND), TlsConnector::from(client).connect(Pki::name(), c));
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    server.write_all(b"200 ok\r\n").await.unwrap();
    server.flush().await.unwrap();
    let mut buf = [0u8; 8];
    client.read_exact(&mut buf).await.unwrap();
    (server, client)
}

/// A data connection: the server sends `payload` if the handshake passes the reuse check.
/// Returns the server's verdict and what the client received.
async fn data(
    listener: &TcpListener,
    ctl: &ControlTls,
    client: Arc<rustls::ClientConfig>,
) -> (Result<Option<TlsInfo>, AcceptError>, Vec<u8>) {
    let (s, c) = tcp_pair(listener).await;
    let server = async {
        let mut stream = ctl.accept_data(s, BOUND).await?;
        let info = TlsInfo::of(stream.get_ref().1);
        stream.write_all(b"payload").await.unwrap();
        stream.shutdown().await.unwrap();
        Ok(info)
    };
    let client = async {
        let mut got = Vec::new();
        if let Ok(mut stream) = TlsConnector::from(client).connect(Pki::name(), c).await {
            let _ = stream.read_to_end(&mut got).await;
        }
        got
    };
    tokio::join!(server, client)
}

fn acceptor(pki: &Pki, reuse: bool) -> TlsAcceptor {
    TlsAcceptor::new(TlsConfig::new(&pki.cert, &pki.key).require_session_reuse(reuse).ktls(KtlsMode::Off))
        .unwrap()
}

/// `tls12`: `None` for TLS 1.3, else how the TLS 1.2 client resumes (rustls's client prefers
/// a ticket when the server issues one; Go's crypto/tls resumes by ticket only).
fn reuse_matrix(tls12: Option<Tls12Resumption>) {
    run(async {
        let pki = Pki::new();
        let client = |pki: &Pki| {
            let (config, rec) = pki.client(tls12.is_some(), false);
            let Some(how) = tls12 else { return (config, rec) };
            let mut config = (*config).clone();
            config.resumption = config.resumption.tls12_resumption(how);
            (Arc::new(config), rec)
        };
        let tls12 = tls12.is_some();
        let acceptor = acceptor(&pki, true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();

        // Control connection A and its client's session cache.
        let ctl_a = acceptor.control();
        let (client_a, rec_a) = client(&pki);
        let (_sa, _ca) = control(&listener, &ctl_a, client_a.clone()).await;

        // Data connections of A that resume A's session: accepted, several in a row (TLS 1.3
        // tickets are replenished by each accepted data connection).
        for i in 0..5 {
            let before = rec_a.offered();
            let (verdict, got) = data(&listener, &ctl_a, client_a.clone()).await;
            let info = verdict.unwrap_or_else(|e| panic!("data connection {i} refused: {e}"));
            assert_eq!(got, b"payload");
            assert_eq!(rec_a.offered(), before + 1, "client offered its session");
            let info = info.unwrap();
            assert_eq!(info.version, if tls12 { "TLSv1_2" } else { "TLSv1_3" });
        }

        // A client with no session: full handshake, refused, and not one byte sent.
        let (fresh, rec_fresh) = client(&pki);
        let (verdict, got) = data(&listener, &ctl_a, fresh.clone()).await;
        assert!(matches!(verdict, Err(AcceptError::NotResumed)), "{verdict:?}");
        assert!(got.is_empty());
        assert_eq!(rec_fresh.offered(), 0);
        // Whatever that refused handshake gave the client (a TLS 1.3 ticket) must not open
        // the next one either.
        let (verdict, got) = data(&listener, &ctl_a, fresh).await;
        assert_eq!(rec_fresh.offered(), 1, "the client offered what the refused handshake gave it");
        assert!(
            matches!(verdict, Err(AcceptError::NotResumed)),
            "refused handshake's ticket resumed: {verdict:?}"
        );
        assert!(got.is_empty());

        // Control connection B, whose own data connection works (its session data is good).
        let ctl_b = acceptor.control();
        let (client_b, rec_b) = client(&pki);
        let (_sb, _cb) = control(&listener, &ctl_b, client_b.clone()).await;
        let (verdict, got) = data(&listener, &ctl_b, client_b.clone()).await;
        verdict.unwrap();
        assert_eq!(got, b"payload");
        // B's client presents B's session data to A's data port: it is offered (recorded) but
        // cannot resume there; the full handshake is refused.
        let before = rec_b.offered();
        let (verdict, got) = data(&listener, &ctl_a, client_b.clone()).await;
        assert_eq!(rec_b.offered(), before + 1, "client B offered its session data");
        assert!(matches!(verdict, Err(AcceptError::NotResumed)), "{verdict:?}");
        assert!(got.is_empty());
        // And A's client still gets its data.
        let (verdict, got) = data(&listener, &ctl_a, client_a).await;
        verdict.unwrap();
        assert_eq!(got, b"payload");
        drop(rec_a);
    });
}

#[test]
fn tls13_data_must_resume_own_control_session() {
    reuse_matrix(None);
}

/// TLS 1.2 tickets are keys into the control connection's store too, as its session IDs are.
#[test]
fn tls12_data_must_resume_own_control_session() {
    reuse_matrix(Some(Tls12Resumption::SessionIdOrTickets));
    reuse_matrix(Some(Tls12Resumption::SessionIdOnly));
}

#[test]
fn relaxed_mode_accepts_full_handshake() {
    for tls12 in [false, true] {
        run(async {
            let pki = Pki::new();
            let acceptor = acceptor(&pki, false);
            assert!(!acceptor.require_session_reuse());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ctl = acceptor.control();
            let (fresh, _rec) = pki.client(tls12, false);
            let (verdict, got) = data(&listener, &ctl, fresh).await;
            verdict.unwrap();
            assert_eq!(got, b"payload");
        });
    }
}

#[test]
fn alpn_ftp_and_info() {
    run(async {
        let pki = Pki::new();
        let acceptor = acceptor(&pki, true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ctl = acceptor.control();
        let (client, _rec) = pki.client(false, false);
        let (server, client) = control(&listener, &ctl, client).await;
        assert_eq!(server.get_ref().1.alpn_protocol(), Some(&b"ftp"[..]));
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"ftp"[..]));
        let info = TlsInfo::of(server.get_ref().1).unwrap();
        assert_eq!(info.version, "TLSv1_3");
        assert!(info.cipher.starts_with("TLS13_"), "{}", info.cipher);
        assert!(info.peer_chain.is_empty());
    });
}

#[test]
fn client_certificates() {
    run(async {
        let pki = Pki::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let make = |mode| {
            TlsAcceptor::new(
                TlsConfig::new(&pki.cert, &pki.key).client_auth(mode, &pki.ca).ktls(KtlsMode::Off),
            )
            .unwrap()
        };

        // Require + a certificate: the verified chain is there, on the control connection and
        // on a resumed data connection.
        for tls12 in [false, true] {
            let ctl = make(ClientAuth::Require).control();
            let (client, _rec) = pki.client(tls12, true);
            let (server, _c) = control(&listener, &ctl, client.clone()).await;
            let info = TlsInfo::of(server.get_ref().1).unwrap();
            assert_eq!(info.peer_chain, pki.client_chain);
            let (verdict, got) = data(&listener, &ctl, client).await;
            assert_eq!(verdict.unwrap().unwrap().peer_chain, pki.client_chain, "tls12={tls12}");
            assert_eq!(got, b"payload");
        }

        // Require without one: the handshake fails.
        let ctl = make(ClientAuth::Require).control();
        let (client, _rec) = pki.client(false, false);
        let (s, c) = tcp_pair(&listener).await;
        let (server, client) = tokio::join!(ctl.accept_control(s, BOUND), async {
            let mut stream = TlsConnector::from(client).connect(Pki::name(), c).await?;
            // TLS 1.3: the client learns of the refusal on its first read.
            let mut buf = [0u8; 1];
            stream.read(&mut buf).await
        });
        assert!(matches!(server, Err(AcceptError::Handshake(_))), "{server:?}");
        assert!(client.is_err() || matches!(client, Ok(0)));

        // Request without one: accepted, no chain.
        let ctl = make(ClientAuth::Request).control();
        let (client, _rec) = pki.client(false, false);
        let (server, _c) = control(&listener, &ctl, client).await;
        assert!(TlsInfo::of(server.get_ref().1).unwrap().peer_chain.is_empty());

        // A client CA is required for client authentication.
        let mut config = TlsConfig::new(&pki.cert, &pki.key).ktls(KtlsMode::Off);
        config = config.client_auth(ClientAuth::Require, pki.dir.join("missing.pem"));
        let err = TlsAcceptor::new(config).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
    });
}

#[test]
fn reload_keeps_old_certificate_on_error() {
    run(async {
        let mut pki = Pki::new();
        let acceptor = acceptor(&pki, true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let leaf = |s: &tokio_rustls::client::TlsStream<TcpStream>| {
            s.get_ref().1.peer_certificates().unwrap()[0].clone()
        };

        let ctl_old = acceptor.control();
        let (client, _rec) = pki.client(false, false);
        let (_s, c) = control(&listener, &ctl_old, client.clone()).await;
        let old_leaf = leaf(&c);

        // A good new certificate: new control connections get it.
        let new_leaf = pki.issue_server();
        assert_ne!(new_leaf, old_leaf);
        acceptor.reload().unwrap();
        let ctl_new = acceptor.control();
        let (fresh, _rec) = pki.client(false, false);
        let (_s2, c2) = control(&listener, &ctl_new, fresh).await;
        assert_eq!(leaf(&c2), new_leaf);

        // The session that started before the reload keeps working (its data connections
        // resume with the old certificate's session).
        let (verdict, got) = data(&listener, &ctl_old, client).await;
        verdict.unwrap();
        assert_eq!(got, b"payload");

        // Garbage in the certificate file: error names the file, the old one stays.
        std::fs::write(&pki.cert, b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
            .unwrap();
        let err = acceptor.reload().unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        // An empty certificate file.
        std::fs::write(&pki.cert, b"").unwrap();
        let err = acceptor.reload().unwrap_err().to_string();
        assert!(err.contains("no certificate"), "{err}");
        // A certificate whose key is another one's.
        let good_key = std::fs::read(&pki.key).unwrap();
        pki.issue_server();
        std::fs::write(&pki.key, &good_key).unwrap();
        let err = acceptor.reload().unwrap_err().to_string();
        assert!(err.contains("rejected"), "{err}");
        // A missing key file.
        std::fs::remove_file(&pki.key).unwrap();
        let err = acceptor.reload().unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");

        let ctl = acceptor.control();
        let (fresh, _rec) = pki.client(false, false);
        let (_s3, c3) = control(&listener, &ctl, fresh).await;
        assert_eq!(leaf(&c3), new_leaf, "a failed reload changed the certificate");
    });
}

#[test]
fn garbage_fails_fast_and_silence_times_out() {
    run(async {
        let pki = Pki::new();
        let acceptor = acceptor(&pki, true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();

        // FTP commands instead of a ClientHello: an error at once, long before the bound.
        for garbage in [&b"USER anonymous\r\n"[..], b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x01\xff\xff"] {
            let ctl = acceptor.control();
            let (s, mut c) = tcp_pair(&listener).await;
            c.write_all(garbage).await.unwrap();
            if garbage.len() == 5 {
                // A header announcing 64 KiB (over the record limit), then close.
                c.shutdown().await.unwrap();
            }
            let start = std::time::Instant::now();
            let result = ctl.accept_control(s, Duration::from_secs(30)).await;
            match result {
                Err(AcceptError::Handshake(e)) => assert!(!e.to_string().is_empty()),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(garbage)),
            }
            // Not a timing assertion of speed, only that it did not wait for the bound.
            assert!(start.elapsed() < Duration::from_secs(30));
        }

        // Half a record header, then silence: the bound ends it.
        let ctl = acceptor.control();
        let (s, mut c) = tcp_pair(&listener).await;
        c.write_all(b"\x16\x03").await.unwrap();
        let result = ctl.accept_control(s, Duration::from_millis(300)).await;
        assert!(matches!(result, Err(AcceptError::TimedOut)), "{result:?}");
        drop(c);
    });
}

#[test]
fn corked_handshake_then_rustls() {
    // The kTLS-ready accept (record-bounded reads) with a client that sends data right behind
    // its Finished; uncorked, the stream carries on with rustls and loses nothing.
    for tls12 in [false, true] {
        run(async {
            let pki = Pki::new();
            let acceptor = acceptor(&pki, false);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ctl = acceptor.control();
            let (client, _rec) = pki.client(tls12, false);
            let (s, c) = tcp_pair(&listener).await;
            let upload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let client = async {
                let mut stream = TlsConnector::from(client).connect(Pki::name(), c).await.unwrap();
                stream.write_all(&upload).await.unwrap();
                stream.shutdown().await.unwrap();
                // Read (the TLS 1.3 ticket) until the server closes: a socket closed with
                // unread bytes sends RST, which would cut the server's read short.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            };
            let server = async {
                let mut stream = ctl.accept_data(ringftp::tls::ktls::Corked::new(s), BOUND).await.unwrap();
                stream.get_mut().0.uncork();
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                drop(stream);
                got
            };
            let ((), got) = tokio::join!(client, server);
            assert!(got == upload, "tls12={tls12}: {} of {} bytes", got.len(), upload.len());
        });
    }
}
