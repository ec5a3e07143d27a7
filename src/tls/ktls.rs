//! kTLS: after rustls's handshake, hand the record keys to the kernel, so the socket carries
//! plaintext for the application and splice works on encrypted data connections.
//!
//! Linux 4.13+ (TX), 4.17+ (RX), TLS 1.3 from 5.1, ChaCha20-Poly1305 from 5.11; Debian 12's
//! 6.1 has all of them (`CONFIG_TLS=m`). [`available`] probes once per process by attaching the
//! `tls` upper-layer protocol to a connected loopback socket.
//!
//! Why not the `ktls` crate: it wants its own stream wrapper and re-implements the record
//! reading we need anyway, and takes a rustls/tokio-rustls pair of its own choosing; the
//! kernel interface is three setsockopt calls, written out here against `libc`'s structs.
//!
//! The sequence is:
//! 1. Accept with [`Corked`] around the socket, so rustls never reads past the last
//!    handshake record (bytes it read beyond would be lost when the keys leave it).
//! 2. [`enable`]: attaches the ULP, extracts the secrets (rustls must have been configured
//!    with `enable_secret_extraction`, which [`super::TlsAcceptor`] does when kTLS is on),
//!    sets TLS_TX and TLS_RX. Any plaintext rustls had already decrypted is returned.
//! 3. Read and write (or splice) plaintext. A record that is not application data stops
//!    `read`/`splice` (EIO / EINVAL); read it with [`recv_record`]. Close with
//!    [`send_close_notify`].
//!
//! Limits (documented rather than handled, as rustls's kernel API is not used):
//! - TLS 1.3 KeyUpdate from the peer cannot be followed (no rustls state is kept);
//!   [`recv_record`] reports it and the caller must abort the transfer. FTP clients do not
//!   send it on data connections in practice.
//! - We never rekey TX, so one connection must stay under the AEAD limit (2^24.5 records
//!   for AES-GCM in TLS 1.3, ~380 GB at 16 KiB records); a caller sending more should use
//!   rustls instead.
//! - The server sends its NewSessionTickets during the handshake (tokio-rustls flushes them
//!   before returning), so none are pending when the keys leave rustls.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};

use rustls::{ConnectionTrafficSecrets, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::TlsStream;

/// Whether the kernel has kTLS; probed once per process.
pub fn available() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| match probe() {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("kTLS unavailable ({e}); encrypted transfers use rustls");
            false
        }
    })
}

/// Attaches the `tls` ULP to a connected loopback socket. ENOENT (no module),
/// ENOPROTOOPT or EOPNOTSUPP mean no kTLS.
fn probe() -> io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let _server = listener.accept()?;
    set_ulp(client.as_raw_fd())
}

fn set_ulp(fd: RawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: fd is an open socket; the option value is a valid buffer of the given length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A socket wrapper that, while corked, lets each read return at most the rest of the
/// current TLS record, so a handshake stops exactly at a record boundary. It passes bytes
/// through untouched; it only shortens reads.
#[derive(Debug)]
pub struct Corked<IO> {
    io: IO,
    state: Cork,
}

#[derive(Debug, Clone, Copy)]
enum Cork {
    Header { header: [u8; 5], have: usize },
    Body { left: usize },
    Open,
}

impl<IO> Corked<IO> {
    /// Wraps `io`, corked.
    pub fn new(io: IO) -> Self {
        Corked { io, state: Cork::Header { header: [0; 5], have: 0 } }
    }

    /// Stops limiting reads (for a connection that stays on rustls).
    pub fn uncork(&mut self) {
        self.state = Cork::Open;
    }

    /// The socket.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The socket, unwrapped.
    pub fn into_inner(self) -> IO {
        self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Corked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = match self.state {
            Cork::Open => return Pin::new(&mut self.io).poll_read(cx, buf),
            Cork::Header { have, .. } => 5 - have,
            Cork::Body { left } => left,
        };
        let unfilled = buf.initialize_unfilled();
        let n = want.min(unfilled.len());
        let Some(dst) = unfilled.get_mut(..n) else { return Poll::Ready(Ok(())) };
        let mut sub = ReadBuf::new(dst);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut sub))?;
        let got = sub.filled().len();
        let bytes: Vec<u8> =
            if matches!(self.state, Cork::Header { .. }) { sub.filled().to_vec() } else { Vec::new() };
        buf.advance(got);
        self.state = match self.state {
            _ if got == 0 => Cork::Open,
            Cork::Header { mut header, have } => {
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = header.get_mut(have + i) {
                        *slot = *b;
                    }
                }
                if have + got < 5 {
                    Cork::Header { header, have: have + got }
                } else {
                    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
                    if len == 0 {
                        Cork::Header { header: [0; 5], have: 0 }
                    } else {
                        Cork::Body { left: len }
                    }
                }
            }
            Cork::Body { left } if left > got => Cork::Body { left: left - got },
            Cork::Body { .. } => Cork::Header { header: [0; 5], have: 0 },
            Cork::Open => Cork::Open,
        };
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Corked<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A socket whose records the kernel now encrypts and decrypts.
#[derive(Debug)]
#[non_exhaustive]
pub struct KtlsSocket {
    /// The socket: reads and writes carry plaintext.
    pub tcp: TcpStream,
    /// Plaintext rustls had decrypted before the handoff (the first bytes of the stream).
    pub early: Vec<u8>,
}

/// Why [`enable`] failed. When `stream` is Some, nothing was changed and the connection can
/// go on with rustls; when None, the keys had left rustls and the connection must be closed.
#[derive(Debug)]
pub struct EnableError {
    /// What failed.
    pub error: io::Error,
    /// The untouched stream, when the caller can fall back to rustls.
    pub stream: Option<Box<TlsStream<Corked<TcpStream>>>>,
}

/// Whether the kernel takes this version and cipher suite (what [`enable`] checks first):
/// the suite is one kTLS knows, and this kernel accepted its keys on a probe socket (once per
/// version and cipher per process). A kernel can have kTLS without a cipher's module (or
/// predate TLS 1.3 or ChaCha20); asking first keeps the fallback to rustls lossless, as
/// [`enable`] can no longer go back once the secrets have left rustls.
pub fn supported(conn: &rustls::ServerConnection) -> bool {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => Version::Tls12,
        Some(ProtocolVersion::TLSv1_3) => Version::Tls13,
        _ => return false,
    };
    let Some(suite) = conn.negotiated_cipher_suite() else { return false };
    use rustls::CipherSuite::*;
    let cipher = match suite.suite() {
        TLS13_AES_128_GCM_SHA256
        | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Cipher::Aes128Gcm,
        TLS13_AES_256_GCM_SHA384
        | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Cipher::Aes256Gcm,
        TLS13_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Cipher::Chacha20Poly1305,
        _ => return false,
    };
    kernel_takes(version, cipher)
}

#[derive(Debug, Clone, Copy)]
enum Version {
    Tls12,
    Tls13,
}

impl Version {
    fn wire(self) -> u16 {
        match self {
            Version::Tls12 => libc::TLS_1_2_VERSION,
            Version::Tls13 => libc::TLS_1_3_VERSION,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

/// Sets zero keys of this version and cipher, both directions, on a fresh loopback socket,
/// and keeps that socket open for the life of the process: its kernel TLS context holds the
/// cipher's crypto module (e.g. `chacha20poly1305.ko`), so the module cannot be unloaded
/// after this said yes, and a real connection's TLS_TX/TLS_RX, which come after the secrets
/// have left rustls and cannot fall back, cannot fail for want of it. A cipher the kernel
/// lacks at the probe stays on rustls for this process.
fn kernel_takes(version: Version, cipher: Cipher) -> bool {
    static TAKES: [OnceLock<Option<std::net::TcpStream>>; 6] = [const { OnceLock::new() }; 6];
    let slot = version as usize * 3 + cipher as usize;
    let Some(once) = TAKES.get(slot) else { return false };
    let pin = once.get_or_init(|| {
        let probe = || -> io::Result<std::net::TcpStream> {
            if !available() {
                return Err(io::ErrorKind::Unsupported.into());
            }
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let client = std::net::TcpStream::connect(listener.local_addr()?)?;
            let _server = listener.accept()?;
            let fd = client.as_raw_fd();
            set_ulp(fd)?;
            let key = [0u8; 32];
            let key = key.get(..cipher_key_len(cipher)).unwrap_or_default();
            set_crypto(fd, libc::TLS_TX, version.wire(), cipher, key, &[0; 12], 0)?;
            set_crypto(fd, libc::TLS_RX, version.wire(), cipher, key, &[0; 12], 0)?;
            Ok(client)
        };
        match probe() {
            Ok(pin) => Some(pin),
            Err(e) => {
                tracing::debug!(?version, ?cipher, "kTLS does not take this cipher ({e}); rustls serves it");
                None
            }
        }
    });
    pin.is_some()
}

fn cipher_key_len(cipher: Cipher) -> usize {
    match cipher {
        Cipher::Aes128Gcm => 16,
        Cipher::Aes256Gcm | Cipher::Chacha20Poly1305 => 32,
    }
}

/// Moves a finished server handshake (accepted over [`Corked`]) into the kernel: TX and RX.
pub fn enable(stream: TlsStream<Corked<TcpStream>>) -> Result<KtlsSocket, EnableError> {
    let fd = stream.get_ref().0.get_ref().as_raw_fd();
    if !supported(stream.get_ref().1) {
        let error = io::Error::new(io::ErrorKind::Unsupported, "TLS version or cipher not supported by kTLS");
        return Err(EnableError { error, stream: Some(Box::new(stream)) });
    }
    if stream.get_ref().1.wants_write() {
        let error = io::Error::other("TLS records still to be sent; flush first");
        return Err(EnableError { error, stream: Some(Box::new(stream)) });
    }
    // The ULP alone changes nothing on the wire, so a failure here still leaves rustls usable.
    if let Err(error) = set_ulp(fd) {
        return Err(EnableError { error, stream: Some(Box::new(stream)) });
    }
    let (io, mut conn) = stream.into_inner();
    let fatal = |error: io::Error| EnableError { error, stream: None };
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => libc::TLS_1_3_VERSION,
        _ => libc::TLS_1_2_VERSION,
    };
    let mut early = Vec::new();
    // Decrypted records rustls holds would otherwise be lost with it.
    loop {
        let mut chunk = [0u8; 4096];
        match io::Read::read(&mut conn.reader(), &mut chunk) {
            Ok(0) => break,
            Ok(n) => early.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(_) => break,
        }
    }
    let secrets = conn.dangerous_extract_secrets().map_err(|e| fatal(io::Error::other(e)))?;
    set_keys(fd, libc::TLS_TX, version, secrets.tx).map_err(fatal)?;
    set_keys(fd, libc::TLS_RX, version, secrets.rx).map_err(fatal)?;
    Ok(KtlsSocket { tcp: io.into_inner(), early })
}

fn set_keys(
    fd: RawFd,
    direction: libc::c_int,
    version: u16,
    (seq, secrets): (u64, ConnectionTrafficSecrets),
) -> io::Result<()> {
    let (cipher, key, iv) = match &secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (Cipher::Chacha20Poly1305, key, iv),
        _ => return Err(io::Error::new(io::ErrorKind::Unsupported, "cipher not supported by kTLS")),
    };
    set_crypto(fd, direction, version, cipher, key.as_ref(), iv.as_ref(), seq)
}

fn set_crypto(
    fd: RawFd,
    direction: libc::c_int,
    version: u16,
    cipher: Cipher,
    key: &[u8],
    iv: &[u8],
    seq: u64,
) -> io::Result<()> {
    let rec_seq = seq.to_be_bytes();
    let info = |cipher_type| libc::tls_crypto_info { version, cipher_type };
    // rustls's 12-byte IV is the kernel's 4-byte salt followed by its 8-byte IV (for GCM, in
    // both TLS versions); ChaCha20 takes all 12 as IV.
    match cipher {
        Cipher::Aes128Gcm => {
            let v = libc::tls12_crypto_info_aes_gcm_128 {
                info: info(libc::TLS_CIPHER_AES_GCM_128),
                iv: split(iv, 4)?,
                key: copy(key)?,
                salt: copy(iv.get(..4).unwrap_or_default())?,
                rec_seq,
            };
            setsockopt_tls(fd, direction, &v)
        }
        Cipher::Aes256Gcm => {
            let v = libc::tls12_crypto_info_aes_gcm_256 {
                info: info(libc::TLS_CIPHER_AES_GCM_256),
                iv: split(iv, 4)?,
                key: copy(key)?,
                salt: copy(iv.get(..4).unwrap_or_default())?,
                rec_seq,
            };
            setsockopt_tls(fd, direction, &v)
        }
        Cipher::Chacha20Poly1305 => {
            let v = libc::tls12_crypto_info_chacha20_poly1305 {
                info: info(libc::TLS_CIPHER_CHACHA20_POLY1305),
                iv: copy(iv)?,
                key: copy(key)?,
                salt: [0; 0],
                rec_seq,
            };
            setsockopt_tls(fd, direction, &v)
        }
    }
}

fn copy<const N: usize>(bytes: &[u8]) -> io::Result<[u8; N]> {
    bytes.try_into().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unexpected key or IV length"))
}

fn split<const N: usize>(bytes: &[u8], skip: usize) -> io::Result<[u8; N]> {
    copy(bytes.get(skip..).unwrap_or_default())
}

fn setsockopt_tls<T>(fd: RawFd, direction: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: fd is an open socket; value points to a plain C struct of size_of::<T>() bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TLS,
            direction,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// TLS record content types (RFC 8446 §5.1).
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// Sends a close_notify alert through kTLS (an alert record, not data), before shutdown.
pub fn send_close_notify(fd: RawFd) -> io::Result<()> {
    // Level 1 (warning), description 0 (close_notify).
    let alert = [1u8, 0u8];
    send_record(fd, ALERT, &alert)
}

fn send_record(fd: RawFd, record_type: u8, data: &[u8]) -> io::Result<()> {
    // cmsg buffer for one byte of payload, u64-aligned.
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: msg_control points to cbuf, which is at least CMSG_SPACE(1) bytes and aligned;
    // CMSG_FIRSTHDR/CMSG_DATA stay inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = record_type;
    }
    // SAFETY: msg and everything it points to outlive the call.
    let n = unsafe { libc::sendmsg(fd, &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A record [`recv_record`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// `n` bytes of application data were put into the buffer.
    Data(usize),
    /// The peer's close_notify: the end of the stream.
    CloseNotify,
    /// Another alert (level, description): the peer aborted.
    Alert(u8, u8),
    /// A post-handshake message (KeyUpdate, NewSessionTicket): not supported, abort.
    Handshake,
}

/// Reads one record with its type, for when `read` or `splice` stopped at a record that is
/// not application data (EIO from read, EINVAL from splice on kernels up to 6.x).
/// The socket may be non-blocking; WouldBlock is returned as an error then.
pub fn recv_record(fd: RawFd, buf: &mut [u8]) -> io::Result<Record> {
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: msg points to buf and cbuf, both live and of the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    let mut record_type = APPLICATION_DATA;
    // SAFETY: the kernel filled msg_control up to msg_controllen; CMSG_* walk inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_TLS
            && (*cmsg).cmsg_type == libc::TLS_GET_RECORD_TYPE
        {
            record_type = *libc::CMSG_DATA(cmsg);
        }
    }
    Ok(match record_type {
        ALERT => match (buf.first(), buf.get(1)) {
            (_, Some(0)) if n >= 2 => Record::CloseNotify,
            (Some(&level), Some(&desc)) if n >= 2 => Record::Alert(level, desc),
            _ => Record::Alert(2, 0),
        },
        HANDSHAKE => Record::Handshake,
        _ => Record::Data(n),
    })
}
