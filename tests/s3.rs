//! The object-storage backend end to end: ringftpd serving a bucket of a real S3 API server
//! (moto's, on loopback, started per test), driven by curl, ftplib and lftp. What landed in
//! the bucket is checked with boto3, an independent S3 client, never through ringftpd.
//!
//! The server and client are in tests/moto (moto's server and boto3, installed with pip if
//! missing).

mod common;
mod moto;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use moto::{Moto, KEY_ID, PRELUDE, SECRET};
use ringftp::storage::{HashAlgo, ObjectStorage, S3Config};
use ringftp::{Server, ServerHandle, User, UserList};

/// ringftpd serving `s3://bucket/pre` of this moto.
fn server(moto: &Moto, bucket: &str, tag: &str) -> TestServer {
    server_with(moto, bucket, tag, &[])
}

/// [`server`] with more flags.
fn server_with(moto: &Moto, bucket: &str, tag: &str, extra: &[&str]) -> TestServer {
    server_at(&moto.url(), bucket, tag, extra)
}

/// [`server_with`] for the S3 endpoint `url`.
fn server_at(url: &str, bucket: &str, tag: &str, extra: &[&str]) -> TestServer {
    TestServer::builder(tag)
        .no_root()
        .log_level("info,ringftp=debug")
        .args([
            "--storage".to_string(),
            format!("s3://{bucket}/pre"),
            "--s3-endpoint".to_string(),
            url.to_string(),
            "--s3-path-style".to_string(),
        ])
        .args(extra.iter().copied())
        .start()
}

fn write_random(path: &Path, len: u64) -> String {
    let mut f = fs::File::create(path).unwrap();
    let mut state = len.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for b in &mut buf[..n] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    sha256_file(path)
}

fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

/// Uploads and downloads 0 B, 1 B and 100 MiB (13 parts) with each client, checking every
/// object in the bucket with boto3 and every download against the source.
#[test]
fn round_trips_with_curl_ftplib_and_lftp() {
    let moto = Moto::start();
    moto.bucket("trips");
    let server = server(&moto, "trips", "s3-trips");
    let work = server.work();
    let sizes = [("zero", 0u64), ("one", 1), ("big", 100 * MIB)];
    let mut expected = Vec::new();
    for (name, len) in sizes {
        let src = work.join(format!("{name}.src"));
        let sum = write_random(&src, len);
        let src = src.display().to_string();

        // curl
        let remote = format!("curl-{name}");
        run_text(curl(&server).arg("-T").arg(&src).arg(server.url(&remote))).ok(&server);
        let back = work.join(format!("{remote}.back"));
        run_text(curl(&server).arg("-o").arg(&back).arg(server.url(&remote))).ok(&server);
        assert_eq!(sha256_file(&back), sum, "curl download of {remote}");
        expected.push((format!("pre/{remote}"), len, sum.clone()));

        // ftplib
        let remote = format!("ftplib-{name}");
        let back = work.join(format!("{remote}.back")).display().to_string();
        let r = py(&server, &[&format!("put {src} {remote}"), &format!("get {remote} {back}")]).ok(&server);
        assert!(r.stdout.contains("put: 226") && r.stdout.contains("get: 226"), "{}", r.describe());
        assert_eq!(sha256_file(Path::new(&back)), sum, "ftplib download of {remote}");
        expected.push((format!("pre/{remote}"), len, sum.clone()));

        // lftp
        let remote = format!("lftp-{name}");
        let back = format!("{remote}.back");
        let script = format!("put {src} -o {remote}; get {remote} -o {back}");
        run_text(&mut lftp(&server, &work, &script)).ok(&server);
        assert_eq!(sha256_file(&work.join(&back)), sum, "lftp download of {remote}");
        expected.push((format!("pre/{remote}"), len, sum));
    }
    expected.sort();
    assert_eq!(moto.objects("trips", ""), expected);
    assert_eq!(moto.pending_uploads("trips"), Vec::<String>::new());
}

/// REST + RETR is a ranged GET: ftplib resumes a download, curl starts at an offset, and a
/// REST at the end sends nothing.
#[test]
fn rest_download() {
    let moto = Moto::start();
    moto.bucket("rest");
    let server = server(&moto, "rest", "s3-rest");
    let work = server.work();
    let src = work.join("src");
    let sum = write_random(&src, 10 * MIB + 5);
    moto.py("rest", &format!("s3.upload_file({:?}, B, 'pre/f.bin')", src.display().to_string()));

    // A partial local copy (the first 3 MiB + 1), resumed from there.
    let data = fs::read(&src).unwrap();
    let part = work.join("part");
    fs::write(&part, &data[..3 * MIB as usize + 1]).unwrap();
    let r = py(&server, &[&format!("get f.bin {} {}", part.display(), 3 * MIB + 1)]).ok(&server);
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(sha256_file(&part), sum);

    let tail = work.join("tail");
    run_text(curl(&server).args(["-C", "1000", "-o"]).arg(&tail).arg(server.url("f.bin"))).ok(&server);
    assert_eq!(fs::read(&tail).unwrap(), &data[1000..]);

    let end = work.join("end");
    let len = data.len();
    let r = py(&server, &[&format!("get f.bin {} {len}", end.display())]).ok(&server);
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&end).unwrap().len(), len, "nothing appended after REST at the end");
}

/// A directory of 2,500 objects, a subdirectory and the directory's own marker made with
/// boto3, served with 250-key ListObjectsV2 pages (`--s3-list-page`; eleven pages), listed by
/// LIST, NLST, MLSD and STAT: every entry exactly once, the marker never, each page sent as it
/// arrives (the server logs one line per page).
#[test]
fn large_directory_listing() {
    const N: usize = 2500;
    let moto = Moto::start();
    moto.bucket("big");
    let server = TestServer::builder("s3-big")
        .no_root()
        .log_level("info,ringftp=debug")
        .args(["--storage", "s3://big/pre", "--s3-endpoint", &moto.url(), "--s3-path-style"])
        .args(["--s3-list-page", "250"])
        .start();
    moto.py(
        "big",
        &format!(
            "from concurrent.futures import ThreadPoolExecutor\n\
             def put(i): s3.put_object(Bucket=B, Key='pre/many/f%04d' % i, Body=b'x' * (i % 7))\n\
             with ThreadPoolExecutor(8) as ex: list(ex.map(put, range({N})))\n\
             s3.put_object(Bucket=B, Key='pre/many/sub/inner', Body=b'y')\n\
             s3.put_object(Bucket=B, Key='pre/many/', Body=b'')"
        ),
    );
    let r = py(&server, &["list many", "nlst many", "mlsd many"]).ok(&server);
    let list = r.lines_with("list| ");
    let nlst = r.lines_with("nlst| ");
    let mlsd = r.lines_with("mlsd| ");
    assert_eq!(list.len(), N + 1, "LIST: {}", r.stdout.lines().take(5).collect::<Vec<_>>().join("\n"));
    assert_eq!(mlsd.len(), N + 1);
    let want: std::collections::BTreeSet<String> =
        (0..N).map(|i| format!("f{i:04}")).chain(["sub".to_string()]).collect();
    let names: Vec<String> = nlst.iter().map(|l| l["nlst| ".len()..].to_string()).collect();
    assert_eq!(names.len(), N + 1, "NLST: {} names", names.len());
    assert_eq!(
        names.iter().cloned().collect::<std::collections::BTreeSet<_>>(),
        want,
        "NLST: each name once"
    );
    assert!(list.iter().any(|l| l.starts_with("list| d") && l.ends_with(" sub")), "sub is a directory");
    assert!(list.iter().any(|l| l.contains(" 6 ") && l.ends_with(" f0006")), "sizes from the listing");
    let files = mlsd.iter().filter(|l| l.to_ascii_lowercase().contains("type=file;")).count();
    let dirs = mlsd.iter().filter(|l| l.to_ascii_lowercase().contains("type=dir;")).count();
    assert_eq!((files, dirs), (N, 1), "MLSD types");
    assert!(mlsd.iter().any(|l| l.to_ascii_lowercase().contains("size=3;") && l.ends_with(" f0003")));
    assert!(r.stdout.contains("list: 226") && r.stdout.contains("mlsd: 226"), "{}", r.describe());

    // curl's LIST over the same directory agrees.
    let out = run_text(curl(&server).arg(server.url("many/"))).ok(&server);
    assert_eq!(out.stdout.lines().count(), N + 1);

    // So does STAT, on the control connection a page at a time: one well-formed multi-line
    // reply (no line before the last starts with "213 "), each name once.
    let mut c = Control::connect(server.addr(), Duration::from_secs(60));
    c.login(USER, PASS);
    let (code, text) = c.cmd("STAT many");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((code, lines[0], lines[lines.len() - 1]), (213, "213-Status follows:", "213 End of status"));
    let middle = &lines[1..lines.len() - 1];
    assert!(middle.iter().all(|l| l.starts_with(' ') && !l.starts_with("213 ")), "continuation lines");
    let stat: std::collections::BTreeSet<String> =
        middle.iter().map(|l| l.rsplit(' ').next().unwrap().to_string()).collect();
    assert_eq!((middle.len(), &stat), (N + 1, &want), "STAT: each name once");
    assert_eq!(c.cmd("NOOP").0, 200);

    // Five listings of eleven pages each, every page its own batch of at most 250 keys.
    let log = server.stderr_log();
    let pages: Vec<&str> = log.lines().filter(|l| l.contains("listing page")).collect();
    assert!(pages.len() >= 5 * 11, "{} pages logged:\n{}", pages.len(), server.log_for_failure());
    assert!(
        pages.iter().all(|l| l
            .split("keys=")
            .nth(1)
            .and_then(|k| k.trim().parse::<usize>().ok())
            .is_some_and(|k| k <= 250)),
        "{pages:?}"
    );
}

/// Directories are prefixes: MKD writes a marker, CWD works with or without one, RMD removes
/// only an empty one; files: SIZE/MDTM/MLST, rename by copy, delete; what an object store
/// cannot do gets 504.
#[test]
fn directories_files_and_refusals() {
    let moto = Moto::start();
    moto.bucket("tree");
    let server = server(&moto, "tree", "s3-tree");
    let work = server.work();
    let src = work.join("f");
    write_random(&src, 1000);
    moto.py("tree", "s3.put_object(Bucket=B, Key='pre/implicit/deep/x', Body=b'abc')");
    let src = src.display().to_string();
    let r = py(
        &server,
        &[
            "raw MKD d",
            "raw MKD d",
            "raw CWD d",
            "raw PWD",
            &format!("put {src} inside.bin"),
            "raw CWD /implicit",
            "raw CWD deep",
            "raw SIZE x",
            "raw MDTM x",
            "raw MLST x",
            "raw CWD /",
            "raw CWD nowhere",
            "raw MKD nowhere/sub",
            "raw RMD d",
            "raw DELE d/inside.bin",
            "raw DELE d/inside.bin",
            "raw RMD d",
            "raw RMD d",
            "raw MKD e",
            &format!("put {src} e/a.bin"),
            "raw RNFR e/a.bin",
            "raw RNTO e/b.bin",
            "raw RNFR implicit",
            "raw RNTO moved",
            &format!("appe {src} e/b.bin"),
            &format!("put {src} e/b.bin 10"),
            "raw DELE implicit",
            "raw SIZE e",
        ],
    )
    .ok(&server);
    let raw: Vec<String> = r.lines_with("raw: ");
    let put: Vec<String> = r.lines_with("put: ");
    let codes: Vec<&str> =
        raw.iter().map(|l| l["raw: ".len()..].trim_start_matches("ERR ").get(..3).unwrap_or("")).collect();
    let expect = [
        "257", "550", "250", "257", // MKD, MKD again, CWD, PWD
        "250", "250", "213", "213", "250", // CWD into a marker-less prefix, SIZE, MDTM, MLST
        "250", "550", "550", // CWD /, CWD missing, MKD below a missing parent
        "550", "250", "550", "250", "550", // RMD non-empty, DELE, DELE again, RMD, RMD again
        "257", "350", "250", // MKD e, RNFR/RNTO of a file
        "350", "504", // RNFR/RNTO of a directory
        "550", "550", // DELE and SIZE of a directory
    ];
    assert_eq!(codes, expect, "{}", r.describe());
    assert!(raw.iter().any(|l| l.contains("257 \"/d\"")), "{raw:?}");
    assert!(raw.iter().any(|l| l.contains("213 3")), "SIZE from HEAD: {raw:?}");
    assert!(put[0].starts_with("put: 226") && put[1].starts_with("put: 226"), "{put:?}");
    assert!(put[2].contains("504"), "REST + STOR is refused: {put:?}");
    assert!(r.lines_with("appe: ")[0].contains("504"), "APPE is refused: {}", r.stdout);
    assert!(raw.iter().any(|l| l.contains("MLST") || l.contains("type=file")), "{raw:?}");

    let keys: Vec<String> = moto.objects("tree", "").into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys, ["pre/e/", "pre/e/b.bin", "pre/implicit/deep/x"], "what the bucket holds");
}

/// An upload that ends early, by ABOR or by a reset data connection, aborts its multipart
/// upload: no object, no pending upload, no orphaned parts.
#[test]
fn aborted_uploads_leave_nothing() {
    let moto = Moto::start();
    moto.bucket("abort");
    let server = server(&moto, "abort", "s3-abort");
    // 20 MiB sent (two parts uploaded, so a multipart upload exists), then the upload is cut
    // off while moto's view is checked from here.
    let code = format!(
        "ftp = ftplib.FTP()\n\
         ftp.connect('127.0.0.1', {port}, timeout=30)\n\
         ftp.login('{USER}', '{PASS}')\n\
         ftp.voidcmd('TYPE I')\n\
         mode = sys.argv[1]\n\
         conn = ftp.transfercmd('STOR cut-' + mode)\n\
         chunk = b'z' * (1 << 20)\n\
         for _ in range(20): conn.sendall(chunk)\n\
         deadline = time.time() + 30\n\
         while not s3.list_multipart_uploads(Bucket=B).get('Uploads') and time.time() < deadline: time.sleep(0.1)\n\
         print('pending', len(s3.list_multipart_uploads(Bucket=B).get('Uploads', [])), flush=True)\n\
         if mode == 'abor':\n\
         \x20   ftp.putcmd('ABOR')\n\
         \x20   print('reply', ftp.getline(), flush=True)\n\
         \x20   conn.close()\n\
         else:\n\
         \x20   conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
         \x20   conn.close()\n\
         \x20   print('reply', ftp.getline(), flush=True)\n",
        port = server.port()
    );
    for mode in ["abor", "reset"] {
        let script = format!("{PRELUDE}\n{code}");
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(&script).arg(mode).env("S3_URL", moto.url()).env("BUCKET", "abort");
        let out = run_text_timeout(&mut cmd, Duration::from_secs(120));
        assert!(out.status.success(), "{}\n{}", out.describe(), server.log_for_failure());
        assert!(out.stdout.contains("pending 1"), "the upload had begun: {}", out.stdout);
        let reply = out.stdout.lines().find(|l| l.starts_with("reply ")).unwrap_or_default().to_string();
        assert!(
            reply.starts_with("reply 426")
                || reply.starts_with("reply 226")
                || reply.starts_with("reply 451"),
            "{reply}"
        );
        // The abort runs on the shard after the reply: wait for it, bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !moto.pending_uploads("abort").is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            moto.pending_uploads("abort"),
            Vec::<String>::new(),
            "{mode}: {}",
            server.log_for_failure()
        );
        assert_eq!(moto.objects("abort", ""), Vec::new(), "{mode}: no object");
    }
}

/// The store goes away in the middle of a download: the client gets 451 and the server
/// keeps running; once the store is back, a new session works.
#[test]
fn store_outage_mid_transfer_gives_451_and_recovery() {
    let mut moto = Moto::start();
    moto.bucket("outage");
    let server = server(&moto, "outage", "s3-outage");
    let work = server.work();
    let src = work.join("src");
    write_random(&src, 64 * MIB);
    moto.py("outage", &format!("s3.upload_file({:?}, B, 'pre/big')", src.display().to_string()));

    // A client that reads 1 MiB, says so, and waits for a line on stdin before reading on.
    let code = format!(
        "ftp = ftplib.FTP()\n\
         ftp.connect('127.0.0.1', {port}, timeout=60)\n\
         ftp.login('{USER}', '{PASS}')\n\
         ftp.voidcmd('TYPE I')\n\
         conn = ftp.transfercmd('RETR big')\n\
         got = 0\n\
         while got < (1 << 20): got += len(conn.recv(1 << 16))\n\
         print('started', flush=True)\n\
         sys.stdin.readline()\n\
         try:\n\
         \x20   while True:\n\
         \x20       b = conn.recv(1 << 20)\n\
         \x20       if not b: break\n\
         \x20       got += len(b)\n\
         except OSError as e: print('data error', e, flush=True)\n\
         conn.close()\n\
         print('got', got, flush=True)\n\
         print('reply', ftp.getline(), flush=True)\n",
        port = server.port()
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}\n{code}"))
        .env("S3_URL", moto.url())
        .env("BUCKET", "outage")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("the download did not start");
    assert_eq!(first, "started");
    moto.kill();
    writeln!(stdin, "go").unwrap();
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(90)) {
        lines.push(line);
        if lines.last().is_some_and(|l| l.starts_with("reply ")) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let reply = lines.iter().find(|l| l.starts_with("reply ")).cloned().unwrap_or_default();
    assert!(reply.starts_with("reply 451"), "{lines:?}\n{}", server.log_for_failure());
    let got: u64 = lines.iter().find_map(|l| l.strip_prefix("got ")).and_then(|n| n.parse().ok()).unwrap();
    assert!(got < 64 * MIB, "the transfer was cut short ({got} bytes)");

    // The node is still serving; with the store back, a new login works end to end.
    moto.restart();
    moto.bucket("outage");
    let small = work.join("small");
    let sum = write_random(&small, 12345);
    let back = work.join("small.back");
    let r =
        py(&server, &[&format!("put {} again", small.display()), &format!("get again {}", back.display())])
            .ok(&server);
    assert!(r.stdout.contains("put: 226") && r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(sha256_file(&back), sum);
    assert_eq!(moto.objects("outage", ""), [("pre/again".to_string(), 12345, sum)]);
}

/// The same settings from a config file (credentials included); a user's home is a key
/// prefix below the configured one, and the user cannot see or reach above it.
#[test]
fn config_file_and_home_prefix() {
    let moto = Moto::start();
    moto.bucket("homes");
    moto.py("homes", "s3.put_object(Bucket=B, Key='pre/outside', Body=b'not for alice')");
    let b = TestServer::builder("s3-homes").no_root().no_default_user();
    let config = b.work().join("ringftpd.toml");
    fs::create_dir_all(b.work()).unwrap();
    fs::write(
        &config,
        format!(
            "storage = \"s3://homes/pre\"\ns3_endpoint = \"{}\"\ns3_region = \"us-east-1\"\n\
             s3_path_style = true\ns3_access_key_id = \"{KEY_ID}\"\ns3_secret_access_key = \"{SECRET}\"\n\
             [[users]]\nname = \"{USER}\"\npassword = \"{PASS}\"\nhome = \"alice\"\n",
            moto.url()
        ),
    )
    .unwrap();
    let server = b.arg("--config").arg(config.display().to_string()).start();
    let src = server.work().join("mine");
    let sum = write_random(&src, 4321);
    let r = py(
        &server,
        &[
            &format!("put {} mine", src.display()),
            "nlst",
            "raw CWD ..",
            "raw PWD",
            "raw SIZE /outside",
            "nlst /",
        ],
    )
    .ok(&server);
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    assert_eq!(r.lines_with("nlst| "), ["nlst| mine", "nlst| mine"], "only the home is visible");
    assert!(r.lines_with("raw: ")[1].contains("\"/\""), "CWD .. stays at the home: {}", r.stdout);
    assert!(r.lines_with("raw: ")[2].contains("550"), "{}", r.stdout);
    let keys = moto.objects("homes", "");
    assert_eq!(
        keys.iter().map(|(k, _, _)| k.as_str()).collect::<Vec<_>>(),
        ["pre/alice/mine", "pre/outside"]
    );
    assert_eq!(keys[0].2, sum);
}

/// 32 uploads of 16 MiB at once (two parts each, one multipart upload each, on every shard):
/// every one completes, and boto3 finds all 32 objects whole, with no upload left open. Whole
/// means the store's own multipart ETag (the MD5 of the parts' MD5s) equals the one computed
/// here from the source in 8 MiB parts: downloading 512 MiB back from moto would take longer
/// than the uploads.
#[test]
fn thirty_two_concurrent_uploads() {
    const N: usize = 32;
    let moto = Moto::start();
    moto.bucket("many");
    let server = server(&moto, "many", "s3-many");
    let src = server.work().join("src");
    write_random(&src, 16 * MIB);
    let started = Instant::now();
    let clients: Vec<_> = (0..N)
        .map(|i| {
            curl(&server)
                .arg("-T")
                .arg(&src)
                .arg(server.url(&format!("f{i:02}")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start curl")
        })
        .collect();
    // curl's --max-time bounds each wait.
    let failed: Vec<String> = clients
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let out = c.wait_with_output().unwrap();
            (!out.status.success())
                .then(|| format!("f{i:02}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
        })
        .collect();
    let took = started.elapsed();
    assert!(failed.is_empty(), "{}\n{}", failed.join("\n"), server.log_for_failure());
    let code = format!(
        "parts = []\n\
         with open({src:?}, 'rb') as f:\n\
         \x20   while chunk := f.read(8 << 20): parts.append(hashlib.md5(chunk).digest())\n\
         want = '\"%s-%d\"' % (hashlib.md5(b''.join(parts)).hexdigest(), len(parts))\n\
         for o in s3.list_objects_v2(Bucket=B)['Contents']:\n\
         \x20   print(o['Key'], o['Size'], o['ETag'] == want)",
        src = src.display().to_string()
    );
    let got = moto.py("many", &code);
    let want: String = (0..N).map(|i| format!("pre/f{i:02} {} True\n", 16 * MIB)).collect();
    assert_eq!(got, want);
    assert_eq!(moto.pending_uploads("many"), Vec::<String>::new());
    eprintln!("{N} concurrent 16 MiB uploads in {took:?}");
}

/// What [`meddling_proxy`] does, once, to the request that has its marker.
#[derive(Clone, Copy, PartialEq)]
enum Meddle {
    /// Cuts the connection a MiB into what follows the marker (both ways shut).
    Cut,
    /// Flips the bits of one byte of the body, 64 KiB past the marker, and passes on the
    /// rest: corruption the TCP checksum missed.
    Flip,
}

/// A TCP proxy to `upstream` that meddles, once, with the first request that has `marker`
/// in it; everything else it passes through. Set once it has.
fn meddling_proxy(
    upstream: SocketAddr,
    marker: &'static [u8],
    meddle: Meddle,
) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    thread::spawn(move || {
        // Ends with the test process; each connection ends when either side closes.
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(upstream) else { continue };
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut from_server, mut to_client) = (server, client);
            thread::spawn(move || drop(std::io::copy(&mut from_server, &mut to_client)));
            let flag = flag.clone();
            thread::spawn(move || {
                use std::io::Read;
                let mut buf = vec![0u8; 64 << 10];
                let mut seen: Vec<u8> = Vec::new();
                // Bytes since the marker, on the connection that has it.
                let mut after: Option<usize> = None;
                let mut flipped = false;
                loop {
                    let n = match from_client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if let Some(sent) = &mut after {
                        if meddle == Meddle::Flip && !flipped && *sent >= 64 << 10 {
                            buf[0] ^= 0xff;
                            flipped = true;
                        }
                        *sent += n;
                    } else {
                        // A window over the stream's last bytes, for a marker across reads.
                        seen.extend_from_slice(&buf[..n]);
                        if let Some(at) = seen.windows(marker.len()).position(|w| w == marker) {
                            if !flag.swap(true, Ordering::SeqCst) {
                                after = Some(seen.len() - at);
                            }
                        }
                        let keep = seen.len().saturating_sub(marker.len());
                        seen.drain(..keep);
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if meddle == Meddle::Cut && after.is_some_and(|sent| sent >= 1 << 20) {
                        let _ = to_server.shutdown(std::net::Shutdown::Both);
                        let _ = from_client.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
            });
        }
    });
    (addr, done)
}

/// A streamed part whose connection is cut mid-body is sent again whole from its buffer, and
/// the upload completes intact: 20 MiB, so part 2 streams (and is cut) and part 3 is a short
/// last part (its streamed request cut off by ringftpd and sent whole).
#[test]
fn a_streamed_part_cut_off_is_sent_again_whole() {
    let moto = Moto::start();
    moto.bucket("cut");
    let upstream: SocketAddr = moto.url().trim_start_matches("http://").parse().unwrap();
    let (proxy, cut) = meddling_proxy(upstream, b"partNumber=2 HTTP/1.1", Meddle::Cut);
    let server = server_at(&format!("http://{proxy}"), "cut", "s3-cut", &[]);
    let src = server.work().join("src");
    let sum = write_random(&src, 20 * MIB);
    run_text(curl(&server).arg("-T").arg(&src).arg(server.url("f"))).ok(&server);
    assert!(cut.load(Ordering::SeqCst), "the proxy never saw part 2\n{}", server.log_for_failure());
    assert_eq!(moto.objects("cut", ""), [("pre/f".to_string(), 20 * MIB, sum)]);
    assert_eq!(moto.pending_uploads("cut"), Vec::<String>::new());
    let log = server.log_for_failure();
    assert!(log.contains("sending the streamed part again, whole"), "{log}");
}

/// The request [`shadowing_proxy`] holds: its connection to the store and the bytes it has
/// not passed on.
type Held = (std::net::TcpStream, Vec<u8>);

/// A TCP proxy to `upstream` that lands a failed request for part 2 on the store after the
/// part was sent again: it passes on the first request for part 2 up to just short of a MiB
/// of its body, holds the next 128 KiB and cuts the client off (so ringftpd sends the part
/// again, whole, through another connection); when the completion comes, it first passes on
/// the held bytes (Garage begins the part's attempt once it has a 1 MiB block), waits, cuts
/// that request off, waits, and only then passes the completion on. Set once it has.
fn shadowing_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let landed = Arc::new(AtomicBool::new(false));
    let (flag, stale_taken) = (landed.clone(), Arc::new(AtomicBool::new(false)));
    let held: Arc<std::sync::Mutex<Option<Held>>> = Arc::default();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(upstream) else { continue };
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut from_server, mut to_client) = (server, client);
            thread::spawn(move || drop(std::io::copy(&mut from_server, &mut to_client)));
            let (flag, stale_taken, held) = (flag.clone(), stale_taken.clone(), held.clone());
            thread::spawn(move || {
                use std::io::Read;
                const PASSED: usize = (1 << 20) - (64 << 10);
                let mut buf = vec![0u8; 64 << 10];
                let mut seen: Vec<u8> = Vec::new();
                // Bytes since part 2's request line, on the connection that holds it.
                let mut after: Option<usize> = None;
                let mut holding = Vec::new();
                loop {
                    let n = match from_client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut pass = n;
                    if let Some(sent) = &mut after {
                        pass = n.min(PASSED.saturating_sub(*sent));
                        holding.extend_from_slice(&buf[pass..n]);
                        *sent += pass;
                    } else {
                        seen.extend_from_slice(&buf[..n]);
                        let has = |m: &[u8]| seen.windows(m.len()).any(|w| w == m);
                        if has(b"partNumber=2 HTTP/1.1") && !stale_taken.swap(true, Ordering::SeqCst) {
                            let at = seen.windows(21).position(|w| w == b"partNumber=2 HTTP/1.1").unwrap();
                            let since = seen.len() - at;
                            pass = n.saturating_sub(since.saturating_sub(PASSED));
                            holding.extend_from_slice(&buf[pass..n]);
                            after = Some(since.min(PASSED));
                        } else if has(b"<CompleteMultipartUpload>") && !flag.load(Ordering::SeqCst) {
                            if let Some((mut stale, bytes)) = held.lock().unwrap().take() {
                                let _ = stale.write_all(&bytes);
                                thread::sleep(Duration::from_millis(500));
                                let _ = stale.shutdown(std::net::Shutdown::Both);
                                thread::sleep(Duration::from_millis(500));
                                flag.store(true, Ordering::SeqCst);
                            }
                        }
                        seen.drain(..seen.len().saturating_sub(64));
                    }
                    if to_server.write_all(&buf[..pass]).is_err() {
                        break;
                    }
                    if holding.len() >= 128 << 10 {
                        *held.lock().unwrap() = Some((to_server, std::mem::take(&mut holding)));
                        let _ = from_client.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            });
        }
    });
    (addr, landed)
}

/// A part sent again after a failed request is not shadowed by that request when the store
/// begins it late: Garage completes from the latest attempt of each part, finished or not,
/// and refuses the completion (InvalidPart); ringftpd sends the part once more and completes
/// again. Garage only: moto completes from the part as last finished.
#[test]
fn a_failed_request_the_store_begins_late_does_not_shadow_the_part() {
    let moto = Moto::start();
    if !moto.checks_checksums() {
        eprintln!("skipped: moto keeps finished parts only (RINGFTP_TEST_GARAGE runs it)");
        return;
    }
    moto.bucket("late");
    let upstream: SocketAddr = moto.url().trim_start_matches("http://").parse().unwrap();
    let (proxy, landed) = shadowing_proxy(upstream);
    let server = server_at(&format!("http://{proxy}"), "late", "s3-late", &[]);
    let src = server.work().join("src");
    let sum = write_random(&src, 20 * MIB);
    run_text(curl(&server).arg("-T").arg(&src).arg(server.url("f"))).ok(&server);
    let log = server.log_for_failure();
    assert!(landed.load(Ordering::SeqCst), "the held request never landed\n{log}");
    assert_eq!(moto.objects("late", ""), [("pre/f".to_string(), 20 * MIB, sum)], "{log}");
    assert_eq!(moto.pending_uploads("late"), Vec::<String>::new());
    assert!(log.contains("sending the parts sent more than once again"), "{log}");
}

/// `--s3-checksums`: every part of a multipart upload carries its CRC32 (streamed parts in
/// an `aws-chunked` trailer, the short last part in a header) and the completion names them,
/// so the object has S3's composite CRC32, checked here against the one Python computes
/// from the file. With `--hash-uploads` the digest stamp's copy gets a whole-object CRC32,
/// which boto3 checks as it downloads every object (`objects`).
#[test]
fn s3_checksums_reach_the_store() {
    let moto = Moto::start();
    moto.bucket("crc");
    let server = server_with(&moto, "crc", "s3-crc", &["--s3-checksums"]);
    let src = server.work().join("src");
    let sum = write_random(&src, 20 * MIB);
    run_text(curl(&server).arg("-T").arg(&src).arg(server.url("f"))).ok(&server);
    let code = format!(
        "import zlib, base64\n\
         crc = lambda b: zlib.crc32(b).to_bytes(4, 'big')\n\
         parts = []\n\
         with open({src:?}, 'rb') as f:\n\
         \x20   while chunk := f.read(8 << 20): parts.append(crc(chunk))\n\
         want = base64.b64encode(crc(b''.join(parts))).decode()\n\
         got = s3.head_object(Bucket=B, Key='pre/f', ChecksumMode='ENABLED').get('ChecksumCRC32', '-')\n\
         print(got.split('-')[0] == want, len(parts))",
        src = src.display().to_string()
    );
    assert_eq!(moto.py("crc", &code), "True 3\n", "{}", server.log_for_failure());
    assert_eq!(moto.objects("crc", ""), [("pre/f".to_string(), 20 * MIB, sum.clone())]);
    // The file stays in the first server's directory.
    let hashing = server_with(&moto, "crc", "s3-crc-hash", &["--s3-checksums", "--hash-uploads", "sha256"]);
    run_text(curl(&hashing).arg("-T").arg(&src).arg(hashing.url("g"))).ok(&hashing);
    let stamped =
        moto.py("crc", "print(s3.head_object(Bucket=B, Key='pre/g')['Metadata'].get('ringftp-sha256'))");
    assert_eq!(stamped, format!("{sum}\n"), "{}", hashing.log_for_failure());
    let both = [("pre/f".to_string(), 20 * MIB, sum.clone()), ("pre/g".to_string(), 20 * MIB, sum)];
    assert_eq!(moto.objects("crc", ""), both);
    assert_eq!(moto.pending_uploads("crc"), Vec::<String>::new());
}

/// With `--s3-checksums`, a part that arrives corrupted (a flipped byte, past the TCP
/// checksum) fails the store's CRC32 check and is sent again, and the object is intact: once in a streamed part (its
/// `aws-chunked` trailer; 20 MiB, part 2) and once in a part sent whole (its
/// `x-amz-checksum-crc32` header; the short last part 3, the only whole part). Garage only:
/// moto keeps a part whatever its checksum says.
#[test]
fn a_corrupted_part_fails_its_crc32_and_is_sent_again() {
    let moto = Moto::start();
    if !moto.checks_checksums() {
        eprintln!("skipped: moto does not check the parts' checksums (RINGFTP_TEST_GARAGE runs it)");
        return;
    }
    // A whole part's header has a space after the colon; the trailer has none.
    let cases = [
        ("flip2", &b"partNumber=2 HTTP/1.1"[..], "sending the streamed part again, whole"),
        ("flip3", b"x-amz-checksum-crc32: ", "sending the part again"),
    ];
    for (bucket, marker, resent) in cases {
        moto.bucket(bucket);
        let upstream: SocketAddr = moto.url().trim_start_matches("http://").parse().unwrap();
        let (proxy, flipped) = meddling_proxy(upstream, marker, Meddle::Flip);
        let server = server_at(&format!("http://{proxy}"), bucket, bucket, &["--s3-checksums"]);
        let src = server.work().join("src");
        let sum = write_random(&src, 20 * MIB);
        run_text(curl(&server).arg("-T").arg(&src).arg(server.url("f"))).ok(&server);
        let log = server.log_for_failure();
        assert!(flipped.load(Ordering::SeqCst), "the proxy never saw {marker:?}\n{log}");
        assert_eq!(moto.objects(bucket, ""), [("pre/f".to_string(), 20 * MIB, sum)], "{log}");
        assert_eq!(moto.pending_uploads(bucket), Vec::<String>::new());
        assert!(log.contains(resent), "no {resent:?}\n{log}");
    }
}

/// The `raw` replies of an ftpclient run.
fn raw_replies(r: &Ran) -> Vec<String> {
    r.stdout.lines().filter_map(|l| l.strip_prefix("raw: ")).map(str::to_string).collect()
}

/// `--hash-uploads sha256`: an upload of one part (up to 8 MiB) is one PutObject that carries
/// its digest as user metadata; a multipart upload gets it after completion, from a CopyObject
/// onto itself. HASH answers from the metadata. Checked with boto3's head_object, by planting
/// a different digest in the metadata (copy_object with REPLACE), which HASH then returns, and
/// with boto3's download of every object, whose content the stamp must not change.
#[test]
fn hash_uploads_keeps_the_digest_as_metadata() {
    let moto = Moto::start();
    moto.bucket("hashed");
    let server = server_with(&moto, "hashed", "s3-hashed", &["--hash-uploads", "sha256"]);
    let work = server.work();
    // A small file, exactly one part, and three parts.
    let files = [("small.bin", 1000u64), ("part.bin", 8 * MIB), ("big.bin", 16 * MIB + 3)];
    let mut sums = Vec::new();
    for (name, len) in files {
        let src = work.join(name);
        let sum = write_random(&src, len);
        run_text(curl(&server).arg("-T").arg(&src).arg(server.url(name))).ok(&server);
        sums.push(sum);
    }
    let heads = moto.py(
        "hashed",
        "for k in ['small.bin', 'part.bin', 'big.bin']:\n\
         \x20   print(k, s3.head_object(Bucket=B, Key='pre/' + k)['Metadata'].get('ringftp-sha256', '-'))",
    );
    let expected = format!("small.bin {}\npart.bin {}\nbig.bin {}\n", sums[0], sums[1], sums[2]);
    assert_eq!(heads, expected, "{}", server.log_for_failure());
    let mut stored: Vec<_> = files
        .iter()
        .zip(&sums)
        .map(|((name, len), sum)| (format!("pre/{name}"), *len, sum.clone()))
        .collect();
    stored.sort();
    assert_eq!(moto.objects("hashed", ""), stored);
    let steps: Vec<String> = files.iter().map(|(name, _)| format!("raw HASH {name}")).collect();
    let r = py(&server, &steps.iter().map(String::as_str).collect::<Vec<_>>()).ok(&server);
    let want: Vec<String> = files
        .iter()
        .zip(&sums)
        .map(|((name, len), sum)| format!("213 SHA-256 0-{len} {sum} {name}"))
        .collect();
    assert_eq!(raw_replies(&r), want, "{}", r.describe());

    // HASH takes the metadata as it is, without reading the object: a planted digest shows it.
    let fake = "ab".repeat(32);
    let big_fake = "cd".repeat(32);
    moto.py(
        "hashed",
        &format!(
            "for k, d in [('pre/small.bin', '{fake}'), ('pre/big.bin', '{big_fake}')]:\n\
             \x20   s3.copy_object(Bucket=B, Key=k, CopySource={{'Bucket': B, 'Key': k}}, \
             Metadata={{'ringftp-sha256': d}}, MetadataDirective='REPLACE')"
        ),
    );
    let r = py(&server, &["raw HASH small.bin", "raw XSHA256 small.bin", "raw HASH big.bin"]).ok(&server);
    let big_len = 16 * MIB + 3;
    assert_eq!(
        raw_replies(&r),
        [
            format!("213 SHA-256 0-1000 {fake} small.bin"),
            format!("250 {fake}"),
            format!("213 SHA-256 0-{big_len} {big_fake} big.bin")
        ]
    );
    // An overwrite by another client drops the metadata with the old object: computed again.
    let other = work.join("other");
    let other_sum = write_random(&other, 777);
    moto.py("hashed", &format!("s3.upload_file({:?}, B, 'pre/small.bin')", other.display().to_string()));
    let r = py(&server, &["raw HASH small.bin"]).ok(&server);
    assert_eq!(raw_replies(&r), [format!("213 SHA-256 0-777 {other_sum} small.bin")], "{}", r.describe());
    assert_eq!(moto.pending_uploads("hashed"), Vec::<String>::new());
}

/// The other algorithms keep their digest of a multipart upload (two parts, the smallest) too,
/// as boto3 sees it, against Python's own hashlib and zlib.
#[test]
fn hash_uploads_of_every_algorithm_on_multipart_uploads() {
    let moto = Moto::start();
    moto.bucket("algos");
    for (algo, python) in [
        ("sha1", "hashlib.sha1(d).hexdigest()"),
        ("md5", "hashlib.md5(d).hexdigest()"),
        ("crc32", "'%08x' % zlib.crc32(d)"),
    ] {
        let server = server_with(&moto, "algos", &format!("s3-{algo}"), &["--hash-uploads", algo]);
        let src = server.work().join("two");
        write_random(&src, 8 * MIB + 1);
        let name = format!("{algo}.bin");
        run_text(curl(&server).arg("-T").arg(&src).arg(server.url(&name))).ok(&server);
        let got = moto.py(
            "algos",
            &format!(
                "import zlib\n\
                 d = open({src:?}, 'rb').read()\n\
                 m = s3.head_object(Bucket=B, Key='pre/{name}')['Metadata'].get('ringftp-{algo}', '-')\n\
                 print(m == {python}, m)",
                src = src.display().to_string()
            ),
        );
        assert!(got.starts_with("True "), "{algo}: {got}\n{}", server.log_for_failure());
    }
}

/// An HTTP proxy in front of the store (moto or Garage) that logs each CompleteMultipartUpload (key and ETag) and
/// each CopyObject (key, `x-amz-copy-source-if-match`, `x-amz-metadata-directive`), and
/// overwrites the key `RACE_KEY` with `theirs` right after its upload completed, before the
/// completion's answer goes back: another client's write landing between ringftpd's
/// completion and its metadata stamp, every time. moto 5 ignores
/// `x-amz-copy-source-if-match`, so the proxy answers a copy whose condition fails with
/// S3's 412 itself.
const RACE_PROXY: &str = r#"
import http.client, http.server, os, re, urllib.parse
import boto3
from botocore.config import Config
UP = urllib.parse.urlsplit(os.environ['S3_URL'])
s3 = boto3.client('s3', endpoint_url=os.environ['S3_URL'], config=Config(s3={'addressing_style': 'path'}))
RACE = os.environ['RACE_KEY']
FAILED = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>'

class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *args): pass
    def forward(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else b''
        if len(body) < n:
            # A request cut off (ringftpd aborts a streamed part the upload did not fill):
            # it never reaches the store, as on a direct connection. Forwarded, its declared
            # length would keep an unfinished part on the store.
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(url.path).lstrip('/').partition('/')
        source = self.headers.get('x-amz-copy-source')
        if self.command == 'PUT' and source:
            cond = self.headers.get('x-amz-copy-source-if-match')
            print('copy', key, cond, self.headers.get('x-amz-metadata-directive'), flush=True)
            sb, _, sk = urllib.parse.unquote(source).lstrip('/').partition('/')
            if cond and s3.head_object(Bucket=sb, Key=sk)['ETag'].strip('"') != cond.strip('"'):
                return self.reply(412, [('Content-Type', 'application/xml')], FAILED)
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=60)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        r = conn.getresponse()
        data = r.read()
        if self.command == 'POST' and 'uploadId=' in url.query and r.status == 200:
            m = re.search(rb'<ETag>(.*?)</ETag>', data)
            etag = m.group(1).decode().replace('&quot;', '"') if m else '-'
            print('complete', key, etag, flush=True)
            if key == RACE:
                s3.put_object(Bucket=bucket, Key=key, Body=b'theirs')
        skip = ('transfer-encoding', 'connection', 'content-length')
        headers = [(k, v) for k, v in r.getheaders() if k.lower() not in skip]
        length = r.getheader('Content-Length', '0') if self.command == 'HEAD' else None
        self.reply(r.status, headers, data, length)
    def reply(self, status, headers, data, length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', length or str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)
    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Proxy)
print('port', server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The digest stamp of a multipart upload is a CopyObject conditional on the ETag its
/// completion returned: the object is stamped when nobody wrote it meanwhile, and when
/// someone did (the proxy overwrites `race.bin` between completion and stamp, see
/// [`RACE_PROXY`]) their object keeps their bytes and no digest of ours, the upload still
/// gets 226, and HASH computes the digest of what is there.
#[test]
fn digest_stamp_is_conditional_on_the_completed_etag() {
    let moto = Moto::start();
    moto.bucket("race");
    let mut proxy = KillOnDrop(
        Command::new("python3")
            .arg("-c")
            .arg(RACE_PROXY)
            .env("S3_URL", moto.url())
            .env("RACE_KEY", "pre/race.bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the proxy"),
    );
    let mut out = BufReader::new(proxy.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("proxy port");
    let url = format!("http://127.0.0.1:{port}");
    let server = server_at(&url, "race", "s3-race", &["--hash-uploads", "sha256"]);
    let src = server.work().join("two");
    let sum = write_random(&src, 8 * MIB + 1);
    for name in ["calm.bin", "race.bin"] {
        run_text(curl(&server).arg("-T").arg(&src).arg(server.url(name))).ok(&server);
    }
    // HASH through the proxy, before it stops and its log is read.
    let r = py(&server, &["raw HASH race.bin", "raw HASH calm.bin"]).ok(&server);
    let theirs = {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(b"theirs"))
    };
    assert_eq!(
        raw_replies(&r),
        [
            format!("213 SHA-256 0-6 {theirs} race.bin"),
            format!("213 SHA-256 0-{} {sum} calm.bin", 8 * MIB + 1)
        ]
    );
    drop(proxy);
    let log: Vec<String> = out.lines().map_while(|l| l.ok()).collect();
    for key in ["pre/calm.bin", "pre/race.bin"] {
        let etag = log
            .iter()
            .find_map(|l| l.strip_prefix(&format!("complete {key} ")))
            .unwrap_or_else(|| panic!("no completion of {key}: {log:?}"));
        assert!(etag.starts_with('"') && etag.ends_with("-2\""), "{etag}");
        assert!(log.contains(&format!("copy {key} {etag} REPLACE")), "{key}: {log:?}");
    }
    let heads = moto.py(
        "race",
        "for k in ['calm.bin', 'race.bin']:\n\
         \x20   h = s3.head_object(Bucket=B, Key='pre/' + k)\n\
         \x20   print(k, h['ContentLength'], h['Metadata'].get('ringftp-sha256', '-'))",
    );
    assert_eq!(
        heads,
        format!("calm.bin {} {sum}\nrace.bin 6 -\n", 8 * MIB + 1),
        "{}",
        server.log_for_failure()
    );
    assert!(server.stderr_log().contains("cannot keep the upload's digest"), "{}", server.log_for_failure());
}

/// The library serving `s3://BUCKET/pre` at an S3 endpoint in this process, uploads hashed
/// with SHA-256, and the digest stamp's single-copy limit lowered to 5 MiB
/// (`S3Config::copy_limit`, hidden, which ringftpd does not expose): a 12 MiB upload is then
/// stamped by the multipart copy onto itself that uploads past 5 GiB take, in 5 MiB parts.
/// Shut down on drop.
struct SmallCopies {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    scratch: Scratch,
}

impl SmallCopies {
    fn start(endpoint: &str, bucket: &str, tag: &str) -> SmallCopies {
        let config =
            S3Config::new(bucket).prefix("pre").endpoint(endpoint).path_style(true).copy_limit(5 * MIB);
        let users = UserList::new().user_with_password(User::new(USER), PASS.as_bytes());
        let (lo, hi) = passive_ports_block();
        let handle = Server::builder(ObjectStorage::new(config).unwrap(), users)
            .listen("127.0.0.1:0".parse().unwrap())
            .passive_ports(lo..=hi)
            .hash_uploads(Some(HashAlgo::Sha256))
            .shutdown_grace(Duration::from_secs(1))
            .engine(common::engine())
            .build()
            .unwrap()
            .start()
            .unwrap();
        let addr = handle.local_addrs()[0];
        let scratch = Scratch::new(tag);
        SmallCopies { handle: Some(handle), addr, scratch }
    }

    fn work(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }

    /// Uploads `src` as `name` with curl, which must get the 226.
    fn upload(&self, src: &Path, name: &str) {
        let r = run_text(
            Command::new("curl")
                .args(["-sS", "--max-time", "60", "--user", &format!("{USER}:{PASS}"), "-T"])
                .arg(src)
                .arg(format!("ftp://{}/{name}", self.addr)),
        );
        assert!(r.status.success(), "{}", r.describe());
    }

    /// The `raw` replies of the Python client's `steps`.
    fn raw(&self, steps: &[&str]) -> Vec<String> {
        let r = run_text(ftpclient_at(self.addr).args(["--user", USER, "--password", PASS]).args(steps));
        assert!(r.status.success(), "{}", r.describe());
        raw_replies(&r)
    }
}

impl Drop for SmallCopies {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

/// An upload past the single-copy limit gets its digest from a multipart copy onto itself:
/// boto3 sees the digest in its metadata, its bytes intact, the ETag of a three-part upload
/// (the copy's 5 + 5 + 2 MiB, not the upload's two 8 MiB parts), and no multipart upload left;
/// HASH answers from the metadata (a planted digest shows it).
#[test]
fn digest_past_the_single_copy_limit_by_multipart_copy() {
    let moto = Moto::start();
    moto.bucket("bigcopy");
    let server = SmallCopies::start(&moto.url(), "bigcopy", "s3-bigcopy");
    let src = server.work("big");
    let len = 12 * MIB + 5;
    let sum = write_random(&src, len);
    server.upload(&src, "big.bin");
    let head = moto.py(
        "bigcopy",
        "h = s3.head_object(Bucket=B, Key='pre/big.bin')\n\
         print(h['ETag'], h['Metadata'].get('ringftp-sha256', '-'))",
    );
    let (etag, stored) = head.trim().split_once(' ').unwrap();
    assert_eq!(stored, sum);
    assert!(etag.ends_with("-3\""), "{etag}");
    assert_eq!(moto.objects("bigcopy", ""), [("pre/big.bin".to_string(), len, sum.clone())]);
    assert_eq!(moto.pending_uploads("bigcopy"), Vec::<String>::new());
    assert_eq!(server.raw(&["raw HASH big.bin"]), [format!("213 SHA-256 0-{len} {sum} big.bin")]);
    let fake = "ef".repeat(32);
    moto.py(
        "bigcopy",
        &format!(
            "s3.copy_object(Bucket=B, Key='pre/big.bin', CopySource={{'Bucket': B, 'Key': 'pre/big.bin'}}, \
             Metadata={{'ringftp-sha256': '{fake}'}}, MetadataDirective='REPLACE')"
        ),
    );
    assert_eq!(server.raw(&["raw HASH big.bin"]), [format!("213 SHA-256 0-{len} {fake} big.bin")]);
}

/// The multipart copy is conditional on the upload's ETag part by part: when another client
/// overwrites the object between the upload's completion and the stamp ([`RACE_PROXY`]), the
/// first part copy gets 412, the copy's upload is aborted (none left pending), their object
/// keeps their bytes and no digest of ours, and the upload still gets 226. An object nobody
/// touched is copied in three parts, each on the upload's ETag.
#[test]
fn multipart_copy_is_conditional_on_the_completed_etag() {
    let moto = Moto::start();
    moto.bucket("bigrace");
    let mut proxy = KillOnDrop(
        Command::new("python3")
            .arg("-c")
            .arg(RACE_PROXY)
            .env("S3_URL", moto.url())
            .env("RACE_KEY", "pre/race.bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the proxy"),
    );
    let mut out = BufReader::new(proxy.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("proxy port");
    let server = SmallCopies::start(&format!("http://127.0.0.1:{port}"), "bigrace", "s3-bigrace");
    let src = server.work("big");
    let len = 12 * MIB;
    let sum = write_random(&src, len);
    for name in ["calm.bin", "race.bin"] {
        server.upload(&src, name);
    }
    drop(server);
    drop(proxy);
    let log: Vec<String> = out.lines().map_while(|l| l.ok()).collect();
    let lines = |prefix: &str| log.iter().filter_map(|l| l.strip_prefix(prefix)).collect::<Vec<_>>();
    for (key, copies) in [("pre/calm.bin", 3), ("pre/race.bin", 1)] {
        // The upload's completion, and the copy's own (calm only).
        let completed = lines(&format!("complete {key} "));
        assert_eq!(completed.len(), if copies == 3 { 2 } else { 1 }, "{key}: {log:?}");
        let etag = completed[0];
        assert!(etag.starts_with('"') && etag.ends_with("-2\""), "{etag}");
        assert_eq!(lines(&format!("copy {key} {etag} ")), vec!["None"; copies], "{key}: {log:?}");
    }
    let heads = moto.py(
        "bigrace",
        "for k in ['calm.bin', 'race.bin']:\n\
         \x20   h = s3.head_object(Bucket=B, Key='pre/' + k)\n\
         \x20   print(k, h['ContentLength'], h['Metadata'].get('ringftp-sha256', '-'))",
    );
    assert_eq!(heads, format!("calm.bin {len} {sum}\nrace.bin 6 -\n"));
    assert_eq!(moto.pending_uploads("bigrace"), Vec::<String>::new());
}

/// A child process killed (and waited for) when the test ends, also by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
