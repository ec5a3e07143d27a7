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
