//! ringftp (skeleton)
pub mod auth;
pub mod ports;
pub mod proto;
pub mod storage;

pub use auth::{AuthError, Authenticator, User, UserList};
pub use storage::{ErrorKind, FsStorage, Storage, StorageError};
pub mod session;
