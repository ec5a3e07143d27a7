//! The workloads, one async function per session. Each session logs in before the common
//! start (so logins, which may run a slow password hash, stay out of the timed window unless
//! they are the workload), then runs operations until its repeat count or the deadline. A
//! failed operation is counted by reply code and the session goes on; a broken connection is
//! replaced by a new one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{Barrier, Semaphore};

use crate::client::{Control, Discard, Error, Mode, Result};
use crate::pattern;
use crate::stats::{Live, Stats};

/// How long a run goes on.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Each session runs this many rounds.
    Repeat(u64),
    /// Each session runs until this long after the common start.
    For(Duration),
}

/// What each session does.
#[derive(Debug, Clone)]
pub enum Job {
    Retr {
        path: String,
        /// sha256 of the expected content (`--expect`).
        expect: Option<[u8; 32]>,
    },
    Stor {
        size: u64,
        dir: String,
        cleanup: bool,
    },
    Small {
        dir: String,
        count: u64,
        file_size: u64,
    },
    Prepare {
        dir: String,
        count: u64,
        file_size: u64,
    },
    Login,
    List {
        dir: String,
        mlsd: bool,
    },
    Idle {
        noop_interval: Duration,
        ready_file: Option<PathBuf>,
    },
}

/// Everything the sessions of one run share.
pub struct Ctx {
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
    pub mode: Mode,
    pub timeout: Duration,
    pub verify: bool,
    /// `retr` splices the data to /dev/null (`--sink null` without `--verify`).
    pub discard: bool,
    pub buffer: usize,
    pub plan: Plan,
    pub job: Job,
    pub sessions: usize,
    pub live: Live,
    /// All sessions wait here after their setup; the last one through sets `start`.
    pub barrier: Barrier,
    pub start: OnceLock<Instant>,
    /// Bounds concurrent connection setups (idle opens thousands at once).
    pub connecting: Semaphore,
    /// Sessions that are logged in and past setup.
    pub established: AtomicU64,
}

/// The operations left for one session.
struct Iter {
    limit: Option<u64>,
    deadline: Option<Instant>,
    done: u64,
}

impl Iter {
    fn next(&mut self) -> bool {
        if self.limit.is_some_and(|l| self.done >= l) {
            return false;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        self.done += 1;
        true
    }
}

impl Ctx {
    /// Waits for every session to be set up; `units` is the operations in one round.
    async fn start(&self, units: u64) -> Iter {
        if self.barrier.wait().await.is_leader() {
            let _ = self.start.set(Instant::now());
            if let Job::Idle { ready_file: Some(path), .. } = &self.job {
                // Tells a script that the sessions are held (e.g. to measure server memory).
                let held = self.established.load(Ordering::Relaxed);
                if let Err(e) = std::fs::write(path, format!("{held}\n")) {
                    eprintln!("ringftp-bench: cannot write {}: {e}", path.display());
                }
            }
        }
        match self.plan {
            Plan::Repeat(n) => Iter { limit: Some(n.saturating_mul(units)), deadline: None, done: 0 },
            Plan::For(d) => Iter { limit: None, deadline: Some(Instant::now() + d), done: 0 },
        }
    }

    /// Connects, logs in, and optionally sets TYPE I and the working directory, within the
    /// bound on concurrent setups.
    async fn open(&self, binary: bool, cwd: Option<&str>) -> Result<Control> {
        let _permit = self.connecting.acquire().await;
        self.open_now(binary, cwd).await
    }

    /// [`Ctx::open`] without waiting for a turn.
    async fn open_now(&self, binary: bool, cwd: Option<&str>) -> Result<Control> {
        let mut c = Control::connect(self.addr, self.timeout).await?;
        c.login(&self.user, &self.pass).await?;
        if binary {
            c.expect("TYPE I", 2).await?;
        }
        if let Some(dir) = cwd.filter(|d| !d.is_empty()) {
            c.expect(&format!("CWD {dir}"), 2).await?;
        }
        Ok(c)
    }

    /// Returns the session's connection, making a new one if there is none. On failure the
    /// error is counted and, after a short pause, the caller moves on to its next round.
    async fn ensure<'a>(
        &self,
        conn: &'a mut Option<Control>,
        st: &mut Stats,
        binary: bool,
        cwd: Option<&str>,
    ) -> Option<&'a mut Control> {
        if conn.is_none() {
            match self.open(binary, cwd).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    st.error(&self.live, &e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
            }
        }
        conn.as_mut()
    }

    fn failed(&self, st: &mut Stats, conn: &mut Option<Control>, e: &Error) {
        st.error(&self.live, e);
        if e.breaks_connection() {
            *conn = None;
        }
    }
}

/// The data buffer of one session; filled with pattern data so uploads are not all zeros.
fn data_buffer(size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size];
    pattern::fill(0, 0, &mut buf);
    buf
}

/// Checks a download as it arrives, against the pattern or an expected sha256.
enum Check {
    None,
    Pattern { seed: u64, pos: u64, bad: Option<u64> },
    Sha(Box<Sha256>, [u8; 32]),
}

impl Check {
    fn new(verify: bool, path: &str, expect: Option<[u8; 32]>) -> Check {
        match (verify, expect) {
            (false, _) => Check::None,
            (true, Some(sum)) => Check::Sha(Box::default(), sum),
            (true, None) => Check::Pattern { seed: pattern::seed_for(path), pos: 0, bad: None },
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        match self {
            Check::None => {}
            Check::Pattern { seed, pos, bad } => {
                if bad.is_none() {
                    *bad = pattern::check(*seed, *pos, chunk);
                }
                *pos += chunk.len() as u64;
            }
            Check::Sha(h, _) => h.update(chunk),
        }
    }

    /// The bytes verified, or what differed. `len` is the expected length, if known.
    fn finish(self, path: &str, got: u64, len: Option<u64>) -> Result<u64> {
        match self {
            Check::None => Ok(0),
            Check::Pattern { bad: Some(at), .. } => {
                Err(Error::Verify(format!("{path}: differs from the pattern at byte {at}")))
            }
            Check::Pattern { .. } => match len {
                Some(len) if len != got => Err(Error::Verify(format!("{path}: {got} bytes, expected {len}"))),
                _ => Ok(got),
            },
            Check::Sha(h, want) => {
                if h.finalize().as_slice() == want {
                    Ok(got)
                } else {
                    Err(Error::Verify(format!("{path}: sha256 differs from --expect")))
                }
            }
        }
    }
}

/// Downloads `path` with RETR, verifying it when asked; returns (bytes, bytes verified).
async fn retr_one(
    ctx: &Ctx,
    c: &mut Control,
    buf: &mut [u8],
    path: &str,
    expect: Option<[u8; 32]>,
    len: Option<u64>,
) -> Result<(u64, u64)> {
    let mut check = Check::new(ctx.verify, path, expect);
    let live = &ctx.live;
    let n = c
        .download(ctx.mode, &format!("RETR {path}"), buf, |chunk| {
            check.feed(chunk);
            live.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        })
        .await?;
    let verified = check.finish(path, n, len)?;
    Ok((n, verified))
}

/// Uploads `size` pattern bytes to `name` with STOR.
async fn stor_one(ctx: &Ctx, c: &mut Control, buf: &mut [u8], name: &str, size: u64) -> Result<u64> {
    let seed = pattern::seed_for(name);
    let verify = ctx.verify;
    let live = &ctx.live;
    c.upload(ctx.mode, &format!("STOR {name}"), size, buf, |offset, chunk| {
        // Without --verify the buffer is sent as it is: no per-byte work.
        if verify {
            pattern::fill(seed, offset, chunk);
        }
        live.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    })
    .await
}

/// The name of small file `i` (as `prepare` makes them).
pub fn small_name(i: u64) -> String {
    format!("f{i:06}.bin")
}

/// Runs one session of the job; `id` is unique in the run.
pub async fn session(ctx: Arc<Ctx>, id: usize) -> Stats {
    let mut st = Stats::default();
    match ctx.job.clone() {
        Job::Retr { path, expect } => retr(&ctx, &mut st, &path, expect).await,
        Job::Stor { size, dir, cleanup } => stor(&ctx, &mut st, id, size, &dir, cleanup).await,
        Job::Small { dir, count, file_size } => small(&ctx, &mut st, &dir, count, file_size).await,
        Job::Prepare { dir, count, file_size } => prepare(&ctx, &mut st, id, &dir, count, file_size).await,
        Job::Login => login(&ctx, &mut st).await,
        Job::List { dir, mlsd } => list(&ctx, &mut st, &dir, mlsd).await,
        Job::Idle { noop_interval, .. } => idle(&ctx, &mut st, noop_interval).await,
    }
    st
}

/// Logs in before the start; a failure is counted and retried in the rounds.
async fn setup(ctx: &Ctx, st: &mut Stats, binary: bool, cwd: Option<&str>) -> Option<Control> {
    match ctx.open(binary, cwd).await {
        Ok(c) => {
            ctx.established.fetch_add(1, Ordering::Relaxed);
            Some(c)
        }
        Err(e) => {
            st.error(&ctx.live, &e);
            None
        }
    }
}

async fn goodbye(conn: Option<Control>) {
    if let Some(c) = conn {
        let _ = c.quit().await;
    }
}

async fn retr(ctx: &Ctx, st: &mut Stats, path: &str, expect: Option<[u8; 32]>) {
    // Nothing looks at the bytes: splice them to /dev/null rather than copy them in (falling
    // back to the buffer if no pipe can be had).
    let discard = if ctx.discard { Discard::new().ok() } else { None };
    let mut buf = data_buffer(if discard.is_some() { 4096 } else { ctx.buffer });
    let mut conn = setup(ctx, st, true, None).await;
    let mut it = ctx.start(1).await;
    while it.next() {
        let Some(c) = ctx.ensure(&mut conn, st, true, None).await else {
            continue;
        };
        let t = Instant::now();
        let result = match &discard {
            Some(sink) => {
                let live = &ctx.live;
                c.download_discard(ctx.mode, &format!("RETR {path}"), sink, |n| {
                    live.bytes.fetch_add(n as u64, Ordering::Relaxed);
                })
                .await
                .map(|n| (n, 0))
            }
            None => retr_one(ctx, c, &mut buf, path, expect, None).await,
        };
        match result {
            Ok((n, v)) => {
                st.bytes_verified += v;
                st.op(&ctx.live, t, n);
            }
            Err(e) => ctx.failed(st, &mut conn, &e),
        }
    }
    goodbye(conn).await;
}

fn join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" | "." if !dir.starts_with('/') => name.to_string(),
        d => format!("{d}/{name}"),
    }
}

async fn stor(ctx: &Ctx, st: &mut Stats, id: usize, size: u64, dir: &str, cleanup: bool) {
    let mut buf = data_buffer(ctx.buffer);
    let mut conn = setup(ctx, st, true, None).await;
    let mut it = ctx.start(1).await;
    let pid = std::process::id();
    while it.next() {
        let Some(c) = ctx.ensure(&mut conn, st, true, None).await else {
            continue;
        };
        let name = join(dir, &format!("rb-{pid}-{id}-{}.bin", it.done));
        let t = Instant::now();
        match stor_one(ctx, c, &mut buf, &name, size).await {
            Ok(n) => st.op(&ctx.live, t, n),
            Err(e) => {
                ctx.failed(st, &mut conn, &e);
                continue;
            }
        }
        if ctx.verify {
            // Read it back: the pattern check covers content, order and length.
            match retr_one(ctx, c, &mut buf, &name, None, Some(size)).await {
                Ok((_, v)) => st.bytes_verified += v,
                Err(e) => {
                    ctx.failed(st, &mut conn, &e);
                    continue;
                }
            }
        }
        if cleanup {
            if let Err(e) = c.expect(&format!("DELE {name}"), 2).await {
                ctx.failed(st, &mut conn, &e);
            }
        }
    }
    goodbye(conn).await;
}

async fn small(ctx: &Ctx, st: &mut Stats, dir: &str, count: u64, file_size: u64) {
    let mut buf = data_buffer(ctx.buffer);
    let mut conn = setup(ctx, st, true, Some(dir)).await;
    let mut it = ctx.start(count).await;
    while it.next() {
        let Some(c) = ctx.ensure(&mut conn, st, true, Some(dir)).await else {
            continue;
        };
        let name = small_name((it.done - 1) % count.max(1));
        let t = Instant::now();
        match retr_one(ctx, c, &mut buf, &name, None, Some(file_size)).await {
            Ok((n, v)) => {
                st.bytes_verified += v;
                st.op(&ctx.live, t, n);
            }
            Err(e) => ctx.failed(st, &mut conn, &e),
        }
    }
    goodbye(conn).await;
}

/// Uploads the files `small` reads; session `id` takes every `sessions`-th file.
async fn prepare(ctx: &Ctx, st: &mut Stats, id: usize, dir: &str, count: u64, file_size: u64) {
    let mut buf = data_buffer(ctx.buffer.min(file_size.max(1) as usize));
    let mut conn = setup(ctx, st, true, None).await;
    if let Some(c) = conn.as_mut() {
        // It may exist already (550 or 521 then); CWD below tells whether it is usable.
        let _ = c.expect(&format!("MKD {dir}"), 2).await;
    }
    ctx.start(1).await;
    let sessions = ctx.sessions as u64;
    let mut cwd_done = false;
    for i in (id as u64..count).step_by(sessions.max(1) as usize) {
        let Some(c) = ctx.ensure(&mut conn, st, true, None).await else {
            cwd_done = false;
            continue;
        };
        if !cwd_done {
            if let Err(e) = c.expect(&format!("CWD {dir}"), 2).await {
                ctx.failed(st, &mut conn, &e);
                continue;
            }
            cwd_done = true;
        }
        let name = small_name(i);
        let t = Instant::now();
        match stor_one_pattern(ctx, c, &mut buf, &name, file_size).await {
            Ok(n) => st.op(&ctx.live, t, n),
            Err(e) => {
                ctx.failed(st, &mut conn, &e);
                if conn.is_none() {
                    cwd_done = false;
                }
            }
        }
    }
    goodbye(conn).await;
}

/// Like [`stor_one`], but always with the pattern, so `small --verify` can check the files.
async fn stor_one_pattern(ctx: &Ctx, c: &mut Control, buf: &mut [u8], name: &str, size: u64) -> Result<u64> {
    let seed = pattern::seed_for(name);
    let live = &ctx.live;
    c.upload(ctx.mode, &format!("STOR {name}"), size, buf, |offset, chunk| {
        pattern::fill(seed, offset, chunk);
        live.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    })
    .await
}

async fn login(ctx: &Ctx, st: &mut Stats) {
    let mut it = ctx.start(1).await;
    while it.next() {
        let t = Instant::now();
        let result = async {
            let mut c = Control::connect(ctx.addr, ctx.timeout).await?;
            c.login(&ctx.user, &ctx.pass).await?;
            c.quit().await
        }
        .await;
        match result {
            Ok(()) => st.op(&ctx.live, t, 0),
            Err(e) => {
                st.error(&ctx.live, &e);
                if e.breaks_connection() {
                    // A refused or reset connection: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn list(ctx: &Ctx, st: &mut Stats, dir: &str, mlsd: bool) {
    let mut buf = data_buffer(ctx.buffer);
    let mut conn = setup(ctx, st, false, None).await;
    let mut it = ctx.start(1).await;
    let verb = if mlsd { "MLSD" } else { "LIST" };
    let cmd = if dir.is_empty() { verb.to_string() } else { format!("{verb} {dir}") };
    while it.next() {
        let Some(c) = ctx.ensure(&mut conn, st, false, None).await else {
            continue;
        };
        let t = Instant::now();
        let mut lines = 0u64;
        let live = &ctx.live;
        let result = c
            .download(ctx.mode, &cmd, &mut buf, |chunk| {
                lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                live.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            })
            .await;
        match result {
            Ok(n) => {
                st.entries += lines;
                st.op(&ctx.live, t, n);
            }
            Err(e) => ctx.failed(st, &mut conn, &e),
        }
    }
    goodbye(conn).await;
}

/// Holds a logged-in session until the deadline with a rare NOOP; at the end a last NOOP
/// tells whether the server still holds it. The op is the login.
async fn idle(ctx: &Ctx, st: &mut Stats, noop_interval: Duration) {
    // The latency is the login's, not the wait for a turn to connect.
    let permit = ctx.connecting.acquire().await;
    let t = Instant::now();
    let opened = ctx.open_now(false, None).await;
    drop(permit);
    let mut conn = match opened {
        Ok(c) => {
            st.op(&ctx.live, t, 0);
            ctx.established.fetch_add(1, Ordering::Relaxed);
            Some(c)
        }
        Err(e) => {
            st.error(&ctx.live, &e);
            None
        }
    };
    let it = ctx.start(1).await;
    let deadline = it.deadline.unwrap_or_else(Instant::now);
    let Some(c) = conn.as_mut() else {
        return;
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep((deadline - now).min(noop_interval)).await;
        if let Err(e) = c.expect("NOOP", 2).await {
            ctx.failed(st, &mut conn, &e);
            return;
        }
    }
    st.held += 1;
    st.end = Some(Instant::now());
    goodbye(conn).await;
}
