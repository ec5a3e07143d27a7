//! Prometheus metrics (text exposition format), served on an optional HTTP address.
//!
//! Counters are atomics updated once per login, transfer or error reply, never per byte.
//! Gauges that other parts already track (passive ports in use per shard) are read at
//! scrape time instead of being updated on every change.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ports::PortPool;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabel {
    command: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BanLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: usize,
}

/// The server's metrics; one per server, shared by the shards.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    sessions: Gauge,
    logins: Family<ResultLabel, Counter>,
    bytes: Family<DirectionLabel, Counter>,
    transfers: Family<TransferLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    passive_ports: Family<ShardLabel, Gauge>,
    bans: Family<BanLabel, Counter>,
    banned_refusals: Counter,
    tls_handshakes: Family<ResultLabel, Counter>,
    tls_transfers: Family<PathLabel, Counter>,
    ports: Arc<PortPool>,
}

impl Metrics {
    pub(crate) fn new(ports: Arc<PortPool>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("ringftp");
        let sessions = Gauge::default();
        let logins = Family::<ResultLabel, Counter>::default();
        let bytes = Family::<DirectionLabel, Counter>::default();
        let transfers = Family::<TransferLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let passive_ports = Family::<ShardLabel, Gauge>::default();
        let bans = Family::<BanLabel, Counter>::default();
        let banned_refusals = Counter::default();
        let tls_handshakes = Family::<ResultLabel, Counter>::default();
        let tls_transfers = Family::<PathLabel, Counter>::default();
        registry.register(
            "tls_data_connections",
            "TLS data connections by the path their bytes took: ktls (kernel, splice) or rustls",
            tls_transfers.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes on control and data connections, by result",
            tls_handshakes.clone(),
        );
        registry.register("bans", "Bans imposed, on an address or a user name", bans.clone());
        registry.register(
            "banned_connections_refused",
            "Connections refused because their address is banned",
            banned_refusals.clone(),
        );
        registry.register("sessions", "Control connections open", sessions.clone());
        registry.register("logins", "Login attempts by result", logins.clone());
        registry.register("bytes", "Bytes moved on data connections, by direction", bytes.clone());
        registry.register("transfers", "Transfers by command and result", transfers.clone());
        registry.register("error_replies", "4xx and 5xx replies sent, by code", errors.clone());
        registry.register(
            "passive_ports_in_use",
            "Passive ports leased, by shard slice",
            passive_ports.clone(),
        );
        Arc::new(Metrics {
            registry,
            sessions,
            logins,
            bytes,
            transfers,
            errors,
            passive_ports,
            bans,
            banned_refusals,
            tls_handshakes,
            tls_transfers,
            ports,
        })
    }

    pub(crate) fn session_opened(&self) {
        self.sessions.inc();
    }

    pub(crate) fn session_closed(&self) {
        self.sessions.dec();
    }

    pub(crate) fn login(&self, ok: bool) {
        self.logins.get_or_create(&ResultLabel { result: if ok { "ok" } else { "failed" } }).inc();
    }

    pub(crate) fn transfer(&self, command: &'static str, result: &'static str, bytes: u64, upload: bool) {
        self.transfers.get_or_create(&TransferLabel { command, result }).inc();
        let direction = if upload { "in" } else { "out" };
        self.bytes.get_or_create(&DirectionLabel { direction }).inc_by(bytes);
    }

    /// A ban was imposed: `kind` is "address" or "user".
    pub(crate) fn ban(&self, kind: &'static str) {
        self.bans.get_or_create(&BanLabel { kind }).inc();
    }

    pub(crate) fn tls_handshake(&self, ok: bool) {
        self.tls_handshakes.get_or_create(&ResultLabel { result: if ok { "ok" } else { "failed" } }).inc();
    }

    /// A TLS data connection went through `path` ("ktls" or "rustls").
    pub(crate) fn tls_data_path(&self, path: &'static str) {
        self.tls_transfers.get_or_create(&PathLabel { path }).inc();
    }

    pub(crate) fn banned_refusal(&self) {
        self.banned_refusals.inc();
    }

    pub(crate) fn reply(&self, code: u16) {
        if code >= 400 {
            self.errors.get_or_create(&CodeLabel { code }).inc();
        }
    }

    /// The exposition text.
    pub(crate) fn encode(&self) -> String {
        for shard in 0..self.ports.shards() {
            let in_use = i64::try_from(self.ports.in_use_by_slice(shard)).unwrap_or(i64::MAX);
            self.passive_ports.get_or_create(&ShardLabel { shard }).set(in_use);
        }
        let mut out = String::new();
        if text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `stop` is set. A plain thread: a scrape every
/// few seconds needs no event loop, and keeps the shards free of HTTP.
pub(crate) fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<std::sync::atomic::AtomicBool>) {
    // Non-blocking accept with a short sleep, so the thread notices `stop`.
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &metrics) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    // Read the request head (bounded); only its first line matters.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let (status, body) = if first.starts_with(b"GET /metrics ") || first.starts_with(b"GET / ") {
        ("200 OK", metrics.encode())
    } else {
        ("404 Not Found", "not found: try /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

/// Binds the metrics address (before the shards start, so a bad address fails `start`).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}
