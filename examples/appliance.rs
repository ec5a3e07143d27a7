//! An appliance that processes what its users upload: users confined to their own
//! directories, atomic uploads, an event queue drained by a worker thread, and metrics.
//!
//! Each complete upload is "processed" (here: measured and moved into the user's
//! `processed/` directory); thanks to `UploadPolicy::Atomic` a half-sent file never appears
//! under its name, so the worker never sees one.
//!
//! ```sh
//! cargo run --example appliance -- /tmp/appliance 127.0.0.1:2121 127.0.0.1:9121
//! curl -T scan.pdf ftp://alice:alice-pw@127.0.0.1:2121/
//! curl ftp://alice:alice-pw@127.0.0.1:2121/processed/scan.pdf -o back.pdf
//! curl http://127.0.0.1:9121/metrics
//! ```
//!
//! Arguments are optional: the root (default: a directory under the system temp dir), the
//! FTP address and the metrics address (port 0: any free port). Ctrl-C stops it gracefully.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};
use ringftp::events::{self, Event, TransferRecord};
use ringftp::{FsStorage, Server, UploadPolicy, User, UserList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root: PathBuf =
        args.next().map_or_else(|| std::env::temp_dir().join("ringftp-appliance"), Into::into);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into()).parse()?;
    let metrics = args.next().unwrap_or_else(|| "127.0.0.1:9121".into()).parse()?;

    // Each user sees only their own directory, as `/`.
    let homes = HashMap::from([("alice", "alice"), ("bob", "bob")]);
    let mut users = UserList::new();
    for (name, home) in &homes {
        std::fs::create_dir_all(root.join(home).join("processed"))?;
        // Real deployments store argon2 hashes: `UserList::user(user, hash)`.
        let password = format!("{name}-pw");
        users = users.user_with_password(User::new(*name).home(home), password.as_bytes());
    }

    // The server hands events to a bounded queue without ever waiting for us.
    let (sender, receiver) = events::channel(1024);
    let server = Server::builder(FsStorage::new(&root)?, users)
        .listen(addr)
        .uploads(UploadPolicy::Atomic)
        .events(sender)
        .metrics(metrics)
        .build()?;

    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?; // before any thread starts, so Ctrl-C reaches `signals.wait()`
    let handle = server.start()?;
    for addr in handle.local_addrs() {
        println!("appliance listening on {addr}, storing under {}", root.display());
    }
    if let Some(addr) = handle.metrics_addr() {
        println!("appliance metrics on http://{addr}/metrics");
    }

    let worker = std::thread::spawn(move || {
        // Ends once the server is gone and the queue is drained.
        while let Some(event) = receiver.recv() {
            match event {
                Event::Upload(upload) if upload.complete => {
                    let Some(home) = homes.get(upload.user.as_str()) else { continue };
                    if let Err(err) = process(&root.join(home), &upload) {
                        eprintln!("cannot process {}: {err}", upload.path.display());
                    }
                }
                Event::Upload(upload) => println!("ignored incomplete upload {}", upload.path.display()),
                _ => {}
            }
        }
        if receiver.dropped() > 0 {
            eprintln!("{} events were dropped: the worker fell behind", receiver.dropped());
        }
    });
    let trigger = handle.shutdown_trigger();
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            trigger.trigger();
        }
    });
    handle.wait();
    let _ = worker.join();
    Ok(())
}

/// Moves a complete upload from the user's directory into `processed/`, and reports it.
fn process(home: &Path, upload: &TransferRecord) -> std::io::Result<()> {
    // The event's path is as the user sees it, from their home: `/scan.pdf`.
    let relative = upload.path.strip_prefix("/").unwrap_or(&upload.path);
    if relative.starts_with("processed") {
        return Ok(());
    }
    let Some(name) = relative.file_name() else { return Ok(()) };
    let size = std::fs::metadata(home.join(relative))?.len();
    std::fs::rename(home.join(relative), home.join("processed").join(name))?;
    println!(
        "processed {} from {}: {size} bytes, in {:?}, moved to processed/",
        relative.display(),
        upload.user,
        upload.duration
    );
    Ok(())
}
