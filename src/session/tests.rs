//! Session transcripts: bytes and virtual time in, replies and actions out, no sockets.

use super::*;
use crate::types::FileKind;
use std::time::SystemTime;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A session in virtual time.
struct T {
    s: Session,
    now: Instant,
}

impl T {
    fn new() -> T {
        T::with(SessionConfig::default())
    }

    fn with(config: SessionConfig) -> T {
        let now = Instant::now();
        T { s: Session::new(config, addr("127.0.0.1:40000"), addr("127.0.0.1:2121"), now), now }
    }

    /// Feeds raw bytes and returns what came out.
    fn input(&mut self, bytes: &[u8]) -> Vec<String> {
        self.s.handle_input(bytes, self.now);
        self.drain()
    }

    /// Feeds a line (CRLF added) and returns what came out.
    fn send(&mut self, line: &str) -> Vec<String> {
        self.input(format!("{line}\r\n").as_bytes())
    }

    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(a) = self.s.poll_action() {
            out.push(match a {
                Action::Reply(r) => {
                    let mut w = Vec::new();
                    r.write_to(&mut w);
                    String::from_utf8_lossy(&w).trim_end().to_string()
                }
                other => format!("{other:?}"),
            });
        }
        out
    }

    /// Moves virtual time on and fires the timers that are due.
    fn advance(&mut self, by: Duration) -> Vec<String> {
        self.now += by;
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
        }
        self.drain()
    }

    fn fs(&mut self, outcome: FsOutcome) -> Vec<String> {
        self.s.fs_done(outcome, self.now, SystemTime::UNIX_EPOCH);
        self.drain()
    }

    fn meta(&mut self, kind: FileKind, len: u64) -> Vec<String> {
        self.fs(FsOutcome::Metadata(Metadata::new(kind, len)))
    }

    fn login_as(&mut self, user: User) {
        self.drain();
        self.send("USER alice");
        let out = self.send("PASS secret");
        assert_eq!(
            out,
            vec![r#"Authenticate { username: "alice", password: [115, 101, 99, 114, 101, 116] }"#]
        );
        self.s.login_done(Ok(user), self.now);
        assert_eq!(self.drain(), vec!["230 Login successful."]);
    }

    fn login(&mut self) {
        self.login_as(User::new("alice"));
    }

    fn passive(&mut self) {
        assert_eq!(self.send("EPSV"), vec!["OpenPassive"]);
        self.s.passive_opened(addr("127.0.0.1:50001"), self.now);
        assert_eq!(self.drain(), vec!["229 Entering Extended Passive Mode (|||50001|)"]);
    }

    /// EPSV, then RETR of a file of `len` bytes, up to the 150.
    fn start_retr(&mut self, len: u64) {
        self.passive();
        assert_eq!(self.send("RETR f"), vec!["Fs(OpenRead { path: [47, 102], offset: 0 })"]);
        let out = self.fs(FsOutcome::Opened { size: Some(len) });
        assert!(out[0].starts_with("Transfer(Transfer { kind: Retr"), "{out:?}");
        self.s.transfer_started(self.now);
        assert_eq!(
            self.drain(),
            vec![format!("150 Opening BINARY mode data connection for f ({len} bytes).")]
        );
    }

    fn done(&mut self, outcome: TransferOutcome) -> Vec<String> {
        self.s.transfer_done(outcome, self.now);
        self.drain()
    }
}

#[test]
fn greeting_and_login() {
    let mut t = T::new();
    assert_eq!(t.drain(), vec!["220 ringftp ready"]);
    assert_eq!(t.send("PASS x"), vec!["503 Login with USER first."]);
    assert_eq!(t.send("USER bob"), vec!["331 Please specify the password."]);
    assert_eq!(t.send("PASS wrong").len(), 1);
    assert!(t.s.is_waiting());
    t.s.login_done(Err(AuthError::BadCredentials), t.now);
    // The 530 waits out the failure delay, and commands wait with it.
    assert!(t.drain().is_empty());
    assert!(t.send("NOOP").is_empty());
    assert!(t.advance(Duration::from_millis(100)).is_empty());
    assert_eq!(t.advance(Duration::from_millis(150)), vec!["530 Login incorrect.", "200 NOOP ok."]);
    assert!(t.s.user().is_none());
    t.login();
    assert_eq!(t.s.user().map(|u| u.name.as_str()), Some("alice"));
}

#[test]
fn commands_before_login_refused() {
    let mut t = T::new();
    t.drain();
    for line in ["PWD", "CWD /", "RETR x", "PASV", "PORT 127,0,0,1,4,1", "LIST", "STOR x", "MKD d"] {
        assert_eq!(t.send(line), vec!["530 Please login with USER and PASS."], "{line}");
    }
    // These work before login.
    assert!(t.send("FEAT")[0].starts_with("211-Features:"));
    assert_eq!(t.send("SYST"), vec!["215 UNIX Type: L8"]);
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
}

#[test]
fn too_many_failures_close() {
    let mut t = T::new();
    t.drain();
    for i in 0..3 {
        t.send("USER x");
        t.send("PASS y");
        t.s.login_done(Err(AuthError::BadCredentials), t.now);
        let out = if i < 2 { t.advance(Duration::from_secs(3)) } else { t.drain() };
        if i < 2 {
            assert_eq!(out, vec!["530 Login incorrect."]);
        } else {
            assert_eq!(out, vec!["421 Too many failed logins, closing.", "Close"]);
        }
    }
    assert!(t.s.is_closing());
    assert!(t.send("NOOP").is_empty());
    assert_eq!(t.s.poll_timeout(), None);
}

#[test]
fn framing_chunks_lf_telnet_and_long_lines() {
    let cfg = SessionConfig { max_line: 32, ..Default::default() };
    let mut t = T::with(cfg);
    t.drain();
    // A command split at every byte, then LF-only and an IAC IP in the middle.
    for b in b"NO".iter() {
        assert!(t.input(&[*b]).is_empty());
    }
    assert_eq!(t.input(b"OP\r\nSY"), vec!["200 NOOP ok."]);
    assert_eq!(t.input(b"ST\n"), vec!["215 UNIX Type: L8"]);
    assert_eq!(t.input(b"NO\xff\xf4OP\r\n"), vec!["200 NOOP ok."]);
    let long = format!("NOOP {}\r\nSYST\r\n", "x".repeat(100));
    assert_eq!(t.input(long.as_bytes()), vec!["500 Command line too long", "215 UNIX Type: L8"]);
    // Pipelined commands are answered in order.
    assert_eq!(
        t.input(b"NOOP\r\nBOGUS\r\nSYST\r\n"),
        vec!["200 NOOP ok.", "500 Unknown command", "215 UNIX Type: L8"]
    );
}

#[test]
fn feat_is_well_formed() {
    let mut t = T::new();
    t.drain();
    let feat = t.send("FEAT").join("\n");
    for f in ["EPRT", "EPSV", "MDTM", "MLST type*", "PASV", "REST STREAM", "SIZE", "UTF8"] {
        assert!(feat.contains(&format!("\n {f}")), "{f} missing in {feat}");
    }
    assert!(feat.ends_with("211 End"));
}

#[test]
fn cwd_pwd_and_paths() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("PWD"), vec![r#"257 "/" is the current directory"#]);
    assert_eq!(t.send("CWD ../../a/./b"), vec![r#"Fs(Metadata([47, 97, 47, 98]))"#]);
    assert_eq!(t.meta(FileKind::Dir, 0), vec!["250 Directory successfully changed."]);
    assert_eq!(t.send("PWD"), vec![r#"257 "/a/b" is the current directory"#]);
    t.send("CWD file");
    assert_eq!(t.meta(FileKind::File, 0), vec!["550 Failed to change directory."]);
    t.send("CDUP");
    t.meta(FileKind::Dir, 0);
    assert_eq!(t.send("PWD"), vec![r#"257 "/a" is the current directory"#]);
    assert_eq!(t.send("CWD a\0b"), vec!["553 File name not allowed."]);
}

#[test]
fn non_utf8_names_are_bytes_end_to_end() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.input(b"DELE caf\xe9\r\n"), vec!["Fs(RemoveFile([47, 99, 97, 102, 233]))"]);
    assert_eq!(t.fs(FsOutcome::Done), vec!["250 Delete operation successful."]);
}

#[test]
fn size_mdtm_and_errors() {
    let mut t = T::new();
    t.login();
    t.send("SIZE f");
    assert_eq!(t.meta(FileKind::File, 42), vec!["213 42"]);
    t.send("MDTM f");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 61);
    assert_eq!(
        t.fs(FsOutcome::Metadata(Metadata::new(FileKind::File, 1).modified(when))),
        vec!["213 19700102000101"]
    );
    t.send("DELE nope");
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::NotFound)), vec!["550 No such file or directory"]);
}

#[test]
fn rename_sequence() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("RNTO b"), vec!["503 RNFR required first."]);
    t.send("RNFR a");
    assert_eq!(t.meta(FileKind::File, 1), vec!["350 Ready for RNTO."]);
    assert_eq!(t.send("RNTO b"), vec![r#"Fs(Rename { from: [47, 97], to: [47, 98] })"#]);
    assert_eq!(t.fs(FsOutcome::Done), vec!["250 Rename successful."]);
    // Another command between RNFR and RNTO forgets the RNFR.
    t.send("RNFR a");
    t.meta(FileKind::File, 1);
    t.send("NOOP");
    assert_eq!(t.send("RNTO b"), vec!["503 RNFR required first."]);
}

#[test]
fn read_only_user_cannot_write() {
    let mut t = T::new();
    t.login_as(User::new("anonymous").read_only(true));
    for line in ["STOR f", "APPE f", "STOU", "DELE f", "RNFR f", "MKD d", "RMD d"] {
        assert_eq!(t.send(line), vec!["550 Permission denied."], "{line}");
    }
}

#[test]
fn passive_and_transfer() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("RETR f"), vec!["425 Use PORT or PASV first."]);
    assert_eq!(t.send("PASV"), vec!["OpenPassive"]);
    t.s.passive_opened(addr("127.0.0.1:50001"), t.now);
    assert_eq!(t.drain(), vec!["227 Entering Passive Mode (127,0,0,1,195,81)."]);
    assert_eq!(t.send("REST 10"), vec!["350 Restart position accepted (10)."]);
    assert_eq!(t.send("RETR f"), vec!["Fs(OpenRead { path: [47, 102], offset: 10 })"]);
    let out = t.fs(FsOutcome::Opened { size: Some(100) });
    assert!(out[0].starts_with("Transfer(Transfer { kind: Retr, path: [47, 102], offset: 10"), "{out:?}");
    assert!(t.s.is_transferring());
    t.s.transfer_started(t.now);
    assert_eq!(t.drain(), vec!["150 Opening BINARY mode data connection for f (100 bytes)."]);
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
    assert_eq!(t.done(TransferOutcome::Completed { bytes: 90 }), vec!["226 Transfer complete."]);
    // The data channel and REST are used up.
    assert_eq!(t.send("RETR f"), vec!["425 Use PORT or PASV first."]);
}

#[test]
fn missing_file_is_550_before_any_data_connection() {
    let mut t = T::new();
    t.login();
    t.passive();
    t.send("RETR nope");
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::NotFound)), vec!["550 No such file or directory"]);
    // The passive listener is still there for the next try.
    assert_eq!(t.send("RETR f"), vec!["Fs(OpenRead { path: [47, 102], offset: 0 })"]);
}

#[test]
fn uploads_open_by_policy() {
    let mut t = T::new();
    t.login();
    t.passive();
    assert_eq!(t.send("STOR a"), vec!["Fs(OpenWrite { path: [47, 97], mode: Truncate })"]);
    t.fs(FsOutcome::Failed(ErrorKind::PermissionDenied));
    t.send("REST 5");
    assert_eq!(t.send("STOR a"), vec!["Fs(OpenWrite { path: [47, 97], mode: Resume(5) })"]);
    t.fs(FsOutcome::Failed(ErrorKind::PermissionDenied));
    assert_eq!(t.send("APPE a"), vec!["Fs(OpenWrite { path: [47, 97], mode: Append })"]);
    t.fs(FsOutcome::Failed(ErrorKind::PermissionDenied));

    let mut t = T::with(SessionConfig { uploads: UploadPolicy::Atomic, ..Default::default() });
    t.login();
    t.passive();
    assert_eq!(t.send("STOR a"), vec!["Fs(OpenWrite { path: [47, 97], mode: Replace })"]);
    let out = t.fs(FsOutcome::Opened { size: None });
    assert!(out[0].contains("commit: true"), "{out:?}");
}

#[test]
fn stou_picks_the_next_free_name() {
    let mut t = T::new();
    t.login();
    t.passive();
    assert_eq!(t.send("STOU r"), vec!["Fs(OpenWrite { path: [47, 114], mode: CreateNew })"]);
    assert_eq!(
        t.fs(FsOutcome::Failed(ErrorKind::AlreadyExists)),
        vec!["Fs(OpenWrite { path: [47, 114, 46, 49], mode: CreateNew })"]
    );
    let out = t.fs(FsOutcome::Opened { size: None });
    assert!(out[0].contains("kind: Stou, path: [47, 114, 46, 49]"), "{out:?}");
    t.s.transfer_started(t.now);
    assert_eq!(t.drain(), vec!["150 FILE: r.1"]);
}

#[test]
#[allow(clippy::panic)]
fn list_of_a_directory_and_of_a_file() {
    let mut t = T::new();
    t.login();
    t.passive();
    assert_eq!(t.send("NLST -la d"), vec!["Fs(Metadata([47, 100]))"]);
    assert_eq!(t.meta(FileKind::Dir, 0), vec!["Fs(OpenList([47, 100]))"]);
    let entries = vec![
        DirEntry { name: b"x".to_vec(), metadata: Metadata::new(FileKind::File, 1) },
        DirEntry { name: b"y".to_vec(), metadata: Metadata::new(FileKind::Dir, 1) },
    ];
    t.s.fs_done(FsOutcome::Opened { size: None }, t.now, SystemTime::UNIX_EPOCH);
    match t.s.poll_action() {
        Some(Action::Transfer(tr)) => {
            assert_eq!(tr.kind, TransferKind::Nlst);
            let TransferData::Listing(format) = tr.data else { panic!("{tr:?}") };
            let mut bytes = Vec::new();
            format.write(&entries, &mut bytes);
            assert_eq!(bytes, b"x\r\ny\r\n");
        }
        other => panic!("{other:?}"),
    }
    t.done(TransferOutcome::Completed { bytes: 6 });
    // LIST of a file: the one entry, named by its last component.
    t.passive();
    t.send("LIST a/f");
    let out = t.meta(FileKind::File, 5);
    assert!(out[0].contains("kind: List, path: [47, 97, 47, 102]"), "{out:?}");
    t.done(TransferOutcome::Completed { bytes: 6 });
    // MLSD of a file is refused without a data connection.
    t.passive();
    t.send("MLSD f");
    assert_eq!(t.meta(FileKind::File, 5), vec!["550 Not a directory"]);
}

#[test]
fn epsv_and_epsv_all() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("EPSV 2"), vec!["522 Network protocol not supported, use (1)"]);
    t.passive();
    assert_eq!(t.send("EPSV ALL"), vec!["200 EPSV ALL ok."]);
    assert_eq!(t.send("PASV"), vec!["503 EPSV ALL in effect: only EPSV is allowed."]);
    assert_eq!(t.send("PORT 127,0,0,1,4,1"), vec!["503 EPSV ALL in effect: only EPSV is allowed."]);
    assert_eq!(t.send("EPSV"), vec!["OpenPassive"]);
    t.s.passive_failed(t.now);
    assert_eq!(t.drain(), vec!["425 No passive port available, try again later."]);
}

#[test]
fn pasv_on_ipv6_is_522() {
    let now = Instant::now();
    let mut t =
        T { s: Session::new(SessionConfig::default(), addr("[::1]:40000"), addr("[::1]:2121"), now), now };
    t.login();
    assert_eq!(t.send("PASV"), vec!["522 PASV needs IPv4; use EPSV."]);
    assert_eq!(t.send("EPSV"), vec!["OpenPassive"]);
}

#[test]
fn active_mode_bounce_protection() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("PORT 127,0,0,2,4,1"), vec!["501 Illegal PORT command: address is not the client's."]);
    assert_eq!(t.send("PORT 127,0,0,1,0,25"), vec!["501 Illegal PORT command: port below 1024."]);
    assert_eq!(
        t.send("EPRT |1|10.0.0.1|2000|"),
        vec!["501 Illegal PORT command: address is not the client's."]
    );
    t.passive();
    assert_eq!(
        t.send("PORT 127,0,0,1,4,1"),
        vec!["ClosePassive", "200 PORT command successful. Consider using PASV."]
    );
    assert_eq!(t.send("EPRT |1|127.0.0.1|2000|"), vec!["200 EPRT command successful."]);
    t.send("LIST -la");
    let out = t.meta(FileKind::Dir, 0);
    assert_eq!(out, vec!["Fs(OpenList([47]))"]);
    let out = t.fs(FsOutcome::Opened { size: None });
    assert!(
        out[0].contains("kind: List, path: [47], offset: 0, ascii: false, channel: Active(127.0.0.1:2000)"),
        "{out:?}"
    );

    let cfg = SessionConfig { dangerous_allow_foreign_active: true, ..Default::default() };
    let mut t = T::with(cfg);
    t.login();
    assert_eq!(t.send("PORT 127,0,0,2,0,25"), vec!["200 PORT command successful. Consider using PASV."]);
}

#[test]
fn abort_during_transfer() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("ABOR"), vec!["225 No transfer to abort."]);
    t.start_retr(10);
    assert_eq!(t.send("ABOR"), vec!["Abort"]);
    // A second ABOR (or anything else) waits for the first one's replies, then gets its own
    // (found by the session fuzz target: it used to get none).
    assert_eq!(t.send("ABOR"), Vec::<String>::new());
    assert_eq!(t.send("NOOP"), Vec::<String>::new());
    assert_eq!(
        t.done(TransferOutcome::Aborted),
        vec!["426 Transfer aborted.", "226 ABOR successful.", "225 No transfer to abort.", "200 NOOP ok."]
    );
    assert!(!t.s.is_transferring());
    // A transfer that completed before the ABOR took effect: 226, then 226 for the ABOR.
    t.start_retr(10);
    t.send("ABOR");
    assert_eq!(
        t.done(TransferOutcome::Completed { bytes: 10 }),
        vec!["226 Transfer complete.", "226 ABOR successful."]
    );
}

#[test]
fn commands_during_a_transfer_wait_in_order() {
    let mut t = T::new();
    t.login();
    t.start_retr(10);
    // PWD waits; the NOOP after it must wait too (replies stay in order); STAT alone is
    // answered at once.
    assert!(t.send("PWD").is_empty());
    assert!(t.send("NOOP").is_empty());
    assert!(t.input(&[b'x'; 5000]).is_empty());
    assert!(t.send("").is_empty());
    assert_eq!(
        t.done(TransferOutcome::Completed { bytes: 10 }),
        vec![
            "226 Transfer complete.",
            r#"257 "/" is the current directory"#,
            "200 NOOP ok.",
            "500 Command line too long"
        ]
    );
    t.start_retr(10);
    assert_eq!(t.send("STAT"), vec!["211 Status: data transfer in progress."]);
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
    // ABOR goes ahead of kept commands.
    assert!(t.send("SYST").is_empty());
    assert_eq!(t.send("ABOR"), vec!["Abort"]);
    assert_eq!(
        t.done(TransferOutcome::Aborted),
        vec!["426 Transfer aborted.", "226 ABOR successful.", "215 UNIX Type: L8"]
    );
}

#[test]
fn kept_commands_are_bounded() {
    let mut t = T::with(SessionConfig { max_deferred: 3, ..Default::default() });
    t.login();
    t.start_retr(10);
    assert!(t.input(b"SYST\r\nSYST\r\nSYST\r\nSYST\r\nABOR\r\n").is_empty());
    // Full: the session asks for no more input, and the ABOR waits in the buffer.
    assert!(!t.s.wants_input());
    let out = t.done(TransferOutcome::Completed { bytes: 10 });
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(out[5], "225 No transfer to abort.");
    assert!(t.s.wants_input());
}

#[test]
fn login_timeout() {
    let mut t = T::new();
    t.drain();
    assert!(t.advance(Duration::from_secs(59)).is_empty());
    // Bytes without a line end do not count as a command.
    assert!(t.input(b"US").is_empty());
    assert_eq!(t.advance(Duration::from_secs(1)), vec!["421 Login timeout.", "Close"]);
    assert!(t.s.is_closing());
}

#[test]
fn idle_timeout_counts_from_the_last_command() {
    let mut t = T::new();
    t.login();
    assert!(t.advance(Duration::from_secs(200)).is_empty());
    t.send("NOOP");
    // Partial command bytes do not reset the idle timer.
    assert!(t.advance(Duration::from_secs(150)).is_empty());
    assert!(t.input(b"NO").is_empty());
    assert!(t.advance(Duration::from_secs(149)).is_empty());
    assert_eq!(t.advance(Duration::from_secs(1)), vec!["421 Timeout.", "Close"]);
}

#[test]
fn new_timeouts_apply_from_the_next_deadline_set() {
    let mut t = T::new();
    t.login();
    let short = crate::Timeouts { idle: Duration::from_secs(10), ..Default::default() };
    t.s.set_timeouts(short);
    // The deadline set at login stays...
    assert!(t.advance(Duration::from_secs(200)).is_empty());
    // ...the next command sets one with the new timeout.
    t.send("NOOP");
    assert!(t.advance(Duration::from_secs(9)).is_empty());
    assert_eq!(t.advance(Duration::from_secs(1)), vec!["421 Timeout.", "Close"]);
}

#[test]
fn no_idle_timeout_during_a_transfer() {
    let mut t = T::with(SessionConfig { stall_timeout: Duration::from_secs(1000), ..Default::default() });
    t.login();
    t.start_retr(10);
    for i in 1..=10u64 {
        t.s.transfer_progress(i, t.now);
        assert!(t.advance(Duration::from_secs(100)).is_empty());
    }
    assert_eq!(t.done(TransferOutcome::Completed { bytes: 10 }), vec!["226 Transfer complete."]);
    // The idle timer starts again at the end of the transfer.
    assert!(t.advance(Duration::from_secs(299)).is_empty());
    assert_eq!(t.advance(Duration::from_secs(1)), vec!["421 Timeout.", "Close"]);
}

#[test]
fn data_connection_timeout() {
    let mut t = T::new();
    t.login();
    t.passive();
    t.send("RETR f");
    let out = t.fs(FsOutcome::Opened { size: Some(1) });
    assert!(out[0].starts_with("Transfer("));
    assert!(t.advance(Duration::from_secs(29)).is_empty());
    assert_eq!(t.advance(Duration::from_secs(1)), vec!["Abort"]);
    assert_eq!(t.done(TransferOutcome::Aborted), vec!["425 Failed to establish connection."]);
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
}

#[test]
fn unclaimed_passive_listener_is_closed() {
    let mut t = T::new();
    t.login();
    t.passive();
    // NOOPs keep the session alive but do not keep the port.
    for _ in 0..5 {
        assert!(t.advance(Duration::from_secs(5)).is_empty());
        t.send("NOOP");
    }
    assert_eq!(t.advance(Duration::from_secs(5)), vec!["ClosePassive"]);
    assert_eq!(t.send("RETR f"), vec!["425 Use PORT or PASV first."]);
}

#[test]
fn stalled_transfer_is_aborted() {
    let mut t = T::new();
    t.login();
    t.start_retr(1 << 30);
    // Progress keeps it alive.
    for i in 1..=5u64 {
        assert!(t.advance(Duration::from_secs(200)).is_empty());
        t.s.transfer_progress(i * 1000, t.now);
    }
    assert!(t.advance(Duration::from_secs(299)).is_empty());
    t.s.transfer_progress(5000, t.now);
    assert_eq!(t.advance(Duration::from_secs(1)), vec!["Abort"]);
    // An ABOR while the session aborts the transfer itself is answered after it.
    assert!(t.send("ABOR").is_empty());
    assert_eq!(
        t.done(TransferOutcome::Aborted),
        vec!["426 Transfer timed out: no data moved.", "225 No transfer to abort."]
    );
}

#[test]
fn shutdown_aborts_a_transfer_then_421() {
    let mut t = T::new();
    t.login();
    t.start_retr(10);
    t.s.shutdown("Server shutting down.");
    assert_eq!(t.drain(), vec!["Abort"]);
    assert_eq!(
        t.done(TransferOutcome::Aborted),
        vec!["426 Transfer aborted: server shutting down.", "421 Server shutting down.", "Close"]
    );
}

#[test]
fn mlst_and_stat_path() {
    let mut t = T::new();
    t.login();
    t.send("MLST f");
    assert_eq!(
        t.fs(FsOutcome::Metadata(Metadata::new(FileKind::File, 3).mode(0o644))),
        vec!["250-Listing /f\r\n type=file;size=3;perm=adfrw;UNIX.mode=0644; /f\r\n250 End"]
    );
    t.send("STAT f");
    let out = t.meta(FileKind::File, 3);
    assert!(out[0].starts_with("213-Status follows:\r\n -rw-r--r--"), "{out:?}");
    assert!(out[0].ends_with(" f\r\n213 End of status"), "{out:?}");
}

fn entry(name: &[u8]) -> DirEntry {
    DirEntry { name: name.to_vec(), metadata: Metadata::new(FileKind::File, 1) }
}

/// STAT of a directory up to its first page request.
fn stat_dir(t: &mut T) {
    t.send("STAT /d");
    assert_eq!(t.meta(FileKind::Dir, 0), vec!["Fs(OpenList([47, 100]))"]);
    assert_eq!(t.fs(FsOutcome::Opened { size: None }), vec!["Fs(ListPage([47, 100]))"]);
}

#[test]
fn stat_of_a_directory_is_one_reply_sent_a_page_at_a_time() {
    let mut t = T::new();
    t.login();
    stat_dir(&mut t);
    // Commands sent meanwhile wait for the whole reply.
    assert!(t.send("NOOP").is_empty());
    let first = t.fs(FsOutcome::Listing(vec![entry(b"a"), entry(b"b")]));
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first[0].starts_with("213-Status follows:\r\n -rw-r--r--"), "{first:?}");
    assert!(first[0].ends_with(" b"), "{first:?}");
    assert_eq!(first[1], "Fs(ListPage([47, 100]))");
    // A name cannot end the reply early, nor start a line of its own.
    let second = t.fs(FsOutcome::Listing(vec![entry(b"c\r\n213 x")]));
    assert!(second[0].starts_with(" -rw-r--r--") && second[0].ends_with(" c??213 x"), "{second:?}");
    assert_eq!(second[1], "Fs(ListPage([47, 100]))");
    assert_eq!(t.fs(FsOutcome::Listing(Vec::new())), vec!["213 End of status", "200 NOOP ok."]);
}

#[test]
fn stat_of_an_empty_directory() {
    let mut t = T::new();
    t.login();
    stat_dir(&mut t);
    assert_eq!(t.fs(FsOutcome::Listing(Vec::new())), vec!["213-Status follows:", "213 End of status"]);
}

#[test]
fn stat_of_a_directory_that_cannot_be_listed_gets_one_error_reply() {
    let mut t = T::new();
    t.login();
    t.send("STAT /d");
    t.meta(FileKind::Dir, 0);
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::PermissionDenied)), vec!["550 Permission denied"]);
    // Nor when the first page fails: nothing was sent yet.
    stat_dir(&mut t);
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::Unavailable)), vec!["450 Resource temporarily unavailable"]);
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
}

#[test]
fn stat_listing_that_fails_midway_still_ends_its_reply() {
    let mut t = T::new();
    t.login();
    stat_dir(&mut t);
    let first = t.fs(FsOutcome::Listing(vec![entry(b"a")]));
    assert!(first[0].starts_with("213-Status follows:"), "{first:?}");
    assert_eq!(
        t.fs(FsOutcome::Failed(ErrorKind::Local)),
        vec!["213 End of status: listing incomplete (Local error in processing)."]
    );
    // An answer of the wrong kind (an engine bug) ends it too.
    stat_dir(&mut t);
    t.fs(FsOutcome::Listing(vec![entry(b"a")]));
    assert_eq!(t.fs(FsOutcome::Done), vec!["213 End of status: listing incomplete."]);
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
}

#[test]
fn shutdown_during_a_stat_listing_ends_its_reply_first() {
    let mut t = T::new();
    t.login();
    stat_dir(&mut t);
    t.fs(FsOutcome::Listing(vec![entry(b"a")]));
    t.s.shutdown("Server shutting down.");
    assert_eq!(
        t.drain(),
        vec!["213 End of status: listing incomplete.", "421 Server shutting down.", "Close"]
    );
    assert!(t.fs(FsOutcome::Listing(Vec::new())).is_empty());
}

#[test]
fn quit_and_unknown() {
    let mut t = T::new();
    t.drain();
    assert_eq!(t.send("XYZZY"), vec!["500 Unknown command"]);
    assert_eq!(t.send("QUIT"), vec!["221 Goodbye.", "Close"]);
}

#[test]
fn type_mode_stru_opts() {
    let mut t = T::new();
    t.login();
    assert_eq!(t.send("TYPE A"), vec!["200 Switching to ASCII mode."]);
    assert_eq!(t.send("TYPE E"), vec!["504 Command not implemented for that parameter"]);
    assert_eq!(t.send("MODE S"), vec!["200 Mode set to S."]);
    assert_eq!(t.send("MODE Z"), vec!["504 Command not implemented for that parameter"]);
    assert_eq!(t.send("OPTS UTF8 ON"), vec!["200 Always in UTF8 mode."]);
    assert_eq!(t.send("OPTS MLST type;size;bogus;"), vec!["200 MLST OPTS type;size;"]);
    t.passive();
    t.send("RETR f");
    let out = t.fs(FsOutcome::Opened { size: None });
    assert!(out[0].contains("ascii: true"), "{out:?}");
}

#[test]
fn stray_answers_do_not_clear_another_wait() {
    // Found by the session fuzz target (fuzz/regressions/session/).
    let mut t = T::new();
    t.drain();
    t.send("USER bob");
    t.send("PASS pw");
    assert!(t.s.is_waiting());
    assert!(t.fs(FsOutcome::Done).is_empty());
    t.s.transfer_done(TransferOutcome::Aborted, t.now);
    t.s.passive_opened(addr("127.0.0.1:1"), t.now);
    assert!(t.s.is_waiting(), "still waiting for the authenticator");
    assert!(t.drain().is_empty());
    t.s.login_done(Ok(User::new("bob")), t.now);
    assert_eq!(t.drain(), vec!["230 Login successful."]);
}

#[test]
fn answers_after_a_shutdown_say_nothing() {
    // Found by the session fuzz target (fuzz/regressions/session/shutdown-then-answer): a
    // shutdown while an answer was owed, then the answer, gave a reply after Close.
    let mut t = T::new();
    t.drain();
    t.send("USER bob");
    t.send("PASS pw");
    t.s.shutdown("Server shutting down.");
    assert_eq!(t.drain(), vec!["421 Server shutting down.", "Close"]);
    t.s.login_done(Ok(User::new("bob")), t.now);
    assert!(t.drain().is_empty());

    let mut t = T::new();
    t.login();
    assert_eq!(t.send("MKD d"), vec!["Fs(MakeDir([47, 100]))"]);
    t.s.shutdown("Server shutting down.");
    assert_eq!(t.drain(), vec!["421 Server shutting down.", "Close"]);
    assert!(t.fs(FsOutcome::Done).is_empty());

    let mut t = T::new();
    t.login();
    assert_eq!(t.send("EPSV"), vec!["OpenPassive"]);
    t.s.shutdown("Server shutting down.");
    assert_eq!(t.drain(), vec!["421 Server shutting down.", "Close"]);
    t.s.passive_opened(addr("127.0.0.1:50001"), t.now);
    t.s.passive_failed(t.now);
    assert!(t.drain().is_empty());
}

// ---- FTPS (RFC 4217), see tls.rs ----

fn tls_config(control: TlsPolicy, data: TlsPolicy) -> SessionConfig {
    SessionConfig { tls: control, tls_data: data, ..SessionConfig::default() }
}

/// AUTH TLS up to the finished handshake.
fn auth_tls(t: &mut T) {
    t.drain();
    assert_eq!(t.send("AUTH TLS"), vec!["234 Proceed with negotiation.", "StartTls"]);
    assert!(!t.s.wants_input());
    t.s.tls_started(t.now);
    assert!(t.s.is_tls());
}

#[test]
fn tls_off_answers_502_and_feat_is_silent() {
    let mut t = T::new();
    t.drain();
    assert_eq!(t.send("AUTH TLS"), vec!["502 TLS not configured."]);
    assert_eq!(t.send("PBSZ 0"), vec!["502 TLS not configured."]);
    let feat = t.send("FEAT").join("\n");
    assert!(!feat.contains("AUTH TLS") && !feat.contains("PBSZ"), "{feat}");
}

#[test]
fn feat_lists_tls_when_configured() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    t.drain();
    let feat = t.send("FEAT").join("\n");
    assert!(feat.contains(" AUTH TLS\r\n") && feat.contains(" PBSZ\r\n PROT\r\n"), "{feat}");
}

#[test]
fn pbsz_and_prot_sequence() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    t.drain();
    assert_eq!(t.send("PBSZ 0"), vec!["503 PBSZ needs AUTH TLS first."]);
    assert_eq!(t.send("PROT P"), vec!["503 PROT needs PBSZ first."]);
    assert_eq!(t.send("AUTH SSL"), vec!["234 Proceed with negotiation.", "StartTls"]);
    t.s.tls_started(t.now);
    assert_eq!(t.send("PROT P"), vec!["503 PROT needs PBSZ first."]);
    assert_eq!(t.send("PBSZ 16384"), vec!["200 PBSZ=0"]);
    assert_eq!(t.send("PROT S"), vec!["536 PROT S and E are not supported; use C or P."]);
    assert_eq!(t.send("PROT E"), vec!["536 PROT S and E are not supported; use C or P."]);
    assert_eq!(t.send("PROT P"), vec!["200 Protection set to Private."]);
    assert!(t.s.protects_data());
    assert_eq!(t.send("PROT C"), vec!["200 Protection set to Clear."]);
    assert!(!t.s.protects_data());
    assert_eq!(t.send("CCC"), vec!["534 CCC refused: the connection stays TLS."]);
    assert_eq!(t.send("AUTH TLS"), vec!["503 Already using TLS."]);
    assert_eq!(t.send("AUTH KERBEROS"), vec!["503 Already using TLS."]);
}

#[test]
fn unknown_mechanism_is_504() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    t.drain();
    assert_eq!(t.send("AUTH GSSAPI"), vec!["504 AUTH TLS or AUTH SSL only."]);
}

#[test]
fn lines_pipelined_after_auth_are_dropped() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    t.drain();
    // Injected in clear before the handshake: must not run as if it came through TLS.
    assert_eq!(t.input(b"AUTH TLS\r\nUSER mallory\r\n"), vec!["234 Proceed with negotiation.", "StartTls"]);
    t.s.tls_started(t.now);
    assert!(t.drain().is_empty());
    assert_eq!(t.send("NOOP"), vec!["200 NOOP ok."]);
}

#[test]
fn user_in_clear_refused_when_tls_required() {
    let mut t = T::with(tls_config(TlsPolicy::Required, TlsPolicy::Optional));
    t.drain();
    assert_eq!(t.send("USER alice"), vec!["530 TLS required: use AUTH TLS first."]);
    // No password is ever asked for.
    assert_eq!(t.send("PASS secret"), vec!["503 Login with USER first."]);
    assert_eq!(t.send("USER anonymous"), vec!["530 TLS required: use AUTH TLS first."]);
    auth_tls(&mut t);
    assert_eq!(t.send("USER alice"), vec!["331 Please specify the password."]);
}

#[test]
fn anonymous_may_be_exempt() {
    let mut c = tls_config(TlsPolicy::Required, TlsPolicy::Required);
    c.tls_anonymous_exempt = true;
    let mut t = T::with(c);
    t.drain();
    assert_eq!(t.send("USER alice"), vec!["530 TLS required: use AUTH TLS first."]);
    assert_eq!(t.send("USER ftp"), vec!["331 Please specify the password."]);
}

#[test]
fn clear_data_refused_when_data_tls_required() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Required));
    auth_tls(&mut t);
    t.login();
    assert_eq!(t.send("RETR f"), vec!["521 Data connections must be protected: use PROT P."]);
    assert_eq!(t.send("LIST"), vec!["521 Data connections must be protected: use PROT P."]);
    assert_eq!(t.send("PBSZ 0"), vec!["200 PBSZ=0"]);
    assert_eq!(t.send("PROT P"), vec!["200 Protection set to Private."]);
    t.passive();
    assert_eq!(t.send("RETR f"), vec!["Fs(OpenRead { path: [47, 102], offset: 0 })"]);
    let out = t.fs(FsOutcome::Opened { size: Some(3) });
    assert!(out[0].contains("protect: true"), "{out:?}");
    t.s.transfer_started(t.now);
    t.drain();
    assert_eq!(
        t.done(TransferOutcome::TlsNotResumed),
        vec!["522 TLS session of the data connection not resumed: reuse the control connection's session."]
    );
}

#[test]
fn rein_keeps_tls_and_resets_prot() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    auth_tls(&mut t);
    t.send("PBSZ 0");
    t.send("PROT P");
    t.login();
    assert_eq!(t.send("REIN"), vec!["220 Service ready for new user."]);
    assert!(t.s.is_tls() && !t.s.protects_data());
    assert_eq!(t.send("PROT P"), vec!["503 PROT needs PBSZ first."]);
}

#[test]
fn implicit_tls_implies_prot_p() {
    let mut c = tls_config(TlsPolicy::Optional, TlsPolicy::Optional);
    c.implicit_tls = true;
    let mut t = T::with(c);
    t.drain();
    assert!(t.s.is_tls() && t.s.protects_data());
    assert_eq!(t.send("AUTH TLS"), vec!["503 Already using TLS."]);
}

// ---- per-user TLS policy (User::tls, User::tls_data) ----

/// USER and PASS, then the authenticator's answer; returns what the session said.
fn login_answer(t: &mut T, user: User) -> Vec<String> {
    t.drain();
    assert_eq!(t.send("USER alice"), vec!["331 Please specify the password."]);
    t.send("PASS secret");
    t.s.login_done(Ok(user), t.now);
    t.drain()
}

#[test]
fn user_requiring_tls_is_refused_on_a_clear_control_connection() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    let alice = || User::new("alice").tls(TlsPolicy::Required);
    // The password was right, but this user must come over TLS: 530 at once, not logged in.
    assert_eq!(login_answer(&mut t, alice()), vec!["530 TLS required for this user: use AUTH TLS first."]);
    assert!(t.s.user().is_none());
    assert_eq!(t.send("PWD"), vec!["530 Please login with USER and PASS."]);
    // Another user without the policy logs in on the same clear connection.
    assert_eq!(login_answer(&mut t, User::new("bob")), vec!["230 Login successful."]);
    // Over TLS the same user is let in.
    auth_tls(&mut t);
    assert_eq!(login_answer(&mut t, alice()), vec!["230 Login successful."]);
}

#[test]
fn tls_refusals_count_as_failed_logins() {
    let mut t =
        T::with(SessionConfig { max_login_failures: 2, ..tls_config(TlsPolicy::Optional, TlsPolicy::Off) });
    let alice = || User::new("alice").tls(TlsPolicy::Required);
    assert_eq!(login_answer(&mut t, alice()), vec!["530 TLS required for this user: use AUTH TLS first."]);
    assert_eq!(
        login_answer(&mut t, alice()),
        vec![
            "530 TLS required for this user: use AUTH TLS first.",
            "421 Too many failed logins, closing.",
            "Close"
        ]
    );
}

#[test]
fn user_requiring_tls_cannot_log_in_where_the_server_has_no_tls() {
    let mut t = T::new();
    assert_eq!(
        login_answer(&mut t, User::new("alice").tls(TlsPolicy::Required)),
        vec!["530 TLS required for this user: use AUTH TLS first."]
    );
}

#[test]
fn user_requiring_prot_p_on_a_server_that_does_not() {
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Optional));
    auth_tls(&mut t);
    assert_eq!(
        login_answer(&mut t, User::new("alice").tls_data(TlsPolicy::Required)),
        vec!["230 Login successful."]
    );
    assert_eq!(t.send("RETR f"), vec!["521 Data connections must be protected: use PROT P."]);
    assert_eq!(t.send("NLST"), vec!["521 Data connections must be protected: use PROT P."]);
    t.send("PBSZ 0");
    t.send("PROT P");
    t.passive();
    assert_eq!(t.send("RETR f"), vec!["Fs(OpenRead { path: [47, 102], offset: 0 })"]);
}

#[test]
fn a_users_data_policy_replaces_the_servers() {
    // The server requires PROT P; this user may transfer in clear.
    let mut t = T::with(tls_config(TlsPolicy::Optional, TlsPolicy::Required));
    assert_eq!(
        login_answer(&mut t, User::new("alice").tls_data(TlsPolicy::Optional)),
        vec!["230 Login successful."]
    );
    t.passive();
    assert_eq!(t.send("RETR f"), vec!["Fs(OpenRead { path: [47, 102], offset: 0 })"]);
    // An exempt anonymous user whose own policy requires PROT P is not exempt.
    let mut c = tls_config(TlsPolicy::Optional, TlsPolicy::Required);
    c.tls_anonymous_exempt = true;
    let mut t = T::with(c);
    t.drain();
    t.send("USER ftp");
    t.send("PASS x");
    t.s.login_done(Ok(User::new("ftp").tls_data(TlsPolicy::Required)), t.now);
    assert_eq!(t.drain(), vec!["230 Login successful."]);
    assert_eq!(t.send("RETR f"), vec!["521 Data connections must be protected: use PROT P."]);
}

mod cmds;
