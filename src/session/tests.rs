//! Session transcripts: lines in, replies and actions out, no sockets.

use super::*;
use crate::proto::parse;
use crate::storage::FileKind;
use std::time::SystemTime;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn session() -> Session {
    Session::new(SessionConfig::default(), addr("127.0.0.1:40000"), addr("127.0.0.1:2121"))
}

/// Feeds a line and returns what came out, replies as their wire text.
fn send(s: &mut Session, line: &str) -> Vec<String> {
    match parse(line.as_bytes()) {
        Ok(cmd) => s.handle_command(cmd),
        Err(e) => s.actions.push_back(Action::Reply(e.reply())),
    }
    drain(s)
}

fn drain(s: &mut Session) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(a) = s.poll_action() {
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

fn login(s: &mut Session) {
    drain(s);
    send(s, "USER alice");
    let out = send(s, "PASS secret");
    assert_eq!(out, vec![r#"Authenticate { username: "alice", password: [115, 101, 99, 114, 101, 116] }"#]);
    s.login_done(Ok(User::new("alice")));
    assert_eq!(drain(s), vec!["230 Login successful."]);
}

#[test]
fn greeting_and_login() {
    let mut s = session();
    assert_eq!(drain(&mut s), vec!["220 ringftp ready"]);
    assert_eq!(send(&mut s, "PASS x"), vec!["503 Login with USER first."]);
    assert_eq!(send(&mut s, "USER bob"), vec!["331 Please specify the password."]);
    assert_eq!(send(&mut s, "PASS wrong").len(), 1);
    assert!(s.is_waiting());
    s.login_done(Err(AuthError::BadCredentials));
    assert_eq!(drain(&mut s), vec!["530 Login incorrect."]);
    assert!(s.user().is_none());
    login(&mut s);
    assert_eq!(s.user().map(|u| u.name.as_str()), Some("alice"));
}

#[test]
fn commands_before_login_refused() {
    let mut s = session();
    drain(&mut s);
    for line in ["PWD", "CWD /", "RETR x", "PASV", "PORT 127,0,0,1,4,1", "LIST", "STOR x", "MKD d"] {
        assert_eq!(send(&mut s, line), vec!["530 Please login with USER and PASS."], "{line}");
    }
    // These work before login.
    assert!(send(&mut s, "FEAT")[0].starts_with("211-Features:"));
    assert_eq!(send(&mut s, "SYST"), vec!["215 UNIX Type: L8"]);
    assert_eq!(send(&mut s, "NOOP"), vec!["200 NOOP ok."]);
}

#[test]
fn too_many_failures_close() {
    let mut s = session();
    drain(&mut s);
    for i in 0..3 {
        send(&mut s, "USER x");
        send(&mut s, "PASS y");
        s.login_done(Err(AuthError::BadCredentials));
        let out = drain(&mut s);
        if i < 2 {
            assert_eq!(out, vec!["530 Login incorrect."]);
        } else {
            assert_eq!(out, vec!["421 Too many failed logins, closing.", "Close"]);
        }
    }
    assert!(s.is_closing());
    assert!(send(&mut s, "NOOP").is_empty());
}

#[test]
fn feat_is_well_formed() {
    let mut s = session();
    drain(&mut s);
    let feat = send(&mut s, "FEAT").join("\n");
    for f in ["EPRT", "EPSV", "MDTM", "MLST type*", "PASV", "REST STREAM", "SIZE", "UTF8"] {
        assert!(feat.contains(&format!("\n {f}")), "{f} missing in {feat}");
    }
    assert!(feat.ends_with("211 End"));
}

#[test]
fn cwd_pwd_and_paths() {
    let mut s = session();
    login(&mut s);
    assert_eq!(send(&mut s, "PWD"), vec![r#"257 "/" is the current directory"#]);
    assert_eq!(send(&mut s, "CWD ../../a/./b"), vec![r#"Fs(Metadata([47, 97, 47, 98]))"#]);
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::Dir, 0)), SystemTime::UNIX_EPOCH);
    assert_eq!(drain(&mut s), vec!["250 Directory successfully changed."]);
    assert_eq!(send(&mut s, "PWD"), vec![r#"257 "/a/b" is the current directory"#]);
    send(&mut s, "CWD file");
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::File, 0)), SystemTime::UNIX_EPOCH);
    assert_eq!(drain(&mut s), vec!["550 Failed to change directory."]);
    send(&mut s, "CDUP");
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::Dir, 0)), SystemTime::UNIX_EPOCH);
    drain(&mut s);
    assert_eq!(send(&mut s, "PWD"), vec![r#"257 "/a" is the current directory"#]);
    assert_eq!(send(&mut s, "CWD a\0b"), vec!["553 File name not allowed."]);
}

#[test]
fn size_mdtm_and_errors() {
    let mut s = session();
    login(&mut s);
    send(&mut s, "SIZE f");
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::File, 42)), SystemTime::UNIX_EPOCH);
    assert_eq!(drain(&mut s), vec!["213 42"]);
    send(&mut s, "MDTM f");
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 61);
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::File, 1).modified(t)), t);
    assert_eq!(drain(&mut s), vec!["213 19700102000101"]);
    send(&mut s, "DELE nope");
    s.fs_done(FsOutcome::Failed(ErrorKind::NotFound), t);
    assert_eq!(drain(&mut s), vec!["550 No such file or directory"]);
}

#[test]
fn rename_sequence() {
    let mut s = session();
    login(&mut s);
    assert_eq!(send(&mut s, "RNTO b"), vec!["503 RNFR required first."]);
    send(&mut s, "RNFR a");
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::File, 1)), SystemTime::UNIX_EPOCH);
    assert_eq!(drain(&mut s), vec!["350 Ready for RNTO."]);
    assert_eq!(send(&mut s, "RNTO b"), vec![r#"Fs(Rename { from: [47, 97], to: [47, 98] })"#]);
    s.fs_done(FsOutcome::Done, SystemTime::UNIX_EPOCH);
    assert_eq!(drain(&mut s), vec!["250 Rename successful."]);
    // Another command between RNFR and RNTO forgets the RNFR.
    send(&mut s, "RNFR a");
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::File, 1)), SystemTime::UNIX_EPOCH);
    drain(&mut s);
    send(&mut s, "NOOP");
    assert_eq!(send(&mut s, "RNTO b"), vec!["503 RNFR required first."]);
}

#[test]
fn read_only_user_cannot_write() {
    let mut s = session();
    drain(&mut s);
    send(&mut s, "USER anonymous");
    send(&mut s, "PASS x");
    s.login_done(Ok(User::new("anonymous").read_only(true)));
    drain(&mut s);
    for line in ["STOR f", "APPE f", "STOU", "DELE f", "RNFR f", "MKD d", "RMD d"] {
        assert_eq!(send(&mut s, line), vec!["550 Permission denied."], "{line}");
    }
}

#[test]
fn passive_and_transfer() {
    let mut s = session();
    login(&mut s);
    assert_eq!(send(&mut s, "RETR f"), vec!["425 Use PORT or PASV first."]);
    assert_eq!(send(&mut s, "PASV"), vec!["OpenPassive"]);
    s.passive_opened(addr("127.0.0.1:50001"));
    assert_eq!(drain(&mut s), vec!["227 Entering Passive Mode (127,0,0,1,195,81)."]);
    assert_eq!(send(&mut s, "REST 10"), vec!["350 Restart position accepted (10)."]);
    let out = send(&mut s, "RETR f");
    assert!(out[0].starts_with("Transfer(Transfer { kind: Retr, path: [47, 102], offset: 10"), "{out:?}");
    assert!(s.is_transferring());
    s.transfer_started(b"f", Some(100));
    assert_eq!(drain(&mut s), vec!["150 Opening BINARY mode data connection for f (100 bytes)."]);
    assert_eq!(send(&mut s, "NOOP"), vec!["200 NOOP ok."]);
    s.transfer_done(TransferOutcome::Completed { bytes: 90 });
    assert_eq!(drain(&mut s), vec!["226 Transfer complete."]);
    // The data channel and REST are used up.
    assert_eq!(send(&mut s, "RETR f"), vec!["425 Use PORT or PASV first."]);
}

#[test]
fn epsv_and_epsv_all() {
    let mut s = session();
    login(&mut s);
    assert_eq!(send(&mut s, "EPSV 2"), vec!["522 Network protocol not supported, use (1)"]);
    send(&mut s, "EPSV");
    s.passive_opened(addr("127.0.0.1:50002"));
    assert_eq!(drain(&mut s), vec!["229 Entering Extended Passive Mode (|||50002|)"]);
    assert_eq!(send(&mut s, "EPSV ALL"), vec!["200 EPSV ALL ok."]);
    assert_eq!(send(&mut s, "PASV"), vec!["503 EPSV ALL in effect: only EPSV is allowed."]);
    assert_eq!(send(&mut s, "PORT 127,0,0,1,4,1"), vec!["503 EPSV ALL in effect: only EPSV is allowed."]);
    assert_eq!(send(&mut s, "EPSV"), vec!["OpenPassive"]);
    s.passive_failed();
    assert_eq!(drain(&mut s), vec!["425 No passive port available, try again later."]);
}

#[test]
fn active_mode_bounce_protection() {
    let mut s = session();
    login(&mut s);
    assert_eq!(
        send(&mut s, "PORT 127,0,0,2,4,1"),
        vec!["501 Illegal PORT command: address is not the client's."]
    );
    assert_eq!(send(&mut s, "PORT 127,0,0,1,0,25"), vec!["501 Illegal PORT command: port below 1024."]);
    assert_eq!(
        send(&mut s, "EPRT |1|10.0.0.1|2000|"),
        vec!["501 Illegal PORT command: address is not the client's."]
    );
    assert_eq!(
        send(&mut s, "PORT 127,0,0,1,4,1"),
        vec!["ClosePassive", "200 PORT command successful. Consider using PASV."]
    );
    assert_eq!(send(&mut s, "EPRT |1|127.0.0.1|2000|"), vec!["ClosePassive", "200 EPRT command successful."]);
    let out = send(&mut s, "LIST -la");
    assert!(
        out[0].contains("kind: List, path: [47], offset: 0, ascii: false, channel: Active(127.0.0.1:2000)"),
        "{out:?}"
    );

    let cfg = SessionConfig { dangerous_allow_foreign_active: true, ..Default::default() };
    let mut s = Session::new(cfg, addr("127.0.0.1:40000"), addr("127.0.0.1:2121"));
    login(&mut s);
    assert_eq!(
        send(&mut s, "PORT 127,0,0,2,0,25"),
        vec!["ClosePassive", "200 PORT command successful. Consider using PASV."]
    );
}

#[test]
fn abort_during_transfer_and_idle() {
    let mut s = session();
    login(&mut s);
    assert_eq!(send(&mut s, "ABOR"), vec!["225 No transfer to abort."]);
    send(&mut s, "PASV");
    s.passive_opened(addr("127.0.0.1:50001"));
    drain(&mut s);
    send(&mut s, "STOR up");
    s.transfer_started(b"up", None);
    drain(&mut s);
    assert_eq!(send(&mut s, "ABOR"), vec!["Abort"]);
    assert_eq!(send(&mut s, "ABOR"), Vec::<String>::new());
    s.transfer_done(TransferOutcome::Aborted);
    assert_eq!(drain(&mut s), vec!["426 Transfer aborted.", "226 ABOR successful."]);
    assert!(!s.is_transferring());
}

#[test]
fn transfer_failures_map_to_replies() {
    let cases = [
        (TransferOutcome::OpenFailed(ErrorKind::NotFound), "550 No such file or directory"),
        (TransferOutcome::NoDataConnection, "425 Failed to establish connection."),
        (TransferOutcome::ConnectionLost, "426 Connection closed; transfer aborted."),
        (TransferOutcome::StorageFailed(ErrorKind::InsufficientStorage), "452 Insufficient storage space"),
        (TransferOutcome::StorageFailed(ErrorKind::QuotaExceeded), "552 Disk quota exceeded"),
        (TransferOutcome::StorageFailed(ErrorKind::Local), "451 Local error in processing"),
    ];
    for (outcome, want) in cases {
        let mut s = session();
        login(&mut s);
        send(&mut s, "EPSV");
        s.passive_opened(addr("127.0.0.1:50001"));
        drain(&mut s);
        send(&mut s, "STOR x");
        s.transfer_done(outcome);
        assert_eq!(drain(&mut s), vec![want]);
    }
}

#[test]
fn mlst_and_stat_path() {
    let mut s = session();
    login(&mut s);
    send(&mut s, "MLST f");
    s.fs_done(FsOutcome::Metadata(Metadata::new(FileKind::File, 3).mode(0o644)), SystemTime::UNIX_EPOCH);
    assert_eq!(
        drain(&mut s),
        vec!["250-Listing /f\r\n type=file;size=3;perm=adfrw;UNIX.mode=0644; /f\r\n250 End"]
    );
    send(&mut s, "STAT /");
    let entries = vec![DirEntry { name: b"a".to_vec(), metadata: Metadata::new(FileKind::File, 1) }];
    s.fs_done(FsOutcome::Listing(entries), SystemTime::UNIX_EPOCH);
    let out = drain(&mut s);
    assert!(out[0].starts_with("213-Status follows:\r\n -rw-r--r--"), "{out:?}");
    assert!(out[0].ends_with("213 End of status"));
}

#[test]
fn quit_and_unknown() {
    let mut s = session();
    drain(&mut s);
    assert_eq!(send(&mut s, "XYZZY"), vec!["500 Unknown command"]);
    assert_eq!(send(&mut s, "QUIT"), vec!["221 Goodbye.", "Close"]);
}

#[test]
fn type_mode_stru_opts() {
    let mut s = session();
    login(&mut s);
    assert_eq!(send(&mut s, "TYPE A"), vec!["200 Switching to ASCII mode."]);
    assert_eq!(send(&mut s, "TYPE E"), vec!["504 Command not implemented for that parameter"]);
    assert_eq!(send(&mut s, "MODE S"), vec!["200 Mode set to S."]);
    assert_eq!(send(&mut s, "OPTS UTF8 ON"), vec!["200 Always in UTF8 mode."]);
    assert_eq!(send(&mut s, "OPTS MLST type;size;bogus;"), vec!["200 MLST OPTS type;size;"]);
    send(&mut s, "EPSV");
    s.passive_opened(addr("127.0.0.1:50001"));
    drain(&mut s);
    let out = send(&mut s, "RETR f");
    assert!(out[0].contains("ascii: true"), "{out:?}");
}

#[test]
fn stray_fs_answer_does_not_clear_another_wait() {
    // Found by the session fuzz target (fuzz/regressions/session/).
    let mut s = session();
    drain(&mut s);
    send(&mut s, "USER bob");
    send(&mut s, "PASS pw");
    assert!(s.is_waiting());
    s.fs_done(FsOutcome::Done, SystemTime::UNIX_EPOCH);
    assert!(s.is_waiting(), "still waiting for the authenticator");
    assert!(drain(&mut s).is_empty());
    s.login_done(Ok(User::new("bob")));
    assert_eq!(drain(&mut s), vec!["230 Login successful."]);
}
