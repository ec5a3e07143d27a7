//! lftp against ringftpd: mirror a tree both ways (FEAT, MLSD, MKD...), resume with
//! `get -c` / `put -c` (REST), and `ls` / `cls`. lftp is required: if it is missing, these
//! tests fail.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::*;

/// Relative path -> (is_dir, sha256) of everything below `dir`.
fn tree(dir: &Path) -> BTreeMap<String, (bool, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (bool, String)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.insert(rel, (true, String::new()));
                walk(base, &path, out);
            } else {
                out.insert(rel, (false, sha256_file(&path)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("docs/deep/deeper")).unwrap();
    fs::create_dir_all(dir.join("empty dir")).unwrap();
    fs::create_dir_all(dir.join("données")).unwrap();
    make_file(&dir.join("top.bin"), MIB + 1, 41);
    make_file(&dir.join("zero.bin"), 0, 42);
    make_file(&dir.join("one.bin"), 1, 43);
    make_file(&dir.join("docs/readme with spaces.txt"), 1000, 44);
    make_file(&dir.join("docs/deep/mid.bin"), 200_000, 45);
    make_file(&dir.join("docs/deep/deeper/leaf.bin"), 3 * MIB + 7, 46);
    make_file(&dir.join("données/fichier-é.txt"), 77, 47);
}

#[test]
fn lftp_mirror_downloads_a_tree() {
    let server = TestServer::start("lftp-mirror");
    make_tree(&server.root());
    let work = server.work();
    let r = run_text(&mut lftp(&server, &work, "mirror / mirrored")).ok(&server);
    let want = tree(&server.root());
    let got = tree(&work.join("mirrored"));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{}", r.describe());
    assert_eq!(got, want, "mirrored files differ");
}

#[test]
fn lftp_reverse_mirror_uploads_a_tree() {
    let server = TestServer::start("lftp-mirror-r");
    let work = server.work();
    let local = work.join("local");
    make_tree(&local);
    let r = run_text(&mut lftp(&server, &work, "mirror -R local /uploaded")).ok(&server);
    let got = tree(&server.root().join("uploaded"));
    let want = tree(&local);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{}", r.describe());
    assert_eq!(got, want, "uploaded files differ");
}

#[test]
fn lftp_get_and_put_resume() {
    let server = TestServer::start("lftp-resume");
    let work = server.work();
    let full = server.root().join("full.bin");
    make_file(&full, 4 * MIB + 3, 48);
    let data = fs::read(&full).unwrap();

    // get -c: the local file holds the first part.
    let head = 1_000_003;
    fs::write(work.join("full.bin"), &data[..head]).unwrap();
    let mut c = lftp_debug(&server, &work, "get -c full.bin -o full.bin");
    let r = run_text(&mut c).ok(&server);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(&format!("---> REST {head}")),
        "lftp did not resume with REST {head}:\n{}",
        r.describe()
    );
    assert_same_file(&full, &work.join("full.bin"), &server);

    // put -c: the server holds the first part.
    let head = 2_500_001;
    fs::write(server.root().join("up.bin"), &data[..head]).unwrap();
    let mut c = lftp_debug(&server, &work, "put -c full.bin -o up.bin");
    let r = run_text(&mut c).ok(&server);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(&format!("---> REST {head}")) || all.contains("---> APPE up.bin"),
        "lftp did not resume the upload:\n{}",
        r.describe()
    );
    assert_same_file(&full, &server.root().join("up.bin"), &server);

    // A plain put and get.
    let src = work.join("plain.bin");
    make_file(&src, 777_777, 49);
    run_text(&mut lftp(&server, &work, "put plain.bin -o /plain.bin")).ok(&server);
    assert_same_file(&src, &server.root().join("plain.bin"), &server);
    fs::remove_file(&src).unwrap();
    run_text(&mut lftp(&server, &work, "get /plain.bin -o plain.bin")).ok(&server);
    assert_same_file(&server.root().join("plain.bin"), &src, &server);
}

#[test]
fn lftp_ls_and_cls() {
    let server = TestServer::start("lftp-ls");
    make_tree(&server.root());
    let work = server.work();

    let r = run_text(&mut lftp(&server, &work, "cls -1")).ok(&server);
    let names: Vec<&str> = r.stdout.lines().collect();
    let mut want = vec!["docs/", "données/", "empty dir/", "one.bin", "top.bin", "zero.bin"];
    want.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want, "{}", r.describe());

    // cls -l uses MLSD facts: sizes are exact.
    let r = run_text(&mut lftp(&server, &work, "cls -l docs/deep")).ok(&server);
    let line =
        r.stdout.lines().find(|l| l.ends_with("mid.bin")).unwrap_or_else(|| panic!("{}", r.describe()));
    assert!(line.contains("200000"), "{line}");
    assert!(r.stdout.lines().any(|l| l.starts_with('d') && l.ends_with("deeper/")), "{}", r.describe());

    // ls is the server's LIST output.
    let r = run_text(&mut lftp(&server, &work, "cd docs; ls")).ok(&server);
    let line = r
        .stdout
        .lines()
        .find(|l| l.ends_with("readme with spaces.txt"))
        .unwrap_or_else(|| panic!("{}", r.describe()));
    assert!(line.starts_with("-rw"), "{line}");
    assert!(line.split_whitespace().any(|f| f == "1000"), "{line}");
    assert!(r.stdout.lines().any(|l| l.starts_with('d') && l.ends_with(" deep")), "{}", r.describe());

    // A missing directory fails the command.
    let r = run_text(&mut lftp(&server, &work, "cls /nowhere")).fails(&server);
    assert!(r.stderr.contains("550"), "{}", r.describe());
}
