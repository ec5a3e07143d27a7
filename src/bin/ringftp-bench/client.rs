//! A minimal FTP client for load generation: one control connection, replies parsed with
//! multi-line support, data connections in all four modes. Every wait is bounded by the
//! configured timeout, so a silent or broken server ends an operation, never the run.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use ringftp::proto::address;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};

/// How data connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Extended passive (RFC 2428): the client connects to the port the server names.
    Epsv,
    /// Passive: the client connects to the address and port the server names.
    Pasv,
    /// Extended active (RFC 2428): the server connects to the client.
    Eprt,
    /// Active: the server connects to the client (IPv4 only).
    Port,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Epsv => "epsv",
            Mode::Pasv => "pasv",
            Mode::Eprt => "eprt",
            Mode::Port => "port",
        }
    }
}

/// A reply: its code and text (the lines of a multi-line reply joined with `\n`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }
}

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The server answered with a reply that was not the expected one (4xx/5xx, usually);
    /// the control connection is still usable.
    Reply(Reply),
    /// Nothing happened for the configured timeout while waiting for this.
    Timeout(&'static str),
    /// I/O failed while doing this.
    Io(&'static str, io::Error),
    /// The server closed the control connection.
    Closed,
    /// The server said something this client cannot parse.
    Protocol(String),
    /// `--verify` found different data; the control connection is still usable.
    Verify(String),
}

impl Error {
    /// The key errors are counted under: the reply code, or the kind of failure.
    pub fn key(&self) -> String {
        match self {
            Error::Reply(r) => r.code.to_string(),
            Error::Timeout(_) => "timeout".into(),
            Error::Io(..) => "io".into(),
            Error::Closed => "closed".into(),
            Error::Protocol(_) => "protocol".into(),
            Error::Verify(_) => "verify".into(),
        }
    }

    /// Whether the control connection must be given up (and a new one made).
    pub fn breaks_connection(&self) -> bool {
        match self {
            // 421 is the server closing the session.
            Error::Reply(r) => r.code == 421,
            Error::Verify(_) => false,
            _ => true,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Reply(r) => write!(f, "{} {}", r.code, r.first_line()),
            Error::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Closed => f.write_str("the server closed the control connection"),
            Error::Protocol(msg) => write!(f, "protocol error: {msg}"),
            Error::Verify(msg) => write!(f, "verification failed: {msg}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Runs `fut` with the timeout; `what` names the wait in the error.
pub async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Io(what, e)),
        Err(_) => Err(Error::Timeout(what)),
    }
}

/// A pipe into /dev/null, for [`Control::download_discard`]; one per session.
pub struct Discard {
    read: OwnedFd,
    write: OwnedFd,
    null: File,
    size: usize,
}

impl Discard {
    pub fn new() -> io::Result<Discard> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // 1 MiB where allowed (pipe-max-size, the per-user pipe budget); else the default.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(1 << 20));
        let size = fcntl(&write, FcntlArg::F_GETPIPE_SZ)?.max(4096) as usize;
        let null = OpenOptions::new().write(true).open("/dev/null")?;
        Ok(Discard { read, write, null, size })
    }
}

/// The longest reply line accepted, so a broken server cannot grow the buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// A data connection in the making: passive ones are already connected, active ones wait
/// for the server on a listener.
pub enum Pending {
    Connected(TcpStream),
    Listening(TcpListener),
}

/// One control connection.
pub struct Control {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    timeout: Duration,
    local: SocketAddr,
    peer: SocketAddr,
}

impl Control {
    /// Connects and reads the greeting (a 120 "wait" may come before the 220).
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Control> {
        let stream = bounded(timeout, "connect", TcpStream::connect(addr)).await?;
        // Without it, delayed ACKs hold a reply back ~40 ms after each small command.
        stream.set_nodelay(true).map_err(|e| Error::Io("set TCP_NODELAY", e))?;
        let local = stream.local_addr().map_err(|e| Error::Io("local address", e))?;
        let mut c = Control { stream, buf: Vec::with_capacity(1024), start: 0, timeout, local, peer: addr };
        loop {
            let r = c.reply().await?;
            match r.code {
                220 => return Ok(c),
                100..=199 => continue,
                _ => return Err(Error::Reply(r)),
            }
        }
    }

    /// Sends one command line.
    pub async fn send(&mut self, cmd: &str) -> Result<()> {
        let mut line = Vec::with_capacity(cmd.len() + 2);
        line.extend_from_slice(cmd.as_bytes());
        line.extend_from_slice(b"\r\n");
        bounded(self.timeout, "sending a command", self.stream.write_all(&line)).await
    }

    /// Reads one reply. Cancel-safe: bytes of an unfinished reply stay in the buffer.
    pub async fn reply(&mut self) -> Result<Reply> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf[self.start..])? {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(reply);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.len() > MAX_LINE * 4 {
                return Err(Error::Protocol("reply too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = bounded(self.timeout, "a reply", self.stream.read(&mut chunk)).await?;
            if n == 0 {
                return Err(Error::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and reads its reply, which must be in `class` (2 for 2xx...).
    pub async fn expect(&mut self, cmd: &str, class: u16) -> Result<Reply> {
        self.send(cmd).await?;
        let r = self.reply().await?;
        if r.code / 100 == class {
            Ok(r)
        } else {
            Err(Error::Reply(r))
        }
    }

    /// USER and PASS; a server may accept USER alone (230) or ask for ACCT (332: refused).
    pub async fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        self.send(&format!("USER {user}")).await?;
        let r = self.reply().await?;
        match r.code {
            230 => return Ok(()),
            331 => {}
            _ => return Err(Error::Reply(r)),
        }
        self.send(&format!("PASS {pass}")).await?;
        let r = self.reply().await?;
        match r.code {
            230 | 202 => Ok(()),
            _ => Err(Error::Reply(r)),
        }
    }

    /// QUIT and wait for the 221 (or the close).
    pub async fn quit(mut self) -> Result<()> {
        self.send("QUIT").await?;
        match self.reply().await {
            Ok(r) if r.code == 221 => Ok(()),
            Ok(r) => Err(Error::Reply(r)),
            // Some servers close right away; that is a goodbye too.
            Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets up the data connection for the next transfer command.
    pub async fn prepare_data(&mut self, mode: Mode) -> Result<Pending> {
        match mode {
            Mode::Epsv => {
                let r = self.expect("EPSV", 2).await?;
                let port = address::parse_epsv_reply(r.text.as_bytes())
                    .map_err(|e| Error::Protocol(format!("EPSV reply {:?}: {e}", r.text)))?;
                let addr = SocketAddr::new(self.peer.ip(), port);
                let s = bounded(self.timeout, "data connect", TcpStream::connect(addr)).await?;
                Ok(Pending::Connected(s))
            }
            Mode::Pasv => {
                let r = self.expect("PASV", 2).await?;
                let addr = address::parse_pasv_reply(r.text.as_bytes())
                    .map_err(|e| Error::Protocol(format!("PASV reply {:?}: {e}", r.text)))?;
                let s =
                    bounded(self.timeout, "data connect", TcpStream::connect(SocketAddr::V4(addr))).await?;
                Ok(Pending::Connected(s))
            }
            Mode::Eprt | Mode::Port => {
                let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
                    .await
                    .map_err(|e| Error::Io("data listen", e))?;
                let at = listener.local_addr().map_err(|e| Error::Io("data listen", e))?;
                let cmd = match (mode, at) {
                    (Mode::Port, SocketAddr::V4(v4)) => {
                        format!("PORT {}", address::format_port(v4))
                    }
                    (Mode::Port, _) => return Err(Error::Protocol("PORT needs IPv4; use EPRT".into())),
                    _ => format!("EPRT {}", address::format_eprt(at)),
                };
                self.expect(&cmd, 2).await?;
                Ok(Pending::Listening(listener))
            }
        }
    }

    /// Sends a transfer command on a prepared data connection and returns the open data
    /// stream once the server said 1xx (and, in active mode, connected).
    async fn start_transfer(&mut self, pending: Pending, cmd: &str) -> Result<TcpStream> {
        self.send(cmd).await?;
        let r = self.reply().await?;
        if r.code / 100 != 1 {
            return Err(Error::Reply(r));
        }
        match pending {
            Pending::Connected(s) => Ok(s),
            Pending::Listening(listener) => {
                // The server may give up connecting and say so (425) instead. Accept comes
                // first: a fast server may have connected, sent everything and replied 226.
                let timeout = self.timeout;
                tokio::select! {
                    biased;
                    accepted = bounded(timeout, "the server's data connection", listener.accept()) => {
                        Ok(accepted?.0)
                    }
                    reply = self.reply() => Err(match reply {
                        Ok(r) => Error::Reply(r),
                        Err(e) => e,
                    }),
                }
            }
        }
    }

    /// The final reply of a transfer: 2xx, or the error.
    async fn finish_transfer(&mut self) -> Result<()> {
        let r = self.reply().await?;
        if r.code / 100 == 2 {
            Ok(())
        } else {
            Err(Error::Reply(r))
        }
    }

    /// Runs a download command (RETR, LIST, MLSD...), handing each chunk to `on_data`.
    /// Returns the bytes received.
    pub async fn download(
        &mut self,
        mode: Mode,
        cmd: &str,
        buf: &mut [u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<u64> {
        let pending = self.prepare_data(mode).await?;
        let mut data = self.start_transfer(pending, cmd).await?;
        let mut total = 0u64;
        loop {
            let n = bounded(self.timeout, "data", data.read(buf)).await?;
            if n == 0 {
                break;
            }
            on_data(&buf[..n]);
            total += n as u64;
        }
        drop(data);
        self.finish_transfer().await?;
        Ok(total)
    }

    /// Runs a download command like [`Control::download`], but splices the data into
    /// `sink` (/dev/null) instead of reading it: the client then costs the server's CPU
    /// budget on a shared machine only its TCP receive work, not a copy of every byte.
    /// `on_bytes` gets each chunk's length.
    pub async fn download_discard(
        &mut self,
        mode: Mode,
        cmd: &str,
        sink: &Discard,
        mut on_bytes: impl FnMut(usize),
    ) -> Result<u64> {
        let pending = self.prepare_data(mode).await?;
        let data = self.start_transfer(pending, cmd).await?;
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        let mut total = 0u64;
        loop {
            bounded(self.timeout, "data", data.readable()).await?;
            let res = data.try_io(Interest::READABLE, || {
                splice(data.as_fd(), None, sink.write.as_fd(), None, sink.size, flags)
                    .map_err(io::Error::from)
            });
            let mut n = match res {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Error::Io("data", e)),
            };
            on_bytes(n);
            total += n as u64;
            while n > 0 {
                match splice(sink.read.as_fd(), None, sink.null.as_fd(), None, n, flags) {
                    Ok(0) => return Err(Error::Io("/dev/null", io::ErrorKind::WriteZero.into())),
                    Ok(m) => n -= m,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(Error::Io("/dev/null", e.into())),
                }
            }
        }
        drop(data);
        self.finish_transfer().await?;
        Ok(total)
    }

    /// Runs an upload command (STOR...) of `size` bytes; `fill` gets each chunk's offset and
    /// may rewrite it (or leave the buffer as it is, for speed). Returns the bytes sent.
    pub async fn upload(
        &mut self,
        mode: Mode,
        cmd: &str,
        size: u64,
        buf: &mut [u8],
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> Result<u64> {
        let pending = self.prepare_data(mode).await?;
        let mut data = self.start_transfer(pending, cmd).await?;
        let mut sent = 0u64;
        while sent < size {
            let n = (size - sent).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            fill(sent, chunk);
            bounded(self.timeout, "data", data.write_all(chunk)).await?;
            sent += n as u64;
        }
        bounded(self.timeout, "data", data.shutdown()).await?;
        drop(data);
        self.finish_transfer().await?;
        Ok(sent)
    }
}

/// Parses one complete reply at the start of `buf`; `None` if more bytes are needed.
/// Returns the reply and the bytes it used.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut text = String::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(Error::Protocol("reply line too long".into()));
            }
            return Ok(None);
        };
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        let lead = line
            .get(..3)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| d.iter().fold(0u16, |a, &b| a * 10 + u16::from(b - b'0')));
        let sep = line.get(3).copied();
        let body = String::from_utf8_lossy(line.get(4..).unwrap_or_default());
        match code {
            None => {
                let Some(c) = lead.filter(|c| (100..600).contains(c)) else {
                    return Err(Error::Protocol(format!("not a reply: {:?}", String::from_utf8_lossy(line))));
                };
                text.push_str(&body);
                match sep {
                    Some(b'-') => code = Some(c),
                    _ => return Ok(Some((Reply { code: c, text }, pos))),
                }
            }
            Some(c) => {
                // RFC 959 §4.2: the reply ends at a line with the same code and a space.
                if lead == Some(c) && sep != Some(b'-') {
                    text.push('\n');
                    text.push_str(&body);
                    return Ok(Some((Reply { code: c, text }, pos)));
                }
                text.push('\n');
                text.push_str(&String::from_utf8_lossy(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_replies() {
        let (r, used) = parse_reply(b"220 hi\r\n230 x").unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str(), used), (220, "hi", 8));
        assert!(parse_reply(b"211-Features:\r\n EPSV\r\n").unwrap().is_none());
        let (r, _) = parse_reply(b"211-Features:\r\n EPSV\r\n211-not end\r\n211 End\r\n").unwrap().unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(r.text, "Features:\n EPSV\n211-not end\nEnd");
        let (r, _) = parse_reply(b"200\r\n").unwrap().unwrap();
        assert_eq!(r.code, 200);
        assert!(parse_reply(b"hello\r\n").is_err());
    }
}
