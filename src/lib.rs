//! # ringftp
//!
//! A high-performance FTP server engine for Linux: RFC 959 and the extensions real clients
//! use (FEAT/OPTS, EPSV/EPRT, SIZE, MDTM, REST, MLST/MLSD, UTF8), in active and passive mode,
//! on IPv4 and IPv6, on a thread-per-core io_uring engine with a zero-copy splice data path.
//!
//! ```text
//!                  SO_REUSEPORT: the kernel spreads connections over the shards
//!          ┌──────────────────────────────┬──────────────────────────────┐
//!   shard 0 (thread, one runtime: io_uring or epoll)   shard 1 ...
//!   ┌──────────────────────────────────────┐
//!   │ control listener ──► control loop     │  bytes, time ─► session::Session (sans-IO:
//!   │   ├─ session::Session                 │     framing, parse, deadlines, storage steps)
//!   │   │    ◄─ handle_input / handle_timeout│     ─► poll_action: Reply, Fs, Transfer ...
//!   │   ├─ passive listener ◄─ port slice ──┼──► ports::PortPool (lock-free bitmaps,
//!   │   │   (range exhausted: shared ports, │     one slice per shard, stealing when empty)
//!   │   │    connections matched by address)│
//!   │   └─ transfer task                    │
//!   │        file ─splice (io_uring, inline if cached, or a blocking pool)─► pipe
//!   │             ─splice─► data socket     (pipes from the shard's pool)
//!   └──────────────────────────────────────┘
//!          storage: Arc<S: Storage>   auth: Arc<A: Authenticator>   (shared, immutable)
//! ```
//!
//! - The protocol lives in one sans-IO place: `session::Session` takes bytes and time and
//!   says what to do (quinn-proto's shape); `proto` parses and formats. Both are pure,
//!   unit-tested with tables and transcripts, and fuzzed; they are public for the fuzz
//!   targets and benches but not part of the documented API.
//! - The engines (one thread per core) and the data path are private and thin: they read,
//!   feed the session, carry out its actions and write. Every socket is driven by readiness;
//!   what the io_uring engine adds (see [`Engine`]; epoll runs where io_uring is blocked) is file I/O that never blocks a shard.
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

#![warn(missing_docs, unreachable_pub, clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod ban;
mod config;
mod datapath;
mod engine;
pub mod events;
mod metrics;
// The sans-IO core and the port pool are public for the fuzz targets, benches and tests, not
// part of the documented API (as rustls and quinn keep theirs).
#[doc(hidden)]
pub mod ports;
#[doc(hidden)]
pub mod proto;
mod server;
#[doc(hidden)]
pub mod session;
pub mod storage;
pub mod tls;
mod types;

pub use auth::{AuthError, Authenticator, Permissions, User, UserList};
pub use events::{EventListener, TransferRecord};
pub use server::{
    BuildError, Engine, LiveLimits, Server, ServerBuilder, ServerHandle, ShutdownTrigger, StartError,
};
pub use session::TlsPolicy;
pub use storage::{
    DataSink, DataSource, DigestSlot, DirEntry, ErrorKind, FileKind, FsStorage, Lister, Metadata, Storage,
    StorageError, UploadPolicy, WriteMode,
};
pub use tls::{TlsAcceptor, TlsConfig};
pub use types::Timeouts;
