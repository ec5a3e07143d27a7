//! Shared pieces of the ringftp fuzz targets, so the targets in `fuzz_targets/` stay short:
//!
//! - [`wire`]: the RFC 959 §4.2 reply-format checker (used by `reply` and `session`).
//! - [`memfs`]: a small in-memory storage that really executes the session's requests.
//! - [`script`]: what the session target's input decodes into (client bytes, clock moves,
//!   answers), from `arbitrary` or a readable transcript.
//! - [`driver`]: drives the real sans-IO `Session` with a script and checks its invariants
//!   on every step.
//! - [`oracle`]: what the session must do whatever the input (permissions, active
//!   addresses, one final reply per command), checked by the driver.
//! - [`paths`]: invariants of `proto::path::resolve`.

/// Whether to print the transcript to stderr (`RINGFTP_FUZZ_TRACE=1`), for reproducing.
pub fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RINGFTP_FUZZ_TRACE").is_some_and(|v| v != "0"))
}

/// `eprintln!` when [`tracing`].
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::tracing() {
            eprintln!($($t)*);
        }
    };
}

pub mod driver;
pub mod memfs;
pub mod oracle;
pub mod paths;
pub mod script;
pub mod wire;
