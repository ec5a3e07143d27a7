//! `ringftpd`: serve a directory over FTP with one command.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use ringftp::{FsStorage, Server, UploadPolicy, User, UserList};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fast FTP server: serves a directory over FTP (active and passive mode, IPv4 and IPv6).
///
/// With no --user, --users-file or --anonymous, anonymous read-only access is enabled.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The directory to serve.
    #[arg(long, default_value = ".", value_name = "DIR")]
    root: PathBuf,

    /// Address to listen on; repeat for IPv4 and IPv6 (e.g. --listen [::1]:2121).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2121")]
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

    /// Passive data port range.
    #[arg(long, value_name = "MIN-MAX", default_value = "49152-65534", value_parser = parse_range)]
    passive_ports: RangeInclusive<u16>,

    /// Address to announce in PASV replies (the server's address as clients behind NAT see it).
    #[arg(long, value_name = "IP")]
    public_address: Option<IpAddr>,

    /// Number of shards (threads, one io_uring each); default: available cores.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,

    /// Seconds without a command before a session is closed.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    idle_timeout: u64,

    /// What an interrupted upload leaves: `keep` (the partial file, resumable with REST) or
    /// `atomic` (nothing: uploads appear under their name only when complete).
    #[arg(long, value_name = "POLICY", default_value = "keep", value_parser = parse_uploads)]
    uploads: UploadPolicy,

    /// Seconds a connection may take to log in.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    login_timeout: u64,

    /// Most sessions at once (0: no limit); more get 421.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    max_sessions: usize,

    /// Most sessions at once from one client address (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_sessions_per_ip: u32,

    /// Seconds to wait for a data connection.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    data_timeout: u64,

    /// The text of the 220 greeting.
    #[arg(long, default_value = "ringftp ready")]
    greeting: String,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9121).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Log level or filter: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,

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
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ringftpd: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.hash_password {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read password: {e}"))?;
        let password = line.trim_end_matches(['\r', '\n']);
        let hash =
            ringftp::auth::hash_password(password.as_bytes()).map_err(|e| format!("cannot hash: {e}"))?;
        println!("{hash}");
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .map_err(|e| format!("bad --log-level {:?}: {e}", args.log_level))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    raise_fd_limit();
    let storage =
        FsStorage::new(&args.root).map_err(|e| format!("cannot serve {}: {e}", args.root.display()))?;
    let mut users = match &args.users_file {
        Some(path) => UserList::from_file(path).map_err(|e| e.to_string())?,
        None => UserList::new(),
    };
    for (name, password) in &args.user {
        users = users.user_with_password(User::new(name), password.as_bytes());
    }
    let anonymous = args.anonymous || (args.user.is_empty() && args.users_file.is_none());
    if anonymous {
        users = users.anonymous("");
    }

    let mut builder = Server::builder(storage, users)
        .passive_ports(args.passive_ports.clone())
        .greeting(args.greeting.clone())
        .idle_timeout(Duration::from_secs(args.idle_timeout))
        .data_timeout(Duration::from_secs(args.data_timeout))
        .login_timeout(Duration::from_secs(args.login_timeout))
        .max_sessions(args.max_sessions)
        .max_sessions_per_ip(args.max_sessions_per_ip)
        .uploads(args.uploads);
    for addr in &args.listen {
        builder = builder.listen(*addr);
    }
    if let Some(ip) = args.public_address {
        builder = builder.public_address(ip);
    }
    if let Some(addr) = args.metrics {
        builder = builder.metrics(addr);
    }
    if let Some(n) = args.cores {
        builder = builder.cores(n);
    }
    let server = builder.build().map_err(|e| e.to_string())?;

    // Block SIGINT/SIGTERM before the shard threads start, so they inherit the mask and the
    // signals reach this thread's sigwait: Ctrl-C is a graceful shutdown.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;

    let handle = server.start().map_err(|e| e.to_string())?;
    for addr in handle.local_addrs() {
        println!("ringftpd listening on {addr}");
    }
    if let Some(addr) = handle.metrics_addr() {
        println!("ringftpd metrics on http://{addr}/metrics");
    }
    if anonymous {
        println!("anonymous read-only access is enabled");
    }
    let trigger = handle.shutdown_trigger();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            tracing::info!(signal = ?sig, "shutting down");
            trigger.trigger();
        }
    });
    handle.wait();
    Ok(())
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
