//! # ringftp
//!
//! A high-performance FTP server engine for Linux: RFC 959 and the extensions real clients
//! use (FEAT/OPTS, EPSV/EPRT, SIZE, MDTM, REST, MLST/MLSD, UTF8), in active and passive mode,
//! on IPv4 and IPv6, on a thread-per-core io_uring engine with a zero-copy splice data path.
//!
//! ```text
//!                  SO_REUSEPORT: the kernel spreads connections over the shards
//!          ┌──────────────────────────────┬──────────────────────────────┐
//!   shard 0 (thread, tokio-uring ring)            shard 1 ...
//!   ┌──────────────────────────────────────┐
//!   │ control listener ──► session task    │  each session: LineBuffer ─► proto::parse
//!   │   ├─ session::Session (sans-IO)      │     ─► Session::handle_command ─► Action*
//!   │   ├─ passive listener ◄─ port slice ─┼──► ports::PortPool (lock-free bitmaps,
//!   │   └─ transfer task                   │     one slice per shard, stealing when empty)
//!   │        file ─SPLICE(io_uring, or inline if cached)─► pipe ─splice─► data socket
//!   │        (pipes from the shard's pool)  │
//!   └──────────────────────────────────────┘
//!          storage: Arc<S: Storage>   auth: Arc<A: Authenticator>   (shared, immutable)
//! ```
//!
//! - [`proto`] and [`session`] are sans-IO: parsing, replies and the per-connection state
//!   machine are pure, unit-tested with tables and transcripts, and fuzzed.
//! - The engine (one thread per core, on io_uring, or on epoll where io_uring is blocked:
//!   see [`Engine`]) and the data path are private; they are the only code that knows the
//!   runtime.
//! - A host plugs in its own [`Storage`] and [`Authenticator`]; [`FsStorage`] (confined to
//!   its root by `openat2(RESOLVE_BENEATH)`) and [`UserList`] (argon2 hashes) are built in.
//!
//! ## Quick start
//!
//! ```no_run
//! use ringftp::{FsStorage, Server, User, UserList};
//!
//! let users = UserList::new()
//!     .user_with_password(User::new("alice"), b"secret")
//!     .anonymous("pub");
//! let server = Server::builder(FsStorage::new("/srv/ftp")?, users)
//!     .listen("0.0.0.0:21".parse()?)
//!     .passive_ports(50000..=50999)
//!     .build()?;
//! let handle = server.start()?;
//! println!("listening on {:?}", handle.local_addrs());
//! handle.wait();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod auth;
mod datapath;
mod engine;
pub mod events;
mod metrics;
pub mod ports;
pub mod proto;
mod server;
pub mod session;
pub mod storage;

pub use auth::{AuthError, Authenticator, Permissions, User, UserList};
pub use server::{BuildError, Engine, Server, ServerBuilder, ServerHandle, ShutdownTrigger, StartError};
pub use storage::{DataSink, DataSource, ErrorKind, FsStorage, Storage, StorageError, UploadPolicy};
