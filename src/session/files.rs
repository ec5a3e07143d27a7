//! File and directory commands (RFC 959 §4.1.1, §4.1.3; RFC 3659): path resolution, the
//! storage requests they turn into, and the transfers they start.

use std::path::Path;
use std::time::{Instant, SystemTime};

use super::{Action, DataChannel, FsOutcome, Session, Waiting};
use crate::proto::command::{trim, Command, TransferType};
use crate::proto::reply::{code, quote_path, Reply};
use crate::proto::{listing, path};
use crate::types::{DirEntry, ErrorKind, HashAlgo, Permissions, UploadPolicy, WriteMode};

/// A storage operation the session needs. Paths are virtual (absolute, normalised);
/// [`FsRequest::storage_path`] gives what a [`crate::Storage`] method takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsRequest {
    /// Metadata of a path, following symlinks; answer [`FsOutcome::Metadata`].
    Metadata(Vec<u8>),
    /// Open a directory for the listing transfer that follows, or for STAT; answer
    /// [`FsOutcome::Opened`] and keep the [`crate::storage::Lister`] for the next
    /// [`Action::Transfer`], which writes it a page at a time ([`TransferData::Listing`]),
    /// or for the [`FsRequest::ListPage`]s that follow.
    OpenList(Vec<u8>),
    /// The next page of the directory the last [`FsRequest::OpenList`] opened (STAT of a
    /// directory, whose reply carries the listing and goes out a page at a time); answer
    /// [`FsOutcome::Listing`] with a page that is not empty, or an empty one at the end.
    ListPage(Vec<u8>),
    /// Open a file for the download that follows, at `offset`; answer
    /// [`FsOutcome::Opened`] and keep the handle for the next [`Action::Transfer`].
    OpenRead {
        /// The file.
        path: Vec<u8>,
        /// The REST offset.
        offset: u64,
    },
    /// Open a file for the upload that follows; answer [`FsOutcome::Opened`] and keep the
    /// handle for the next [`Action::Transfer`].
    OpenWrite {
        /// The file.
        path: Vec<u8>,
        /// How to open it.
        mode: WriteMode,
    },
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
    /// Set the modification time (MFMT, SITE UTIME); see [`crate::Storage::set_modified`].
    SetModified {
        /// The file.
        path: Vec<u8>,
        /// The new time.
        time: SystemTime,
    },
    /// Set the permission bits, at most `0o777` (SITE CHMOD); see [`crate::Storage::set_mode`].
    SetMode {
        /// The file or directory.
        path: Vec<u8>,
        /// The bits.
        mode: u32,
    },
    /// The bytes still available (AVBL); answer [`FsOutcome::Space`].
    AvailableSpace(Vec<u8>),
    /// A file's digest (HASH, XCRC...); answer [`FsOutcome::Digest`].
    Hash {
        /// The file.
        path: Vec<u8>,
        /// Which digest.
        algo: HashAlgo,
    },
}

impl FsRequest {
    /// The (first) path as a storage backend takes it.
    pub fn storage_path(&self) -> &Path {
        path::storage_path(self.path())
    }

    /// The (first) virtual path.
    pub fn path(&self) -> &[u8] {
        match self {
            FsRequest::Metadata(p)
            | FsRequest::OpenList(p)
            | FsRequest::ListPage(p)
            | FsRequest::OpenRead { path: p, .. }
            | FsRequest::OpenWrite { path: p, .. }
            | FsRequest::MakeDir(p)
            | FsRequest::RemoveDir(p)
            | FsRequest::RemoveFile(p)
            | FsRequest::Rename { from: p, .. }
            | FsRequest::SetModified { path: p, .. }
            | FsRequest::SetMode { path: p, .. }
            | FsRequest::AvailableSpace(p)
            | FsRequest::Hash { path: p, .. } => p,
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
    /// The virtual path of the file or directory (for STOU, the name chosen).
    pub path: Vec<u8>,
    /// The REST offset of a RETR or STOR (0 if none): storage positioned the file there when
    /// it opened it (the offset has that one owner); logs, and whether an upload is whole.
    pub offset: u64,
    /// TYPE A: convert line ends (LF on disk, CRLF on the wire).
    pub ascii: bool,
    /// How to make the data connection.
    pub channel: DataChannel,
    /// What the bytes are.
    pub data: TransferData,
    /// The upload was opened with [`WriteMode::Replace`]: commit it once every byte arrived.
    pub commit: bool,
    /// PROT P: the data connection is TLS, with the server as the TLS server.
    pub protect: bool,
}

/// Where a transfer's bytes come from or go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferData {
    /// The file the last [`FsRequest::OpenRead`] or [`FsRequest::OpenWrite`] opened.
    Opened,
    /// Bytes the session formatted: the listing of one file.
    Bytes(Vec<u8>),
    /// The directory the last [`FsRequest::OpenList`] opened, each page formatted as this
    /// says and sent before the next is read.
    Listing(ListFormat),
}

/// How a listing's entries become lines: LIST's `ls -l`, NLST's names, MLSD's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFormat {
    kind: TransferKind,
    /// The user may write (the `perm` fact).
    writable: bool,
    /// The MLSx facts the client selected.
    facts: listing::Facts,
    /// What LIST dates are relative to (a time within six months, else a year).
    now: SystemTime,
}

impl ListFormat {
    /// Appends one CRLF line per entry to `out`.
    pub fn write(&self, entries: &[DirEntry], out: &mut Vec<u8>) {
        out.reserve(entries.len() * 64);
        for e in entries {
            match self.kind {
                TransferKind::List => listing::write_list_line(&e.name, &e.metadata, self.now, out),
                TransferKind::Nlst => listing::write_nlst_line(&e.name, out),
                _ => {
                    listing::write_selected_facts(&e.name, &e.metadata, self.writable, self.facts, out);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

impl Transfer {
    /// The path as a storage backend takes it.
    pub fn storage_path(&self) -> &Path {
        path::storage_path(&self.path)
    }

    /// The last component of the path (for replies).
    pub fn file_name(&self) -> &[u8] {
        path::file_name(&self.path)
    }
}

/// A transfer asked for, waiting for its storage steps.
#[derive(Debug)]
pub(super) struct Planned {
    kind: TransferKind,
    path: Vec<u8>,
    offset: u64,
    channel: DataChannel,
    /// STOU: how many names were taken already.
    attempt: u32,
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
    Stat(Vec<u8>),
    StatDir(StatDir),
    Mkd(Vec<u8>),
    Rmd,
    Dele,
    /// LIST/NLST/MLSD: is the path a directory or a file?
    ListWhat(Planned),
    /// LIST/NLST/MLSD of a directory: its entries.
    ListDir(Planned),
    /// RETR/STOR/APPE/STOU: the file is being opened.
    Open(Planned, bool),
    /// MFMT, SITE, AVBL, HASH and the X digests (see `site.rs`).
    Cmd(super::site::CmdPurpose),
}

/// STAT of a directory: opened, then read a page at a time, each page sent as part of one
/// multi-line 213 reply, so the directory is never held whole.
#[derive(Debug)]
pub(super) struct StatDir {
    path: Vec<u8>,
    format: ListFormat,
    /// Storage opened the directory; the pages follow.
    opened: bool,
    /// The reply's first line is out: it must be ended, whatever happens.
    started: bool,
}

/// The first and last lines of STAT's listing reply.
const STAT_HEAD: &[u8] = b"Status follows:\n";
const STAT_END: &str = "End of status";
/// The last line of one that could not be finished.
const STAT_INCOMPLETE: &str = "End of status: listing incomplete.";

/// Names STOU tries before giving up.
const STOU_ATTEMPTS: u32 = 100;

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
    pub(super) fn resolve(&mut self, arg: &[u8]) -> Option<Vec<u8>> {
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
    pub(super) fn allowed(&mut self, check: fn(&Permissions) -> bool) -> bool {
        if self.user().is_some_and(|u| check(&u.permissions)) {
            true
        } else {
            self.reply_static(code::FILE_NOT_FOUND, "Permission denied.");
            false
        }
    }

    pub(super) fn fs(&mut self, purpose: FsPurpose, request: FsRequest) {
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
                    self.fs(FsPurpose::Stat(p.clone()), FsRequest::Metadata(p));
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
            cmd @ (Command::Mfmt { .. } | Command::Avbl(_) | Command::Hash(_) | Command::XHash(..)) => {
                self.site_command(cmd)
            }
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
            // STOU without a name: a unique one in the working directory.
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
        let plan = Planned { kind, path, offset, channel, attempt: 0 };
        if kind.is_listing() {
            let request = FsRequest::Metadata(plan.path.clone());
            self.fs(FsPurpose::ListWhat(plan), request);
        } else {
            self.open(plan);
        }
    }

    /// Asks storage to open the file of a planned RETR, STOR, APPE or STOU.
    fn open(&mut self, plan: Planned) {
        let (request, commit) = match plan.kind {
            TransferKind::Retr => {
                (FsRequest::OpenRead { path: plan.path.clone(), offset: plan.offset }, false)
            }
            _ => {
                let mode = match (plan.kind, plan.offset, self.config.uploads) {
                    (TransferKind::Appe, _, _) => WriteMode::Append,
                    (TransferKind::Stou, _, _) => WriteMode::CreateNew,
                    (_, 0, UploadPolicy::Atomic) => WriteMode::Replace,
                    (_, 0, _) => WriteMode::Truncate,
                    (_, offset, _) => WriteMode::Resume(offset),
                };
                let path = if plan.kind == TransferKind::Stou && plan.attempt > 0 {
                    // vsftpd's scheme: the name if free, else name.1, name.2, ...
                    let mut p = plan.path.clone();
                    p.extend_from_slice(format!(".{}", plan.attempt).as_bytes());
                    p
                } else {
                    plan.path.clone()
                };
                (FsRequest::OpenWrite { path, mode }, mode == WriteMode::Replace)
            }
        };
        self.fs(FsPurpose::Open(plan, commit), request);
    }

    fn start_planned(
        &mut self,
        plan: Planned,
        data: TransferData,
        commit: bool,
        size: Option<u64>,
        now: Instant,
    ) {
        let ascii = self.transfer_type == TransferType::Ascii && !plan.kind.is_listing();
        let path = match (&data, plan.kind) {
            (TransferData::Opened, TransferKind::Stou) if plan.attempt > 0 => {
                let mut p = plan.path;
                p.extend_from_slice(format!(".{}", plan.attempt).as_bytes());
                p
            }
            _ => plan.path,
        };
        let offset =
            if matches!(plan.kind, TransferKind::Retr | TransferKind::Stor) { plan.offset } else { 0 };
        let protect = self.tls.protect;
        let transfer =
            Transfer { kind: plan.kind, path, offset, ascii, channel: plan.channel, data, commit, protect };
        self.run_transfer(transfer, size, now);
    }

    /// The answer to [`Action::Fs`]; `wall` is the time listings are formatted against.
    pub fn fs_done(&mut self, outcome: FsOutcome, now: Instant, wall: SystemTime) {
        // An answer nobody asked for is ignored; it must not clear a different wait. After
        // Close (a shutdown while storage ran) nothing more is said.
        if self.closing || !matches!(self.waiting, Waiting::Fs(_)) {
            return;
        }
        let Waiting::Fs(purpose) = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return;
        };
        self.fs_answered(purpose, outcome, now, wall);
        if !self.is_waiting() {
            self.drive(now);
        }
    }

    fn fs_answered(&mut self, purpose: FsPurpose, outcome: FsOutcome, now: Instant, wall: SystemTime) {
        let writable = self.writable();
        let purpose = match purpose {
            FsPurpose::Cmd(p) => return self.cmd_answered(p, outcome),
            other => other,
        };
        let meta = match (purpose, outcome) {
            (FsPurpose::Open(plan, commit), FsOutcome::Opened { size }) => {
                return self.start_planned(plan, TransferData::Opened, commit, size, now);
            }
            (FsPurpose::Open(mut plan, _), FsOutcome::Failed(ErrorKind::AlreadyExists))
                if plan.kind == TransferKind::Stou && plan.attempt + 1 < STOU_ATTEMPTS =>
            {
                plan.attempt += 1;
                return self.open(plan);
            }
            (FsPurpose::ListWhat(plan), FsOutcome::Metadata(m)) if m.is_dir() => {
                let request = FsRequest::OpenList(plan.path.clone());
                return self.fs(FsPurpose::ListDir(plan), request);
            }
            (FsPurpose::ListWhat(plan), FsOutcome::Metadata(_)) if plan.kind == TransferKind::Mlsd => {
                // RFC 3659 §7.1: MLSD lists directories only; MLST is for a file.
                return self.reply(Reply::new(code::FILE_NOT_FOUND, ErrorKind::NotADirectory.text()));
            }
            (FsPurpose::ListWhat(plan), FsOutcome::Metadata(m)) => {
                // LIST or NLST of a file: that one entry, named as given (as `ls` does).
                let entry = DirEntry { name: path::file_name(&plan.path).to_vec(), metadata: m };
                let format = ListFormat { kind: plan.kind, writable, facts: self.facts, now: wall };
                let mut bytes = Vec::new();
                format.write(std::slice::from_ref(&entry), &mut bytes);
                return self.start_planned(plan, TransferData::Bytes(bytes), false, None, now);
            }
            (FsPurpose::ListDir(plan), FsOutcome::Opened { .. }) => {
                let format = ListFormat { kind: plan.kind, writable, facts: self.facts, now: wall };
                return self.start_planned(plan, TransferData::Listing(format), false, None, now);
            }
            (FsPurpose::Stat(p), FsOutcome::Metadata(m)) => {
                let format = ListFormat { kind: TransferKind::List, writable, facts: self.facts, now: wall };
                if m.is_dir() {
                    let request = FsRequest::OpenList(p.clone());
                    let dir = StatDir { path: p, format, opened: false, started: false };
                    return self.fs(FsPurpose::StatDir(dir), request);
                }
                let entry = DirEntry { name: path::file_name(&p).to_vec(), metadata: m };
                let mut text = STAT_HEAD.to_vec();
                format.write(std::slice::from_ref(&entry), &mut text);
                text.extend_from_slice(STAT_END.as_bytes());
                return self.reply(Reply::owned(code::FILE_STATUS, text));
            }
            (FsPurpose::StatDir(dir), outcome) => return self.stat_dir(dir, outcome),
            (purpose, FsOutcome::Failed(kind)) => return self.fs_failed(&purpose, kind),
            (purpose, FsOutcome::Metadata(meta)) => (purpose, Some(meta)),
            (purpose, FsOutcome::Done) => (purpose, None),
            // An answer of the wrong kind: an engine bug, not the peer's.
            (_, _) => return self.reply_static(code::LOCAL_ERROR, "Local error in processing."),
        };
        match meta {
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
                let mut text = b"Listing ".to_vec();
                text.extend_from_slice(&p);
                text.push(b'\n');
                listing::write_selected_facts(&p, &m, writable, self.facts, &mut text);
                text.extend_from_slice(b"\nEnd");
                self.reply(Reply::owned(code::FILE_ACTION_OK, text));
            }
            (FsPurpose::Mkd(p), None) => {
                let mut text = Vec::with_capacity(p.len() + 16);
                quote_path(&p, &mut text);
                text.extend_from_slice(b" created");
                self.reply(Reply::owned(code::PATH_CREATED, text));
            }
            (FsPurpose::Rnto, None) => self.reply_static(code::FILE_ACTION_OK, "Rename successful."),
            (FsPurpose::Rmd, None) => {
                self.reply_static(code::FILE_ACTION_OK, "Remove directory operation successful.")
            }
            (FsPurpose::Dele, None) => {
                self.reply_static(code::FILE_ACTION_OK, "Delete operation successful.")
            }
            _ => self.reply_static(code::LOCAL_ERROR, "Local error in processing."),
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

    /// Ends a STAT reply that has begun, so that what the session says next (the 421 of a
    /// shutdown) is a reply of its own.
    pub(super) fn end_begun_reply(&mut self) {
        if matches!(&self.waiting, Waiting::Fs(FsPurpose::StatDir(dir)) if dir.started) {
            self.reply_static(code::FILE_STATUS, STAT_INCOMPLETE);
        }
    }

    /// The next step of a STAT of a directory: ask for a page, send it, or end the reply. A
    /// directory that cannot be listed before anything is sent gets one error reply; once the
    /// reply has begun, a failure ends it with a line that says the listing is incomplete.
    fn stat_dir(&mut self, mut dir: StatDir, outcome: FsOutcome) {
        match outcome {
            FsOutcome::Opened { .. } if !dir.opened => dir.opened = true,
            FsOutcome::Listing(entries) if dir.opened && !entries.is_empty() => {
                // The listing's CRLF line ends become the reply's own.
                let mut text = if dir.started { Vec::new() } else { STAT_HEAD.to_vec() };
                dir.format.write(&entries, &mut text);
                self.reply(if dir.started {
                    Reply::continuation(code::FILE_STATUS, text)
                } else {
                    Reply::opening(code::FILE_STATUS, text)
                });
                dir.started = true;
            }
            FsOutcome::Listing(_) if dir.opened => {
                if !dir.started {
                    self.reply(Reply::opening(code::FILE_STATUS, STAT_HEAD));
                }
                return self.reply_static(code::FILE_STATUS, STAT_END);
            }
            FsOutcome::Failed(kind) if dir.started => {
                let text = format!("{STAT_END}: listing incomplete ({}).", kind.text());
                return self.reply(Reply::owned(code::FILE_STATUS, text));
            }
            FsOutcome::Failed(kind) => return self.reply(Reply::new(kind.reply_code(), kind.text())),
            // An answer of the wrong kind: an engine bug. A begun reply still gets its end.
            _ if dir.started => return self.reply_static(code::FILE_STATUS, STAT_INCOMPLETE),
            _ => return self.reply_static(code::LOCAL_ERROR, "Local error in processing."),
        }
        let request = FsRequest::ListPage(dir.path.clone());
        self.fs(FsPurpose::StatDir(dir), request);
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
