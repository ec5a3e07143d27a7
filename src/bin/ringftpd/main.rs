//! `ringftpd`: serve a directory over FTP with one command, or from a configuration file.

mod config;
mod reload;
mod storage;
mod systemd;
mod xferlog;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use nix::sys::signal::{SigSet, Signal};
use ringftp::ban::{BanPolicy, IpNet};
use ringftp::{Server, Timeouts, UploadPolicy, User, UserList};

use config::{ClientAuthMode, EngineName, FileConfig, HashUploads, KtlsName, LogFormat, Password, TlsMode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fast FTP server: serves a directory over FTP (active and passive mode, IPv4 and IPv6).
///
/// With no --user, --users-file, --anonymous or users in the --config file, anonymous
/// read-only access is enabled.
#[derive(Debug, Clone, Parser)]
#[command(name = "ringftpd", version, about)]
struct Args {
    /// Read settings from a TOML file (see ringftpd.example.toml); flags given on the command
    /// line override it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// The directory to serve.
    #[arg(long, default_value = ".", value_name = "DIR")]
    root: PathBuf,

    #[command(flatten)]
    storage: storage::StorageArgs,

    // Help given as an attribute: rustdoc would read `[::1]` in a doc comment as a link.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:2121",
        help = "Address to listen on; repeat for IPv4 and IPv6 (e.g. --listen [::1]:2121)"
    )]
    listen: Vec<SocketAddr>,

    /// A read-write user whose home is the root, for quick use; repeatable.
    #[arg(long, value_name = "NAME:PASSWORD", value_parser = parse_user)]
    user: Vec<(String, String)>,

    /// A file of users, one per line: `name:argon2-hash:home:ro|rw` (see --hash-password).
    #[arg(long, value_name = "PATH")]
    users_file: Option<PathBuf>,

    /// Allow anonymous read-only logins (user `anonymous` or `ftp`, any password).
    #[arg(long)]
    anonymous: bool,

    /// Passive data port range. May be narrow (a firewall's handful): once every port is
    /// taken, sessions of different client addresses share them.
    #[arg(long, value_name = "MIN-MAX", default_value = "49152-65534", value_parser = parse_range)]
    passive_ports: RangeInclusive<u16>,

    /// Address to announce in PASV replies (the server's address as clients behind NAT or a
    /// balancer see it): an IP, a DNS name (resolved at start and every minute), and/or
    /// CIDR=IP pairs tried first, on the client's real address (10.0.0.0/8=10.0.0.5,203.0.113.7).
    #[arg(long, value_name = "SPEC,...", value_delimiter = ',', value_parser = parse_public)]
    public_address: Vec<Public>,

    /// Load balancers whose connections start with a PROXY protocol (v1/v2) header naming
    /// the real client; from them the header is required, from others refused.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_network)]
    proxy_protocol_from: Vec<IpNet>,

    /// The balancers also send the PROXY header on passive data connections.
    #[arg(long)]
    proxy_protocol_data: bool,

    /// The runtime: `uring` (io_uring), `epoll` (plain tokio, where io_uring is blocked, as
    /// under Docker's default seccomp profile), or `auto`: io_uring if the kernel allows it.
    #[arg(long, value_name = "ENGINE", value_enum, default_value = "auto")]
    engine: EngineName,

    /// Number of shards (threads, one runtime each); default: available cores.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,

    /// Seconds without a command before a session is closed.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    idle_timeout: u64,

    /// What an interrupted upload leaves: `keep` (the partial file, resumable with REST) or
    /// `atomic` (nothing: uploads appear under their name only when complete).
    #[arg(long, value_name = "POLICY", default_value = "keep", value_parser = parse_uploads)]
    uploads: UploadPolicy,

    /// Compute the digest of each whole upload (STOR/STOU) while it streams and keep it with
    /// the file (an extended attribute; on S3, object metadata for uploads of up to 8 MiB), so
    /// HASH answers at once: sha256, sha1, md5 or crc32.
    #[arg(long, value_name = "ALGO", value_enum)]
    hash_uploads: Option<HashUploads>,

    /// Seconds a connection may take to log in.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    login_timeout: u64,

    /// Ban an address after N failed logins or refusals within 10 minutes (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    ban_threshold: u32,

    /// Seconds of the first ban (or user lockout); each repeat doubles it, up to a day.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    ban_time: u64,

    /// Networks or addresses never banned (e.g. 10.0.0.0/8,192.0.2.1).
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_network)]
    ban_allow: Vec<IpNet>,

    /// Lock a user name out after N failed logins from any address (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    user_lockout: u32,

    /// Most sessions at once (0: no limit); more get 421.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    max_sessions: usize,

    /// Most sessions at once from one client address (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_sessions_per_ip: u32,

    /// Seconds to wait for a data connection (also how long an unclaimed passive port stays
    /// open).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    data_timeout: u64,

    /// Seconds a transfer may move no byte before it is aborted with 426.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    stall_timeout: u64,

    /// The text of the 220 greeting.
    #[arg(long, default_value = "ringftp ready")]
    greeting: String,

    /// Make active-mode data connections from the control port minus one (port 20 for a
    /// server on 21); needs the privilege to bind it, else an ephemeral port is used.
    #[arg(long)]
    active_source_port: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9121).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Log level or filter: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,

    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Append a line per finished or aborted transfer to this file, in vsftpd's xferlog format.
    #[arg(long, value_name = "PATH")]
    xferlog: Option<PathBuf>,

    /// FTPS: the certificate chain (PEM, leaf first); reread on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// FTPS: the certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// TLS on control connections: `off`, `optional` (AUTH TLS when the client asks; the
    /// default with a certificate) or `required` (USER in clear text is refused).
    #[arg(long, value_name = "MODE", value_enum)]
    tls: Option<TlsMode>,

    /// TLS on data connections (PROT P): `optional` (default) or `required` (521 otherwise).
    #[arg(long, value_name = "MODE", value_enum)]
    tls_data: Option<TlsMode>,

    /// Anonymous logins may use clear text even when TLS is required.
    #[arg(long)]
    tls_anonymous_exempt: bool,

    /// An implicit FTPS listener (TLS from the first byte, usually port 990); repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    implicit_listen: Vec<SocketAddr>,

    /// Client certificates: `off`, `request` or `require` (needs --tls-client-ca).
    #[arg(long, value_name = "MODE", value_enum)]
    tls_client_auth: Option<ClientAuthMode>,

    /// The CA (PEM) that client certificates must chain to.
    #[arg(long, value_name = "PEM")]
    tls_client_ca: Option<PathBuf>,

    /// Accept TLS data connections that do not resume the control connection's session
    /// (for clients that cannot; anyone who can connect may then open a data connection).
    #[arg(long)]
    dangerous_no_tls_session_reuse: bool,

    /// kTLS (encryption in the kernel, keeping splice) where the kernel has it: `auto` or `off`.
    #[arg(long, value_name = "MODE", value_enum)]
    ktls: Option<KtlsName>,

    /// Read a password from standard input, print its argon2 hash for --users-file, and exit.
    #[arg(long)]
    hash_password: bool,
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, pass)) if !name.is_empty() => Ok((name.to_string(), pass.to_string())),
        _ => Err("expected NAME:PASSWORD".into()),
    }
}

/// `10.0.0.0/8`, or one address (`192.0.2.1`, `::1`).
fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a network (10.0.0.0/8) or an address"))
}

/// One `--public-address` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Public {
    Rule(IpNet, IpAddr),
    Ip(IpAddr),
    Name(String),
}

/// `CIDR=IP` (a rule), an IP (the default), or a DNS name (RFC 1123 labels; an all-numeric
/// last label is a mistyped address such as `203.0.113.300`, not a name).
pub(crate) fn parse_public(s: &str) -> Result<Public, String> {
    let s = s.trim();
    if let Some((net, ip)) = s.split_once('=') {
        let net = parse_network(net)?;
        let ip = ip.trim().parse().map_err(|_| format!("{:?} is not an IP address (in {s:?})", ip.trim()))?;
        return Ok(Public::Rule(net, ip));
    }
    if let Ok(ip) = s.parse() {
        return Ok(Public::Ip(ip));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let numeric = name.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.len() <= 253 && name.split('.').all(label_ok) && !numeric {
        Ok(Public::Name(name.to_owned()))
    } else {
        Err(format!("{s:?} is not an IP address, a DNS name or CIDR=IP"))
    }
}

fn parse_uploads(s: &str) -> Result<UploadPolicy, String> {
    match s {
        "keep" => Ok(UploadPolicy::Keep),
        "atomic" => Ok(UploadPolicy::Atomic),
        _ => Err("expected keep or atomic".into()),
    }
}

fn parse_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = s.split_once('-').ok_or("expected MIN-MAX, e.g. 50000-50999")?;
    let lo: u16 = lo.trim().parse().map_err(|_| format!("bad port {lo:?}"))?;
    let hi: u16 = hi.trim().parse().map_err(|_| format!("bad port {hi:?}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("{lo}-{hi} is not a range of ports 1-65535 with MIN <= MAX"));
    }
    Ok(lo..=hi)
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    // SAFETY: no other thread has started yet.
    let activated = unsafe { systemd::take_listeners() };
    match run(args, &matches, activated) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ringftpd: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Whether the flag `id` was given on the command line (not just defaulted by clap).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// A setting with a flag: the flag if given, else the file's value, else the flag's default.
fn pick<T>(matches: &ArgMatches, id: &str, flag: T, file: Option<T>) -> T {
    match file {
        Some(value) if !given(matches, id) => value,
        _ => flag,
    }
}

/// `activated`: the listeners systemd passed (socket activation), served instead of --listen.
fn run(
    args: Args,
    matches: &ArgMatches,
    activated: Result<Vec<std::net::TcpListener>, String>,
) -> Result<(), String> {
    if args.hash_password {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read password: {e}"))?;
        let password = line.trim_end_matches(['\r', '\n']);
        let hash =
            ringftp::auth::hash_password(password.as_bytes()).map_err(|e| format!("cannot hash: {e}"))?;
        println!("{hash}");
        return Ok(());
    }
    let (file, base) = load_config(&args)?;

    let log_level = pick(matches, "log_level", args.log_level.clone(), file.log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&log_level)
        .map_err(|e| format!("bad log level {log_level:?}: {e}"))?;
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match pick(matches, "log_format", args.log_format, file.log_format) {
        // Colours only on a terminal: logs sent to a file or journal stay plain text.
        LogFormat::Text => log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => log.json().with_ansi(false).init(),
    }

    raise_fd_limit();
    // A write past RLIMIT_FSIZE must fail with EFBIG (answered 452), not kill the server.
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn) };
    let root = match &file.root {
        Some(root) if !given(matches, "root") => base.join(root),
        _ => args.root.clone(),
    };
    let storage = storage::open(&args.storage, matches, &file, &root)?;

    // Homes are checked under the served directory; object storage has none to check.
    let root = storage.root();
    let (users, anonymous) = users(&args, matches, &file, &base, root.as_deref())?;
    let auth = reload::Reloadable::new(users);
    let anonymous_now = Arc::new(AtomicBool::new(anonymous));
    let live = LiveSettings::new(&args, matches, &file)?;
    let mut builder = Server::builder(storage, auth.clone())
        .passive_ports(pick(matches, "passive_ports", args.passive_ports.clone(), file.passive_ports.clone()))
        .greeting(pick(matches, "greeting", args.greeting.clone(), file.greeting.clone()))
        .idle_timeout(live.timeouts.idle)
        .data_timeout(live.timeouts.data)
        .stall_timeout(live.timeouts.stall)
        .login_timeout(live.timeouts.login)
        // Always a ban list, off while both thresholds are 0, so that a reload can turn it on.
        .ban_policy(live.ban_policy())
        .max_sessions(live.max_sessions)
        .max_sessions_per_ip(live.max_sessions_per_ip)
        .uploads(pick(matches, "uploads", args.uploads, file.uploads.map(UploadPolicy::from)))
        .engine(pick(matches, "engine", args.engine, file.engine).into());
    let activated = activated?;
    if activated.is_empty() {
        for addr in pick(matches, "listen", args.listen.clone(), file.listen.clone()) {
            builder = builder.listen(addr);
        }
    } else {
        tracing::info!(
            sockets = activated.len(),
            "socket activation: serving the sockets systemd passed, not --listen"
        );
        for listener in activated {
            builder = builder.listener(listener);
        }
    }
    // Behind balancers and NAT (README "Scaling out").
    for public in pick(matches, "public_address", args.public_address.clone(), file.public_address.clone()) {
        builder = match public {
            Public::Rule(net, ip) => builder.public_address_for(net, ip),
            Public::Ip(ip) => builder.public_address(ip),
            Public::Name(name) => builder.public_host(name),
        };
    }
    for net in pick(
        matches,
        "proxy_protocol_from",
        args.proxy_protocol_from.clone(),
        file.proxy_protocol_from.clone(),
    ) {
        builder = builder.proxy_protocol_from(net);
    }
    if args.proxy_protocol_data || file.proxy_protocol_data == Some(true) {
        builder = builder.proxy_protocol_data(true);
    }
    if let Some(addr) = args.metrics.or(file.metrics) {
        builder = builder.metrics(addr);
    }
    if let Some(algo) = args.hash_uploads.or(file.hash_uploads) {
        builder = builder.hash_uploads(Some(algo.into()));
    }
    if let Some(n) = args.cores.or(file.cores) {
        builder = builder.cores(n);
    }
    // Settings only the file has.
    if let Some(n) = file.max_line_length {
        builder = builder.max_line_length(n);
    }
    if let Some(n) = file.max_login_failures {
        builder = builder.max_login_failures(n);
    }
    if let Some(s) = file.shutdown_grace {
        builder = builder.shutdown_grace(secs(s));
    }
    if let Some(bytes) = file.pipe_size {
        builder = builder.pipe_size(bytes);
    }
    if let Some(bytes) = file.upload_pipe_size {
        builder = builder.upload_pipe_size(bytes);
    }
    if let Some(splice) = file.splice {
        builder = builder.splice(splice);
    }
    if args.active_source_port || file.active_source_port == Some(true) {
        builder = builder.active_source_port(true);
    }
    if let Some(allow) = file.dangerous_allow_foreign_data_connections {
        builder = builder.dangerous_allow_foreign_data_connections(allow);
    }
    let xferlog_path = match &file.xferlog {
        Some(path) if !given(matches, "xferlog") => Some(base.join(path)),
        _ => args.xferlog.clone(),
    };
    let mut xferlog = None;
    if let Some(path) = xferlog_path {
        // UserList names every anonymous login `anonymous`.
        let on = Arc::clone(&anonymous_now);
        let is_anonymous: xferlog::IsAnonymous =
            Arc::new(move |name| on.load(Ordering::Relaxed) && name == "anonymous");
        let (listener, writer) = xferlog::open(&path, is_anonymous)
            .map_err(|e| format!("cannot open the transfer log {}: {e}", path.display()))?;
        builder = builder.events(listener);
        xferlog = Some(writer);
    }
    let tls = tls_acceptor(&args, matches, &file, &base)?;
    if let Some(acceptor) = &tls {
        builder = builder.tls(acceptor.clone());
        if let Some(mode) = args.tls.or(file.tls) {
            builder = builder.tls_control(mode.into());
        }
        if let Some(mode) = args.tls_data.or(file.tls_data) {
            builder = builder.tls_data(mode.into());
        }
        builder = builder
            .tls_anonymous_exempt(args.tls_anonymous_exempt || file.tls_anonymous_exempt == Some(true));
        for addr in
            pick(matches, "implicit_listen", args.implicit_listen.clone(), file.implicit_listen.clone())
        {
            builder = builder.implicit_listen(addr);
        }
    } else if !args.implicit_listen.is_empty() {
        return Err("--implicit-listen needs --tls-cert and --tls-key".into());
    }
    let server = builder.build().map_err(|e| e.to_string())?;

    // Block SIGINT/SIGTERM/SIGHUP before the shard threads start, so they inherit the mask and
    // the signals reach this thread's sigwait: Ctrl-C is a graceful shutdown, SIGHUP a reload.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;

    let handle = server.start().map_err(|e| e.to_string())?;
    // The listening lines come last: whoever waits for them has seen the rest.
    if let Some(addr) = handle.metrics_addr() {
        println!("ringftpd metrics on http://{addr}/metrics");
    }
    if anonymous {
        println!("anonymous read-only access is enabled");
    }
    for addr in handle.local_addrs() {
        println!("ringftpd listening on {addr}");
    }
    systemd::ready(handle.local_addrs());
    let trigger = handle.shutdown_trigger();
    let reopen_xferlog = xferlog.as_ref().map(xferlog::Writer::reopener);
    let reloader = Reloader {
        args,
        matches: matches.clone(),
        root,
        auth,
        anonymous: anonymous_now,
        tls,
        limits: handle.live_limits(),
        live: std::sync::Mutex::new(live),
    };
    std::thread::spawn(move || loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => {
                tracing::info!("SIGHUP: reloading");
                systemd::reloading();
                if let Some(xferlog) = &reopen_xferlog {
                    xferlog.reopen();
                }
                systemd::reloaded(&reloader.reload());
            }
            Ok(sig) => {
                tracing::info!(signal = ?sig, "shutting down");
                systemd::stopping();
                trigger.trigger();
                break;
            }
            Err(_) => break,
        }
    });
    handle.wait();
    if let Some(writer) = xferlog {
        writer.finish();
    }
    Ok(())
}

/// The config file (or the defaults, without one) and the directory its paths are relative to.
fn load_config(args: &Args) -> Result<(FileConfig, PathBuf), String> {
    Ok(match &args.config {
        Some(path) => {
            let file = config::load(path).map_err(|e| e.to_string())?;
            // Paths in the file are relative to it, so the server can start from anywhere.
            let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (file, base.to_owned())
        }
        None => (FileConfig::default(), PathBuf::from(".")),
    })
}

/// What SIGHUP reloads: the users (users file, `[[users]]`, anonymous access, and with them
/// each user's rate and session limits), the TLS certificate, and [`LiveSettings`]: the
/// session limits, the timeouts, and the ban list's thresholds and allow-list. The other
/// settings (listeners, passive ports, storage...) take a restart.
struct Reloader {
    args: Args,
    matches: ArgMatches,
    /// The storage root, fixed at start-up (homes are checked under it); none for S3.
    root: Option<PathBuf>,
    auth: reload::Reloadable,
    anonymous: Arc<AtomicBool>,
    tls: Option<ringftp::TlsAcceptor>,
    limits: ringftp::LiveLimits,
    /// The values in force, to log what a reload changed (only the signal thread uses it).
    live: std::sync::Mutex<LiveSettings>,
}

/// The settings a reload changes in the running server, from the flags and the file as at
/// start-up (a flag given on the command line still wins over the file).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveSettings {
    max_sessions: usize,
    max_sessions_per_ip: u32,
    timeouts: Timeouts,
    ban_threshold: u32,
    ban_time: Duration,
    user_lockout: u32,
    ban_allow: Vec<IpNet>,
}

impl LiveSettings {
    /// The settings, or why they cannot be used (a zero timeout).
    fn new(args: &Args, matches: &ArgMatches, file: &FileConfig) -> Result<Self, String> {
        let timeout = |id: &str, flag: u64, file: Option<u64>| match pick(matches, id, flag, file) {
            0 => Err(format!("{id} must be longer than zero")),
            s => Ok(secs(s)),
        };
        Ok(LiveSettings {
            max_sessions: pick(matches, "max_sessions", args.max_sessions, file.max_sessions),
            max_sessions_per_ip: pick(
                matches,
                "max_sessions_per_ip",
                args.max_sessions_per_ip,
                file.max_sessions_per_ip,
            ),
            timeouts: Timeouts {
                login: timeout("login_timeout", args.login_timeout, file.login_timeout)?,
                idle: timeout("idle_timeout", args.idle_timeout, file.idle_timeout)?,
                data: timeout("data_timeout", args.data_timeout, file.data_timeout)?,
                stall: timeout("stall_timeout", args.stall_timeout, file.stall_timeout)?,
            },
            ban_threshold: pick(matches, "ban_threshold", args.ban_threshold, file.ban_threshold),
            ban_time: secs(pick(matches, "ban_time", args.ban_time, file.ban_time)),
            user_lockout: pick(matches, "user_lockout", args.user_lockout, file.user_lockout),
            ban_allow: pick(matches, "ban_allow", args.ban_allow.clone(), file.ban_allow.clone()),
        })
    }

    /// The ban list's policy: the ban time is also the user lockout time.
    fn ban_policy(&self) -> BanPolicy {
        let policy = BanPolicy::new(self.ban_threshold)
            .ban_time(self.ban_time)
            .user_lockout(self.user_lockout)
            .user_lockout_time(self.ban_time);
        self.ban_allow.iter().fold(policy, |policy, &net| policy.allow(net))
    }
}

/// The TLS acceptor from the flags and the file, or `None` without a certificate or with
/// `--tls off`.
fn tls_acceptor(
    args: &Args,
    matches: &ArgMatches,
    file: &FileConfig,
    base: &Path,
) -> Result<Option<ringftp::TlsAcceptor>, String> {
    let from_file = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
    let cert = if given(matches, "tls_cert") { args.tls_cert.clone() } else { from_file(&file.tls_cert) };
    let key = if given(matches, "tls_key") { args.tls_key.clone() } else { from_file(&file.tls_key) };
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => return Ok(None),
        _ => return Err("TLS needs both a certificate and a key".into()),
    };
    if args.tls.or(file.tls) == Some(TlsMode::Off) {
        return Ok(None);
    }
    let mut config = ringftp::TlsConfig::new(cert, key)
        .require_session_reuse(
            !(args.dangerous_no_tls_session_reuse || file.dangerous_no_tls_session_reuse == Some(true)),
        )
        .ktls(match args.ktls.or(file.ktls) {
            Some(KtlsName::Off) => ringftp::tls::KtlsMode::Off,
            _ => ringftp::tls::KtlsMode::Auto,
        });
    let mode = args.tls_client_auth.or(file.tls_client_auth).unwrap_or(ClientAuthMode::Off);
    if mode != ClientAuthMode::Off {
        let ca = if given(matches, "tls_client_ca") {
            args.tls_client_ca.clone()
        } else {
            from_file(&file.tls_client_ca)
        };
        let ca = ca.ok_or("--tls-client-auth needs --tls-client-ca")?;
        let mode = if mode == ClientAuthMode::Request {
            ringftp::tls::ClientAuth::Request
        } else {
            ringftp::tls::ClientAuth::Require
        };
        config = config.client_auth(mode, ca);
    }
    ringftp::TlsAcceptor::new(config).map(Some).map_err(|e| format!("TLS: {e}"))
}

impl Reloader {
    /// Rereads the files and swaps the new users and limits in, or keeps the old ones and logs why;
    /// returns a one-line status for the service manager.
    fn reload(&self) -> String {
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed, keeping the old certificate"),
            }
        }
        // Everything is read and checked before anything changes: a bad file keeps it all.
        let loaded = load_config(&self.args).and_then(|(file, base)| {
            let users = users(&self.args, &self.matches, &file, &base, self.root.as_deref())?;
            Ok((users, LiveSettings::new(&self.args, &self.matches, &file)?))
        });
        match loaded {
            Ok(((list, anonymous), live)) => {
                let n = list.len();
                self.auth.store(list);
                self.anonymous.store(anonymous, Ordering::Relaxed);
                tracing::info!(users = n, anonymous, "reloaded the users");
                self.apply(live);
                format!("reloaded {n} users, the limits, timeouts and ban policy")
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed, keeping the users, limits, timeouts and ban policy as they were");
                format!("reload failed, kept the users, limits, timeouts and ban policy as they were: {e}")
            }
        }
    }

    /// Puts the new limits, timeouts and ban policy in force, and logs what changed.
    fn apply(&self, new: LiveSettings) {
        let mut old = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if (new.max_sessions, new.max_sessions_per_ip) != (old.max_sessions, old.max_sessions_per_ip) {
            self.limits.set_max_sessions(new.max_sessions, new.max_sessions_per_ip);
            tracing::info!(
                max_sessions = new.max_sessions,
                max_sessions_per_ip = new.max_sessions_per_ip,
                "reloaded the session limits (open sessions stay)"
            );
        }
        if new.timeouts != old.timeouts {
            // Checked by LiveSettings::new: never zero.
            if let Err(e) = self.limits.set_timeouts(new.timeouts) {
                tracing::error!(error = %e, "timeouts not reloaded");
            } else {
                let t = new.timeouts;
                tracing::info!(
                    login = t.login.as_secs(),
                    idle = t.idle.as_secs(),
                    data = t.data.as_secs(),
                    stall = t.stall.as_secs(),
                    "reloaded the timeouts (new sessions, and open sessions from their next command)"
                );
            }
        }
        if new.ban_policy() != old.ban_policy() {
            self.limits.set_ban_policy(&new.ban_policy());
            if (new.ban_threshold, new.ban_time, new.user_lockout)
                != (old.ban_threshold, old.ban_time, old.user_lockout)
            {
                tracing::info!(
                    ban_threshold = new.ban_threshold,
                    ban_time = new.ban_time.as_secs(),
                    user_lockout = new.user_lockout,
                    "reloaded the ban thresholds (counts and bans so far are kept)"
                );
            }
            if new.ban_allow != old.ban_allow {
                tracing::info!(allow = ?new.ban_allow, "reloaded the ban list's allow-list");
            }
        }
        *old = new;
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The user list from the users file, the file's `[[users]]` and `--user` (in that order; a
/// flag replaces a user of the same name), and whether anonymous access is on.
fn users(
    args: &Args,
    matches: &ArgMatches,
    file: &FileConfig,
    base: &Path,
    root: Option<&Path>,
) -> Result<(UserList, bool), String> {
    let users_file = match &file.users_file {
        Some(path) if !given(matches, "users_file") => Some(base.join(path)),
        _ => args.users_file.clone(),
    };
    let mut users = match &users_file {
        Some(path) => UserList::from_file(path).map_err(|e| e.to_string())?,
        None => UserList::new(),
    };
    let config_users = file.config_users();
    for entry in &config_users {
        let name = entry.user.name.clone();
        if root.is_some_and(|root| !root.join(&entry.user.home).is_dir()) {
            tracing::warn!(user = %name, home = %entry.user.home.display(), "home is not a directory under the root");
        }
        let before = users.len();
        users = match &entry.password {
            Password::Hash(hash) => users.user(entry.user.clone(), hash.as_str()),
            Password::Plain(password) => users.user_with_password(entry.user.clone(), password.as_bytes()),
        };
        if users.len() == before {
            return Err(format!(
                "user {name:?} is both in the users file and in [[users]] of the config file"
            ));
        }
    }
    for (name, password) in &args.user {
        users = users.user_with_password(User::new(name), password.as_bytes());
    }
    let any_users = !args.user.is_empty() || users_file.is_some() || !config_users.is_empty();
    // An explicit `anonymous = false` is kept even with no users (and then nobody can log in).
    let anonymous = args.anonymous
        || match file.anonymous {
            Some(on) => on,
            None => file.anonymous_home.is_some() || !any_users,
        };
    if anonymous {
        let home = file.anonymous_home.as_ref().map(|h| h.get_ref().clone()).unwrap_or_default();
        users = users.anonymous(home);
    } else if users.is_empty() {
        tracing::warn!("no users are configured and anonymous access is off: nobody can log in");
    }
    Ok((users, anonymous))
}

/// Every session needs a few descriptors (control, data, file, pipe): raise the soft limit to
/// the hard one, as servers do, so the session limit is reached before EMFILE is.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            tracing::warn!(soft, hard, "cannot raise the open-file limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_address_plain_ip_rule_or_name() {
        assert_eq!(parse_public("203.0.113.7"), Ok(Public::Ip(ip("203.0.113.7"))));
        assert_eq!(parse_public(" 2001:db8::7 "), Ok(Public::Ip(ip("2001:db8::7"))));
        assert_eq!(
            parse_public("10.0.0.0/8=10.0.0.5"),
            Ok(Public::Rule("10.0.0.0/8".parse().unwrap(), ip("10.0.0.5")))
        );
        // One address as the network is a /32; spaces around the parts are allowed.
        assert_eq!(
            parse_public("192.0.2.1 = 10.0.0.6"),
            Ok(Public::Rule("192.0.2.1/32".parse().unwrap(), ip("10.0.0.6")))
        );
        assert_eq!(parse_public("ftp.example.net"), Ok(Public::Name("ftp.example.net".into())));
        assert_eq!(parse_public("localhost"), Ok(Public::Name("localhost".into())));
        assert_eq!(parse_public("ftp-1.example.net."), Ok(Public::Name("ftp-1.example.net".into())));
    }

    #[test]
    fn public_address_bad_entries_say_what_is_wrong() {
        let err = |s: &str| parse_public(s).unwrap_err();
        for bad in
            ["", "203.0.113.300", "10.0.0.0/8", "ftp_1.example.net", "-ftp.example.net", "a..b", "[::1]"]
        {
            let e = err(bad);
            assert!(e.contains(&format!("{:?}", bad.trim())) && e.contains("CIDR=IP"), "{bad:?}: {e}");
        }
        assert!(parse_public(&["a"; 130].join(".")).is_err(), "longer than 253");
        assert!(parse_public(&format!("{}.net", "a".repeat(64))).is_err(), "a label over 63");
        assert_eq!(err("10.0.0.0/8="), r#""" is not an IP address (in "10.0.0.0/8=")"#);
        assert_eq!(
            err("10.0.0.0/8=ftp.example.net"),
            r#""ftp.example.net" is not an IP address (in "10.0.0.0/8=ftp.example.net")"#
        );
        assert!(err("10.0.0.0/33=10.0.0.5").contains("is not a network"), "{}", err("10.0.0.0/33=10.0.0.5"));
        assert!(err("=10.0.0.5").contains("is not a network"));
    }

    /// The flag keeps the order given (the server tries rules in that order, first match
    /// wins: src/engine/public.rs), and a bad entry stops the parse naming the flag.
    #[test]
    fn public_address_flag_keeps_the_order() {
        let args = Args::try_parse_from([
            "ringftpd",
            "--public-address",
            "10.2.0.0/16=10.2.0.5,10.0.0.0/8=10.0.0.5,203.0.113.7",
            "--public-address",
            "ftp.example.net",
        ])
        .unwrap();
        assert_eq!(
            args.public_address,
            [
                Public::Rule("10.2.0.0/16".parse().unwrap(), ip("10.2.0.5")),
                Public::Rule("10.0.0.0/8".parse().unwrap(), ip("10.0.0.5")),
                Public::Ip(ip("203.0.113.7")),
                Public::Name("ftp.example.net".into()),
            ]
        );
        let e = Args::try_parse_from(["ringftpd", "--public-address", "10.0.0.0/8=10.0.0.5,10.1.2.3.4"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--public-address") && e.contains("\"10.1.2.3.4\" is not an IP address"), "{e}");
    }
}
