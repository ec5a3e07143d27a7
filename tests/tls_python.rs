//! A real client: Python's ssl module (OpenSSL) resumes the control connection's session on
//! each data connection the way an FTPS client subclassing ftplib.FTP_TLS does (passing
//! `session=`), and a data connection without it is refused. TLS 1.3 and 1.2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tls_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use ringftp::tls::{AcceptError, KtlsMode, TlsAcceptor, TlsConfig};
use tls_common::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CLIENT: &str = r#"
import socket, ssl, sys
port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
if version == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
else:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
def connect(session=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    return ctx.wrap_socket(s, server_hostname="localhost", session=session)
control = connect()
assert control.recv(8) == b"200 ok\r\n"
for i in range(4):
    d = connect(control.session)
    data = b""
    while True:
        chunk = d.recv(65536)
        if not chunk:
            break
        data += chunk
    print("data", i, d.version(), "reused" if d.session_reused else "full", data.decode())
    d.close()
try:
    d = connect()
    data = d.recv(100)
    print("plain", "got", len(data))
except (ssl.SSLError, OSError) as e:
    print("plain", "refused")
control.close()
"#;

fn python_round(version: &str) {
    let pki = Pki::new();
    let acceptor = TlsAcceptor::new(TlsConfig::new(&pki.cert, &pki.key).ktls(KtlsMode::Off)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stdout = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let child = Command::new("python3")
            .args(["-c", CLIENT, &port, pki.ca.to_str().unwrap(), version])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let server = async {
            let bound = Duration::from_secs(20);
            let ctl = acceptor.control();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut control = ctl.accept_control(tcp, bound).await.unwrap();
            control.write_all(b"200 ok\r\n").await.unwrap();
            control.flush().await.unwrap();
            for _ in 0..4 {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut data = ctl.accept_data(tcp, bound).await.expect("resumed data connection accepted");
                data.write_all(b"payload").await.unwrap();
                data.shutdown().await.unwrap();
            }
            let (tcp, _) = listener.accept().await.unwrap();
            let refused = ctl.accept_data(tcp, bound).await;
            assert!(matches!(refused, Err(AcceptError::NotResumed)), "{refused:?}");
            // Wait for the client to close the control connection.
            let mut rest = Vec::new();
            let _ = control.read_to_end(&mut rest).await;
        };
        // The client's sockets time out after 20 s, so it exits even if this fails.
        tokio::time::timeout(Duration::from_secs(60), server).await.expect("server side timed out");
        let output = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "python client failed:\n{out}");
        out
    });
    let tls = if version == "1.2" { "TLSv1.2" } else { "TLSv1.3" };
    for i in 0..4 {
        assert!(stdout.contains(&format!("data {i} {tls} reused payload")), "{stdout}");
    }
    assert!(stdout.contains("plain refused") || stdout.contains("plain got 0"), "{stdout}");
}

fn have_python() -> bool {
    let ok = Command::new("python3").arg("-c").arg("import ssl").status().is_ok_and(|s| s.success());
    if !ok {
        println!("python3 with ssl not found: skipping");
    }
    ok
}

#[test]
fn python_resumes_control_session_tls13() {
    if have_python() {
        python_round("1.3");
    }
}

#[test]
fn python_resumes_control_session_tls12() {
    if have_python() {
        python_round("1.2");
    }
}
