//! Directory listings (LIST, NLST, MLSD, MLST, STAT) with ftplib and curl: names, sizes and
//! types of files, a subdirectory, a name with spaces and a UTF-8 name.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;

const UTF8_NAME: &str = "ünïcødé-файл-日本.txt";

/// (name, size, is_dir)
fn populate(server: &TestServer) -> Vec<(&'static str, u64, bool)> {
    let root = server.root();
    make_file(&root.join("plain.txt"), 123, 1);
    make_file(&root.join("with space.txt"), 7, 2);
    make_file(&root.join(UTF8_NAME), 42, 3);
    fs::create_dir(root.join("sub")).unwrap();
    make_file(&root.join("sub/inner.bin"), 4096, 4);
    vec![("plain.txt", 123, false), ("with space.txt", 7, false), (UTF8_NAME, 42, false), ("sub", 0, true)]
}

/// The name in an `ls -l` line: everything after the 8th field.
fn ls_name(line: &str) -> (char, u64, String) {
    let mut rest = line;
    let mut fields = Vec::new();
    for _ in 0..8 {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or_else(|| panic!("short LIST line {line:?}"));
        fields.push(&rest[..end]);
        rest = &rest[end..];
    }
    let name = rest.strip_prefix(' ').unwrap_or(rest).to_string();
    let kind = fields[0].chars().next().unwrap();
    let size = fields[4].parse().unwrap_or_else(|_| panic!("size in {line:?}"));
    (kind, size, name)
}

/// Facts and name of an MLSx line: `type=file;size=1;...; name`.
fn facts(line: &str) -> (std::collections::HashMap<String, String>, String) {
    let line = line.strip_prefix(' ').unwrap_or(line);
    let (facts, name) = line.split_once("; ").unwrap_or_else(|| panic!("not an MLSx line {line:?}"));
    let map = facts
        .split(';')
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    (map, name.to_string())
}

#[test]
fn ftplib_list_nlst_mlsd() {
    let server = TestServer::start("list-ftplib");
    let expected = populate(&server);
    let r = py(&server, &["list", "nlst", "mlsd", "list -la", "nlst sub", "list sub"]).ok(&server);

    // LIST
    let list: Vec<String> = r.lines_with("list| ").iter().map(|l| l["list| ".len()..].to_string()).collect();
    // "list" and "list -la" give the same entries; "list sub" one more.
    assert_eq!(list.len(), 2 * expected.len() + 1, "{}", r.describe());
    for (name, size, is_dir) in &expected {
        let line = list
            .iter()
            .find(|l| ls_name(l).2 == *name)
            .unwrap_or_else(|| panic!("{name} missing from LIST:\n{}", r.describe()));
        let (kind, got_size, _) = ls_name(line);
        assert_eq!(kind, if *is_dir { 'd' } else { '-' }, "{line}");
        if !is_dir {
            assert_eq!(got_size, *size, "{line}");
        }
    }
    assert!(
        list.iter().any(|l| ls_name(l) == ('-', 4096, "inner.bin".into())),
        "LIST sub:\n{}",
        r.describe()
    );

    // NLST: exactly the names.
    let nlst: Vec<String> = r.lines_with("nlst| ").iter().map(|l| l["nlst| ".len()..].to_string()).collect();
    let root_names: BTreeSet<&str> = nlst[..nlst.len() - 1].iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(root_names, want, "{}", r.describe());
    assert_eq!(nlst.last().unwrap(), "inner.bin", "NLST sub: {nlst:?}");

    // MLSD: types and sizes as facts.
    let mlsd: Vec<String> = r.lines_with("mlsd| ").iter().map(|l| l["mlsd| ".len()..].to_string()).collect();
    assert_eq!(mlsd.len(), expected.len(), "{}", r.describe());
    for (name, size, is_dir) in &expected {
        let (f, _) = mlsd
            .iter()
            .map(|l| facts(l))
            .find(|(_, n)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from MLSD:\n{}", r.describe()));
        assert_eq!(f["type"], if *is_dir { "dir" } else { "file" }, "{name}");
        if !is_dir {
            assert_eq!(f["size"], size.to_string(), "{name}");
        }
        assert_eq!(f.get("modify").map_or(0, String::len), 14, "{name}: {f:?}");
        assert!(f.contains_key("perm"), "{name}: {f:?}");
    }
    for done in ["list: 226", "nlst: 226", "mlsd: 226"] {
        assert!(r.stdout.contains(done), "{}", r.describe());
    }
}

#[test]
fn ftplib_mlst_and_stat() {
    let server = TestServer::start("list-mlst");
    populate(&server);
    let r = py(
        &server,
        &[
            "raw MLST plain.txt",
            "raw MLST with space.txt",
            &format!("raw MLST {UTF8_NAME}"),
            "raw MLST sub",
            "raw MLST",
            "raw MLST missing.txt",
            "raw STAT sub",
            "raw STAT",
            "nlst missing-dir",
            "mlsd plain.txt",
        ],
    )
    .ok(&server);
    let raw = r.lines_with("raw: ");
    assert_eq!(raw.len(), 8, "{}", r.describe());
    let mlst = |i: usize, kind: &str, size: Option<u64>, name: &str| {
        let line = &raw[i];
        assert!(line.starts_with("raw: 250"), "{line}");
        assert!(line.contains(&format!("type={kind};")), "{line}");
        if let Some(size) = size {
            assert!(line.contains(&format!(";size={size};")), "{line}");
        }
        assert!(line.contains(name), "{line}");
    };
    mlst(0, "file", Some(123), "plain.txt");
    mlst(1, "file", Some(7), "with space.txt");
    mlst(2, "file", Some(42), UTF8_NAME);
    mlst(3, "dir", None, "sub");
    mlst(4, "dir", None, "/");
    assert!(raw[5].starts_with("raw: ERR 550"), "{}", raw[5]);
    assert!(raw[6].starts_with("raw: 213") && raw[6].contains("inner.bin"), "STAT sub: {}", raw[6]);
    assert!(raw[7].starts_with("raw: 211"), "STAT: {}", raw[7]);
    assert!(r.stdout.contains("nlst: ERR 550"), "{}", r.describe());
    // MLSD of a file is an error (RFC 3659: MLSD lists directories).
    assert!(r.stdout.contains("mlsd: ERR 5"), "{}", r.describe());
}

#[test]
fn curl_listings_and_utf8_names() {
    let server = TestServer::start("list-curl");
    let expected = populate(&server);
    // A directory URL gets LIST.
    let mut c = curl(&server);
    c.arg(server.url(""));
    let r = run_text(&mut c).ok(&server);
    assert!(curl_sent(&r.stderr).iter().any(|c| c == "LIST"), "{}", r.describe());
    let names: BTreeSet<String> = r.stdout.lines().map(|l| ls_name(l).2).collect();
    let want: BTreeSet<String> = expected.iter().map(|e| e.0.to_string()).collect();
    assert_eq!(names, want, "{}", r.describe());

    // --list-only gets NLST.
    let mut c = curl(&server);
    c.arg("--list-only").arg(server.url("sub/"));
    let r = run_text(&mut c).ok(&server);
    assert!(curl_sent(&r.stderr).iter().any(|c| c == "NLST"), "{}", r.describe());
    assert_eq!(r.stdout.trim_end(), "inner.bin");

    // Files with a space and UTF-8 in the name, both ways.
    for name in ["with space.txt", UTF8_NAME] {
        let dst = server.work().join("dl.txt");
        let mut c = curl(&server);
        c.arg("-o").arg(&dst).arg(server.url(name));
        run_text(&mut c).ok(&server);
        assert_same_file(&server.root().join(name), &dst, &server);
    }
    let src = server.work().join("up.txt");
    fs::write(&src, "grüße, мир\n").unwrap();
    let up_name = "upload ü ñ 文字.txt";
    let mut c = curl(&server);
    c.arg("-T").arg(&src).arg(server.url(&format!("sub/{up_name}")));
    run_text(&mut c).ok(&server);
    assert_eq!(fs::read_to_string(server.root().join("sub").join(up_name)).unwrap(), "grüße, мир\n");
    let mut c = curl(&server);
    c.arg("--list-only").arg(server.url("sub/"));
    let r = run_text(&mut c).ok(&server);
    let names: BTreeSet<&str> = r.stdout.lines().collect();
    assert_eq!(names, BTreeSet::from(["inner.bin", up_name]), "{}", r.describe());
}

#[test]
fn a_large_directory_is_listed_whole() {
    // Large enough (st_size over 32 KiB on ext4 and tmpfs) to be read off the shard.
    let server = TestServer::start("list-large");
    let dir = server.root().join("big");
    fs::create_dir(&dir).unwrap();
    let want: BTreeSet<String> = (0..5000).map(|i| format!("file-{i:05}.dat")).collect();
    for name in &want {
        fs::write(dir.join(name), b"x").unwrap();
    }
    let mut c = curl(&server);
    c.arg("--list-only").arg(server.url("big/"));
    let r = run_text(&mut c).ok(&server);
    let names: BTreeSet<String> = r.stdout.lines().map(str::to_owned).collect();
    assert_eq!(names.len(), 5000, "{}", r.describe());
    assert_eq!(names, want);
    // And LIST, with sizes.
    let mut c = curl(&server);
    c.arg(server.url("big/"));
    let r = run_text(&mut c).ok(&server);
    assert_eq!(r.stdout.lines().filter(|l| ls_name(l).1 == 1).count(), 5000, "{}", r.describe());
}

/// 20,000 entries: many pages of the filesystem lister, each written to the data connection
/// (or, for STAT, the control connection) as it is read. curl's LIST and NLST, ftplib's MLSD
/// and a raw STAT each get every name exactly once.
#[test]
fn twenty_thousand_entries_in_pages() {
    let server = TestServer::start("list-20k");
    let dir = server.root().join("many");
    fs::create_dir(&dir).unwrap();
    let want: BTreeSet<String> = (0..20_000).map(|i| format!("entry-{i:05}")).collect();
    for name in &want {
        fs::File::create(dir.join(name)).unwrap();
    }
    let exactly = |what: &str, names: Vec<String>| {
        assert_eq!(names.len(), want.len(), "{what}: {} lines", names.len());
        let set: BTreeSet<String> = names.into_iter().collect();
        assert_eq!(set, want, "{what}: every name once");
    };

    let mut c = curl(&server);
    c.arg("--list-only").arg(server.url("many/"));
    let r = run_text(&mut c).ok(&server);
    exactly("NLST", r.stdout.lines().map(str::to_owned).collect());

    let mut c = curl(&server);
    c.arg(server.url("many/"));
    let r = run_text(&mut c).ok(&server);
    let lines: Vec<(char, u64, String)> = r.stdout.lines().map(ls_name).collect();
    assert!(lines.iter().all(|(kind, size, _)| *kind == '-' && *size == 0), "LIST kinds and sizes");
    exactly("LIST", lines.into_iter().map(|(_, _, name)| name).collect());

    let r = py(&server, &["mlsd many"]).ok(&server);
    let mlsd: Vec<String> = r.lines_with("mlsd| ").iter().map(|l| facts(&l["mlsd| ".len()..]).1).collect();
    assert!(r.stdout.contains("mlsd: 226"), "{}", r.describe());
    exactly("MLSD", mlsd);

    // STAT on the control connection, sent a page at a time: one well-formed multi-line reply
    // (RFC 959 §4.2: no line before the last starts with "213 "), every name once, and the
    // next command's reply right after it.
    let mut c = Control::connect(server.addr(), std::time::Duration::from_secs(30));
    c.login(USER, PASS);
    let (code, text) = c.cmd("STAT many");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((code, lines.first().copied()), (213, Some("213-Status follows:")), "{:?}", &lines[..2]);
    assert_eq!(lines.last().copied(), Some("213 End of status"));
    let middle = &lines[1..lines.len() - 1];
    assert!(middle.iter().all(|l| l.starts_with(' ') && !l.starts_with("213 ")), "continuation lines");
    exactly("STAT", middle.iter().map(|l| ls_name(l).2).collect());
    assert_eq!(c.cmd("NOOP"), (200, "200 NOOP ok.".to_string()));
    assert_eq!(c.cmd("STAT missing").0, 550);
}
