//! Logging in by TLS client certificate (mTLS), and per-user TLS policy, with a host's own
//! [`Authenticator`] in a library server in this process, driven by curl and Python's ftplib
//! (ssl `load_cert_chain`) over loopback.
//! Run on both engines (RINGFTP_TEST_ENGINE).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tls_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ringftp::auth::{AuthError, Credentials};
use ringftp::tls::{ClientAuth, KtlsMode, TlsAcceptor, TlsConfig};
use ringftp::{Authenticator, FsStorage, Server, ServerHandle, TlsPolicy, User};
use sha2::{Digest, Sha256};
use tls_common::{curl, issue_client, new_ca, python_reusing, Pki};

/// The host's authenticator: "alice" logs in by the SHA-256 of her certificate, whatever the
/// password; the others by password, each with their own TLS policy.
struct Hosted {
    alice: [u8; 32],
}

impl Authenticator for Hosted {
    async fn authenticate(&self, username: &str, password: &[u8]) -> Result<User, AuthError> {
        match (username, password) {
            ("bob", b"secret") => Ok(User::new("bob")),
            // Must log in over TLS.
            ("carol", b"secret") => Ok(User::new("carol").tls(TlsPolicy::Required)),
            // Must use PROT P.
            ("dave", b"secret") => Ok(User::new("dave").tls_data(TlsPolicy::Required)),
            _ => Err(AuthError::BadCredentials),
        }
    }

    async fn login(&self, credentials: &Credentials<'_>) -> Result<User, AuthError> {
        if credentials.username != "alice" {
            return self.authenticate(credentials.username, credentials.password).await;
        }
        // The chain is verified against the client CA already; which certificate is alice's
        // is the host's to say.
        match credentials.client_chain.first() {
            Some(leaf) if Sha256::digest(leaf.as_ref())[..] == self.alice => {
                Ok(User::new("alice").home("alice").tls_data(TlsPolicy::Required))
            }
            _ => Err(AuthError::BadCredentials),
        }
    }
}

/// A client CA of its own and two client certificates it signs, as PEM files.
struct Clients {
    ca: PathBuf,
    alice: (PathBuf, PathBuf),
    mallory: (PathBuf, PathBuf),
    alice_fingerprint: [u8; 32],
}

fn clients(dir: &Path) -> Clients {
    let ca = dir.join("client-ca.pem");
    let issuer = new_ca("client CA", &ca);
    let issue = |name: &str| {
        let (cert, key) = issue_client(name, &issuer);
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        ((c, k), Sha256::digest(cert.der().as_ref()).into())
    };
    let (alice, alice_fingerprint) = issue("alice");
    let (mallory, _) = issue("mallory");
    Clients { ca, alice, mallory, alice_fingerprint }
}

struct Lib {
    handle: Option<ServerHandle>,
    port: u16,
    root: PathBuf,
    pki: Pki,
    clients: Clients,
}

impl Drop for Lib {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

fn start(client_auth: ClientAuth) -> Lib {
    let pki = Pki::new();
    let clients = clients(&pki.dir);
    let root = pki.dir.join("root");
    std::fs::create_dir_all(root.join("alice")).unwrap();
    let tls = TlsConfig::new(&pki.cert, &pki.key).client_auth(client_auth, &clients.ca).ktls(KtlsMode::Off);
    let (lo, hi) = common::passive_ports_block();
    let handle = Server::builder(FsStorage::new(&root).unwrap(), Hosted { alice: clients.alice_fingerprint })
        .listen("127.0.0.1:0".parse().unwrap())
        .passive_ports(lo..=hi)
        .shutdown_grace(Duration::from_secs(1))
        .engine(common::engine())
        .tls(TlsAcceptor::new(tls).unwrap())
        .build()
        .unwrap()
        .start()
        .unwrap();
    let port = handle.local_addrs()[0].port();
    Lib { handle: Some(handle), port, root, pki, clients }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect()
}

fn cert_args<'a>(lib: &'a Lib, who: &'a (PathBuf, PathBuf)) -> Vec<&'a str> {
    vec![
        "--ssl-reqd",
        "--cacert",
        lib.pki.ca.to_str().unwrap(),
        "--cert",
        who.0.to_str().unwrap(),
        "--key",
        who.1.to_str().unwrap(),
    ]
}

#[test]
fn curl_logs_in_by_client_certificate() {
    let lib = start(ClientAuth::Request);
    let data = pattern(1024 * 1024 + 7);
    let src = lib.pki.dir.join("src");
    std::fs::write(&src, &data).unwrap();
    let url = format!("ftp://localhost:{}/f", lib.port);
    // Alice's certificate with an empty password: upload, then download, checked.
    let alice = cert_args(&lib, &lib.clients.alice);
    let (ok, err) = curl(&[&alice[..], &["-u", "alice:", "-T", src.to_str().unwrap(), &url]].concat());
    assert!(ok, "STOR as alice by certificate: {err}");
    assert_eq!(std::fs::read(lib.root.join("alice/f")).unwrap(), data);
    let got = lib.pki.dir.join("got");
    let (ok, err) = curl(&[&alice[..], &["-u", "alice:wrong", "-o", got.to_str().unwrap(), &url]].concat());
    assert!(ok, "RETR as alice by certificate, wrong password: {err}");
    assert_eq!(Sha256::digest(std::fs::read(&got).unwrap()), Sha256::digest(&data));
    // A certificate the CA signed, but not alice's.
    let mallory = cert_args(&lib, &lib.clients.mallory);
    let (ok, err) = curl(&[&mallory[..], &["-u", "alice:", &url]].concat());
    assert!(!ok && err.contains("< 530"), "mallory's certificate let alice in: {err}");
    // No certificate (allowed by `request`), over TLS and in clear.
    let ca = lib.pki.ca.to_str().unwrap();
    let (ok, err) = curl(&["--ssl-reqd", "--cacert", ca, "-u", "alice:", &url]);
    assert!(!ok && err.contains("< 530"), "alice in without a certificate: {err}");
    let (ok, err) = curl(&["-u", "alice:", &url]);
    assert!(!ok && err.contains("< 530"), "alice in over a clear connection: {err}");
    // A password user with a certificate is still a password user.
    let (ok, err) =
        curl(&[&mallory[..], &["-u", "bob:secret", &format!("ftp://localhost:{}/", lib.port)]].concat());
    assert!(ok, "{err}");
}

#[test]
fn require_refuses_a_client_without_a_certificate() {
    let lib = start(ClientAuth::Require);
    let url = format!("ftp://localhost:{}/", lib.port);
    let ca = lib.pki.ca.to_str().unwrap();
    let (ok, err) = curl(&["--ssl-reqd", "--cacert", ca, "-u", "bob:secret", &url]);
    assert!(!ok, "a handshake without a certificate passed `require`: {err}");
    let alice = cert_args(&lib, &lib.clients.alice);
    let (ok, err) = curl(&[&alice[..], &["-u", "alice:", &url]].concat());
    assert!(ok, "{err}");
}

#[test]
fn per_user_tls_policy_with_curl() {
    let lib = start(ClientAuth::Request);
    std::fs::write(lib.root.join("f"), b"file").unwrap();
    let url = format!("ftp://localhost:{}/f", lib.port);
    let ca = lib.pki.ca.to_str().unwrap();
    // carol must log in over TLS: in clear the PASS is answered 530 and nothing is sent.
    let (ok, err) = curl(&["-u", "carol:secret", &url]);
    assert!(!ok && err.contains("< 530 TLS required for this user"), "{err}");
    let (ok, err) = curl(&["--ssl-reqd", "--cacert", ca, "-u", "carol:secret", &url]);
    assert!(ok, "{err}");
    // bob has no policy of his own: clear is fine on this server.
    let (ok, err) = curl(&["-u", "bob:secret", &url]);
    assert!(ok, "{err}");
    // dave must use PROT P: TLS on the control connection alone is not enough (521).
    let (ok, err) = curl(&["--ftp-ssl-control", "--cacert", ca, "-u", "dave:secret", &url]);
    assert!(!ok && err.contains("< 521"), "{err}");
    let (ok, err) = curl(&["--ssl-reqd", "--cacert", ca, "-u", "dave:secret", &url]);
    assert!(ok, "{err}");
}

/// The same per-user policy from ringftpd's config file (`[[users]]` `tls`, `tls_data`).
#[test]
fn ringftpd_config_users_carry_their_tls_policy() {
    let pki = Pki::new();
    let config = pki.dir.join("ringftpd.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"erin\"\npassword = \"pw\"\ntls = \"required\"\n\n\
         [[users]]\nname = \"frank\"\npassword = \"pw\"\ntls_data = \"required\"\n",
    )
    .unwrap();
    let srv = common::TestServer::builder("tls-user-config")
        .args(["--config".to_string(), config.display().to_string()])
        .args(pki.server_args())
        .start();
    std::fs::write(srv.root().join("f"), b"file").unwrap();
    let url = format!("ftp://localhost:{}/f", srv.port());
    let ca = pki.ca.to_str().unwrap();
    let (ok, err) = curl(&["-u", "erin:pw", &url]);
    assert!(!ok && err.contains("< 530 TLS required for this user"), "{err}");
    let (ok, err) = curl(&["--ssl-reqd", "--cacert", ca, "-u", "erin:pw", &url]);
    assert!(ok, "{err}\n{}", srv.log_for_failure());
    let (ok, err) = curl(&["--ftp-ssl-control", "--cacert", ca, "-u", "frank:pw", &url]);
    assert!(!ok && err.contains("< 521"), "{err}");
    let (ok, err) = curl(&["--ssl-reqd", "--cacert", ca, "-u", "frank:pw", &url]);
    assert!(ok, "{err}\n{}", srv.log_for_failure());
}

/// Python's ssl with `load_cert_chain`: alice by certificate over ftplib, a PROT P upload and
/// download on data connections that resume the control connection's session.
#[test]
fn python_ftplib_logs_in_by_client_certificate() {
    let lib = start(ClientAuth::Request);
    let script = r#"
import hashlib, io, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
f = Reusing(context=ctx, timeout=30)
f.connect("localhost", port)
f.auth()
f.login("alice", "")
f.prot_p()
data = bytes(range(256)) * 5000
f.storbinary("STOR py", io.BytesIO(data))
out = io.BytesIO()
f.retrbinary("RETR py", out.write)
assert out.getvalue() == data
print("ok", hashlib.sha256(data).hexdigest())
f.quit()
"#;
    let out = python_reusing(60, script)
        .arg(lib.port.to_string())
        .arg(&lib.pki.ca)
        .arg(&lib.clients.alice.0)
        .arg(&lib.clients.alice.1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let stored = std::fs::read(lib.root.join("alice/py")).unwrap();
    assert!(stdout.contains(&format!("ok {:x}", Sha256::digest(&stored))), "{stdout}");
}
