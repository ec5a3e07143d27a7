//! Test PKI made at test time with rcgen (no committed keys), rustls clients for it, and the
//! curl and Python ftplib set-up the FTPS suites share.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use ringftp::tls::rustls;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, NamedGroup, RootCertStore};

/// A CA, a server certificate for "localhost" and a client certificate, as PEM files.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub client_chain: Vec<CertificateDer<'static>>,
    pub client_key: Vec<u8>,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Pki {
    pub fn new() -> Pki {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringftp-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let issuer = new_ca("ringftp test CA", &ca);
        let (client, client_key) = issue_client("alice", &issuer);
        let ca_der = issuer.der().clone();
        let mut pki = Pki {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
            ca,
            ca_der,
            client_chain: vec![client.der().clone()],
            client_key: client_key.serialize_der(),
            issuer,
        };
        pki.issue_server();
        pki
    }

    /// Writes a new server certificate and key (a reload then serves it); returns its DER.
    pub fn issue_server(&mut self) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        std::fs::write(&self.cert, cert.pem()).unwrap();
        std::fs::write(&self.key, key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// A client config trusting the CA, with its own session cache (recorded in `log`).
    pub fn client(&self, tls12_only: bool, with_cert: bool) -> (Arc<ClientConfig>, Arc<Recorder>) {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] =
            if tls12_only { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if with_cert {
            let key = PrivateKeyDer::try_from(self.client_key.clone()).unwrap();
            builder.with_client_auth_cert(self.client_chain.clone(), key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"ftp".to_vec()];
        let recorder = Arc::new(Recorder::default());
        config.resumption = rustls::client::Resumption::store(recorder.clone());
        (Arc::new(config), recorder)
    }

    /// The server's name in the test certificate.
    pub fn name() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    /// ringftpd's flags for this certificate and key.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".to_string(),
            self.cert.display().to_string(),
            "--tls-key".to_string(),
            self.key.display().to_string(),
        ]
    }
}

/// A self-signed CA with the common name `cn`; its certificate is written to `pem`.
pub fn new_ca(cn: &str, pem: &Path) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(pem, issuer.pem()).unwrap();
    issuer
}

/// A client certificate for `name` (common name `name`, DNS name `name.test`) that `issuer`
/// signs, with its key.
pub fn issue_client(name: &str, issuer: &CertifiedIssuer<'static, KeyPair>) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![format!("{name}.test")]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    (params.signed_by(&key, issuer).unwrap(), key)
}

/// curl with `args`, verbose (stderr shows the commands sent and the replies) and bounded:
/// curl gives up after `secs`, and `timeout` stops it 10 s later should it hang. Returns
/// (success, stderr).
pub fn curl_within(secs: u64, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .arg((secs + 10).to_string())
        .args(["curl", "-sS", "-v", "--max-time", &secs.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// [`curl_within`] 30 s.
pub fn curl(args: &[&str]) -> (bool, String) {
    curl_within(30, args)
}

/// Python: `Reusing`, an `ftplib.FTP_TLS` whose PROT P data connections resume the control
/// connection's TLS session, as FTPS clients do and ringftpd requires by default (ftplib by
/// itself does not).
pub const PY_REUSING: &str = r#"
import ftplib
class Reusing(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
"#;

/// `python3 -c` with [`PY_REUSING`] and then `script`, bounded by `timeout secs`; the caller
/// adds the script's arguments.
pub fn python_reusing(secs: u64, script: &str) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string()).args(["python3", "-c"]).arg(format!("{PY_REUSING}{script}"));
    cmd
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client session cache that records whether the client offered stored session data.
#[derive(Debug)]
pub struct Recorder {
    inner: ClientSessionMemoryCache,
    pub offered: Mutex<usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { inner: ClientSessionMemoryCache::new(32), offered: Mutex::new(0) }
    }
}

impl Recorder {
    pub fn offered(&self) -> usize {
        *self.offered.lock().unwrap()
    }
}

impl ClientSessionStore for Recorder {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value)
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let v = self.inner.tls12_session(server_name);
        if v.is_some() {
            *self.offered.lock().unwrap() += 1;
        }
        v
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.inner.insert_tls13_ticket(server_name, value)
    }
    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let v = self.inner.take_tls13_ticket(server_name);
        if v.is_some() {
            *self.offered.lock().unwrap() += 1;
        }
        v
    }
}
