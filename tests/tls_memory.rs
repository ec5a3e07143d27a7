//! Memory held per idle TLS control session on the server side (a ControlTls and the
//! finished rustls stream), counted with a global allocator; the clients are a separate
//! Python process so their memory is not counted. Prints the figure; fails only if it is
//! far beyond what an idle session should cost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tls_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use ringftp::tls::{KtlsMode, TlsAcceptor, TlsConfig};
use tls_common::Pki;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SESSIONS: usize = 100;

const CLIENT: &str = r#"
import socket, ssl, sys
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
conns = []
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="localhost")
    assert s.recv(8) == b"220 ok\r\n"
    conns.append(s)
print("ready", flush=True)
sys.stdin.read()
"#;

#[test]
fn idle_tls_session_memory() {
    if !Command::new("python3").arg("-c").arg("import ssl").status().is_ok_and(|s| s.success()) {
        println!("python3 with ssl not found: skipping");
        return;
    }
    let pki = Pki::new();
    let acceptor = TlsAcceptor::new(TlsConfig::new(&pki.cert, &pki.key).ktls(KtlsMode::Off)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let mut child = Command::new("python3")
            .args(["-c", CLIENT, &port, pki.ca.to_str().unwrap(), &SESSIONS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut sessions = Vec::with_capacity(SESSIONS);
        // The Vec is allocated already; count the inline size of each entry as its own.
        let before = LIVE.load(Ordering::Relaxed)
            - (SESSIONS
                * std::mem::size_of::<(
                    ringftp::tls::ControlTls,
                    ringftp::tls::TlsStream<tokio::net::TcpStream>,
                )>()) as isize;
        let work = async {
            for _ in 0..SESSIONS {
                let (tcp, _) = listener.accept().await.unwrap();
                let ctl = acceptor.control();
                let mut stream = ctl.accept_control(tcp, Duration::from_secs(20)).await.unwrap();
                stream.write_all(b"220 ok\r\n").await.unwrap();
                stream.flush().await.unwrap();
                sessions.push((ctl, stream));
            }
        };
        tokio::time::timeout(Duration::from_secs(120), work).await.expect("clients timed out");
        let with_tls = LIVE.load(Ordering::Relaxed) - before;
        let per_session = with_tls / SESSIONS as isize;
        println!("idle TLS 1.3 control session (server side, incl. tokio TcpStream): {per_session} bytes");
        drop(child.stdin.take().map(|mut s| s.write_all(b"")));
        drop(sessions);
        let _ = child.wait();
        assert!(per_session < 256 * 1024, "{per_session} bytes per idle TLS session");
    });
}
