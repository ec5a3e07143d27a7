//! What the session must do whatever the input, checked from outside it: who may ask for
//! which storage step or transfer, where an active data connection may go, and how many
//! final replies it owes. The driver calls these; none of them drives the session.

use std::net::SocketAddr;

use ringftp::proto::LineBuffer;
use ringftp::session::{FsRequest, Transfer, TransferKind};
use ringftp::User;

use crate::paths::check_virtual;

/// Asserts `user` may make the storage request `req`, and that its paths are virtual paths
/// below the root.
pub fn check_fs(user: &User, req: &FsRequest) {
    let p = &user.permissions;
    let allowed = match req {
        FsRequest::OpenRead { .. } | FsRequest::Hash { .. } => p.read,
        FsRequest::OpenWrite { .. } | FsRequest::SetModified { .. } | FsRequest::SetMode { .. } => p.write,
        FsRequest::MakeDir(_) => p.mkdir,
        FsRequest::RemoveDir(_) | FsRequest::RemoveFile(_) => p.delete,
        FsRequest::Rename { to, .. } => {
            check_virtual(to);
            p.rename
        }
        _ => true,
    };
    assert!(allowed, "{req:?} for {user:?}");
    check_virtual(req.path());
}

/// Asserts `user` may run the transfer `t` and that its path is below the root.
pub fn check_transfer(user: &User, t: &Transfer) {
    let p = &user.permissions;
    assert!(if t.kind.is_upload() { p.write } else { t.kind != TransferKind::Retr || p.read }, "{t:?}");
    check_virtual(&t.path);
}

/// Asserts an active data connection to `to` goes to the client (`peer`) on a port >= 1024,
/// in the family of the control connection (`local`), unless foreign addresses are allowed.
pub fn check_active(to: SocketAddr, peer: SocketAddr, local: SocketAddr, foreign: bool) {
    assert_eq!(to.is_ipv4(), local.is_ipv4(), "active to the other family");
    let ok = foreign || (to.ip() == peer.ip() && to.port() >= 1024);
    assert!(ok, "active to {to} for a client at {peer}");
}

/// The final replies owed: the greeting, one per command line (framed as the session frames
/// them, by a `LineBuffer` of its own), and one per 421 the session sends unasked.
pub struct Ledger {
    lines: LineBuffer,
    commands: u64,
    unsolicited: u64,
    finals: u64,
}

impl Ledger {
    pub fn new(max_line: usize) -> Ledger {
        Ledger { lines: LineBuffer::new(max_line), commands: 0, unsolicited: 0, finals: 0 }
    }

    /// Bytes the client sent.
    pub fn input(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
        while self.lines.next_line().is_some() {
            self.commands += 1;
        }
    }

    /// A final reply; `unasked` for a 421 that answers no command (a timeout, a shutdown).
    /// Asserts it is not one too many.
    pub fn reply(&mut self, unasked: bool) {
        self.finals += 1;
        self.unsolicited += u64::from(unasked);
        let owed = self.owed();
        assert!(self.finals <= owed, "{} final replies for {owed} owed", self.finals);
    }

    /// Whether every reply owed has been sent.
    pub fn settled(&self) -> bool {
        self.finals == self.owed()
    }

    pub fn finals(&self) -> u64 {
        self.finals
    }

    fn owed(&self) -> u64 {
        1 + self.commands + self.unsolicited
    }
}
