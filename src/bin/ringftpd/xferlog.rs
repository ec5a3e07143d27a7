//! The transfer log (`--xferlog PATH`): one line per finished or aborted upload or download,
//! in the wu-ftpd xferlog format that vsftpd writes with `xferlog_std_format=YES`, so the log
//! tools that read those read ours:
//!
//! ```text
//! current-time transfer-time remote-host file-size filename transfer-type special-action-flag
//! direction access-mode username service-name authentication-method authenticated-user-id
//! completion-status
//! Tue Dec  1 20:29:42 2026 1 127.0.0.1 100000 /up.bin b _ i r bob ftp 0 * c
//! ```
//!
//! As in vsftpd: the time is UTC, the transfer time whole seconds (at least 1), spaces in the
//! file name become `_` (tools split on whitespace), the access mode is `a` for anonymous and
//! `r` for a real user, and the status is `c` (complete) or `i` (incomplete: aborted, lost
//! connection, storage error).
//!
//! The engine calls the listener on shard threads, so it only stamps the record with the time
//! and queues it (bounded; it never waits). A writer thread formats and appends the lines, and
//! reports in the log how many found the queue full. [`Writer::reopen`] reopens the file, for
//! logrotate's `postrotate` (SIGHUP).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringftp::events::{Event, EventListener, TransferRecord};

/// Lines queued for the writer before new ones are dropped (and counted).
const QUEUE: usize = 8192;

/// Tells whether a logged-in name is an anonymous login (access mode `a`).
pub type IsAnonymous = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The [`EventListener`] half: queues one entry per upload or download.
pub struct Xferlog {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    is_anonymous: IsAnonymous,
}

/// The host's half: reopen the file, or finish writing at exit.
pub struct Writer {
    tx: SyncSender<Msg>,
    thread: JoinHandle<()>,
}

enum Msg {
    Entry(Entry),
    Reopen,
    Stop,
}

/// What one line says: a [`TransferRecord`] and what the line needs beyond it.
struct Entry {
    at: SystemTime,
    upload: bool,
    anonymous: bool,
    user: String,
    ip: IpAddr,
    path: PathBuf,
    bytes: u64,
    duration: Duration,
    ascii: bool,
    complete: bool,
}

/// Opens (creates, appends to) the log at `path` and starts its writer thread.
pub fn open(path: &Path, is_anonymous: IsAnonymous) -> io::Result<(Xferlog, Writer)> {
    let file = open_file(path)?;
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let thread = {
        let (path, dropped) = (path.to_owned(), Arc::clone(&dropped));
        std::thread::Builder::new()
            .name("ringftpd-xferlog".into())
            .spawn(move || write_loop(path, file, rx, dropped))?
    };
    Ok((Xferlog { tx: tx.clone(), dropped, is_anonymous }, Writer { tx, thread }))
}

fn open_file(path: &Path) -> io::Result<File> {
    // Client addresses and names: not for every local user to read.
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

impl EventListener for Xferlog {
    fn on_event(&self, event: Event) {
        let (upload, record) = match event {
            Event::Upload(record) => (true, record),
            Event::Download(record) => (false, record),
            _ => return,
        };
        let TransferRecord { user, peer, path, bytes, duration, complete, ascii, .. } = record;
        let anonymous = (self.is_anonymous)(&user);
        let entry = Entry {
            at: SystemTime::now(),
            upload,
            anonymous,
            user,
            ip: peer.ip(),
            path,
            bytes,
            duration,
            ascii,
            complete,
        };
        if self.tx.try_send(Msg::Entry(entry)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reopens the log file at its path (after logrotate moved it away); cheap to clone.
#[derive(Clone)]
pub struct Reopener(SyncSender<Msg>);

impl Reopener {
    pub fn reopen(&self) {
        let _ = self.0.send(Msg::Reopen);
    }
}

impl Writer {
    /// A handle that reopens the file, for the SIGHUP handler.
    pub fn reopener(&self) -> Reopener {
        Reopener(self.tx.clone())
    }

    /// Writes what is queued, then stops the writer thread.
    pub fn finish(self) {
        if self.tx.send(Msg::Stop).is_ok() {
            let _ = self.thread.join();
        }
    }
}

fn write_loop(path: PathBuf, file: File, rx: Receiver<Msg>, dropped: Arc<AtomicU64>) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut line = String::with_capacity(256);
    let mut reported = 0;
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut stop = false;
        // Write everything queued, then flush once: one write(2) per burst.
        for msg in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match msg {
                Msg::Entry(entry) => {
                    line.clear();
                    format_line(&mut line, &entry);
                    check(&path, out.write_all(line.as_bytes()), &mut failing);
                }
                Msg::Reopen => {
                    check(&path, out.flush(), &mut failing);
                    match open_file(&path) {
                        Ok(file) => out = BufWriter::with_capacity(64 * 1024, file),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot reopen the transfer log; keeping the old file")
                        }
                    }
                }
                Msg::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        check(&path, out.flush(), &mut failing);
        let lost = dropped.load(Ordering::Relaxed);
        if lost > reported {
            tracing::warn!(lines = lost - reported, total = lost, "transfer log queue full: lines dropped");
            reported = lost;
        }
        if stop {
            break;
        }
    }
}

/// Logs a write error once, until writing works again.
fn check(path: &Path, result: io::Result<()>, failing: &mut bool) {
    match result {
        Ok(()) => *failing = false,
        Err(e) if !*failing => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the transfer log");
            *failing = true;
        }
        Err(_) => {}
    }
}

/// Appends the xferlog line for `entry`, newline included.
fn format_line(out: &mut String, entry: &Entry) {
    let r = entry;
    let seconds = r.duration.as_secs_f64().round().max(1.0) as u64;
    let name: String = r
        .path
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c })
        .collect();
    let user: String =
        r.user.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect();
    let _ = writeln!(
        out,
        "{} {seconds} {} {} {name} {} _ {} {} {user} ftp 0 * {}",
        Timestamp(entry.at),
        r.ip,
        r.bytes,
        if r.ascii { 'a' } else { 'b' },
        if entry.upload { 'i' } else { 'o' },
        if entry.anonymous { 'a' } else { 'r' },
        if r.complete { 'c' } else { 'i' },
    );
}

/// A time as ctime(3) spells it, in UTC: `Tue Dec  1 20:29:42 2026`.
struct Timestamp(SystemTime);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let secs = self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{} {} {day:2} {:02}:{:02}:{:02} {year}",
            DAYS[(days % 7) as usize],
            MONTHS[(month - 1) as usize],
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        )
    }
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> String {
        Timestamp(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
    }

    #[test]
    fn timestamps_are_ctime_in_utc() {
        assert_eq!(at(0), "Thu Jan  1 00:00:00 1970");
        // date -u -d @951782400: the leap day of a century leap year.
        assert_eq!(at(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(at(1_796_157_782), "Tue Dec  1 20:43:02 2026");
        assert_eq!(at(4_102_444_799), "Thu Dec 31 23:59:59 2099");
    }

    #[test]
    fn line_has_the_fourteen_fields() {
        let mut entry = Entry {
            at: UNIX_EPOCH + Duration::from_secs(1_796_157_782),
            upload: true,
            anonymous: false,
            user: "bob".into(),
            ip: "127.0.0.1".parse().unwrap(),
            path: "/my file.txt".into(),
            bytes: 100_000,
            duration: Duration::from_millis(200),
            ascii: false,
            complete: true,
        };
        let mut line = String::new();
        format_line(&mut line, &entry);
        assert_eq!(line, "Tue Dec  1 20:43:02 2026 1 127.0.0.1 100000 /my_file.txt b _ i r bob ftp 0 * c\n");
        (entry.upload, entry.anonymous, entry.ascii, entry.complete) = (false, true, true, false);
        entry.user = "anonymous".into();
        entry.ip = "::1".parse().unwrap();
        entry.duration = Duration::from_millis(2600);
        line.clear();
        format_line(&mut line, &entry);
        assert_eq!(line, "Tue Dec  1 20:43:02 2026 3 ::1 100000 /my_file.txt a _ o a anonymous ftp 0 * i\n");
    }
}
