//! Active mode (EPRT and PORT) over PROT P with curl: RETR and STOR, checked by SHA-256, on a
//! real ringftpd with session reuse enforced. Run on both engines (RINGFTP_TEST_ENGINE).
//!
//! **curl 7.87.0 to 7.88.1 cannot do active FTP over PROT P, against any server.** Since
//! 7.87.0 curl forgot to put TLS on an active data connection it accepts (curl issue #10666,
//! fixed in 8.0.0 by commit a26418cf, "ftp: active mode with SSL, add the damn filter"): it
//! waits for clear bytes on a connection where the server waits for a ClientHello, so RETR
//! times out (exit 28) and STOR writes the file in clear, which the server's TLS handshake
//! refuses (exit 56). Its message, "sa_addr inet_ntop() failed with errno 97: Address family
//! not supported by protocol", is a second, harmless 7.88 bug (curl issue #10622: it formats
//! the listening socket's unset peer address) that hides the real cause. Debian 12 ships
//! 7.88.1 without the fix. The same curl fails the same way against vsftpd 3.0.3 with
//! `ssl_enable=YES`, `force_local_data_ssl=YES`, `require_ssl_reuse=NO` (checked by hand with
//! `curl --ssl-reqd -k -P - ...` and `-P 127.0.0.1`, with and without `--disable-eprt`), while
//! libcurl 8 does all four transfers against both servers.
//!
//! So these tests drive libcurl 8 through pycurl (its wheel bundles its own libcurl; see
//! tests/run.sh), and the curl command too when it is a version that can do it. With a
//! broken curl, [`broken_curl_sends_nothing_that_lands`] checks the server's side of that
//! failure: a PROT P upload that arrives in clear leaves no byte in the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tls_common;

use std::process::Command;

use common::{sha256_bytes, TestServer, MIB, PASS, USER};
use tls_common::{curl, Pki};

fn server(tag: &str, pki: &Pki, listen: &str) -> TestServer {
    TestServer::builder(tag).listen(listen).args(pki.server_args()).args(["--tls-data", "required"]).start()
}

fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// The system curl's (major, minor) version.
fn curl_version() -> Option<(u32, u32)> {
    let out = Command::new("curl").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().nth(1)?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// curl 7.87 and 7.88 put no TLS on active data connections (see the module docs).
fn curl_breaks_active_tls() -> bool {
    matches!(curl_version(), Some((7, 87 | 88)))
}

/// One STOR and one RETR in active mode with libcurl through pycurl. Prints the SHA-256 of
/// what RETR got and the commands curl sent, which the test checks.
const PYCURL: &str = r#"
import hashlib, io, sys
import pycurl
url, ca, userpwd, ftpport, eprt, src, host = sys.argv[1:8]
sent = []
def debug(kind, text):
    if kind == pycurl.INFOTYPE_HEADER_OUT:
        sent.append(text.decode(errors="replace").strip())
def handle(u):
    c = pycurl.Curl()
    c.setopt(pycurl.URL, u)
    c.setopt(pycurl.USERPWD, userpwd)
    c.setopt(pycurl.USE_SSL, pycurl.USESSL_ALL)
    c.setopt(pycurl.CAINFO, ca)
    if host != "localhost":
        # The certificate names localhost; the chain is still checked against the CA.
        c.setopt(pycurl.SSL_VERIFYHOST, 0)
    c.setopt(pycurl.FTPPORT, ftpport)
    c.setopt(pycurl.FTP_USE_EPRT, int(eprt))
    c.setopt(pycurl.TIMEOUT, 30)
    c.setopt(pycurl.VERBOSE, 1)
    c.setopt(pycurl.DEBUGFUNCTION, debug)
    return c
data = open(src, "rb").read()
c = handle(url)
c.setopt(pycurl.UPLOAD, 1)
c.setopt(pycurl.READDATA, io.BytesIO(data))
c.setopt(pycurl.INFILESIZE, len(data))
c.perform()
c.close()
out = io.BytesIO()
c = handle(url)
c.setopt(pycurl.WRITEDATA, out)
c.perform()
c.close()
print("libcurl", pycurl.version_info()[1])
print("retr", hashlib.sha256(out.getvalue()).hexdigest())
print("sent", " | ".join(s for s in sent if not s.startswith("PASS")))
"#;

fn have_pycurl() -> bool {
    Command::new("python3").args(["-c", "import pycurl"]).status().is_ok_and(|s| s.success())
}

/// (EPRT?, curl's `--ftp-port` argument): EPRT and PORT, with the control connection's
/// address ("-") and a named one.
const MODES: [(bool, &str); 4] = [(true, "-"), (false, "-"), (true, "127.0.0.1"), (false, "127.0.0.1")];

/// Runs [`PYCURL`] for one STOR and RETR of `data` as `name`, checks both and what was sent.
fn libcurl_round_trip(
    srv: &TestServer,
    pki: &Pki,
    host: &str,
    eprt: bool,
    port: &str,
    name: &str,
    data: &[u8],
) {
    let src = srv.work().join(format!("{name}.src"));
    std::fs::write(&src, data).unwrap();
    let out = Command::new("timeout")
        .args(["90", "python3", "-c", PYCURL])
        .arg(format!("ftp://{host}:{}/{name}", srv.port()))
        .arg(&pki.ca)
        .arg(format!("{USER}:{PASS}"))
        .arg(port)
        .arg(if eprt { "1" } else { "0" })
        .arg(&src)
        .arg(host)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{host} eprt={eprt} port={port} {name}: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log_for_failure()
    );
    let verb = match (eprt, host) {
        (true, "[::1]") => "EPRT |2|::1|",
        (true, _) => "EPRT |1|127.0.0.1|",
        (false, _) => "PORT 127,0,0,1,",
    };
    assert!(stdout.contains(verb) && stdout.contains("PROT P"), "{stdout}");
    assert!(!stdout.contains("EPSV") && !stdout.contains("PASV"), "{stdout}");
    assert_eq!(std::fs::read(srv.root().join(name)).unwrap(), data, "STOR {name}");
    assert!(stdout.contains(&format!("retr {}", sha256_bytes(data))), "RETR {name}: {stdout}");
}

#[test]
fn libcurl_active_retr_and_stor_over_prot_p() {
    if !have_pycurl() {
        // tests/run.sh installs it; without it there is no curl here that can do this.
        eprintln!("pycurl not installed; skipped (tests/run.sh installs it)");
        return;
    }
    let pki = Pki::new();
    let srv = server("ftps-active-libcurl", &pki, "127.0.0.1:0");
    for (i, (eprt, port)) in MODES.into_iter().enumerate() {
        for len in [0, 1, MIB + 1] {
            let data = pattern(len + i as u64);
            libcurl_round_trip(&srv, &pki, "localhost", eprt, port, &format!("a{i}-{len}"), &data);
        }
    }
}

#[test]
fn libcurl_active_over_prot_p_on_ipv6() {
    if !have_pycurl() || std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("pycurl or IPv6 loopback missing; skipped");
        return;
    }
    let pki = Pki::new();
    let srv = server("ftps-active-v6", &pki, "[::1]:0");
    libcurl_round_trip(&srv, &pki, "[::1]", true, "-", "v6", &pattern(MIB + 1));
}

#[test]
fn curl_command_active_retr_and_stor_over_prot_p() {
    if curl_breaks_active_tls() {
        eprintln!("curl {:?} cannot do active FTP over TLS (see the module docs); skipped", curl_version());
        return;
    }
    let pki = Pki::new();
    let srv = server("ftps-active-curl", &pki, "127.0.0.1:0");
    let ca = pki.ca.display().to_string();
    let userpass = format!("{USER}:{PASS}");
    for (i, (eprt, port)) in MODES.into_iter().enumerate() {
        let data = pattern(MIB + 1 + i as u64);
        let src = srv.work().join(format!("src{i}"));
        std::fs::write(&src, &data).unwrap();
        let url = format!("ftp://localhost:{}/c{i}", srv.port());
        let mut args = vec!["--ssl-reqd", "--cacert", &ca, "-u", &userpass, "-P", port];
        if !eprt {
            args.push("--disable-eprt");
        }
        let (ok, err) = curl(&[&args[..], &["-T", src.to_str().unwrap(), &url]].concat());
        assert!(ok, "STOR eprt={eprt} port={port}: {err}\n{}", srv.log_for_failure());
        assert_eq!(std::fs::read(srv.root().join(format!("c{i}"))).unwrap(), data);
        let got = srv.work().join(format!("got{i}"));
        let (ok, err) = curl(&[&args[..], &["-o", got.to_str().unwrap(), &url]].concat());
        assert!(ok, "RETR eprt={eprt} port={port}: {err}\n{}", srv.log_for_failure());
        assert!(err.contains(if eprt { "> EPRT" } else { "> PORT" }), "{err}");
        assert_eq!(sha256_bytes(&std::fs::read(&got).unwrap()), sha256_bytes(&data));
    }
}

/// With a curl that forgets TLS on active data connections, the upload it sends in clear
/// under PROT P fails the server's handshake: nothing of it lands, the control connection
/// gets its error reply, and the same server still serves a client that does TLS.
#[test]
fn broken_curl_sends_nothing_that_lands() {
    if !curl_breaks_active_tls() {
        eprintln!("curl {:?} puts TLS on active data connections; nothing to check", curl_version());
        return;
    }
    let pki = Pki::new();
    let srv = server("ftps-active-broken", &pki, "127.0.0.1:0");
    let src = srv.work().join("src");
    std::fs::write(&src, b"CLEAR-TEXT-".repeat(1000)).unwrap();
    let url = format!("ftp://localhost:{}/leak", srv.port());
    let ca = pki.ca.display().to_string();
    let userpass = format!("{USER}:{PASS}");
    let (ok, err) =
        curl(&["--ssl-reqd", "--cacert", &ca, "-u", &userpass, "-P", "-", "-T", src.to_str().unwrap(), &url]);
    assert!(!ok, "a clear upload under PROT P succeeded: {err}");
    let landed = std::fs::read(srv.root().join("leak")).unwrap_or_default();
    assert!(landed.is_empty(), "{} clear bytes landed", landed.len());
    // Passive mode works with the same curl and server.
    let (ok, err) =
        curl(&["--ssl-reqd", "--cacert", &ca, "-u", &userpass, "-T", src.to_str().unwrap(), &url]);
    assert!(ok, "{err}\n{}", srv.log_for_failure());
}
