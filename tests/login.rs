//! Logging in: good and bad passwords, the failure limit, anonymous read-only access.

mod common;

use std::fs;

use common::*;

fn ms_of(line: &str) -> u64 {
    line.rsplit("ms=")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ms= in {line:?}"))
}

#[test]
fn bad_password_530_then_retry_succeeds() {
    let server = TestServer::start("login-retry");
    fs::write(server.root().join("hello.txt"), b"hi\n").unwrap();
    let r = py_opts(
        &server,
        &[],
        &["login bob wrong", "login nobody secret", "login bob secret", "raw PWD", "nlst"],
    )
    .ok(&server);
    let logins = r.lines_with("login: ");
    assert_eq!(logins.len(), 3, "{}", r.describe());
    assert!(logins[0].starts_with("login: ERR 530"), "{}", r.describe());
    assert!(logins[1].starts_with("login: ERR 530"), "{}", r.describe());
    assert!(logins[2].starts_with("login: 230"), "{}", r.describe());
    // The delay grows with each failure: ~250 ms, then ~500 ms.
    assert!(ms_of(&logins[0]) >= 200, "first failure too fast: {}", logins[0]);
    assert!(ms_of(&logins[1]) >= 450, "second failure too fast: {}", logins[1]);
    assert!(r.stdout.contains("raw: 257 \"/\""), "PWD after login: {}", r.describe());
    assert!(r.stdout.contains("nlst| hello.txt"), "{}", r.describe());
}

#[test]
fn three_failures_answer_421_and_close() {
    let server = TestServer::start("login-421");
    let r = py_opts(&server, &[], &["login bob a", "login bob b", "login bob c", "raw NOOP"]).ok(&server);
    let logins = r.lines_with("login: ");
    assert!(logins[0].starts_with("login: ERR 530"), "{}", r.describe());
    assert!(logins[1].starts_with("login: ERR 530"), "{}", r.describe());
    assert!(logins[2].starts_with("login: ERR 421"), "{}", r.describe());
    // The connection is closed: the next command gets no reply.
    let noop = r.lines_with("raw: ");
    assert!(noop[0].starts_with("raw: EXC"), "{}", r.describe());
    assert!(server.stderr_log().contains("login failed"));
}

#[test]
fn anonymous_is_read_only() {
    let server = TestServer::builder("anon").no_default_user().start();
    assert!(
        server.stdout_lines().iter().any(|l| l == "anonymous read-only access is enabled"),
        "stdout: {:?}",
        server.stdout_lines()
    );
    let public = server.root().join("public.bin");
    make_file(&public, 300_000, 1);
    fs::create_dir(server.root().join("dir")).unwrap();
    let work = server.work();

    // curl logs in as anonymous by default.
    let got = work.join("public.bin");
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "-v", "--max-time", "60", "-o"]).arg(&got).arg(server.url("public.bin"));
    let r = run_text(&mut c).ok(&server);
    assert!(r.stderr.contains("> USER anonymous"), "{}", r.describe());
    assert_same_file(&public, &got, &server);

    // Uploads are refused with 550 and nothing is written.
    let src = work.join("src.bin");
    make_file(&src, 1000, 2);
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "-v", "--max-time", "60", "-T"]).arg(&src).arg(server.url("upload.bin"));
    let r = run_text(&mut c).fails(&server);
    assert!(r.stderr.contains("< 550"), "{}", r.describe());
    assert!(!server.root().join("upload.bin").exists());

    // Same with ftplib as "ftp", and every other write.
    let r = py_opts(
        &server,
        &["--user", "ftp", "--password", "guest@example.com"],
        &[
            &format!("put '{}' upload2.bin", src.display()),
            &format!("appe '{}' public.bin", src.display()),
            "raw MKD newdir",
            "raw RMD dir",
            "raw DELE public.bin",
            "raw RNFR public.bin",
            &format!("stou '{}'", src.display()),
            &format!("get public.bin '{}'", work.join("again.bin").display()),
        ],
    )
    .ok(&server);
    for prefix in ["put: ", "appe: ", "stou: "] {
        let l = r.lines_with(prefix);
        assert!(l.len() == 1 && l[0].starts_with(&format!("{prefix}ERR 550")), "{prefix}{}", r.describe());
    }
    for l in r.lines_with("raw: ") {
        assert!(l.starts_with("raw: ERR 550"), "{l}\n{}", r.describe());
    }
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_same_file(&public, &work.join("again.bin"), &server);
    assert_same_file(&public, &server.root().join("public.bin"), &server);
    assert!(server.root().join("dir").is_dir());
    let names: Vec<_> =
        fs::read_dir(server.root()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "root changed: {names:?}");
}

#[test]
fn anonymous_flag_alongside_users() {
    let server = TestServer::with_args("anon-and-bob", &["--anonymous"]);
    fs::write(server.root().join("f.txt"), b"anon").unwrap();
    let work = server.work();
    let r = py_opts(
        &server,
        &["--user", "anonymous", "--password", "x"],
        &[&format!("get f.txt '{}'", work.join("f.txt").display())],
    )
    .ok(&server);
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    let r = py(&server, &["raw MKD bobdir"]).ok(&server);
    assert!(r.stdout.contains("raw: 257"), "{}", r.describe());
    assert!(server.root().join("bobdir").is_dir());
}
