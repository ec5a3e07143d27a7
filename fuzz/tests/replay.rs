//! Replays the session seed corpus and regressions without libFuzzer (`cargo test` in fuzz/),
//! so a driver change that breaks them shows up without a fuzzing build.

use ringftp_fuzz::driver::Driver;
use ringftp_fuzz::script::Script;

#[test]
fn session_corpus_and_regressions_replay() {
    let mut n = 0;
    for dir in ["corpus/session", "regressions/session"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Some(script) = Script::decode(&data) {
                eprintln!("{}", path.display());
                Driver::run(&script);
                n += 1;
            }
        }
    }
    assert!(n > 0);
}

/// `RINGFTP_FUZZ_FILE=path cargo test --test replay one -- --nocapture` with
/// `RINGFTP_FUZZ_TRACE=1` prints that input's transcript.
#[test]
fn one() {
    if let Some(path) = std::env::var_os("RINGFTP_FUZZ_FILE") {
        if let Some(script) = Script::decode(&std::fs::read(path).unwrap()) {
            Driver::run(&script);
        }
    }
}

/// `RINGFTP_FUZZ_DIR=dir cargo test --release --test replay slowest -- --nocapture`: the
/// inputs that take longest, to find what slows the fuzzer down.
#[test]
fn slowest() {
    let Some(dir) = std::env::var_os("RINGFTP_FUZZ_DIR") else {
        return;
    };
    let mut times = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let start = std::time::Instant::now();
        if let Some(script) = Script::decode(&data) {
            let _ = std::panic::catch_unwind(|| Driver::run(&script));
        }
        times.push((start.elapsed(), data.len(), path));
    }
    let total: std::time::Duration = times.iter().map(|t| t.0).sum();
    times.sort();
    eprintln!("{} inputs in {total:?}", times.len());
    for (t, len, path) in times.iter().rev().take(15) {
        eprintln!("{t:?} {len} bytes {}", path.display());
    }
}
