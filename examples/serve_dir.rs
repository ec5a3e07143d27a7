//! The smallest embedding: serve a directory over FTP until Ctrl-C.
//!
//! Anonymous users may download; `alice` (password `secret`) may also upload, rename and
//! delete. Run it and connect:
//!
//! ```sh
//! cargo run --example serve_dir -- /srv/ftp 127.0.0.1:2121
//! curl ftp://127.0.0.1:2121/                        # anonymous listing
//! curl -T notes.txt ftp://alice:secret@127.0.0.1:2121/
//! ```
//!
//! Both arguments are optional (default: `.` and `127.0.0.1:2121`); port 0 picks a free port.

use nix::sys::signal::{SigSet, Signal};
use ringftp::{FsStorage, Server, User, UserList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into()).parse()?;

    let users = UserList::new()
        .user_with_password(User::new("alice"), b"secret") // home: the served directory
        .anonymous(""); // read-only, also the whole directory
    let server = Server::builder(FsStorage::new(&dir)?, users).listen(addr).build()?;

    // Block SIGINT/SIGTERM before the server's threads start (they inherit the mask), then
    // wait for them on a thread of our own: Ctrl-C becomes a graceful shutdown.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;

    let handle = server.start()?;
    for addr in handle.local_addrs() {
        println!("serving {dir} on ftp://{addr}/");
    }
    let trigger = handle.shutdown_trigger();
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            trigger.trigger();
        }
    });
    handle.wait(); // returns once the shutdown has finished
    Ok(())
}
