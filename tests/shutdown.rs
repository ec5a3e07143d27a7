//! Graceful shutdown with a transfer running: SIGTERM stops new sessions, lets the running
//! download finish whole, then answers 421 and the process exits 0.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_lets_a_running_download_finish_then_closes() {
    let mut server = TestServer::start("shutdown-transfer");
    // Far more than loopback socket buffers hold, so the server is mid-transfer at SIGTERM.
    let size = 32 * MIB;
    make_file(&server.root().join("big.bin"), size, 7);
    let mut c = Control::connect(server.addr(), Duration::from_secs(20));
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    data.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.send("RETR big.bin");
    assert_eq!(c.reply().unwrap().0, 150);

    // Read a little, then ask the server to stop while most of the file is still to come.
    let mut got = Vec::with_capacity(size as usize);
    let mut buf = vec![0u8; 64 * 1024];
    let n = data.read(&mut buf).unwrap();
    got.extend_from_slice(&buf[..n]);
    server.signal(libc::SIGTERM);
    // New sessions are refused (the listener is closed) soon after the signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(server.addr()) {
            Err(_) => break,
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut b = [0u8; 64];
                // A connection the kernel still queued is closed without a greeting.
                if matches!(s.read(&mut b), Ok(0) | Err(_)) {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "still accepting sessions after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The running download still arrives whole, slowly read.
    loop {
        let n = data.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(got.len() as u64, size, "the download was cut short by the shutdown");
    assert_eq!(sha256_bytes(&got), sha256_file(&server.root().join("big.bin")));
    assert_eq!(c.reply().unwrap().0, 226, "the transfer completes normally");
    assert_eq!(c.reply().unwrap().0, 421, "then the session is closed with 421");
    let status = server.wait_exit(Duration::from_secs(15)).expect("ringftpd exits after the shutdown");
    assert!(status.success(), "exit status {status:?}");
}
