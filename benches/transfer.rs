//! Loopback transfer throughput of an in-process server, with the splice data path and with
//! the userspace copy: RETR and STOR of a 64 MiB file on tmpfs (or the temp dir), measured by
//! a plain blocking client (EPSV, one reused buffer), so the numbers are the server's.
//!
//! A failed transfer stops the bench with a message: a number from a broken run is worse
//! than none.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ringftp::{FsStorage, Server, ServerHandle, User, UserList};

const SIZE: u64 = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

/// A directory for the test file, on tmpfs when there is one; removed on drop.
struct Root(PathBuf);

impl Root {
    fn new() -> io::Result<Root> {
        let base =
            if PathBuf::from("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("ringftp-bench-transfer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        // Non-repeating data, so nothing along the way can shortcut it.
        let mut data = vec![0u8; SIZE as usize];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in data.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        std::fs::write(dir.join("big.bin"), &data)?;
        Ok(Root(dir))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A blocking FTP client: just enough for EPSV + RETR/STOR.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    ip: std::net::IpAddr,
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Client {
    fn connect(addr: SocketAddr, user: &str, pass: &str) -> io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        let mut c = Client { reader: BufReader::new(s.try_clone()?), writer: s, ip: addr.ip() };
        c.expect(None, 220)?;
        c.expect(Some(&format!("USER {user}")), 331)?;
        c.expect(Some(&format!("PASS {pass}")), 230)?;
        c.expect(Some("TYPE I"), 200)?;
        Ok(c)
    }

    /// Reads a reply (multi-line aware); returns its code and last line.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut line = String::new();
        let mut code = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(other("control connection closed".into()));
            }
            let c: Option<u16> = line.get(..3).and_then(|d| d.parse().ok());
            let sep = line.as_bytes().get(3).copied();
            match (code, c) {
                (None, Some(c)) if sep == Some(b'-') => code = Some(c),
                (None, Some(c)) => return Ok((c, line.trim_end().to_string())),
                (Some(want), Some(c)) if c == want && sep != Some(b'-') => {
                    return Ok((c, line.trim_end().to_string()))
                }
                (None, None) => return Err(other(format!("not a reply: {line:?}"))),
                _ => {}
            }
        }
    }

    fn expect(&mut self, cmd: Option<&str>, want: u16) -> io::Result<String> {
        if let Some(cmd) = cmd {
            self.writer.write_all(format!("{cmd}\r\n").as_bytes())?;
        }
        let (code, text) = self.reply()?;
        if code == want {
            Ok(text)
        } else {
            Err(other(format!("{cmd:?}: expected {want}, got {text:?}")))
        }
    }

    fn passive(&mut self) -> io::Result<TcpStream> {
        let text = self.expect(Some("EPSV"), 229)?;
        let port = ringftp::proto::address::parse_epsv_reply(text.as_bytes())
            .map_err(|e| other(format!("EPSV reply {text:?}: {e}")))?;
        let s = TcpStream::connect_timeout(&SocketAddr::new(self.ip, port), TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        Ok(s)
    }

    fn retr(&mut self, path: &str, buf: &mut [u8]) -> io::Result<u64> {
        let mut data = self.passive()?;
        self.expect(Some(&format!("RETR {path}")), 150)?;
        let mut total = 0u64;
        loop {
            let n = data.read(buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        drop(data);
        self.expect(None, 226)?;
        Ok(total)
    }

    fn stor(&mut self, path: &str, buf: &[u8], size: u64) -> io::Result<()> {
        let mut data = self.passive()?;
        self.expect(Some(&format!("STOR {path}")), 150)?;
        let mut sent = 0u64;
        while sent < size {
            let n = (size - sent).min(buf.len() as u64) as usize;
            data.write_all(&buf[..n])?;
            sent += n as u64;
        }
        data.shutdown(std::net::Shutdown::Write)?;
        drop(data);
        self.expect(None, 226)?;
        Ok(())
    }
}

fn start(root: &Root, splice: bool) -> io::Result<(ServerHandle, SocketAddr)> {
    let storage = FsStorage::new(&root.0)?;
    let users = UserList::new().user_with_password(User::new("bob"), b"pw").anonymous("");
    let server = Server::builder(storage, users)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .cores(1)
        .splice(splice)
        .build()
        .map_err(|e| other(e.to_string()))?;
    let handle = server.start().map_err(|e| other(e.to_string()))?;
    let addr = *handle.local_addrs().first().ok_or_else(|| other("no listen address".into()))?;
    Ok((handle, addr))
}

fn bench(c: &mut Criterion) {
    let root = Root::new().unwrap_or_else(|e| panic!("cannot make the 64 MiB file: {e}"));
    let mut g = c.benchmark_group("transfer");
    g.throughput(Throughput::Bytes(SIZE))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut buf = vec![0u8; 256 << 10];
    for (splice, name) in [(true, "splice"), (false, "copy")] {
        let (handle, addr) = start(&root, splice).unwrap_or_else(|e| panic!("cannot start the server: {e}"));
        let mut client =
            Client::connect(addr, "bob", "pw").unwrap_or_else(|e| panic!("cannot log in to {addr}: {e}"));
        g.bench_function(format!("retr-64MiB/{name}"), |b| {
            b.iter(|| {
                let n = client.retr("big.bin", &mut buf).unwrap_or_else(|e| panic!("RETR failed: {e}"));
                assert_eq!(n, SIZE, "short RETR");
            })
        });
        g.bench_function(format!("stor-64MiB/{name}"), |b| {
            b.iter(|| client.stor("upload.bin", &buf, SIZE).unwrap_or_else(|e| panic!("STOR failed: {e}")))
        });
        let _ = client.expect(Some("QUIT"), 221);
        handle.shutdown();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
