//! The sans-IO session, driven with bytes in arbitrary chunks, a virtual clock and answers in
//! any order, against an in-memory storage.
//!
//! Input: a readable transcript after `FTP\n` (see `Script::from_text`; the seed corpus is
//! written that way), or anything else, decoded with `arbitrary` into a `Script`. The
//! invariants are listed in `fuzz/src/driver.rs`.
//!
//! `RINGFTP_FUZZ_TRACE=1` prints the transcript.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringftp_fuzz::driver::Driver;
use ringftp_fuzz::script::Script;

fuzz_target!(|data: &[u8]| {
    if let Some(script) = Script::decode(data) {
        Driver::run(&script);
    }
});
