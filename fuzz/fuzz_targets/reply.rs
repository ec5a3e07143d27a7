//! The reply encoder: any code and any text must give one well-formed RFC 959 §4.2 reply.
//!
//! Input: the code as two bytes (little-endian u16), then the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringftp::proto::reply::{code, Reply, ReplyCode};
use ringftp_fuzz::wire::write_and_check;

fuzz_target!(|data: &[u8]| {
    let (code, text) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    // Codes outside 100..=599 cannot be made; any valid one can.
    let code = ReplyCode::new(code).unwrap_or(code::LOCAL_ERROR);
    let reply = Reply::owned(code, text.to_vec());
    let wire = write_and_check(&reply);
    // Writing appends: a second reply after the first is checked on its own.
    let mut out = wire.clone();
    Reply::owned(code, text.to_vec()).write_to(&mut out);
    assert_eq!(&out[..wire.len()], &wire[..]);
    assert_eq!(&out[wire.len()..], &wire[..]);
});
