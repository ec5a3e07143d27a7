//! Test PKI made at test time with rcgen (no committed keys), and rustls clients for it.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
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
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "ringftp test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let client = params.signed_by(&client_key, &issuer).unwrap();
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
