//! ringftp
pub mod auth;
mod datapath;
mod engine;
pub mod ports;
pub mod proto;
mod server;
pub mod session;
pub mod storage;

pub use auth::{AuthError, Authenticator, User, UserList};
pub use server::{BuildError, Server, ServerBuilder, ServerHandle, ShutdownTrigger, StartError};
pub use storage::{ErrorKind, FsStorage, Storage, StorageError};
