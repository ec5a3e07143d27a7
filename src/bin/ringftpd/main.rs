//! `ringftpd`: serve a directory over FTP with one command, or from a configuration file.

mod config;
mod storage;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use nix::sys::signal::{SigSet, Signal};
use ringftp::{Server, UploadPolicy, User, UserList};

use config::{FileConfig, Password};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fast FTP server: serves a directory over FTP (active and passive mode, IPv4 and IPv6).
///
/// With no --user, --users-file, --anonymous or users in the --config file, anonymous
/// read-only access is enabled.
#[derive(Debug, Parser)]
#[command(version, about)]
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
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    match run(args, &matches) {
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

fn run(args: Args, matches: &ArgMatches) -> Result<(), String> {
    if args.hash_password {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read password: {e}"))?;
        let password = line.trim_end_matches(['\r', '\n']);
        let hash =
            ringftp::auth::hash_password(password.as_bytes()).map_err(|e| format!("cannot hash: {e}"))?;
        println!("{hash}");
        return Ok(());
    }
    let (file, base) = match &args.config {
        Some(path) => {
            let file = config::load(path).map_err(|e| e.to_string())?;
            // Paths in the file are relative to it, so the server can start from anywhere.
            let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (file, base.to_owned())
        }
        None => (FileConfig::default(), PathBuf::from(".")),
    };

    let log_level = pick(matches, "log_level", args.log_level.clone(), file.log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&log_level)
        .map_err(|e| format!("bad log level {log_level:?}: {e}"))?;
    // Colours only on a terminal: logs sent to a file or journal stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();

    raise_fd_limit();
    // A write past RLIMIT_FSIZE must fail with EFBIG (answered 452), not kill the server.
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn) };
    let root = match &file.root {
        Some(root) if !given(matches, "root") => base.join(root),
        _ => args.root.clone(),
    };
    let storage = storage::open(&args.storage, matches, &file, &root)?;

    let (users, anonymous) = users(&args, matches, &file, &base, storage.root().as_deref())?;
    let mut builder = Server::builder(storage, users)
        .passive_ports(pick(matches, "passive_ports", args.passive_ports.clone(), file.passive_ports.clone()))
        .greeting(pick(matches, "greeting", args.greeting.clone(), file.greeting.clone()))
        .idle_timeout(secs(pick(matches, "idle_timeout", args.idle_timeout, file.idle_timeout)))
        .data_timeout(secs(pick(matches, "data_timeout", args.data_timeout, file.data_timeout)))
        .login_timeout(secs(pick(matches, "login_timeout", args.login_timeout, file.login_timeout)))
        .max_sessions(pick(matches, "max_sessions", args.max_sessions, file.max_sessions))
        .max_sessions_per_ip(pick(
            matches,
            "max_sessions_per_ip",
            args.max_sessions_per_ip,
            file.max_sessions_per_ip,
        ))
        .uploads(pick(matches, "uploads", args.uploads, file.uploads.map(UploadPolicy::from)));
    for addr in pick(matches, "listen", args.listen.clone(), file.listen.clone()) {
        builder = builder.listen(addr);
    }
    if let Some(ip) = args.public_address.or(file.public_address) {
        builder = builder.public_address(ip);
    }
    if let Some(addr) = args.metrics.or(file.metrics) {
        builder = builder.metrics(addr);
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
    let server = builder.build().map_err(|e| e.to_string())?;

    // Block SIGINT/SIGTERM before the shard threads start, so they inherit the mask and the
    // signals reach this thread's sigwait: Ctrl-C is a graceful shutdown.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
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
