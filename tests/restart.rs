//! A server killed with SIGKILL can be restarted on the same port at once: the kernel may take
//! a few milliseconds to release the old process's sockets, and start-up retries the bind
//! meanwhile instead of failing with "address in use".

mod common;

use std::time::Duration;

use common::*;

#[test]
fn restart_right_after_kill_9_binds_the_same_port() {
    let mut server = TestServer::start("restart-0");
    let port = server.port();
    for round in 1..=5 {
        // A live session and a passive listener, so the old process holds more than a listener.
        let mut c = Control::connect(server.addr(), Duration::from_secs(20));
        c.login(USER, PASS);
        assert_eq!(c.cmd("EPSV").0, 229);
        server.signal(libc::SIGKILL);
        assert!(server.wait_exit(Duration::from_secs(10)).is_some(), "not killed");
        drop(c);
        server =
            TestServer::builder(&format!("restart-{round}")).listen(&format!("127.0.0.1:{port}")).start();
        assert_eq!(server.port(), port);
        let mut c = Control::connect(server.addr(), Duration::from_secs(20));
        c.login(USER, PASS);
        assert_eq!(c.cmd("QUIT").0, 221, "{}", server.log_for_failure());
    }
}
