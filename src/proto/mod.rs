//! The FTP protocol, sans I/O: framing, commands, replies, addresses, paths and listings.
//!
//! Nothing here touches a socket, a file or a clock; everything is a pure function or a small
//! state machine over bytes, so it can be unit-tested with tables and fuzzed directly.

// A peer controls every input here: no panicking shortcuts (fuzzed, see fuzz/), and no
// unsafe code, so the fuzz targets need no memory sanitizer to find what can go wrong here.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![forbid(unsafe_code)]

pub mod address;
pub mod command;
pub mod line;
pub mod listing;
pub mod path;
pub mod reply;

pub use command::{parse, Command, EpsvArg, ParseError, ProtLevel, TransferType};
pub use line::{Line, LineBuffer};
pub use reply::{code, Reply};
