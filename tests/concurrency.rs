//! Many simultaneous sessions on a two-shard server: each uploads and downloads its own
//! file; all must arrive intact, and both shards must have served sessions.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use common::*;

const SESSIONS: usize = 50;
const SIZE: u64 = 256 * KIB;

fn concurrent(active: bool) {
    let tag = if active { "conc-active" } else { "conc-passive" };
    // Every session holds a passive port at once: the harness's 32-port blocks are too few
    // (the server would rightly answer some with 425). This range is used by no other test.
    let server = if active {
        TestServer::with_args(tag, &["--cores", "2"])
    } else {
        TestServer::with_args(tag, &["--cores", "2", "--passive-ports", "19000-19199"])
    };
    let work = server.work();
    let mut opts = vec!["--user", USER, "--password", PASS];
    if active {
        opts.push("--active");
    }
    let step = format!("concurrent {SESSIONS} {SIZE} {}", work.display());
    let mut c = ftpclient(&server);
    c.args(&opts).arg(&step);
    let r = run_text_timeout(&mut c, Duration::from_secs(150)).ok(&server);
    let failures: Vec<String> = r.lines_with("conc ").into_iter().filter(|l| !l.ends_with(" ok")).collect();
    assert!(
        failures.is_empty() && r.stdout.contains(&format!("concurrent: ok={SESSIONS} fail=0")),
        "{} of {SESSIONS} sessions failed: {failures:#?}\n{}\n{}",
        failures.len(),
        r.stdout.lines().last().unwrap_or_default(),
        server.log_for_failure()
    );
    for i in 0..SESSIONS {
        let src = work.join(format!("src_{i}.bin"));
        assert_eq!(fs::metadata(&src).unwrap().len(), SIZE);
        assert_same_file(&src, &server.root().join(format!("c_{i}.bin")), &server);
    }
    // The kernel spreads the connections over both shards' listeners (SO_REUSEPORT).
    let log = server.stderr_log();
    let shards: BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("session{") && l.ends_with(": connected"))
        .filter_map(|l| l.split(" shard=").nth(1))
        .filter_map(|rest| rest.split('}').next())
        .collect();
    assert_eq!(shards, BTreeSet::from(["0", "1"]), "sessions were not served by both shards");
    // Each session connected once (plus the client's own control connection).
    let connected = log
        .lines()
        .filter(|l| l.contains("session{") && l.contains("connected"))
        .filter(|l| !l.contains("ended"))
        .count();
    assert_eq!(connected, SESSIONS + 1, "connected lines");
}

#[test]
fn fifty_sessions_two_shards_passive() {
    concurrent(false);
}

#[test]
fn fifty_sessions_two_shards_active() {
    concurrent(true);
}
