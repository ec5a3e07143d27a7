//! Per-user state shared by all of a user's sessions on every shard: how many are open (for
//! `User::max_sessions`) and their rate limits. Looked up once per login under a lock; the
//! transfers then use the shared limits without one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::auth::User;
use crate::datapath::RateLimit;

/// What one user's sessions share.
#[derive(Debug)]
pub(crate) struct UserShared {
    sessions: AtomicU32,
    pub(crate) upload: Option<Arc<RateLimit>>,
    pub(crate) download: Option<Arc<RateLimit>>,
}

/// The users with open sessions; an entry lives as long as one of its leases.
#[derive(Debug, Default)]
pub(crate) struct UserRegistry {
    users: Mutex<HashMap<String, Weak<UserShared>>>,
}

/// A logged-in session's share of its user's state; leaving releases the session count.
#[derive(Debug)]
pub(crate) struct UserLease {
    pub(crate) shared: Arc<UserShared>,
}

impl Drop for UserLease {
    fn drop(&mut self) {
        self.shared.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl UserRegistry {
    /// Admits a session of `user`, or `None` when they have `max_sessions` already.
    pub(crate) fn admit(&self, user: &User) -> Option<UserLease> {
        let shared = {
            // A poisoned lock only means another thread panicked while holding it; the map is
            // still consistent (every update is a single insert or removal).
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            users.retain(|_, w| w.strong_count() > 0);
            match users.get(&user.name).and_then(Weak::upgrade) {
                Some(shared) => shared,
                None => {
                    let limit = |r: Option<u64>| r.map(|r| Arc::new(RateLimit::new(r)));
                    let shared = Arc::new(UserShared {
                        sessions: AtomicU32::new(0),
                        upload: limit(user.rate_limit),
                        download: limit(user.rate_limit),
                    });
                    users.insert(user.name.clone(), Arc::downgrade(&shared));
                    shared
                }
            }
        };
        let max = user.max_sessions.unwrap_or(u32::MAX);
        if shared.sessions.fetch_add(1, Ordering::AcqRel) >= max {
            shared.sessions.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(UserLease { shared })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_sessions_per_user() {
        let reg = UserRegistry::default();
        let alice = User::new("alice").max_sessions(2);
        let a = reg.admit(&alice).unwrap();
        let b = reg.admit(&alice).unwrap();
        assert!(reg.admit(&alice).is_none());
        assert!(reg.admit(&User::new("bob")).is_some());
        drop(a);
        let c = reg.admit(&alice).unwrap();
        assert!(Arc::ptr_eq(&b.shared, &c.shared), "sessions of one user share state");
    }
}
