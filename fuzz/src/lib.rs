//! Shared pieces of the ringftp fuzz targets, so the targets in `fuzz_targets/` stay short:
//!
//! - [`wire`]: the RFC 959 §4.2 reply-format checker (used by `reply` and `session`).
//! - [`memfs`]: a small in-memory storage that really executes the session's requests.
//! - [`driver`]: drives a sans-IO `Session` the way `src/engine/control.rs` does, from a
//!   script the fuzzer generates, and checks the session's invariants on every step.
//! - [`paths`]: invariants of `proto::path::resolve`.

pub mod driver;
pub mod memfs;
pub mod paths;
pub mod wire;
