//! Drives the real sans-IO [`Session`] with a [`Script`]: client bytes in arbitrary chunks, a
//! virtual clock, and answers to its actions from the in-memory storage, in whatever order the
//! script says. There is no model of the engine here: the session frames, parses, defers and
//! times out by itself; the driver only carries out actions and checks what comes out.
//!
//! # Invariants (each a panic if broken)
//!
//! 1. No panic in the session.
//! 2. Every reply has a well-formed wire form ([`crate::wire`]); a listing is one CRLF line
//!    per entry, with no other CR or LF.
//! 3. At most one answer is owed at a time (authentication, storage, passive listener,
//!    transfer); `Abort` only for a running transfer, once; `is_waiting()` while one is owed,
//!    `is_transferring()` exactly while a transfer is; a wait with nothing owed (the delay
//!    after a failed login) has a deadline.
//! 4. After `Close` no action at all, whatever is called; no deadline, no wish for input.
//! 5. Storage and transfers only for a logged-in user, never one their permissions forbid;
//!    every path normalised and below the root ([`crate::oracle`], [`crate::paths`]); a
//!    transfer of an opened file only right after that file was opened for that direction.
//! 6. A passive transfer only while a passive listener is open (opened, not closed or used
//!    since); an active one only to the client's address, port >= 1024, same family as the
//!    control connection (unless the dangerous option is on).
//! 7. One final reply per command line plus one 421 per timeout or shutdown, never more, and
//!    exactly that whenever the session waits for nothing ([`crate::oracle::Ledger`]). A `150`
//!    only from `transfer_started`, once per transfer.
//! 8. An answer nobody waits for, or `handle_timeout` before the deadline, yields nothing.
//! 9. Timers settle: after at most three `handle_timeout(now)` the next deadline is after now.
//! 10. At the end, answering everything leaves every command answered.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use ringftp::proto::{address, code, Reply};
use ringftp::session::{
    Action, DataChannel, FsOutcome, FsRequest, Session, Transfer, TransferData, TransferKind, TransferOutcome,
};
use ringftp::storage::WriteMode;
use ringftp::User;

use crate::memfs::MemFs;
use crate::oracle::{check_active, check_fs, check_transfer, Ledger};
use crate::script::{Answer, Script, Step, Stray};
use crate::wire::{check_listing, Assembler};

/// An answer the session is owed.
#[derive(Debug)]
enum Owed {
    Auth,
    Fs(FsRequest),
    Passive,
    Transfer { started: bool, abort: bool, moved: u64, upload: Option<(Vec<u8>, WriteMode)> },
}

/// Which call into the session produced the actions being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Other,
    Login,
    Started,
    /// Must yield no action.
    Quiet,
}

pub struct Driver {
    s: Session,
    /// Made at the first storage answer: most inputs never log in.
    fs: Option<MemFs>,
    wire: Assembler,
    /// What is left of the directory a STAT opened, for its `ListPage`s.
    pages: std::vec::IntoIter<ringftp::DirEntry>,
    now: Instant,
    wall: SystemTime,
    peer: SocketAddr,
    local: SocketAddr,
    foreign: bool,
    owed: Option<Owed>,
    /// The request of the last storage answer that opened a file.
    opened: Option<FsRequest>,
    listener: bool,
    closed: bool,
    replies: Ledger,
}

impl Driver {
    pub fn run(script: &Script) {
        let mut d = Driver::new(script);
        script.steps.iter().for_each(|step| d.step(step));
        d.finish();
    }

    fn new(script: &Script) -> Driver {
        let c = &script.config;
        let config = c.session();
        let (peer, local) = (SocketAddr::new(c.peer.ip(), 40000), SocketAddr::new(c.local.ip(), 2121));
        let now = Instant::now();
        // The session compares IPv4-mapped addresses as IPv4.
        let canonical = |a: SocketAddr| SocketAddr::new(address::canonical(a.ip()), a.port());
        let mut d = Driver {
            replies: Ledger::new(config.max_line),
            s: Session::new(config, peer, local, now),
            fs: None,
            wire: Assembler::default(),
            pages: Vec::new().into_iter(),
            now,
            wall: c.wall(),
            peer: canonical(peer),
            local: canonical(local),
            foreign: c.foreign,
            owed: None,
            opened: None,
            listener: false,
            closed: false,
        };
        d.drain(Call::Other);
        assert_eq!(d.replies.finals(), 1, "one greeting");
        if c.login {
            d.input(b"USER bob\r\nPASS pw\r\n");
            d.answer(Answer::Ok(0));
        }
        d
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Bytes(b) => trace!("-> {}", b.escape_ascii()),
            _ => trace!("-- {step:?}"),
        }
        match step {
            Step::Bytes(b) => self.input(b),
            Step::Line { verb, arg, end, chunk } => {
                let line = Step::line(*verb, arg, *end);
                let n = if *chunk == 0 { line.len().max(1) } else { 1 + usize::from(chunk % 8) };
                for piece in line.chunks(n) {
                    self.input(piece);
                }
            }
            Step::Wait(n) => self.advance(Duration::from_millis(20 * u64::from(*n))),
            Step::Deadline(ms) => {
                if let Some(t) = self.s.poll_timeout() {
                    let d = Duration::from_millis(u64::from(ms.unsigned_abs()));
                    let to = if *ms >= 0 { t + d } else { t.checked_sub(d).unwrap_or(t) };
                    self.advance(to.saturating_duration_since(self.now));
                }
            }
            Step::Early => {
                let due = self.s.poll_timeout().is_some_and(|t| t <= self.now);
                self.s.handle_timeout(self.now);
                self.drain(if due { Call::Other } else { Call::Quiet });
            }
            Step::Answer(a) => self.answer(*a),
            Step::Progress(n) => {
                let moved = match &mut self.owed {
                    Some(Owed::Transfer { started: true, moved, .. }) => {
                        *moved += u64::from(*n);
                        *moved
                    }
                    _ => u64::from(*n),
                };
                self.s.transfer_progress(moved, self.now);
                self.drain(Call::Quiet);
            }
            Step::Stray(kind) => self.stray(*kind),
            Step::Shutdown => {
                self.s.shutdown("Server shutting down.");
                self.drain(Call::Other);
            }
        }
    }

    fn input(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.replies.input(bytes);
        }
        self.s.handle_input(bytes, self.now);
        self.drain(Call::Other);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for _ in 0..3 {
            match self.s.poll_timeout() {
                Some(t) if t <= self.now => {
                    self.s.handle_timeout(self.now);
                    self.drain(Call::Other);
                }
                _ => return,
            }
        }
        assert!(self.s.poll_timeout().is_none_or(|t| t > self.now), "timers do not settle");
    }

    /// Answers the owed action (nothing owed: nothing happens).
    fn answer(&mut self, a: Answer) {
        trace!("   answer {a:?} to {:?}", self.owed);
        let now = self.now;
        match self.owed.take() {
            None => {}
            Some(Owed::Auth) => {
                self.s.login_done(a.auth(), now);
                self.drain(Call::Login);
            }
            Some(Owed::Fs(req)) => {
                let wall = self.wall;
                let outcome = match (a, &req) {
                    // A page of one to three entries, or the rest.
                    (Answer::Ok(n), FsRequest::ListPage(_)) => {
                        FsOutcome::Listing(self.pages.by_ref().take(1 + n as usize % 3).collect())
                    }
                    (Answer::ReadOnly, FsRequest::ListPage(_)) => FsOutcome::Listing(self.pages.by_ref().collect()),
                    (Answer::Ok(_) | Answer::ReadOnly, _) => self.fs().run(&req, wall),
                    _ => a.fs_outcome(),
                };
                if let (FsOutcome::Opened { .. }, FsRequest::OpenList(p)) = (&outcome, &req) {
                    self.pages = self.fs().list(p).unwrap_or_default().into_iter();
                }
                self.opened = matches!(outcome, FsOutcome::Opened { .. }).then_some(req);
                self.s.fs_done(outcome, now, self.wall);
                self.drain(Call::Other);
            }
            Some(Owed::Passive) => {
                let announce = a.passive(self.local);
                self.listener = announce.is_some();
                match announce {
                    Some(addr) => self.s.passive_opened(addr, now),
                    None => self.s.passive_failed(now),
                }
                self.drain(Call::Other);
            }
            Some(Owed::Transfer { started, abort, moved, upload }) => {
                let Some(outcome) = a.transfer_outcome(started, abort, moved) else {
                    self.owed = Some(Owed::Transfer { started: true, abort, moved, upload });
                    self.s.transfer_started(now);
                    return self.drain(if started { Call::Quiet } else { Call::Started });
                };
                if let (Some((path, mode)), TransferOutcome::Completed { bytes }) = (&upload, outcome) {
                    let wall = self.wall;
                    self.fs().write_done(path, *mode, bytes, wall);
                }
                self.s.transfer_done(outcome, now);
                self.drain(Call::Other);
            }
        }
    }

    fn fs(&mut self) -> &mut MemFs {
        self.fs.get_or_insert_with(|| MemFs::sample(self.wall))
    }

    /// An answer of a kind the session does not wait for: nothing happens.
    fn stray(&mut self, kind: Stray) {
        let (now, wall) = (self.now, self.wall);
        match (kind, &self.owed) {
            (Stray::Login, Some(Owed::Auth))
            | (Stray::Fs, Some(Owed::Fs(_)))
            | (Stray::Opened | Stray::Failed, Some(Owed::Passive))
            | (Stray::Started | Stray::Done, Some(Owed::Transfer { .. })) => return,
            (Stray::Login, _) => self.s.login_done(Ok(User::new("mallory")), now),
            (Stray::Fs, _) => self.s.fs_done(FsOutcome::Opened { size: Some(1) }, now, wall),
            (Stray::Opened, _) => self.s.passive_opened(self.local, now),
            (Stray::Failed, _) => self.s.passive_failed(now),
            (Stray::Started, _) => self.s.transfer_started(now),
            (Stray::Done, _) => self.s.transfer_done(TransferOutcome::Completed { bytes: 1 }, now),
        }
        self.drain(Call::Quiet);
    }

    /// Takes every action the session queued and checks it.
    fn drain(&mut self, call: Call) {
        while let Some(action) = self.s.poll_action() {
            if !matches!(action, Action::Reply(_)) {
                trace!("   {action:?}");
            }
            assert!(call != Call::Quiet, "an action from a call that should yield none: {action:?}");
            assert!(!self.closed, "an action after Close: {action:?}");
            match action {
                Action::Reply(r) => self.reply(&r, call),
                Action::Authenticate { .. } => self.owe(Owed::Auth),
                Action::Fs(req) => {
                    check_fs(self.s.user().expect("storage before login"), &req);
                    self.owe(Owed::Fs(req));
                }
                Action::OpenPassive => {
                    assert!(self.s.user().is_some(), "passive listener before login");
                    self.listener = false;
                    self.owe(Owed::Passive);
                }
                Action::ClosePassive => self.listener = false,
                Action::Transfer(t) => {
                    let upload = self.check_transfer(&t);
                    self.owe(Owed::Transfer { started: false, abort: false, moved: 0, upload });
                }
                Action::Abort => match &mut self.owed {
                    Some(Owed::Transfer { abort, .. }) if !*abort => *abort = true,
                    other => panic!("Abort while owed {other:?}"),
                },
                Action::Close => self.closed = true,
                Action::ClientName(_) => {}
                other => panic!("unknown action {other:?}"),
            }
        }
        self.check_state();
    }

    fn owe(&mut self, owed: Owed) {
        assert!(self.owed.is_none(), "{owed:?} asked while {:?} is owed", self.owed);
        self.owed = Some(owed);
    }

    fn reply(&mut self, r: &Reply, call: Call) {
        let whole = self.wire.push(r);
        trace!("<- {}", self.wire.last().escape_ascii());
        if !whole {
            return;
        }
        if r.is_preliminary() {
            assert_eq!(r.code(), code::FILE_STATUS_OK, "unexpected 1xx: {r:?}");
            assert_eq!(call, Call::Started, "a 150 not from transfer_started");
            return;
        }
        self.replies.reply(r.code() == code::NOT_AVAILABLE && call != Call::Login);
    }

    fn check_state(&self) {
        let s = &self.s;
        if self.closed {
            assert!(s.is_closing() && !s.wants_input() && s.poll_timeout().is_none(), "closed, yet active");
            return;
        }
        assert!(!s.is_closing(), "closing without Close");
        if self.owed.is_some() {
            assert!(s.is_waiting(), "is_waiting() false while owed {:?}", self.owed);
        } else if s.is_waiting() {
            assert!(s.poll_timeout().is_some(), "waiting for nothing, with no deadline");
        }
        let transfer = matches!(self.owed, Some(Owed::Transfer { .. }));
        assert_eq!(s.is_transferring(), transfer, "is_transferring() vs owed {:?}", self.owed);
        if !s.is_waiting() {
            assert!(self.replies.settled(), "a command without a final reply");
        }
    }

    /// Checks a transfer; returns the upload's file and mode.
    fn check_transfer(&mut self, t: &Transfer) -> Option<(Vec<u8>, WriteMode)> {
        check_transfer(self.s.user().expect("transfer before login"), t);
        match t.channel {
            DataChannel::Passive => assert!(std::mem::take(&mut self.listener), "passive without a listener"),
            DataChannel::Active(a) => check_active(a, self.peer, self.local, self.foreign),
        }
        match (&t.data, self.opened.take()) {
            (TransferData::Opened, Some(FsRequest::OpenRead { path, .. })) => {
                assert!(t.kind == TransferKind::Retr && path == t.path, "{t:?} after opening {path:?}");
                None
            }
            (TransferData::Opened, Some(FsRequest::OpenWrite { path, mode })) => {
                assert!(t.kind.is_upload() && path == t.path, "{t:?} after opening {path:?}");
                Some((path, mode))
            }
            (TransferData::Bytes(b), _) => {
                assert!(t.kind.is_listing(), "bytes for a file transfer");
                check_listing(b);
                None
            }
            (TransferData::Listing(format), Some(FsRequest::OpenList(path))) => {
                assert!(t.kind.is_listing() && path == t.path, "{t:?} after opening {path:?}");
                let mut lines = Vec::new(); // what the data path would send
                format.write(&self.fs().list(&path).unwrap_or_default(), &mut lines);
                check_listing(&lines);
                None
            }
            (data, opened) => panic!("{data:?} after opening {opened:?}"),
        }
    }

    /// Answers everything until the session waits for nothing, and checks every command
    /// had its final reply.
    fn finish(&mut self) {
        for i in 0.. {
            if self.closed {
                break;
            }
            if self.owed.is_some() {
                self.answer(Answer::ReadOnly);
            } else if let Some(t) = self.s.poll_timeout().filter(|_| self.s.is_waiting()) {
                self.advance(t.saturating_duration_since(self.now));
            } else {
                assert!(!self.s.is_waiting(), "waiting at the end");
                self.check_state();
                break;
            }
            assert!(i < 100_000, "the session never settles");
        }
        if let Some(fs) = &self.fs {
            fs.check();
        }
    }
}
