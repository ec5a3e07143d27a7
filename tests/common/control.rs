//! A bare control connection, for what no client exposes: unsolicited replies, timing, raw
//! bytes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw FTP control connection: one command line out, one (multi-line) reply in.
pub struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    /// Connects and reads the 220 greeting; every read is bounded by `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Control {
        let (c, greeting) = Control::connect_any(addr, timeout);
        let (code, text) = greeting.expect("greeting");
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// Reads one reply: `(code, all its text lines joined with \n)`.
    pub fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut first = String::new();
        if self.reader.read_line(&mut first)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let code: u16 = first
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not a reply: {first:?}")))?;
        let mut text = first.trim_end().to_string();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                text.push('\n');
                text.push_str(line.trim_end());
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    /// Sends one command line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line);
        self.reply().unwrap_or_else(|e| panic!("reply to {line:?}: {e}"))
    }

    pub fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    }

    /// Sends bytes as they are (no CRLF added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap_or_else(|e| panic!("send {bytes:?}: {e}"));
    }

    /// USER + PASS; asserts 230.
    pub fn login(&mut self, user: &str, pass: &str) {
        let (code, text) = self.cmd(&format!("USER {user}"));
        assert_eq!(code, 331, "USER: {text}");
        let (code, text) = self.cmd(&format!("PASS {pass}"));
        assert_eq!(code, 230, "PASS: {text}");
    }

    /// Whether the server closes the connection (EOF or reset) before the read timeout,
    /// with nothing more sent.
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 256];
        match self.reader.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    /// A control connection over an already connected stream; reads nothing yet (call
    /// [`Control::reply`] for the greeting). Every read and write is bounded by `timeout`.
    pub fn over(stream: TcpStream, timeout: Duration) -> Control {
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        Control { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    /// Connects and reads the first reply, whatever it is (220, or 421 from a full server).
    pub fn connect_any(addr: SocketAddr, timeout: Duration) -> (Control, io::Result<(u16, String)>) {
        let stream =
            TcpStream::connect_timeout(&addr, timeout).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let mut c = Control::over(stream, timeout);
        let first = c.reply();
        (c, first)
    }

    /// The control socket (to clone it, shut it down, or write without the panicking helpers).
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// EPSV, then a data connection to the announced port on the server's address.
    pub fn epsv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "EPSV: {text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|rest| rest.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text:?}"));
        let ip = self.writer.peer_addr().unwrap().ip();
        let timeout = self.writer.read_timeout().unwrap().unwrap_or(Duration::from_secs(20));
        let data = TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout)
            .unwrap_or_else(|e| panic!("data connection to port {port}: {e}"));
        data.set_read_timeout(Some(timeout)).unwrap();
        data.set_write_timeout(Some(timeout)).unwrap();
        data
    }

    /// TYPE I, EPSV, STOR `name` with `content`; the final reply (or the refusal).
    pub fn upload(&mut self, name: &str, content: &[u8]) -> (u16, String) {
        assert_eq!(self.cmd("TYPE I").0, 200);
        let mut data = self.epsv();
        let (code, text) = self.cmd(&format!("STOR {name}"));
        if code != 150 && code != 125 {
            return (code, text);
        }
        data.write_all(content).unwrap_or_else(|e| panic!("upload of {name}: {e}"));
        data.shutdown(std::net::Shutdown::Write).unwrap();
        drop(data);
        self.reply().unwrap_or_else(|e| panic!("reply after STOR {name}: {e}"))
    }

    /// TYPE I, EPSV, RETR `name`: the bytes (after a 226), or the reply that refused or
    /// ended it.
    pub fn download(&mut self, name: &str) -> Result<Vec<u8>, (u16, String)> {
        assert_eq!(self.cmd("TYPE I").0, 200);
        let mut data = self.epsv();
        let (code, text) = self.cmd(&format!("RETR {name}"));
        if code != 150 && code != 125 {
            return Err((code, text));
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).unwrap_or_else(|e| panic!("download of {name}: {e}"));
        let (code, text) = self.reply().unwrap_or_else(|e| panic!("reply after RETR {name}: {e}"));
        if code == 226 {
            Ok(content)
        } else {
            Err((code, text))
        }
    }
}
