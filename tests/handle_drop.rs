//! Dropping a `ServerHandle` shuts the server down, even while a `ShutdownTrigger` clone
//! lives: the metrics port is closed when `drop` returns, and the FTP listener stops
//! accepting once the shards end (bounded by the grace period).

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ringftp::{FsStorage, Server, UserList};

#[test]
fn dropping_the_handle_stops_the_server_and_its_metrics_thread() {
    let scratch = Scratch::new("handle-drop");
    let (lo, hi) = passive_ports_block();
    let handle = Server::builder(FsStorage::new(scratch.path()).unwrap(), UserList::new().anonymous("."))
        .listen("127.0.0.1:0".parse().unwrap())
        .passive_ports(lo..=hi)
        .metrics("127.0.0.1:0".parse().unwrap())
        .shutdown_grace(Duration::from_secs(1))
        .engine(engine())
        .build()
        .unwrap()
        .start()
        .unwrap();
    let ftp = handle.local_addrs()[0];
    let metrics = handle.metrics_addr().unwrap();
    let trigger = handle.shutdown_trigger();
    let mut c = Control::connect(ftp, Duration::from_secs(20));
    assert_eq!(c.cmd("NOOP").0, 200);

    drop(handle);
    assert!(TcpStream::connect(metrics).is_err(), "the metrics thread still listens");
    // The open session is told, and new connections are refused once the shards end.
    assert_eq!(c.reply().map(|r| r.0).ok(), Some(421), "the session was not closed with 421");
    assert!(c.closed_by_server(), "the session was not closed");
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect(ftp).is_err()),
        "still accepting after the handle was dropped"
    );
    drop(trigger);
}
