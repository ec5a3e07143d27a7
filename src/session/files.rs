//! File and directory commands (RFC 959 §4.1.1, §4.1.3; RFC 3659): path resolution, the
//! storage requests they turn into, and the transfers they start.

use std::path::Path;
use std::time::SystemTime;

use super::{Action, DataChannel, FsOutcome, Session, Waiting};
use crate::auth::Permissions;
use crate::proto::command::{trim, Command, TransferType};
use crate::proto::reply::{code, quote_path, Reply};
use crate::proto::{listing, path};
use crate::storage::{DirEntry, ErrorKind};

/// A storage operation the session needs. Paths are virtual (absolute, normalised);
/// [`FsRequest::storage_path`] gives what a [`crate::Storage`] method takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsRequest {
    /// Metadata of a path; answer [`FsOutcome::Metadata`].
    Metadata(Vec<u8>),
    /// A directory's entries, or the one entry of a file (named by its last component);
    /// answer [`FsOutcome::Listing`].
    List(Vec<u8>),
    /// Create a directory.
    MakeDir(Vec<u8>),
    /// Remove an empty directory.
    RemoveDir(Vec<u8>),
    /// Remove a file.
    RemoveFile(Vec<u8>),
    /// Rename `from` to `to`.
    Rename {
        /// The RNFR path.
        from: Vec<u8>,
        /// The RNTO path.
        to: Vec<u8>,
    },
}

impl FsRequest {
    /// The (first) path as a storage backend takes it.
    pub fn storage_path(&self) -> &Path {
        match self {
            FsRequest::Metadata(p)
            | FsRequest::List(p)
            | FsRequest::MakeDir(p)
            | FsRequest::RemoveDir(p)
            | FsRequest::RemoveFile(p)
            | FsRequest::Rename { from: p, .. } => path::storage_path(p),
        }
    }
}

/// What a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferKind {
    /// RETR: file to client.
    Retr,
    /// STOR: client to file (REST offset: resume).
    Stor,
    /// APPE: client to the end of a file.
    Appe,
    /// STOU: client to a new file with a unique name.
    Stou,
    /// LIST: `ls -l` lines.
    List,
    /// NLST: names.
    Nlst,
    /// MLSD: MLSx facts lines.
    Mlsd,
}

impl TransferKind {
    /// Whether bytes flow from the client to storage.
    pub fn is_upload(self) -> bool {
        matches!(self, TransferKind::Stor | TransferKind::Appe | TransferKind::Stou)
    }

    /// Whether this is a directory listing.
    pub fn is_listing(self) -> bool {
        matches!(self, TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd)
    }
}

/// A transfer for the engine to run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// What to do.
    pub kind: TransferKind,
    /// The virtual path of the file or directory.
    pub path: Vec<u8>,
    /// The REST offset (0 if none).
    pub offset: u64,
    /// TYPE A: convert line ends (LF on disk, CRLF on the wire).
    pub ascii: bool,
    /// How to make the data connection.
    pub channel: DataChannel,
    /// Whether the user may write (for MLSD `perm` facts).
    pub writable: bool,
}

impl Transfer {
    /// The path as a storage backend takes it.
    pub fn storage_path(&self) -> &Path {
        path::storage_path(&self.path)
    }

    /// The last component of the path (for replies and single-file listings).
    pub fn file_name(&self) -> &[u8] {
        path::file_name(&self.path)
    }
}

/// Why the session asked for a storage operation, which decides the reply.
#[derive(Debug)]
pub(super) enum FsPurpose {
    Cwd(Vec<u8>),
    Size,
    Mdtm,
    Rnfr(Vec<u8>),
    Rnto,
    Mlst(Vec<u8>),
    Stat,
    Mkd(Vec<u8>),
    Rmd,
    Dele,
}

/// LIST and NLST arguments may start with `ls` options (`-la`); they are ignored, as vsftpd
/// does, and the rest is the path.
fn strip_ls_options(arg: Option<&[u8]>) -> Option<&[u8]> {
    let mut arg = trim(arg?);
    while arg.first() == Some(&b'-') {
        match arg.iter().position(|&b| b == b' ') {
            Some(i) => arg = trim(arg.get(i + 1..).unwrap_or_default()),
            None => return None,
        }
    }
    (!arg.is_empty()).then_some(arg)
}

impl Session {
    /// Resolves a path argument; on failure queues 553 and returns None.
    fn resolve(&mut self, arg: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match path::resolve(&self.cwd, arg, &mut out) {
            Ok(()) => Some(out),
            Err(_) => {
                self.reply_static(code::BAD_FILE_NAME, "File name not allowed.");
                None
            }
        }
    }

    fn writable(&self) -> bool {
        self.user().is_some_and(|u| u.permissions.write)
    }

    /// Refuses what the user's permissions do not allow; returns whether it may go on.
    fn allowed(&mut self, check: fn(&Permissions) -> bool) -> bool {
        if self.user().is_some_and(|u| check(&u.permissions)) {
            true
        } else {
            self.reply_static(code::FILE_NOT_FOUND, "Permission denied.");
            false
        }
    }

    fn fs(&mut self, purpose: FsPurpose, request: FsRequest) {
        self.waiting = Waiting::Fs(purpose);
        self.actions.push_back(Action::Fs(request));
    }

    pub(super) fn file_command(&mut self, cmd: Command<'_>, rename_from: Option<Vec<u8>>) {
        match cmd {
            Command::Pwd => {
                let mut text = Vec::with_capacity(self.cwd.len() + 32);
                quote_path(&self.cwd, &mut text);
                text.extend_from_slice(b" is the current directory");
                self.reply(Reply::owned(code::PATH_CREATED, text));
            }
            Command::Cwd(arg) => {
                if let Some(p) = self.resolve(arg) {
                    self.fs(FsPurpose::Cwd(p.clone()), FsRequest::Metadata(p));
                }
            }
            Command::Cdup => {
                if let Some(p) = self.resolve(b"..") {
                    self.fs(FsPurpose::Cwd(p.clone()), FsRequest::Metadata(p));
                }
            }
            Command::Size(arg) => {
                if let Some(p) = self.resolve(arg) {
                    self.fs(FsPurpose::Size, FsRequest::Metadata(p));
                }
            }
            Command::Mdtm(arg) => {
                if let Some(p) = self.resolve(arg) {
                    self.fs(FsPurpose::Mdtm, FsRequest::Metadata(p));
                }
            }
            Command::Mlst(arg) => {
                if let Some(p) = self.resolve(arg.unwrap_or(b".")) {
                    self.fs(FsPurpose::Mlst(p.clone()), FsRequest::Metadata(p));
                }
            }
            Command::Stat(Some(arg)) => {
                if let Some(p) = self.resolve(strip_ls_options(Some(arg)).unwrap_or(b".")) {
                    self.fs(FsPurpose::Stat, FsRequest::List(p));
                }
            }
            Command::Mkd(arg) => {
                if self.allowed(|p| p.mkdir) {
                    if let Some(p) = self.resolve(arg) {
                        self.fs(FsPurpose::Mkd(p.clone()), FsRequest::MakeDir(p));
                    }
                }
            }
            Command::Rmd(arg) => {
                if self.allowed(|p| p.delete) {
                    if let Some(p) = self.resolve(arg) {
                        self.fs(FsPurpose::Rmd, FsRequest::RemoveDir(p));
                    }
                }
            }
            Command::Dele(arg) => {
                if self.allowed(|p| p.delete) {
                    if let Some(p) = self.resolve(arg) {
                        self.fs(FsPurpose::Dele, FsRequest::RemoveFile(p));
                    }
                }
            }
            Command::Rnfr(arg) => {
                if self.allowed(|p| p.rename) {
                    if let Some(p) = self.resolve(arg) {
                        self.fs(FsPurpose::Rnfr(p.clone()), FsRequest::Metadata(p));
                    }
                }
            }
            Command::Rnto(arg) => match rename_from {
                None => self.reply_static(code::BAD_SEQUENCE, "RNFR required first."),
                Some(from) => {
                    if let Some(to) = self.resolve(arg) {
                        self.fs(FsPurpose::Rnto, FsRequest::Rename { from, to });
                    }
                }
            },
            Command::Retr(arg) => self.transfer(TransferKind::Retr, Some(arg)),
            Command::Stor(arg) => self.transfer(TransferKind::Stor, Some(arg)),
            Command::Appe(arg) => self.transfer(TransferKind::Appe, Some(arg)),
            Command::Stou(arg) => self.transfer(TransferKind::Stou, arg),
            Command::List(arg) => self.transfer(TransferKind::List, strip_ls_options(arg)),
            Command::Nlst(arg) => self.transfer(TransferKind::Nlst, strip_ls_options(arg)),
            Command::Mlsd(arg) => self.transfer(TransferKind::Mlsd, arg),
            _ => self.reply_static(code::NOT_IMPLEMENTED, "Command not implemented."),
        }
    }

    fn transfer(&mut self, kind: TransferKind, arg: Option<&[u8]>) {
        if kind.is_upload() && !self.allowed(|p| p.write) {
            return;
        }
        if kind == TransferKind::Retr && !self.allowed(|p| p.read) {
            return;
        }
        let Some(channel) = self.data else {
            self.reply_static(code::CANT_OPEN_DATA, "Use PORT or PASV first.");
            return;
        };
        let arg = match (kind, arg) {
            (_, Some(a)) => a,
            // STOU without a name: the engine picks one in the working directory.
            (TransferKind::Stou, None) => b"ftp.upload",
            (_, None) => b".",
        };
        let Some(path) = self.resolve(arg) else {
            return;
        };
        let offset = match kind {
            TransferKind::Retr | TransferKind::Stor => self.rest,
            _ => 0,
        };
        let transfer = Transfer {
            kind,
            path,
            offset,
            ascii: self.transfer_type == TransferType::Ascii && !kind.is_listing(),
            channel,
            writable: self.writable(),
        };
        self.waiting = Waiting::Transfer { kind, aborting: false };
        self.actions.push_back(Action::Transfer(transfer));
    }

    /// The answer to [`Action::Fs`]; `now` formats STAT listings.
    pub fn fs_done(&mut self, outcome: FsOutcome, now: SystemTime) {
        // An answer nobody asked for is ignored; it must not clear a different wait.
        if !matches!(self.waiting, Waiting::Fs(_)) {
            return;
        }
        let Waiting::Fs(purpose) = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return;
        };
        let meta = match outcome {
            FsOutcome::Failed(kind) => {
                self.fs_failed(&purpose, kind);
                return;
            }
            FsOutcome::Metadata(meta) => Some(meta),
            FsOutcome::Listing(entries) => {
                self.stat_listing(&entries, now);
                return;
            }
            FsOutcome::Done => None,
        };
        match (purpose, meta) {
            (FsPurpose::Cwd(p), Some(m)) if m.is_dir() => {
                self.cwd = p;
                self.reply_static(code::FILE_ACTION_OK, "Directory successfully changed.");
            }
            (FsPurpose::Cwd(_), _) => self.reply_static(code::FILE_NOT_FOUND, "Failed to change directory."),
            (FsPurpose::Size, Some(m)) if m.is_file() => {
                self.reply(Reply::owned(code::FILE_STATUS, m.len.to_string()))
            }
            (FsPurpose::Size, _) => self.reply_static(code::FILE_NOT_FOUND, "Could not get file size."),
            (FsPurpose::Mdtm, Some(m)) if m.is_file() && m.modified.is_some() => {
                let mut text = Vec::with_capacity(14);
                listing::write_timeval(m.modified.unwrap_or(SystemTime::UNIX_EPOCH), &mut text);
                self.reply(Reply::owned(code::FILE_STATUS, text));
            }
            (FsPurpose::Mdtm, _) => {
                self.reply_static(code::FILE_NOT_FOUND, "Could not get file modification time.")
            }
            (FsPurpose::Rnfr(p), Some(_)) => {
                self.rename_from = Some(p);
                self.reply_static(code::PENDING, "Ready for RNTO.");
            }
            (FsPurpose::Mlst(p), Some(m)) => {
                let writable = self.writable();
                let mut text = b"Listing ".to_vec();
                text.extend_from_slice(&p);
                text.push(b'\n');
                listing::write_facts(&p, &m, writable, &mut text);
                text.extend_from_slice(b"\nEnd");
                self.reply(Reply::owned(code::FILE_ACTION_OK, text));
            }
            (FsPurpose::Mkd(p), _) => {
                let mut text = Vec::with_capacity(p.len() + 16);
                quote_path(&p, &mut text);
                text.extend_from_slice(b" created");
                self.reply(Reply::owned(code::PATH_CREATED, text));
            }
            (FsPurpose::Rnto, _) => self.reply_static(code::FILE_ACTION_OK, "Rename successful."),
            (FsPurpose::Rmd, _) => {
                self.reply_static(code::FILE_ACTION_OK, "Remove directory operation successful.")
            }
            (FsPurpose::Dele, _) => self.reply_static(code::FILE_ACTION_OK, "Delete operation successful."),
            // A request answered with the wrong kind of outcome: an engine bug, not the peer's.
            (FsPurpose::Rnfr(_) | FsPurpose::Mlst(_), None) | (FsPurpose::Stat, _) => {
                self.reply_static(code::LOCAL_ERROR, "Local error in processing.")
            }
        }
    }

    fn fs_failed(&mut self, purpose: &FsPurpose, kind: ErrorKind) {
        match purpose {
            FsPurpose::Cwd(_) => self.reply_static(code::FILE_NOT_FOUND, "Failed to change directory."),
            FsPurpose::Size => self.reply_static(code::FILE_NOT_FOUND, "Could not get file size."),
            FsPurpose::Mdtm => {
                self.reply_static(code::FILE_NOT_FOUND, "Could not get file modification time.")
            }
            _ => self.reply(Reply::new(kind.reply_code(), kind.text())),
        }
    }

    fn stat_listing(&mut self, entries: &[DirEntry], now: SystemTime) {
        let mut text = b"Status follows:\n".to_vec();
        for e in entries {
            listing::write_list_line(&e.name, &e.metadata, now, &mut text);
            // Lines end in CRLF in listings; the reply format adds its own line ends.
            text.truncate(text.len() - 2);
            text.push(b'\n');
        }
        text.extend_from_slice(b"End of status");
        self.reply(Reply::owned(code::FILE_STATUS, text));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn ls_options() {
        assert_eq!(strip_ls_options(None), None);
        assert_eq!(strip_ls_options(Some(b"-la")), None);
        assert_eq!(strip_ls_options(Some(b"-l -a dir")), Some(&b"dir"[..]));
        assert_eq!(strip_ls_options(Some(b"dir")), Some(&b"dir"[..]));
    }
}
