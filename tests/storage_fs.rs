//! FsStorage against real temporary directories, including escape attempts.

use std::ffi::OsStr;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringftp::storage::{DataSink, DataSource, DirEntry, ErrorKind, FileKind, Lister, Storage, WriteMode};
use ringftp::{FsStorage, User};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringftp-storage-fs-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A temp dir with `root/` (served) and `outside/secret` (not served) next to it.
struct Fixture {
    dir: TempDir,
    storage: FsStorage,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = TempDir::new(name);
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/secret"), b"top secret").unwrap();
        let storage = FsStorage::new(dir.path().join("root")).unwrap();
        Fixture { dir, storage }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

fn user() -> User {
    User::new("tester")
}

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Every entry of a directory, page by page.
async fn list(s: &FsStorage, user: &User, path: &Path) -> Result<Vec<DirEntry>, ringftp::StorageError> {
    let mut lister = s.list(user, path).await?;
    let mut entries = Vec::new();
    while lister.next_page(&mut entries).await? {}
    Ok(entries)
}

fn kind<T: std::fmt::Debug>(result: Result<T, ringftp::StorageError>) -> ErrorKind {
    result.expect_err("expected an error").kind()
}

fn read_all(source: DataSource) -> Vec<u8> {
    match source {
        DataSource::File(mut file) => {
            let mut buf = Vec::new();
            file.read_to_end(&mut buf).unwrap();
            buf
        }
        other => panic!("expected a file, got {other:?}"),
    }
}

fn write_all(sink: DataSink, data: &[u8]) {
    match sink {
        DataSink::File(mut file) => file.write_all(data).unwrap(),
        other => panic!("expected a file, got {other:?}"),
    }
}

#[test]
fn new_rejects_missing_and_non_directory_roots() {
    let dir = TempDir::new("new");
    let err = FsStorage::new(dir.path().join("missing")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("does not exist"), "{err}");

    fs::write(dir.path().join("file"), b"x").unwrap();
    let err = FsStorage::new(dir.path().join("file")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");

    assert!(FsStorage::new(dir.path()).is_ok());
}

#[test]
fn storage_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<FsStorage>();
}

#[test]
fn metadata_of_file_dir_and_missing() {
    let fx = Fixture::new("metadata");
    fs::write(fx.root().join("file"), b"hello").unwrap();
    fs::create_dir(fx.root().join("dir")).unwrap();
    block_on(async {
        let meta = fx.storage.metadata(&user(), p("file")).await.unwrap();
        assert_eq!(meta.kind, FileKind::File);
        assert_eq!(meta.len, 5);
        assert!(meta.modified.is_some());
        assert_eq!(meta.nlink, 1);
        assert_eq!(meta.mode & 0o600, 0o600);

        let meta = fx.storage.metadata(&user(), p("dir")).await.unwrap();
        assert!(meta.is_dir());

        let meta = fx.storage.metadata(&user(), p("")).await.unwrap();
        assert!(meta.is_dir());

        assert_eq!(kind(fx.storage.metadata(&user(), p("missing")).await), ErrorKind::NotFound);
        assert_eq!(kind(fx.storage.metadata(&user(), p("file/below")).await), ErrorKind::NotADirectory);
    });
}

#[test]
fn list_is_sorted_and_does_not_follow_symlinks() {
    let fx = Fixture::new("list");
    fs::write(fx.root().join("b.txt"), b"bb").unwrap();
    fs::write(fx.root().join("a.txt"), b"a").unwrap();
    fs::create_dir(fx.root().join("c")).unwrap();
    symlink("a.txt", fx.root().join("d-link")).unwrap();
    block_on(async {
        let entries = list(&fx.storage, &user(), p("")).await.unwrap();
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"a.txt"[..], b"b.txt", b"c", b"d-link"]);
        let kinds: Vec<FileKind> = entries.iter().map(|e| e.metadata.kind).collect();
        assert_eq!(kinds, [FileKind::File, FileKind::File, FileKind::Dir, FileKind::Symlink]);
        assert_eq!(entries[1].metadata.len, 2);

        assert!(list(&fx.storage, &user(), p("c")).await.unwrap().is_empty());
        assert_eq!(kind(list(&fx.storage, &user(), p("a.txt")).await), ErrorKind::NotADirectory);
        assert_eq!(kind(list(&fx.storage, &user(), p("nope")).await), ErrorKind::NotFound);
    });
}

/// A directory larger than a page comes in pages of at most 1,024 entries, each sorted,
/// together every entry once; the lister's buffer is the caller's, reused.
#[test]
fn large_directory_in_pages() {
    let fx = Fixture::new("pages");
    let want: std::collections::BTreeSet<Vec<u8>> =
        (0..3000).map(|i| format!("f{i:04}").into_bytes()).collect();
    for name in &want {
        fs::write(fx.root().join(OsStr::from_bytes(name)), b"").unwrap();
    }
    block_on(async {
        let mut lister = fx.storage.list(&user(), p("")).await.unwrap();
        let (mut page, mut pages, mut seen) = (Vec::new(), 0, std::collections::BTreeSet::new());
        while lister.next_page(&mut page).await.unwrap() {
            assert!(page.len() <= 1024, "a page of {}", page.len());
            assert!(page.windows(2).all(|w| w[0].name < w[1].name), "a page is sorted");
            for e in page.drain(..) {
                assert!(seen.insert(e.name), "listed twice");
            }
            pages += 1;
        }
        assert_eq!(seen, want);
        assert!(pages >= 3, "{pages} pages");
        assert!(!lister.next_page(&mut page).await.unwrap() && page.is_empty(), "done stays done");
    });
}

#[test]
fn read_from_offsets() {
    let fx = Fixture::new("read");
    fs::write(fx.root().join("file"), b"0123456789").unwrap();
    fs::create_dir(fx.root().join("dir")).unwrap();
    block_on(async {
        let source = fx.storage.open_read(&user(), p("file"), 0).await.unwrap();
        assert_eq!(read_all(source), b"0123456789");
        let source = fx.storage.open_read(&user(), p("file"), 4).await.unwrap();
        assert_eq!(read_all(source), b"456789");
        let source = fx.storage.open_read(&user(), p("file"), 100).await.unwrap();
        assert_eq!(read_all(source), b"");

        assert_eq!(kind(fx.storage.open_read(&user(), p("dir"), 0).await), ErrorKind::IsADirectory);
        assert_eq!(kind(fx.storage.open_read(&user(), p(""), 0).await), ErrorKind::IsADirectory);
        assert_eq!(kind(fx.storage.open_read(&user(), p("missing"), 0).await), ErrorKind::NotFound);
    });
}

#[test]
fn read_refuses_a_fifo_without_blocking() {
    let fx = Fixture::new("fifo");
    nix::unistd::mkfifo(&fx.root().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    block_on(async {
        assert_eq!(kind(fx.storage.open_read(&user(), p("fifo"), 0).await), ErrorKind::PermissionDenied);
        assert_eq!(
            kind(fx.storage.open_write(&user(), p("fifo"), WriteMode::Truncate).await),
            ErrorKind::PermissionDenied
        );
        let entries = list(&fx.storage, &user(), p("")).await.unwrap();
        assert_eq!(entries[0].metadata.kind, FileKind::Other);
    });
}

#[test]
fn write_modes() {
    let fx = Fixture::new("write");
    let file = fx.root().join("file");
    block_on(async {
        let sink = fx.storage.open_write(&user(), p("file"), WriteMode::Truncate).await.unwrap();
        write_all(sink, b"first version");
        assert_eq!(fs::read(&file).unwrap(), b"first version");

        let sink = fx.storage.open_write(&user(), p("file"), WriteMode::Truncate).await.unwrap();
        write_all(sink, b"second");
        assert_eq!(fs::read(&file).unwrap(), b"second");

        let sink = fx.storage.open_write(&user(), p("file"), WriteMode::Append).await.unwrap();
        write_all(sink, b"+more");
        assert_eq!(fs::read(&file).unwrap(), b"second+more");

        // Resume keeps the first 3 bytes and drops the tail before writing.
        let sink = fx.storage.open_write(&user(), p("file"), WriteMode::Resume(3)).await.unwrap();
        write_all(sink, b"ond");
        assert_eq!(fs::read(&file).unwrap(), b"second");

        let sink = fx.storage.open_write(&user(), p("appended"), WriteMode::Append).await.unwrap();
        write_all(sink, b"new");
        assert_eq!(fs::read(fx.root().join("appended")).unwrap(), b"new");

        assert_eq!(
            kind(fx.storage.open_write(&user(), p("file"), WriteMode::CreateNew).await),
            ErrorKind::AlreadyExists
        );
        let sink = fx.storage.open_write(&user(), p("fresh"), WriteMode::CreateNew).await.unwrap();
        write_all(sink, b"unique");
        assert_eq!(fs::read(fx.root().join("fresh")).unwrap(), b"unique");

        fs::create_dir(fx.root().join("dir")).unwrap();
        assert_eq!(
            kind(fx.storage.open_write(&user(), p("dir"), WriteMode::Truncate).await),
            ErrorKind::IsADirectory
        );
        assert_eq!(
            kind(fx.storage.open_write(&user(), p("no/such/dir/file"), WriteMode::Truncate).await),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn read_only_user_cannot_write() {
    let fx = Fixture::new("readonly");
    fs::write(fx.root().join("file"), b"keep").unwrap();
    fs::create_dir(fx.root().join("dir")).unwrap();
    let ro = User::new("ro").read_only(true);
    block_on(async {
        let denied = ErrorKind::PermissionDenied;
        assert_eq!(kind(fx.storage.open_write(&ro, p("file"), WriteMode::Truncate).await), denied);
        assert_eq!(kind(fx.storage.make_dir(&ro, p("new")).await), denied);
        assert_eq!(kind(fx.storage.remove_dir(&ro, p("dir")).await), denied);
        assert_eq!(kind(fx.storage.remove_file(&ro, p("file")).await), denied);
        assert_eq!(kind(fx.storage.rename(&ro, p("file"), p("moved")).await), denied);
        assert_eq!(read_all(fx.storage.open_read(&ro, p("file"), 0).await.unwrap()), b"keep");
    });
    assert_eq!(fs::read(fx.root().join("file")).unwrap(), b"keep");
}

#[test]
fn directories_delete_and_rename() {
    let fx = Fixture::new("dirs");
    block_on(async {
        let s = &fx.storage;
        s.make_dir(&user(), p("d")).await.unwrap();
        s.make_dir(&user(), p("d/sub")).await.unwrap();
        assert!(fx.root().join("d/sub").is_dir());
        assert_eq!(kind(s.make_dir(&user(), p("d")).await), ErrorKind::AlreadyExists);
        assert_eq!(kind(s.make_dir(&user(), p("x/y")).await), ErrorKind::NotFound);

        assert_eq!(kind(s.remove_dir(&user(), p("d")).await), ErrorKind::DirectoryNotEmpty);
        s.remove_dir(&user(), p("d/sub")).await.unwrap();
        assert!(!fx.root().join("d/sub").exists());

        fs::write(fx.root().join("d/f"), b"data").unwrap();
        assert_eq!(kind(s.remove_file(&user(), p("d")).await), ErrorKind::IsADirectory);
        assert_eq!(kind(s.remove_dir(&user(), p("d/f")).await), ErrorKind::NotADirectory);

        s.rename(&user(), p("d/f"), p("g")).await.unwrap();
        assert_eq!(fs::read(fx.root().join("g")).unwrap(), b"data");
        fs::write(fx.root().join("h"), b"old").unwrap();
        s.rename(&user(), p("g"), p("h")).await.unwrap();
        assert_eq!(fs::read(fx.root().join("h")).unwrap(), b"data");
        assert_eq!(kind(s.rename(&user(), p("g"), p("i")).await), ErrorKind::NotFound);

        s.remove_file(&user(), p("h")).await.unwrap();
        assert!(!fx.root().join("h").exists());
        assert_eq!(kind(s.remove_file(&user(), p("h")).await), ErrorKind::NotFound);
        s.remove_dir(&user(), p("d")).await.unwrap();

        // The home itself cannot be created, removed or renamed.
        let denied = ErrorKind::PermissionDenied;
        assert_eq!(kind(s.make_dir(&user(), p("")).await), denied);
        assert_eq!(kind(s.remove_dir(&user(), p("")).await), denied);
        assert_eq!(kind(s.remove_file(&user(), p("")).await), denied);
        assert_eq!(kind(s.rename(&user(), p(""), p("x")).await), denied);
        s.make_dir(&user(), p("x")).await.unwrap();
        assert_eq!(kind(s.rename(&user(), p("x"), p("")).await), denied);
    });
    assert!(fx.root().is_dir());
}

#[test]
fn removing_a_symlink_removes_the_link_not_its_target() {
    let fx = Fixture::new("unlink-link");
    symlink("../outside/secret", fx.root().join("link")).unwrap();
    block_on(async {
        fx.storage.remove_file(&user(), p("link")).await.unwrap();
    });
    assert!(fx.dir.path().join("outside/secret").exists());
}

#[test]
fn symlink_escapes_are_refused() {
    let fx = Fixture::new("escape");
    fs::write(fx.root().join("inside"), b"inside").unwrap();
    fs::create_dir(fx.root().join("sub")).unwrap();
    symlink("/etc", fx.root().join("etc")).unwrap();
    symlink("/etc/passwd", fx.root().join("passwd")).unwrap();
    symlink("../outside", fx.root().join("out")).unwrap();
    symlink("../outside/secret", fx.root().join("secret")).unwrap();
    symlink("../inside", fx.root().join("sub/up")).unwrap();
    symlink("../sub", fx.root().join("sub/self")).unwrap();
    symlink("/proc/self/root/etc", fx.root().join("magic")).unwrap();

    let refused = |err: ErrorKind| {
        // EXDEV (or ELOOP) from RESOLVE_BENEATH: the escape is seen, not merely missed.
        assert_eq!(err, ErrorKind::PermissionDenied, "escape not refused")
    };
    block_on(async {
        let s = &fx.storage;
        for link in ["etc", "passwd", "out", "secret", "magic", "etc/passwd", "out/secret"] {
            refused(kind(s.metadata(&user(), p(link)).await));
            refused(kind(s.open_read(&user(), p(link), 0).await));
            refused(kind(list(s, &user(), p(link)).await));
        }
        for target in ["out/new", "secret", "etc/new"] {
            refused(kind(s.open_write(&user(), p(target), WriteMode::Truncate).await));
        }
        refused(kind(s.make_dir(&user(), p("out/newdir")).await));
        refused(kind(s.remove_file(&user(), p("out/secret")).await));
        refused(kind(s.rename(&user(), p("inside"), p("out/stolen")).await));
        refused(kind(s.rename(&user(), p("out/secret"), p("stolen")).await));

        // Paths that a sloppy session might pass through are refused by the kernel too.
        refused(kind(s.metadata(&user(), p("../outside/secret")).await));
        refused(kind(s.metadata(&user(), p("/etc/passwd")).await));

        // Links that stay inside work, even through `..`.
        assert_eq!(read_all(s.open_read(&user(), p("sub/up"), 0).await.unwrap()), b"inside");
        assert!(s.metadata(&user(), p("sub/self")).await.unwrap().is_dir());
        assert_eq!(list(s, &user(), p("sub/self")).await.unwrap().len(), 2);
    });
    assert_eq!(fs::read(fx.dir.path().join("outside/secret")).unwrap(), b"top secret");
    assert!(!fx.dir.path().join("outside/new").exists());
    assert!(!fx.dir.path().join("outside/newdir").exists());
}

#[test]
fn users_are_confined_to_their_home() {
    let fx = Fixture::new("homes");
    fs::create_dir_all(fx.root().join("alice/docs")).unwrap();
    fs::create_dir(fx.root().join("bob")).unwrap();
    fs::write(fx.root().join("alice/docs/a"), b"alice's").unwrap();
    fs::write(fx.root().join("bob/b"), b"bob's").unwrap();
    fs::write(fx.root().join("top"), b"top").unwrap();
    symlink("../bob", fx.root().join("alice/bob")).unwrap();
    symlink("../top", fx.root().join("alice/top")).unwrap();
    symlink("docs/a", fx.root().join("alice/a-link")).unwrap();

    let alice = User::new("alice").home("alice");
    block_on(async {
        let s = &fx.storage;
        let names: Vec<Vec<u8>> = list(s, &alice, p("")).await.unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [b"a-link".to_vec(), b"bob".to_vec(), b"docs".to_vec(), b"top".to_vec()]);
        assert_eq!(read_all(s.open_read(&alice, p("docs/a"), 0).await.unwrap()), b"alice's");
        assert_eq!(read_all(s.open_read(&alice, p("a-link"), 0).await.unwrap()), b"alice's");

        let refused = |err: ErrorKind| assert_eq!(err, ErrorKind::PermissionDenied);
        refused(kind(list(s, &alice, p("bob")).await));
        refused(kind(s.open_read(&alice, p("bob/b"), 0).await));
        refused(kind(s.open_read(&alice, p("top"), 0).await));
        refused(kind(s.remove_file(&alice, p("bob/b")).await));
        refused(kind(s.open_write(&alice, p("bob/new"), WriteMode::Truncate).await));

        // The same paths are fine for a user whose home is the root.
        assert_eq!(read_all(s.open_read(&user(), p("bob/b"), 0).await.unwrap()), b"bob's");

        // A home that is missing, a file, or outside the root locks the user out.
        for home in ["carol", "top", "../outside", "/etc"] {
            let stray = User::new("stray").home(home);
            let err = kind(s.metadata(&stray, p("")).await);
            assert!(
                err == ErrorKind::NotADirectory
                    || err == ErrorKind::PermissionDenied
                    || err == ErrorKind::NotFound,
                "{home}: {err:?}"
            );
        }
    });
    assert!(fx.root().join("bob/b").exists());
}

#[test]
fn non_utf8_names_round_trip() {
    let fx = Fixture::new("bytes");
    let name: &[u8] = b"caf\xe9-\xff.txt";
    fs::write(fx.root().join(OsStr::from_bytes(name)), b"latin-1").unwrap();
    block_on(async {
        let entries = list(&fx.storage, &user(), p("")).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, name);
        let path = Path::new(OsStr::from_bytes(&entries[0].name));
        assert_eq!(read_all(fx.storage.open_read(&user(), path, 0).await.unwrap()), b"latin-1");

        let new_name = Path::new(OsStr::from_bytes(b"\xfe\xfd"));
        fx.storage.rename(&user(), path, new_name).await.unwrap();
        assert_eq!(fx.storage.metadata(&user(), new_name).await.unwrap().len, 7);
    });
}

#[test]
fn nul_in_a_name_is_an_invalid_name() {
    let fx = Fixture::new("nul");
    block_on(async {
        let path = Path::new(OsStr::from_bytes(b"a\0b"));
        assert_eq!(kind(fx.storage.metadata(&user(), path).await), ErrorKind::InvalidName);
        assert_eq!(kind(fx.storage.make_dir(&user(), path).await), ErrorKind::InvalidName);
    });
}
