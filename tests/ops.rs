//! Operations: JSON logs, the transfer log (xferlog), systemd readiness and socket activation,
//! and reloading users on SIGHUP.
//!
//! Each test runs the real binary on loopback; every wait is bounded.

mod common;

use std::time::Duration;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn json_logs_are_one_object_per_line() {
    let server = TestServer::with_args("json-log", &["--log-format", "json"]);
    let mut c = Control::connect(server.addr(), TIMEOUT);
    c.login(USER, PASS);
    assert_eq!(c.cmd("QUIT").0, 221);
    assert!(server.wait_for_log(TIMEOUT, |log| log.contains("\"login\"")), "{}", server.log_for_failure());
    let log = server.stderr_log();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
        assert!(value.get("level").is_some_and(|l| l.is_string()), "no level: {line}");
        assert!(value.get("timestamp").is_some(), "no timestamp: {line}");
        assert!(value.get("fields").is_some_and(|f| f.is_object()), "no fields: {line}");
        lines += 1;
    }
    assert!(lines >= 2, "expected several log lines:\n{log}");
    assert!(log.contains(&format!("\"user\":\"{USER}\"")), "the login line names the user:\n{log}");
}

/// The fields of an xferlog line, with the five-word date joined back.
struct XferLine {
    fields: Vec<String>,
}

impl XferLine {
    fn parse(line: &str) -> XferLine {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 18, "an xferlog line has a 5-word date and 13 more fields: {line:?}");
        let mut fields = vec![words[..5].join(" ")];
        fields.extend(words[5..].iter().map(|w| w.to_string()));
        XferLine { fields }
    }

    fn get(&self, name: &str) -> &str {
        let names = [
            "current-time",
            "transfer-time",
            "remote-host",
            "file-size",
            "filename",
            "transfer-type",
            "special-action-flag",
            "direction",
            "access-mode",
            "username",
            "service-name",
            "authentication-method",
            "authenticated-user-id",
            "completion-status",
        ];
        let i = names.iter().position(|n| *n == name).expect("a field name");
        &self.fields[i]
    }
}

#[test]
fn xferlog_has_a_line_per_complete_and_aborted_transfer() {
    let b = TestServer::builder("xferlog").arg("--anonymous");
    let log_path = b.work().join("xferlog");
    let server = b.args(["--xferlog", log_path.to_str().unwrap()]).start();
    let content = pattern(100_000, 3);
    make_file(&server.root().join("big.bin"), 16 * MIB, 4);
    std::fs::write(server.root().join("notes.txt"), b"one\ntwo\n").unwrap();

    let mut c = Control::connect(server.addr(), TIMEOUT);
    c.login(USER, PASS);
    // A complete upload and download; the space in the name becomes `_`.
    assert_eq!(c.upload("up file.bin", &content).0, 226, "{}", server.log_for_failure());
    assert_eq!(c.download("up file.bin").expect("download"), content);
    // A download whose client goes away after 64 KiB.
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    assert_eq!(c.cmd("RETR big.bin").0, 150);
    let mut first = vec![0u8; 64 * 1024];
    std::io::Read::read_exact(&mut data, &mut first).unwrap();
    drop(data);
    let (code, text) = c.reply().expect("a reply after the lost data connection");
    assert!(code == 426 || code == 451, "{code} {text}");
    // An anonymous download in ASCII mode.
    let mut a = Control::connect(server.addr(), TIMEOUT);
    a.login("anonymous", "guest@example.org");
    assert_eq!(a.cmd("TYPE A").0, 200);
    let mut data = a.epsv();
    assert_eq!(a.cmd("RETR notes.txt").0, 150);
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut text).unwrap();
    assert_eq!(text, b"one\r\ntwo\r\n");
    assert_eq!(a.reply().unwrap().0, 226);

    let mut lines = Vec::new();
    let complete = wait_until(TIMEOUT, || {
        lines = std::fs::read_to_string(&log_path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= 4
    });
    assert!(complete, "expected 4 xferlog lines, got {lines:#?}\n{}", server.log_for_failure());
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let lines: Vec<XferLine> = lines.iter().map(|l| XferLine::parse(l)).collect();
    for l in &lines {
        assert_eq!(l.get("remote-host"), "127.0.0.1");
        assert!(l.get("transfer-time").parse::<u64>().is_ok_and(|t| t >= 1), "{:?}", l.fields);
        assert_eq!(l.get("special-action-flag"), "_");
        assert_eq!(l.get("service-name"), "ftp");
        assert_eq!(l.get("authentication-method"), "0");
        assert_eq!(l.get("authenticated-user-id"), "*");
        let year = l.get("current-time").rsplit(' ').next().unwrap().parse::<u32>().unwrap();
        assert!(year >= 2024, "{:?}", l.fields);
    }
    let expect = [
        // size, filename, type, direction, access, user, status
        ("100000", "/up_file.bin", "b", "i", "r", USER, "c"),
        ("100000", "/up_file.bin", "b", "o", "r", USER, "c"),
        ("", "/big.bin", "b", "o", "r", USER, "i"),
        ("10", "/notes.txt", "a", "o", "a", "anonymous", "c"),
    ];
    for (l, (size, name, kind, direction, access, user, status)) in lines.iter().zip(expect) {
        let got = (
            l.get("filename"),
            l.get("transfer-type"),
            l.get("direction"),
            l.get("access-mode"),
            l.get("username"),
            l.get("completion-status"),
        );
        assert_eq!(got, (name, kind, direction, access, user, status), "{:?}", l.fields);
        if !size.is_empty() {
            assert_eq!(l.get("file-size"), size, "{:?}", l.fields);
        }
    }
    let partial: u64 = lines[2].get("file-size").parse().unwrap();
    assert!((64 * 1024..16 * MIB).contains(&partial), "aborted download moved {partial} bytes");
}
