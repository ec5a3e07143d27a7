//! Transcripts for MFMT, SITE UTIME/CHMOD, AVBL, CLNT, OPTS MLST, HASH and the X digests.
#![allow(clippy::panic)]

use super::*;
use crate::types::{HashAlgo, Permissions};
use std::time::UNIX_EPOCH;

/// 2024-02-29 12:34:56 UTC.
fn leap_day() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_709_210_096)
}

fn read_only() -> User {
    User::new("alice").read_only(true)
}

#[test]
fn mfmt_sets_the_time() {
    let mut t = T::new();
    t.login();
    let out = t.send("MFMT 20240229123456 dir/a b");
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with("Fs(SetModified { path: [47, 100, 105, 114, 47, 97, 32, 98], time: "),
        "{out:?}"
    );
    assert_eq!(t.fs(FsOutcome::Done), vec!["213 Modify=20240229123456; dir/a b"]);
    // A time that does not parse, a missing path, a backend that cannot.
    assert_eq!(t.send("MFMT 2024022912345 f"), vec!["501 Invalid argument"]);
    assert_eq!(t.send("MFMT 20240229123456"), vec!["501 Missing argument"]);
    t.send("MFMT 20240229123456 f");
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::NotSupported)), vec!["502 Not supported by this storage."]);
    t.send("MFMT 20240229123456 missing");
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::NotFound)), vec!["550 No such file or directory"]);
    assert_eq!(
        t.send("MFMT 20240229123456 ../../x"),
        vec!["Fs(SetModified { path: [47, 120], time: SystemTime { tv_sec: 1709210096, tv_nsec: 0 } })"]
    );
}

#[test]
fn mfmt_site_refused_for_read_only_users() {
    let mut t = T::new();
    t.login_as(read_only());
    assert_eq!(t.send("MFMT 20240229123456 f"), vec!["550 Permission denied."]);
    assert_eq!(t.send("SITE UTIME 20240229123456 f"), vec!["550 Permission denied."]);
    assert_eq!(t.send("SITE CHMOD 644 f"), vec!["550 Permission denied."]);
    // Reading is still fine.
    assert_eq!(t.send("HASH f"), vec!["Fs(Metadata([47, 102]))"]);
}

#[test]
fn site_utime_both_forms() {
    let mut t = T::new();
    t.login();
    let want = format!("Fs(SetModified {{ path: [47, 102, 32, 103], time: {:?} }})", leap_day());
    assert_eq!(t.send("SITE UTIME 20240229123456 f g"), vec![want.clone()]);
    assert_eq!(t.fs(FsOutcome::Done), vec!["200 SITE UTIME command successful."]);
    // lftp's older form: path, atime, mtime, ctime, UTC; the mtime counts.
    assert_eq!(t.send("SITE UTIME f g 20000101000000 20240229123456 20000101000000 UTC"), vec![want]);
    assert_eq!(t.fs(FsOutcome::Done), vec!["200 SITE UTIME command successful."]);
    assert!(t.send("SITE UTIME f")[0].starts_with("501 Usage: SITE UTIME"));
    assert!(t.send("SITE UTIME")[0].starts_with("501 Usage: SITE UTIME"));
}

#[test]
fn site_chmod_and_unknown_site() {
    let mut t = T::new();
    t.login();
    assert_eq!(
        t.send("SITE CHMOD 755 bin/x"),
        vec!["Fs(SetMode { path: [47, 98, 105, 110, 47, 120], mode: 493 })"]
    );
    assert_eq!(t.fs(FsOutcome::Done), vec!["200 SITE CHMOD command ok."]);
    // setuid and friends are dropped: only the permission bits are set.
    assert_eq!(t.send("site chmod 4777 x"), vec!["Fs(SetMode { path: [47, 120], mode: 511 })"]);
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::PermissionDenied)), vec!["550 Permission denied"]);
    for bad in ["SITE CHMOD 9 x", "SITE CHMOD 644", "SITE CHMOD", "SITE CHMOD 77777 x", "SITE CHMOD u+x x"] {
        assert_eq!(t.send(bad), vec!["501 Usage: SITE CHMOD <octal mode> <path>"], "{bad}");
    }
    for unknown in ["SITE EXEC ls", "SITE IDLE 60", "SITE UMASK 022", "SITE SYMLINK a b"] {
        assert_eq!(t.send(unknown), vec!["502 Unknown SITE command."], "{unknown}");
    }
    assert_eq!(t.send("SITE HELP"), vec!["214 SITE commands: CHMOD HELP UTIME"]);
    assert_eq!(t.send("HELP SITE"), vec!["214 SITE commands: CHMOD HELP UTIME"]);
    let help = t.send("HELP").join("\n");
    for verb in ["MFMT", "AVBL", "CLNT", "HASH", "XCRC", "XMD5", "XSHA1", "XSHA256", "SITE"] {
        assert!(help.contains(verb), "{verb} missing in {help}");
    }
}

#[test]
fn avbl() {
    let mut t = T::new();
    assert_eq!(t.send("AVBL")[1], "530 Please login with USER and PASS.");
    t.login();
    assert_eq!(t.send("AVBL"), vec!["Fs(AvailableSpace([47]))"]);
    assert_eq!(t.fs(FsOutcome::Space(123_456_789)), vec!["213 123456789"]);
    assert_eq!(t.send("AVBL /up"), vec!["Fs(AvailableSpace([47, 117, 112]))"]);
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::NotFound)), vec!["550 No such file or directory"]);
}

#[test]
fn clnt_is_noted_before_and_after_login() {
    let mut t = T::new();
    t.drain();
    assert_eq!(t.send("CLNT lftp 4.9.2"), vec![r#"ClientName("lftp 4.9.2")"#, "200 Noted."]);
    t.login();
    // Control characters are dropped, so a log line stays one line.
    assert_eq!(t.input(b"CLNT a\x07b\r\n"), vec![r#"ClientName("ab")"#, "200 Noted."]);
    assert_eq!(t.send("CLNT"), vec!["501 Missing argument"]);
}

#[test]
fn opts_mlst_selects_the_facts_sent() {
    let mut t = T::new();
    t.login();
    let meta = Metadata::new(FileKind::File, 3).mode(0o640).modified(leap_day()).unique(1, 2).owner(7, 8);
    t.send("MLST f");
    assert_eq!(
        t.fs(FsOutcome::Metadata(meta.clone())),
        vec![
            "250-Listing /f\r\n type=file;size=3;modify=20240229123456;perm=adfrw;unique=1U2;UNIX.mode=0640;\
             UNIX.owner=7;UNIX.group=8; /f\r\n250 End"
        ]
    );
    let feat = t.send("FEAT").join("\n");
    assert!(
        feat.contains("\r\n MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;UNIX.owner*;UNIX.group*;"),
        "{feat}"
    );
    assert_eq!(t.send("OPTS MLST size;UNIX.owner;nonsense;"), vec!["200 MLST OPTS size;UNIX.owner;"]);
    let feat = t.send("FEAT").join("\n");
    assert!(
        feat.contains("\r\n MLST type;size*;modify;perm;unique;UNIX.mode;UNIX.owner*;UNIX.group;"),
        "{feat}"
    );
    t.send("MLST f");
    assert_eq!(
        t.fs(FsOutcome::Metadata(meta.clone())),
        vec!["250-Listing /f\r\n size=3;UNIX.owner=7; /f\r\n250 End"]
    );

    // MLSD sends the same selection.
    t.passive();
    t.send("MLSD");
    assert_eq!(t.meta(FileKind::Dir, 0), vec!["Fs(OpenList([47]))"]);
    let entries = vec![DirEntry { name: b"f".to_vec(), metadata: meta.clone() }];
    t.s.fs_done(FsOutcome::Opened { size: None }, t.now, SystemTime::UNIX_EPOCH);
    match t.s.poll_action() {
        Some(Action::Transfer(tr)) => {
            let TransferData::Listing(format) = tr.data else { panic!("{tr:?}") };
            let mut bytes = Vec::new();
            format.write(&entries, &mut bytes);
            assert_eq!(bytes, b"size=3;UNIX.owner=7; f\r\n");
        }
        other => panic!("{other:?}"),
    }
    t.done(TransferOutcome::Completed { bytes: 1 });

    // No facts at all (§7.9 allows an empty list): only the names.
    assert_eq!(t.send("OPTS MLST ;"), vec!["200 MLST OPTS"]);
    assert_eq!(t.send("OPTS MLST"), vec!["200 MLST OPTS"]);
    t.send("MLST f");
    assert_eq!(t.fs(FsOutcome::Metadata(meta)), vec!["250-Listing /f\r\n  /f\r\n250 End"]);
}

#[test]
fn hash_and_opts_hash() {
    let mut t = T::new();
    t.login();
    let feat = t.send("FEAT").join("\n");
    assert!(feat.contains("\r\n HASH SHA-256*;SHA-1;MD5;CRC32\r\n"), "{feat}");
    for f in ["MFMT", "AVBL", "CLNT", "XCRC", "XMD5", "XSHA1", "XSHA256"] {
        assert!(feat.contains(&format!("\r\n {f}\r\n")), "{f} missing in {feat}");
    }
    assert_eq!(t.send("HASH a b"), vec!["Fs(Metadata([47, 97, 32, 98]))"]);
    assert_eq!(t.meta(FileKind::File, 3), vec!["Fs(Hash { path: [47, 97, 32, 98], algo: Sha256 })"]);
    assert_eq!(t.fs(FsOutcome::Digest(vec![0xab, 0x01])), vec!["213 SHA-256 0-3 ab01 a b"]);

    assert_eq!(t.send("OPTS HASH"), vec!["200 SHA-256"]);
    assert_eq!(t.send("OPTS HASH md5"), vec!["200 MD5"]);
    assert_eq!(t.send("OPTS HASH SHA-512"), vec!["504 Unknown algorithm."]);
    assert_eq!(t.send("OPTS HASH"), vec!["200 MD5"]);
    assert!(t.send("FEAT").join("\n").contains(" HASH SHA-256;SHA-1;MD5*;CRC32\r\n"));
    t.send("HASH f");
    assert_eq!(t.meta(FileKind::File, 0), vec!["Fs(Hash { path: [47, 102], algo: Md5 })"]);
    assert_eq!(t.fs(FsOutcome::Digest(vec![0xff])), vec!["213 MD5 0-0 ff f"]);

    // Directories have no digest; busy is 450; a missing file 550.
    t.send("HASH d");
    assert_eq!(t.meta(FileKind::Dir, 0), vec!["550 Not a plain file."]);
    t.send("HASH f");
    t.meta(FileKind::File, 9);
    assert_eq!(
        t.fs(FsOutcome::Failed(ErrorKind::Unavailable)),
        vec!["450 Too many digests being computed; try again later."]
    );
    t.send("HASH nope");
    assert_eq!(t.fs(FsOutcome::Failed(ErrorKind::NotFound)), vec!["550 No such file or directory"]);
}

#[test]
fn legacy_digest_commands() {
    let mut t = T::new();
    t.login();
    for (verb, algo) in [
        ("XCRC", HashAlgo::Crc32),
        ("XMD5", HashAlgo::Md5),
        ("XSHA1", HashAlgo::Sha1),
        ("XSHA256", HashAlgo::Sha256),
    ] {
        assert_eq!(t.send(&format!("{verb} f")), vec!["Fs(Metadata([47, 102]))"]);
        assert_eq!(
            t.meta(FileKind::File, 5),
            vec![format!("Fs(Hash {{ path: [47, 102], algo: {algo:?} }})")]
        );
        assert_eq!(t.fs(FsOutcome::Digest(vec![0x35, 0x24])), vec!["250 3524"]);
    }
    let mut t = T::new();
    t.login_as(User::new("alice").permissions(Permissions { read: false, ..Permissions::ALL }));
    assert_eq!(t.send("XSHA256 f"), vec!["550 Permission denied."]);
    assert_eq!(t.send("HASH f"), vec!["550 Permission denied."]);
}
