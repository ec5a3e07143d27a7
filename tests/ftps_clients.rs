//! FTPS end to end with real clients (curl, lftp, Python's ftplib, rclone) against ringftpd:
//! explicit AUTH TLS and implicit FTPS, PROT P data in EPSV, PASV, EPRT and PORT mode,
//! session reuse enforced, and the refusals. Run on both engines (RINGFTP_TEST_ENGINE).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tls_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{TestServer, MIB, PASS, USER};
use tls_common::{curl_within, python_reusing, Pki};

fn server(tag: &str, pki: &Pki, extra: &[&str]) -> TestServer {
    TestServer::builder(tag)
        .args(pki.server_args())
        .args(["--implicit-listen", "127.0.0.1:0"])
        .args(extra.iter().copied())
        .start()
}

fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// curl bounded by 50 s: (success, stderr).
fn curl(args: &[&str]) -> (bool, String) {
    curl_within(50, args)
}

#[test]
fn curl_explicit_and_implicit_round_trips() {
    let pki = Pki::new();
    let srv = server("ftps-curl", &pki, &[]);
    let explicit = srv.addrs()[0];
    let implicit = srv.addrs()[1];
    let ca = pki.ca.display().to_string();
    let userpass = format!("{USER}:{PASS}");
    for (i, len) in [0, 1, MIB + 1, 8 * MIB + 3].into_iter().enumerate() {
        let data = pattern(len);
        let src = srv.work().join(format!("src{i}"));
        std::fs::write(&src, &data).unwrap();
        // Upload over explicit FTPS (EPSV), then download in PASV and over implicit FTPS.
        let url = format!("ftp://localhost:{}/up{i}", explicit.port());
        let (ok, err) =
            curl(&["--ssl-reqd", "--cacert", &ca, "-u", &userpass, "-T", src.to_str().unwrap(), &url]);
        assert!(ok, "STOR {len}: {err}\n{}", srv.log_for_failure());
        assert_eq!(std::fs::read(srv.root().join(format!("up{i}"))).unwrap(), data, "STOR {len}");
        let got = srv.work().join(format!("got{i}"));
        let (ok, err) = curl(&[
            "--ssl-reqd",
            "--cacert",
            &ca,
            "--disable-epsv",
            "-u",
            &userpass,
            "-o",
            got.to_str().unwrap(),
            &url,
        ]);
        assert!(ok, "RETR {len}: {err}\n{}", srv.log_for_failure());
        assert_eq!(std::fs::read(&got).unwrap(), data, "RETR {len}");
        let url = format!("ftps://localhost:{}/up{i}", implicit.port());
        let (ok, err) = curl(&["--cacert", &ca, "-u", &userpass, "-o", got.to_str().unwrap(), &url]);
        assert!(ok, "implicit RETR {len}: {err}\n{}", srv.log_for_failure());
        assert_eq!(std::fs::read(&got).unwrap(), data, "implicit RETR {len}");
    }
    // An encrypted listing.
    let out = Command::new("timeout")
        .args(["60", "curl", "-sS", "--ssl-reqd", "-k", "-u", &userpass])
        .arg(format!("ftp://127.0.0.1:{}/", explicit.port()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("up2"), "{out:?}");
}

/// 100 MiB each way over PROT P with curl (STOR in EPSV, RETR in PASV), checked by SHA-256:
/// the size at which a lost or doubled record anywhere in the encrypted path would show.
#[test]
fn curl_100_mib_round_trip_over_prot_p() {
    let pki = Pki::new();
    let srv = server("ftps-curl-100m", &pki, &[]);
    let ca = pki.ca.display().to_string();
    let userpass = format!("{USER}:{PASS}");
    let src = srv.work().join("src");
    common::make_file(&src, 100 * MIB, 100);
    let url = format!("ftp://localhost:{}/big", srv.port());
    let (ok, err) = curl_within(
        240,
        &["--ssl-reqd", "--cacert", &ca, "-u", &userpass, "-T", src.to_str().unwrap(), &url],
    );
    assert!(ok, "STOR 100 MiB: {err}\n{}", srv.log_for_failure());
    common::assert_same_file(&src, &srv.root().join("big"), &srv);
    let got = srv.work().join("got");
    let (ok, err) = curl_within(
        240,
        &[
            "--ssl-reqd",
            "--cacert",
            &ca,
            "--disable-epsv",
            "-u",
            &userpass,
            "-o",
            got.to_str().unwrap(),
            &url,
        ],
    );
    assert!(ok, "RETR 100 MiB: {err}\n{}", srv.log_for_failure());
    common::assert_same_file(&src, &got, &srv);
}

/// After [`tls_common::PY_REUSING`].
const PYTHON: &str = r#"
import ftplib, ssl, sys, io, hashlib
port, ca, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
cls = Reusing if mode != "plain" else ftplib.FTP_TLS
f = cls(context=ctx, timeout=30)
f.connect("localhost", port)
f.auth()
f.login("bob", "secret")
f.prot_p()
if mode == "plain":
    try:
        f.retrlines("LIST", lambda l: None)
        print("plain accepted")
    except ftplib.error_perm as e:
        # The 522 can arrive before the data connection's failure shows (a slow machine).
        print("plain refused", str(e)[:3])
    except ftplib.all_errors as e:
        try:
            f.voidresp()
        except ftplib.error_perm as e:
            print("plain refused", str(e)[:3])
    f.voidcmd("NOOP")
    print("control ok")
    sys.exit(0)
data = bytes(range(256)) * 4099
for active in (False, True):
    f.set_pasv(not active)
    f.storbinary("STOR py%d" % active, io.BytesIO(data))
    out = io.BytesIO()
    f.retrbinary("RETR py%d" % active, out.write)
    assert out.getvalue() == data, "round trip"
    out = io.BytesIO()
    f.retrbinary("RETR py%d" % active, out.write, rest=1000)
    assert out.getvalue() == data[1000:], "REST RETR"
f.set_pasv(True)
names = [n for n, _ in f.mlsd()]
assert "py0" in names and "py1" in names, names
# STAT of a directory of several pages: one multi-line reply, sent in parts through TLS.
lines = f.sendcmd("STAT many").split("\n")
assert lines[0] == "213-Status follows:" and lines[-1] == "213 End of status", (lines[0], lines[-1])
assert all(l.startswith(" ") for l in lines[1:-1]), "continuation lines"
print("stat", len(set(l.rsplit(" ", 1)[1] for l in lines[1:-1])))
# REST STOR: resume an upload.
f.storbinary("STOR part", io.BytesIO(data[:5000]))
f.storbinary("STOR part", io.BytesIO(data[5000:]), rest=5000)
out = io.BytesIO()
f.retrbinary("RETR part", out.write)
assert out.getvalue() == data, "REST STOR"
# ABOR during an encrypted download: 426 then 226, control still usable.
f.voidcmd("TYPE I")
conn = f.transfercmd("RETR big")
conn.recv(65536)
f.putcmd("ABOR")
first = f.getline()
conn.close()
second = f.getline()
print("abor", first[:3], second[:3])
f.voidcmd("NOOP")
print("done", f.sock.version())
f.quit()
"#;

fn python(srv: &TestServer, pki: &Pki, mode: &str) -> String {
    let out = python_reusing(90, PYTHON)
        .arg(srv.port().to_string())
        .arg(&pki.ca)
        .arg(mode)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log_for_failure()
    );
    stdout
}

#[test]
fn python_ftplib_resuming_passive_active_rest_mlsd_stat_abor() {
    let pki = Pki::new();
    let srv = server("ftps-python", &pki, &[]);
    std::fs::write(srv.root().join("big"), pattern(64 * MIB)).unwrap();
    let many = srv.root().join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..3000 {
        std::fs::File::create(many.join(format!("f{i:04}"))).unwrap();
    }
    let out = python(&srv, &pki, "reuse");
    assert!(out.contains("stat 3000"), "{out}");
    assert!(out.contains("abor 426 226"), "{out}");
    assert!(out.contains("done TLSv1.3"), "{out}");
}

#[test]
fn python_ftplib_without_reuse_is_refused() {
    let pki = Pki::new();
    let srv = server("ftps-noreuse", &pki, &[]);
    let out = python(&srv, &pki, "plain");
    assert!(out.contains("plain refused 522"), "{out}");
    assert!(out.contains("control ok"), "{out}");
}

#[test]
fn lftp_round_trip() {
    if Command::new("lftp").arg("--version").output().is_err() {
        eprintln!("lftp not installed; skipped");
        return;
    }
    let pki = Pki::new();
    let srv = server("ftps-lftp", &pki, &["--tls", "required", "--tls-data", "required"]);
    let data = pattern(MIB + 1);
    std::fs::write(srv.work().join("l.bin"), &data).unwrap();
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; \
         set net:max-retries 1; set net:timeout 20; open -u {USER},{PASS} ftp://127.0.0.1:{}; \
         put {} -o l.bin; get l.bin -o {}; ls; bye",
        srv.port(),
        srv.work().join("l.bin").display(),
        srv.work().join("l.back").display()
    );
    let out = Command::new("timeout").args(["60", "lftp", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{out:?}\n{}", srv.log_for_failure());
    assert_eq!(std::fs::read(srv.root().join("l.bin")).unwrap(), data);
    assert_eq!(std::fs::read(srv.work().join("l.back")).unwrap(), data);
}

/// rclone (Go's crypto/tls, through the jlaffaye/ftp library) with TLS and session reuse
/// required: a copy up, `rclone check`, and a copy back, over explicit FTPS in TLS 1.3 and
/// implicit FTPS in TLS 1.2. rclone resumes sessions from one client-wide cache keyed by host,
/// so its pool of control connections hands one connection's ticket to another's data
/// connection, which a server binding each data connection to its own control session
/// refuses (as FileZilla Server and proftpd do): with reuse enforced it runs with
/// `--ftp-concurrency 1`; with `--dangerous-no-tls-session-reuse` its defaults work too.
/// Go resumes TLS 1.2 by ticket only, so the TLS 1.2 run needs the server's TLS 1.2 tickets.
#[test]
fn rclone_round_trips_over_explicit_and_implicit_ftps() {
    let pki = Pki::new();
    let local = |srv: &TestServer| {
        let dir = srv.work().join("local");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, len) in [0, 1, 4096, MIB + 1, 3 * MIB + 7].into_iter().enumerate() {
            std::fs::write(dir.join(format!("f{i}.bin")), pattern(len + i as u64)).unwrap();
        }
        dir
    };
    let rclone = |srv: &TestServer, port: u16, tls: &[&str], args: &[&str]| {
        let mut cmd = common::rclone("127.0.0.1", port);
        cmd.arg("--ftp-no-check-certificate").args(tls).args(args);
        let out = common::run_timeout(&mut cmd, Duration::from_secs(90));
        assert!(
            out.status.success(),
            "rclone {tls:?} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            srv.log_for_failure()
        );
    };
    let same_tree = |a: &std::path::Path, b: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(a).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names.len(), 5);
        for name in names {
            let want = std::fs::read(a.join(&name)).unwrap();
            assert_eq!(std::fs::read(b.join(&name)).unwrap(), want, "{name:?} in {}", b.display());
        }
    };

    let srv = server("ftps-rclone", &pki, &["--tls", "required", "--tls-data", "required"]);
    let (explicit, implicit) = (srv.addrs()[0].port(), srv.addrs()[1].port());
    let src = local(&srv);
    let src_arg = src.to_str().unwrap();
    let modes: [(u16, &[&str], &str); 2] = [
        (explicit, &["--ftp-explicit-tls", "--ftp-concurrency", "1"], "TLSv1_3"),
        (implicit, &["--ftp-tls", "--ftp-concurrency", "1", "--ftp-disable-tls13"], "TLSv1_2"),
    ];
    for (i, (port, tls, version)) in modes.into_iter().enumerate() {
        let remote = format!(":ftp:dst{i}");
        rclone(&srv, port, tls, &["copy", src_arg, &remote]);
        same_tree(&src, &srv.root().join(format!("dst{i}")));
        rclone(&srv, port, tls, &["check", src_arg, &remote]);
        let back = srv.work().join(format!("back{i}"));
        rclone(&srv, port, tls, &["copy", &remote, back.to_str().unwrap()]);
        same_tree(&src, &back);
        let log = srv.stderr_log();
        assert!(log.contains(&format!("tls=\"{version}\"")), "no {version} login\n{}", srv.log_for_failure());
    }
    assert!(
        !srv.stderr_log().contains("not resumed"),
        "a data connection was refused\n{}",
        srv.log_for_failure()
    );

    // Reuse relaxed: rclone's defaults (several control connections) work.
    let relaxed =
        server("ftps-rclone-relaxed", &pki, &["--tls", "required", "--dangerous-no-tls-session-reuse"]);
    let src = local(&relaxed);
    rclone(&relaxed, relaxed.port(), &["--ftp-explicit-tls"], &["copy", src.to_str().unwrap(), ":ftp:dst"]);
    same_tree(&src, &relaxed.root().join("dst"));
}

/// A raw control connection: reads one reply line (multi-line replies are not used here).
fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line
}

#[test]
fn user_in_clear_refused_when_required_and_garbage_after_auth_closes_only_that_session() {
    let pki = Pki::new();
    let srv = server("ftps-refusals", &pki, &["--tls", "required"]);
    let s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert!(reply(&mut r).starts_with("220"));
    (&s).write_all(format!("USER {USER}\r\n").as_bytes()).unwrap();
    assert!(reply(&mut r).starts_with("530"), "USER in clear must be refused");
    (&s).write_all(b"AUTH TLS\r\n").unwrap();
    assert!(reply(&mut r).starts_with("234"));
    // Not a ClientHello: the server closes this session.
    (&s).write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("230"));
    // Another session is served as before.
    let (ok, err) = curl(&[
        "--ssl-reqd",
        "-k",
        "-u",
        &format!("{USER}:{PASS}"),
        &format!("ftp://127.0.0.1:{}/", srv.port()),
    ]);
    assert!(ok, "{err}\n{}", srv.log_for_failure());
}

#[test]
fn prot_p_with_a_clear_data_connection_sends_nothing_in_clear() {
    let pki = Pki::new();
    let srv = server("ftps-clear-data", &pki, &[]);
    let secret = b"TOP-SECRET-CONTENT".repeat(1000);
    std::fs::write(srv.root().join("s"), &secret).unwrap();
    // Python: TLS control, PROT P, then a data connection read as plain TCP.
    let script = r#"
import ftplib, ssl, sys, socket
port = int(sys.argv[1])
ctx = ssl._create_unverified_context()
f = ftplib.FTP_TLS(context=ctx, timeout=20)
f.connect("127.0.0.1", port); f.auth(); f.login("bob", "secret"); f.prot_p()
host, p = f.makepasv()
d = socket.create_connection((host, p), timeout=20)
f.putcmd("RETR s")
print("reply", f.getline()[:3])
d.settimeout(5)
got = b""
try:
    d.sendall(b"not a client hello\r\n")
    while True:
        c = d.recv(65536)
        if not c: break
        got += c
except OSError:
    pass
print("leaked" if b"TOP-SECRET" in got else "clean")
"#;
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", script])
        .arg(srv.port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("clean"), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ipv6_explicit_ftps() {
    if TcpStream::connect("[::1]:9").is_err() && std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback; skipped");
        return;
    }
    let pki = Pki::new();
    let srv = TestServer::builder("ftps-v6").listen("[::1]:0").args(pki.server_args()).start();
    let data = pattern(MIB + 1);
    std::fs::write(srv.root().join("v6"), &data).unwrap();
    let got = srv.work().join("v6.got");
    let (ok, err) = curl(&[
        "--ssl-reqd",
        "-k",
        "-g",
        "-u",
        &format!("{USER}:{PASS}"),
        "-o",
        got.to_str().unwrap(),
        &format!("ftp://[::1]:{}/v6", srv.port()),
    ]);
    assert!(ok, "{err}\n{}", srv.log_for_failure());
    assert_eq!(std::fs::read(&got).unwrap(), data);
}
