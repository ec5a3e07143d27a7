//! Shared harness of the end-to-end tests: a real `ringftpd` process per test, serving a fresh
//! temporary root, driven by real clients (curl, Python's ftplib, lftp) that run with a hard
//! timeout each.
//!
//! Every wait here is bounded; nothing listens on a fixed port; everything stays on loopback.
//! What is where: [`server`] (the process and its builder), [`control`] (a raw control
//! connection), [`clients`] (curl, ftplib, lftp and the bounded runner), [`files`] (scratch
//! directories, file patterns, checksums), [`wait`] (polling with a deadline). Everything is
//! re-exported here, so tests say `use common::*`.

// Each test crate uses a different subset of the helpers (and so of the re-exports).
#![allow(dead_code, unused_imports)]

pub mod clients;
pub mod control;
pub mod files;
pub mod server;
pub mod wait;

pub use clients::*;
pub use control::*;
pub use files::*;
pub use server::*;
pub use wait::*;

use std::time::Duration;

/// The server binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringftpd");
/// The read-write user every server gets unless told otherwise.
pub const USER: &str = "bob";
pub const PASS: &str = "secret";

/// How long a client command may run unless the test says otherwise.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
