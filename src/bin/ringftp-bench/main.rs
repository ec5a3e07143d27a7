//! `ringftp-bench`: a load generator for any FTP server.
//!
//! Thread-per-core like the server it was written for: `--threads` OS threads, each with a
//! single-threaded tokio runtime driving its share of the sessions, one reused data buffer per
//! session, and no per-byte work unless `--verify` asks for it, so the client is not what a
//! run measures. `retr` without `--verify` splices the data to /dev/null unless `--sink buffer`
//! asks it to read the data in, as real clients do.

mod client;
mod pattern;
mod stats;
mod workload;

use std::io::{IsTerminal, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use tokio::sync::{Barrier, Semaphore};

use client::{Control, Error, Mode};
use stats::{Live, Report, Stats};
use workload::{Ctx, Job, Plan};

/// Where unverified downloads go (`--sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sink {
    Null,
    Buffer,
}

/// A load generator for FTP servers: measures throughput, operations per second, latency
/// percentiles and errors by reply code against any FTP server.
///
/// Exit status: 0 when every operation succeeded; 1 when some failed (the report counts them
/// by reply code); 2 when the run could not start (bad address, no server, refused login).
#[derive(Debug, Parser)]
// A later option wins over an earlier one, so scripts can wrap the command with defaults.
#[command(version, about, args_override_self = true)]
struct Args {
    /// Server host name or address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,

    /// Server control port.
    #[arg(long, global = true, default_value_t = 21)]
    port: u16,

    /// Login name.
    #[arg(long, global = true, default_value = "anonymous")]
    user: String,

    /// Password.
    #[arg(long, global = true, default_value = "ringftp-bench@example.com")]
    pass: String,

    /// How data connections are made.
    #[arg(long, global = true, value_enum, default_value_t = Mode::Epsv)]
    mode: Mode,

    /// Concurrent sessions (control connections).
    #[arg(long, global = true, default_value_t = 1)]
    sessions: usize,

    /// OS threads the sessions are spread over (default: available cores).
    #[arg(long, global = true)]
    threads: Option<usize>,

    /// Run for this many seconds from the moment every session is logged in.
    #[arg(long, global = true, value_name = "SECS", conflicts_with = "repeat")]
    duration: Option<f64>,

    /// Rounds per session (default 1): transfers, logins or listings; for `small`, passes
    /// over the files.
    #[arg(long, global = true, value_name = "N")]
    repeat: Option<u64>,

    /// Seconds any single wait (connect, reply, data, accept) may take.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,

    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,

    /// Check the data: uploads carry a known pattern and are read back; downloads are
    /// compared with the pattern or with --expect.
    #[arg(long, global = true)]
    verify: bool,

    /// Connection setups (connect + login) in flight at once. A server that accepts slowly
    /// with a short listen backlog (vsftpd: 32) loses handshakes beyond it to SYN cookies,
    /// and those clients then wait for a greeting that never comes.
    #[arg(long, global = true, value_name = "N", default_value_t = 64)]
    connect_concurrency: usize,

    /// Where `retr` puts the data when not verifying: `null` splices it to /dev/null (the
    /// client never copies it), `buffer` reads it into the data buffer, as real clients do.
    #[arg(long, global = true, value_enum, default_value_t = Sink::Null)]
    sink: Sink,

    /// Data buffer per session (e.g. 256K, 1M); at least 4K.
    #[arg(long, global = true, value_name = "BYTES", default_value = "256K", value_parser = parse_size)]
    buffer: u64,

    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Download one file again and again (RETR).
    Retr {
        /// The file on the server.
        #[arg(long)]
        path: String,
        /// With --verify: compare with this local file (sha256) instead of the pattern.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
    },
    /// Upload generated data to new, unique names (STOR).
    Stor {
        /// Bytes per upload (e.g. 1G, 64M, 4096).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Directory on the server to upload into (default: the login directory).
        #[arg(long, default_value = "")]
        dir: String,
        /// Delete each file after uploading it (DELE).
        #[arg(long)]
        cleanup: bool,
    },
    /// Download many small files over one reused control connection per session: the files
    /// `prepare` made, in order.
    Small {
        /// Directory on the server holding f000000.bin, f000001.bin...
        #[arg(long)]
        dir: String,
        /// Number of files.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// File size (for --setup, and checked with --verify).
        #[arg(long, value_parser = parse_size, default_value = "4K")]
        file_size: u64,
        /// Upload the files first, as `prepare` does.
        #[arg(long)]
        setup: bool,
    },
    /// Upload the files `small` reads (DIR/f000000.bin...), with the --verify pattern.
    Prepare {
        /// Directory on the server to create and fill.
        #[arg(long)]
        dir: String,
        /// Number of files.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Size of each file.
        #[arg(long, value_parser = parse_size, default_value = "4K")]
        file_size: u64,
    },
    /// Connect, log in and quit, as fast as the sessions can.
    Login,
    /// List a directory (LIST, or MLSD).
    List {
        /// Directory on the server (default: the current one).
        #[arg(long, default_value = "")]
        dir: String,
        /// Use MLSD instead of LIST.
        #[arg(long)]
        mlsd: bool,
    },
    /// Open the sessions, log in, and hold them for --duration (default 10 s) with a rare
    /// NOOP; reports how many the server still holds at the end.
    Idle {
        /// Seconds between NOOPs on each session.
        #[arg(long, value_name = "SECS", default_value_t = 60.0)]
        noop_interval: f64,
        /// Write the number of sessions logged in to this file once they all are (so a
        /// script can measure the server while they are held).
        #[arg(long, value_name = "FILE")]
        ready_file: Option<PathBuf>,
    },
}

/// Parses a size: plain bytes, or with a binary K, M, G or T suffix (`64M`, `1GiB`).
fn parse_size(s: &str) -> Result<u64, String> {
    let upper = s.trim().to_ascii_uppercase();
    let t = upper.strip_suffix("IB").or_else(|| upper.strip_suffix('B')).unwrap_or(&upper);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("bad size {s:?}: unknown unit {c:?}")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("bad size {s:?}: expected e.g. 4096, 64K, 1G"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

fn seconds(v: f64, flag: &str) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{flag} must be a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("ringftp-bench: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    if args.buffer < 4096 || args.buffer > 1 << 30 {
        return Err("--buffer must be between 4K and 1G".into());
    }
    let timeout = seconds(args.timeout, "--timeout")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).clamp(1, args.sessions);
    raise_fd_limit(args.sessions);
    let addr = resolve(&args.host, args.port)?;

    let idle = matches!(args.workload, Workload::Idle { .. });
    let plan = match (args.duration, args.repeat) {
        (Some(d), _) => Plan::For(seconds(d, "--duration")?),
        (None, _) if idle => Plan::For(Duration::from_secs(10)),
        (None, Some(0)) => return Err("--repeat must be at least 1".into()),
        (None, r) => Plan::Repeat(r.unwrap_or(1)),
    };
    let (job, target, setup) = match &args.workload {
        Workload::Retr { path, expect } => {
            let expect = match (args.verify, expect) {
                (true, Some(file)) => Some(sha256_file(file)?),
                _ => None,
            };
            let job = Job::Retr { path: path.clone(), expect };
            (job, path.clone(), None)
        }
        Workload::Stor { size, dir, cleanup } => (
            Job::Stor { size: *size, dir: dir.clone(), cleanup: *cleanup },
            format!("{size} bytes to {}", if dir.is_empty() { "." } else { dir }),
            None,
        ),
        Workload::Small { dir, count, file_size, setup } => {
            if *count == 0 {
                return Err("--count must be at least 1".into());
            }
            let prepare = Job::Prepare { dir: dir.clone(), count: *count, file_size: *file_size };
            let job = Job::Small { dir: dir.clone(), count: *count, file_size: *file_size };
            (job, format!("{count} x {file_size} bytes in {dir}"), setup.then_some(prepare))
        }
        Workload::Prepare { dir, count, file_size } => (
            Job::Prepare { dir: dir.clone(), count: *count, file_size: *file_size },
            format!("{count} x {file_size} bytes into {dir}"),
            None,
        ),
        Workload::Login => (Job::Login, format!("as {}", args.user), None),
        Workload::List { dir, mlsd } => (
            Job::List { dir: dir.clone(), mlsd: *mlsd },
            if dir.is_empty() { ".".into() } else { dir.clone() },
            None,
        ),
        Workload::Idle { noop_interval, ready_file } => (
            Job::Idle {
                noop_interval: seconds(*noop_interval, "--noop-interval")?,
                ready_file: ready_file.clone(),
            },
            format!("{} sessions", args.sessions),
            None,
        ),
    };
    let workload_name = match &args.workload {
        Workload::Retr { .. } => "retr",
        Workload::Stor { .. } => "stor",
        Workload::Small { .. } => "small",
        Workload::Prepare { .. } => "prepare",
        Workload::Login => "login",
        Workload::List { .. } => "list",
        Workload::Idle { .. } => "idle",
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(preflight(addr, &args.user, &args.pass, timeout))?;
    drop(rt);

    let make_ctx = |job: Job, sessions: usize, plan: Plan| {
        Arc::new(Ctx {
            addr,
            user: args.user.clone(),
            pass: args.pass.clone(),
            mode: args.mode,
            timeout,
            verify: args.verify,
            discard: args.sink == Sink::Null && !args.verify,
            buffer: args.buffer as usize,
            plan,
            job,
            sessions,
            live: Live::default(),
            barrier: Barrier::new(sessions),
            start: OnceLock::new(),
            connecting: Semaphore::new(args.connect_concurrency.max(1)),
            established: AtomicU64::new(0),
        })
    };

    if let Some(prepare) = setup {
        let ctx = make_ctx(prepare, 1, Plan::Repeat(1));
        let stats = run_sessions(&ctx, 1, None)?;
        if let Some(e) = &stats.first_error {
            return Err(format!("--setup failed: {e}"));
        }
    }

    // Prepare splits its files over the sessions and runs once.
    let plan = if matches!(job, Job::Prepare { .. }) { Plan::Repeat(1) } else { plan };
    let ctx = make_ctx(job, args.sessions, plan);
    let show_progress = std::io::stderr().is_terminal();
    let stats = run_sessions(&ctx, threads, show_progress.then_some(plan))?;
    let elapsed = match (ctx.start.get(), stats.end) {
        (Some(&start), Some(end)) => end.saturating_duration_since(start),
        _ => Duration::ZERO,
    };
    let failed = stats.error_count() > 0 || stats.ops == 0;
    let mut report = Report {
        workload: workload_name.into(),
        target,
        mode: args.mode.name(),
        host: args.host.clone(),
        port: args.port,
        sessions: args.sessions,
        threads,
        elapsed,
        stats,
        idle,
        list: matches!(args.workload, Workload::List { .. }),
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One connection, login and QUIT before the run, so that a wrong address, a server that
/// does not answer or a refused login is one clear line instead of a report full of errors.
async fn preflight(addr: SocketAddr, user: &str, pass: &str, timeout: Duration) -> Result<(), String> {
    let mut c = Control::connect(addr, timeout).await.map_err(|e| match e {
        Error::Io(_, e) => format!("cannot connect to {addr}: {e}"),
        Error::Timeout(what) => {
            format!("no answer from {addr} within {} s (waiting for {what})", timeout.as_secs_f64())
        }
        Error::Reply(_) => format!("{addr} refused the session: {e}"),
        Error::Closed => format!("{addr} closed the connection before its greeting"),
        e => format!("{addr}: {e}"),
    })?;
    c.login(user, pass).await.map_err(|e| match e {
        Error::Reply(_) => format!("login as {user} refused: {e}"),
        e => format!("login as {user} at {addr} failed: {e}"),
    })?;
    let _ = c.quit().await;
    Ok(())
}

/// Runs every session of `ctx` on `threads` threads and merges their results.
fn run_sessions(ctx: &Arc<Ctx>, threads: usize, progress: Option<Plan>) -> Result<Stats, String> {
    // Runtimes are built before any thread starts: a thread that could not run its sessions
    // would leave the others waiting at the start barrier.
    let mut runtimes = Vec::with_capacity(threads);
    for _ in 0..threads {
        runtimes.push(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime: {e}"))?,
        );
    }
    let mut handles = Vec::with_capacity(threads);
    for (t, rt) in runtimes.into_iter().enumerate() {
        let ctx = Arc::clone(ctx);
        let ids: Vec<usize> = (t..ctx.sessions).step_by(threads).collect();
        let spawned = std::thread::Builder::new().name(format!("bench-{t}")).spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let tasks: Vec<_> = ids
                    .into_iter()
                    .map(|id| tokio::task::spawn_local(workload::session(Arc::clone(&ctx), id)))
                    .collect();
                let mut total = Stats::default();
                for task in tasks {
                    match task.await {
                        Ok(s) => total.merge(s),
                        Err(e) => {
                            *total.errors.entry("panic".into()).or_default() += 1;
                            total.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                total
            })
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The threads already running wait for this one's sessions at the barrier.
                eprintln!("ringftp-bench: cannot start a thread: {e}");
                std::process::exit(2);
            }
        }
    }
    if let Some(plan) = progress {
        show_progress(ctx, plan, &handles);
    }
    let mut total = Stats::default();
    for h in handles {
        total.merge(h.join().map_err(|_| "a worker thread panicked".to_string())?);
    }
    Ok(total)
}

/// Draws a progress bar on stderr until the threads end.
fn show_progress(ctx: &Ctx, plan: Plan, handles: &[std::thread::JoinHandle<Stats>]) {
    let (len, timed) = match plan {
        Plan::For(d) => ((d.as_secs_f64() * 10.0) as u64, true),
        Plan::Repeat(n) => {
            let units = match &ctx.job {
                Job::Small { count, .. } => *count,
                _ => 1,
            };
            (n.saturating_mul(units).saturating_mul(ctx.sessions as u64), false)
        }
    };
    let bar = indicatif::ProgressBar::new(len.max(1));
    if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let ops = ctx.live.ops.load(Ordering::Relaxed);
        let errors = ctx.live.errors.load(Ordering::Relaxed);
        let bytes = ctx.live.bytes.load(Ordering::Relaxed);
        match ctx.start.get() {
            Some(start) => {
                let secs = start.elapsed().as_secs_f64();
                if timed {
                    bar.set_position((secs * 10.0) as u64);
                } else {
                    bar.set_position(ops + errors);
                }
                let rate = if secs > 0.0 { bytes as f64 / 1e6 / secs } else { 0.0 };
                bar.set_message(format!("{ops} ops, {rate:.1} MB/s, {errors} errors"));
            }
            None => bar.set_message(format!(
                "logging in: {} of {} sessions",
                ctx.established.load(Ordering::Relaxed),
                ctx.sessions
            )),
        }
    }
    bar.finish_and_clear();
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("bad address {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address {host}:{port}: no address found"))
}

fn sha256_file(path: &Path) -> Result<[u8; 32], String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open --expect {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot read --expect {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// Raises the open-file limit to its hard maximum: each session is a socket, and `idle` opens
/// thousands.
fn raise_fd_limit(sessions: usize) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed by pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok && lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    // A session needs its control socket, and a data socket or listener while transferring.
    let need = sessions as u64 * 2 + 64;
    if ok && lim.rlim_cur < need {
        eprintln!(
            "ringftp-bench: warning: the open-file limit is {}, {sessions} sessions may need {need}; raise `ulimit -n`",
            lim.rlim_cur
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
    }
}
