//! A ban list shared by every connection and shard: failed logins and refusals (a bounce
//! attempt, a hijack) score against the client's address; past a threshold within a window
//! the address is banned, for a time that doubles on each repeat; a user name is locked out
//! after N failed logins from any address; an allow-list of networks is never counted.
//!
//! The shape is fail2ban's (`maxretry`, `findtime`, `bantime` with `bantime.increment`) and
//! SFTPGo's defender, kept in memory.
//!
//! # How the engine calls it
//!
//! ```text
//! accept:       if let Some(left) = bans.is_banned(peer.ip(), now) { 421, close }
//! USER/PASS:    if bans.is_locked_out(user, now).is_some()  { 530 without checking }
//! login failed: bans.record_login_failure(peer.ip(), user, now)  -> what it led to
//! login ok:     bans.record_login_success(peer.ip(), user, now)
//! refusal:      bans.record_refusal(peer.ip(), now)   (PORT to a third party, ...)
//! ```
//!
//! # State without a lock per connection
//!
//! Two fixed-size tables of atomics, one keyed by address and one by user name, each entry
//! found by a keyed 64-bit hash (SipHash with random keys, so a client cannot aim collisions)
//! in an aligned bucket of four slots. The checks at accept and at USER read a few atomics:
//! no lock, no allocation. Only the rare writes (a failure, a success after failures) take a
//! lock, one of 64 stripes by bucket, so two failures in different buckets never wait for
//! each other. Memory is fixed: 32 bytes a slot, [`BanPolicy::table_size`] slots per table.
//!
//! A full bucket reuses the slot of an address that is not banned and failed least recently.
//! When all four hold current bans, the new address is not tracked ([`Verdict::Untracked`],
//! counted by [`BanList::untracked`]): the table never lifts a ban to make room, so a botnet
//! cannot free its own addresses by filling it; size the table for the bans you expect.
//!
//! A reload changes the thresholds, window, ban times and allow-list in place
//! ([`BanList::set_policy`]: atomics and one `ArcSwap`, so readers still take no lock); the
//! table size is fixed when the list is made.
//!
//! IPv6 clients are counted by their /64 (one host gets a whole /64 to pick addresses from);
//! IPv4-mapped IPv6 addresses count as the IPv4 address.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use ipnet::IpNet;

/// Slots per bucket: the entries one hash can land in.
const BUCKET: usize = 4;
/// Locks for writers, by bucket.
const STRIPES: usize = 64;

/// When to ban an address and lock out a user; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanPolicy {
    threshold: u32,
    window: Duration,
    ban_time: Duration,
    max_ban_time: Duration,
    user_lockout: u32,
    user_lockout_time: Duration,
    allow: Vec<IpNet>,
    table_size: usize,
}

impl BanPolicy {
    /// Bans an address after `threshold` failed logins or refusals within the window (0: never
    /// ban addresses). The defaults: a 10 minute window, a first ban of 10 minutes doubling
    /// up to 24 hours, no user lockout, an empty allow-list, 8192 slots per table.
    pub fn new(threshold: u32) -> Self {
        BanPolicy {
            threshold,
            window: Duration::from_secs(600),
            ban_time: Duration::from_secs(600),
            max_ban_time: Duration::from_secs(24 * 3600),
            user_lockout: 0,
            user_lockout_time: Duration::from_secs(600),
            allow: Vec::new(),
            table_size: 8192,
        }
    }

    /// How far back failures count (fail2ban's `findtime`); older ones are forgotten.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The first ban; each further ban of the same address doubles it, up to `max_ban_time`.
    pub fn ban_time(mut self, ban_time: Duration) -> Self {
        self.ban_time = ban_time;
        self
    }

    /// The longest ban. An address quiet for this long starts again from `ban_time`.
    pub fn max_ban_time(mut self, max: Duration) -> Self {
        self.max_ban_time = max;
        self
    }

    /// Locks a user name out after `failures` failed logins within the window, from any
    /// address (0: never). Anyone who knows the name can lock its owner out this way, which
    /// is why it is off by default.
    pub fn user_lockout(mut self, failures: u32) -> Self {
        self.user_lockout = failures;
        self
    }

    /// How long a user lockout lasts (default 10 minutes; doubles on repeat like bans).
    pub fn user_lockout_time(mut self, time: Duration) -> Self {
        self.user_lockout_time = time;
        self
    }

    /// A network whose addresses are never counted nor banned (repeatable).
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allow.push(net.trunc());
        self
    }

    /// Slots per table (rounded up to a power of two, at least 4); see the module docs.
    pub fn table_size(mut self, slots: usize) -> Self {
        self.table_size = slots;
        self
    }
}

/// What a recorded failure led to for one address or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Counted; not (yet) over the threshold.
    Counted,
    /// This failure crossed the threshold: banned (or locked out) for this long.
    Banned(Duration),
    /// On the allow-list, or this kind of ban is off: not counted.
    Exempt,
    /// Not counted: its bucket is full of current bans (see the module docs).
    Untracked,
}

/// What a failed login led to: for the address, and for the user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailure {
    /// The client's address.
    pub address: Verdict,
    /// The user name tried.
    pub user: Verdict,
}

/// The shared ban state; see the module docs. `Send + Sync`: share it with an `Arc`.
#[derive(Debug)]
pub struct BanList {
    epoch: Instant,
    /// Swapped whole by [`BanList::set_allow`] (a reload); read with one atomic load.
    allow: ArcSwap<Vec<IpNet>>,
    addresses: Table,
    users: Table,
}

impl BanList {
    /// An empty ban list; `now` is the reference for the times passed later.
    pub fn new(policy: BanPolicy, now: Instant) -> Self {
        let size = policy.table_size.max(BUCKET).next_power_of_two();
        // Both tables get their full size, even with the user lockout off: a reload may turn
        // it on ([`BanList::set_policy`]) and tables never grow.
        let (address_rule, user_rule) = rules(&policy);
        BanList {
            epoch: now,
            allow: ArcSwap::from_pointee(policy.allow),
            addresses: Table::new(address_rule, size),
            users: Table::new(user_rule, size),
        }
    }

    /// Puts new thresholds, window, ban times and allow-list in force (a reload); the table
    /// size stays. Counts, bans and their repeat counts are kept: a lowered threshold bans an
    /// address already past it at its next failure, a ban in force runs its course.
    pub fn set_policy(&self, policy: &BanPolicy) {
        let (address_rule, user_rule) = rules(policy);
        self.addresses.rule.set(address_rule);
        self.users.rule.set(user_rule);
        self.set_allow(policy.allow.iter().copied());
    }

    /// Whether `ip` is banned now, and for how much longer. Lock-free: for every accept. An
    /// address on the allow-list is never banned, even one banned before it was added.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.addresses.rule.threshold() == 0 || self.allowed(ip) {
            return None;
        }
        self.addresses.check(self.addresses.key(&address_key(ip)), self.at(now))
    }

    /// Whether the user name is locked out now, and for how much longer. Lock-free.
    pub fn is_locked_out(&self, user: &str, now: Instant) -> Option<Duration> {
        if self.users.rule.threshold() == 0 {
            return None;
        }
        self.users.check(self.users.key(user), self.at(now))
    }

    /// Counts a failed login against the address and the user name.
    pub fn record_login_failure(&self, ip: IpAddr, user: &str, now: Instant) -> LoginFailure {
        let at = self.at(now);
        let address = self.record_address(ip, at);
        let user = if self.users.rule.threshold() == 0 {
            Verdict::Exempt
        } else {
            self.users.record(self.users.key(user), at)
        };
        LoginFailure { address, user }
    }

    /// Counts a refusal (a bounce attempt, a data connection from a third party...) against
    /// the address.
    pub fn record_refusal(&self, ip: IpAddr, now: Instant) -> Verdict {
        self.record_address(ip, self.at(now))
    }

    /// A login succeeded: the failures counted so far for the address and the user are
    /// forgiven (the repeat count of earlier bans is kept).
    pub fn record_login_success(&self, ip: IpAddr, user: &str, _now: Instant) {
        if self.addresses.rule.threshold() != 0 && !self.allowed(ip) {
            self.addresses.forgive(self.addresses.key(&address_key(ip)));
        }
        if self.users.rule.threshold() != 0 {
            self.users.forgive(self.users.key(user));
        }
    }

    /// How many failures could not be counted because their bucket was full of bans.
    pub fn untracked(&self) -> u64 {
        self.addresses.untracked.load(Ordering::Relaxed) + self.users.untracked.load(Ordering::Relaxed)
    }

    fn record_address(&self, ip: IpAddr, at: u64) -> Verdict {
        if self.addresses.rule.threshold() == 0 || self.allowed(ip) {
            return Verdict::Exempt;
        }
        self.addresses.record(self.addresses.key(&address_key(ip)), at)
    }

    /// Replaces the allow-list (for a reload): from now on these networks are never counted
    /// nor refused.
    pub fn set_allow(&self, nets: impl IntoIterator<Item = IpNet>) {
        self.allow.store(Arc::new(nets.into_iter().map(|n| n.trunc()).collect()));
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.load().iter().any(|net| net.contains(&ip))
    }

    /// Milliseconds since the list was made (earlier instants count as 0).
    fn at(&self, now: Instant) -> u64 {
        ms(now.saturating_duration_since(self.epoch))
    }
}

/// What an address is counted as: itself for IPv4, its /64 for IPv6.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The rules of the address table and of the user table.
fn rules(policy: &BanPolicy) -> (Rule, Rule) {
    let address = Rule {
        threshold: policy.threshold,
        window: ms(policy.window),
        ban: ms(policy.ban_time),
        max: ms(policy.max_ban_time),
    };
    let user = Rule {
        threshold: policy.user_lockout,
        window: ms(policy.window),
        ban: ms(policy.user_lockout_time),
        max: ms(policy.max_ban_time).max(ms(policy.user_lockout_time)),
    };
    (address, user)
}

/// A table's [`Rule`] in atomics, so a reload can change it while every shard reads it: the
/// accept path loads only the threshold. A failure recorded during a change may see some
/// fields old and some new, each a valid value.
#[derive(Debug)]
struct LiveRule {
    threshold: AtomicU32,
    window: AtomicU64,
    ban: AtomicU64,
    max: AtomicU64,
}

impl LiveRule {
    fn new(rule: Rule) -> Self {
        LiveRule {
            threshold: AtomicU32::new(rule.threshold),
            window: AtomicU64::new(rule.window),
            ban: AtomicU64::new(rule.ban),
            max: AtomicU64::new(rule.max),
        }
    }

    fn set(&self, rule: Rule) {
        self.window.store(rule.window, Ordering::Relaxed);
        self.ban.store(rule.ban, Ordering::Relaxed);
        self.max.store(rule.max, Ordering::Relaxed);
        self.threshold.store(rule.threshold, Ordering::Relaxed);
    }

    fn threshold(&self) -> u32 {
        self.threshold.load(Ordering::Relaxed)
    }

    fn get(&self) -> Rule {
        Rule {
            threshold: self.threshold(),
            window: self.window.load(Ordering::Relaxed),
            ban: self.ban.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

/// The thresholds of one table, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Rule {
    threshold: u32,
    window: u64,
    ban: u64,
    max: u64,
}

impl Rule {
    /// The length of the `strikes`-th ban: doubled each time, capped.
    fn ban_for(&self, strikes: u32) -> u64 {
        let doublings = strikes.saturating_sub(1).min(40);
        self.ban.saturating_mul(1u64 << doublings).min(self.max.max(self.ban))
    }
}

/// One tracked address or name. `key` is written last when a slot is (re)used, so a reader
/// that sees a key sees that entry's other fields.
#[derive(Debug, Default)]
struct Slot {
    /// The keyed hash; 0: empty.
    key: AtomicU64,
    /// Banned until this time (ms); 0: not banned.
    until: AtomicU64,
    /// The last failure (ms).
    last: AtomicU64,
    /// Failures in the current window.
    score: AtomicU32,
    /// Bans so far.
    strikes: AtomicU32,
}

#[derive(Debug)]
struct Table {
    rule: LiveRule,
    hasher: RandomState,
    slots: Box<[Slot]>,
    locks: Box<[Mutex<()>]>,
    untracked: AtomicU64,
}

impl Table {
    fn new(rule: Rule, size: usize) -> Table {
        Table {
            rule: LiveRule::new(rule),
            hasher: RandomState::new(),
            slots: (0..size).map(|_| Slot::default()).collect(),
            locks: (0..STRIPES.min(size / BUCKET)).map(|_| Mutex::new(())).collect(),
            untracked: AtomicU64::new(0),
        }
    }

    fn key<T: std::hash::Hash + ?Sized>(&self, value: &T) -> u64 {
        self.hasher.hash_one(value).max(1)
    }

    /// The bucket of `key`: its slots, and its index.
    fn bucket(&self, key: u64) -> (&[Slot], usize) {
        let buckets = self.slots.len() / BUCKET;
        // The low bits pick the bucket; the whole key identifies the entry inside it.
        let index = (key as usize) & (buckets - 1);
        (self.slots.get(index * BUCKET..(index + 1) * BUCKET).unwrap_or(&[]), index)
    }

    fn check(&self, key: u64, at: u64) -> Option<Duration> {
        let (slots, _) = self.bucket(key);
        let slot = slots.iter().find(|s| s.key.load(Ordering::Acquire) == key)?;
        let until = slot.until.load(Ordering::Acquire);
        // Reused for another entry meanwhile: then this one is not banned (banned slots are
        // never reused).
        if slot.key.load(Ordering::Acquire) != key {
            return None;
        }
        (until > at).then(|| Duration::from_millis(until - at))
    }

    fn record(&self, key: u64, at: u64) -> Verdict {
        let (slots, index) = self.bucket(key);
        let _guard = self.lock(index);
        let rule = self.rule.get();
        let slot = match slots.iter().find(|s| s.key.load(Ordering::Relaxed) == key) {
            Some(slot) => slot,
            None => {
                // An empty slot, else the least recently failing entry that is not banned.
                let free = slots.iter().find(|s| s.key.load(Ordering::Relaxed) == 0).or_else(|| {
                    slots
                        .iter()
                        .filter(|s| s.until.load(Ordering::Relaxed) <= at)
                        .min_by_key(|s| s.last.load(Ordering::Relaxed))
                });
                let Some(slot) = free else {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                    return Verdict::Untracked;
                };
                slot.until.store(0, Ordering::Relaxed);
                slot.score.store(0, Ordering::Relaxed);
                slot.strikes.store(0, Ordering::Relaxed);
                slot.last.store(at, Ordering::Relaxed);
                slot.key.store(key, Ordering::Release);
                slot
            }
        };
        let quiet = at.saturating_sub(slot.last.load(Ordering::Relaxed));
        let mut score = slot.score.load(Ordering::Relaxed);
        if quiet > rule.window {
            score = 0;
        }
        let mut strikes = slot.strikes.load(Ordering::Relaxed);
        let since_ban =
            at.saturating_sub(slot.until.load(Ordering::Relaxed).max(slot.last.load(Ordering::Relaxed)));
        if since_ban > rule.max.max(rule.ban) {
            // Well behaved, after its last ban, for as long as the longest ban: start over.
            strikes = 0;
        }
        score += 1;
        slot.last.store(at, Ordering::Relaxed);
        if score < rule.threshold {
            slot.score.store(score, Ordering::Relaxed);
            slot.strikes.store(strikes, Ordering::Relaxed);
            return Verdict::Counted;
        }
        strikes = strikes.saturating_add(1);
        let ban = rule.ban_for(strikes);
        slot.score.store(0, Ordering::Relaxed);
        slot.strikes.store(strikes, Ordering::Relaxed);
        slot.until.store(at.saturating_add(ban).max(1), Ordering::Release);
        Verdict::Banned(Duration::from_millis(ban))
    }

    fn forgive(&self, key: u64) {
        let (slots, index) = self.bucket(key);
        let _guard = self.lock(index);
        if let Some(slot) = slots.iter().find(|s| s.key.load(Ordering::Relaxed) == key) {
            slot.score.store(0, Ordering::Relaxed);
        }
    }

    fn lock(&self, bucket: usize) -> std::sync::MutexGuard<'_, ()> {
        let stripe = &self.locks[bucket % self.locks.len()];
        // The guarded data is the atomics, always consistent: a poisoned lock is still good.
        stripe.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(policy: BanPolicy) -> (BanList, Instant) {
        let t0 = Instant::now();
        (BanList::new(policy, t0), t0)
    }

    #[test]
    fn brute_force_from_one_address_bans_it_and_not_another() {
        let (bans, t0) = list(BanPolicy::new(5).ban_time(10 * MIN));
        let (attacker, other) = (ip("192.0.2.7"), ip("192.0.2.8"));
        for i in 0..4 {
            let t = t0 + Duration::from_secs(i);
            assert_eq!(bans.record_login_failure(attacker, "root", t).address, Verdict::Counted);
            assert_eq!(bans.is_banned(attacker, t), None);
        }
        let t = t0 + Duration::from_secs(5);
        assert_eq!(bans.record_login_failure(attacker, "root", t).address, Verdict::Banned(10 * MIN));
        assert_eq!(bans.is_banned(attacker, t), Some(10 * MIN));
        assert_eq!(bans.is_banned(other, t), None);
        // One failure from the other address is just counted.
        assert_eq!(bans.record_login_failure(other, "alice", t).address, Verdict::Counted);
        assert_eq!(bans.is_banned(other, t), None);
        // The ban ends.
        assert_eq!(bans.is_banned(attacker, t + 9 * MIN), Some(MIN));
        assert_eq!(bans.is_banned(attacker, t + 10 * MIN), None);
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let (bans, t0) = list(BanPolicy::new(3).window(MIN));
        let a = ip("198.51.100.1");
        for i in 0..10 {
            // One failure every 61 s never reaches 3 within a minute.
            let t = t0 + Duration::from_secs(61 * i);
            assert_eq!(bans.record_refusal(a, t), Verdict::Counted);
        }
        assert_eq!(bans.is_banned(a, t0 + 11 * MIN), None);
    }

    #[test]
    fn each_ban_doubles_up_to_the_maximum() {
        let (bans, t0) = list(BanPolicy::new(2).ban_time(MIN).max_ban_time(5 * MIN).window(MIN));
        let a = ip("203.0.113.9");
        let mut t = t0;
        let mut got = Vec::new();
        for _ in 0..5 {
            bans.record_refusal(a, t);
            match bans.record_refusal(a, t) {
                Verdict::Banned(d) => got.push(d),
                v => panic!("expected a ban, got {v:?}"),
            }
            // Comes back as soon as the ban ends.
            t += bans.is_banned(a, t).unwrap();
            assert_eq!(bans.is_banned(a, t), None);
        }
        assert_eq!(got, [MIN, 2 * MIN, 4 * MIN, 5 * MIN, 5 * MIN]);
        // Quiet for the longest ban: back to the first ban time.
        t += 6 * MIN;
        bans.record_refusal(a, t);
        assert_eq!(bans.record_refusal(a, t), Verdict::Banned(MIN));
    }

    #[test]
    fn a_reloaded_allow_list_lifts_a_ban() {
        let (bans, t0) = list(BanPolicy::new(1));
        let a = ip("192.0.2.7");
        assert!(matches!(bans.record_refusal(a, t0), Verdict::Banned(_)));
        assert!(bans.is_banned(a, t0).is_some());
        bans.set_allow(["192.0.2.0/24".parse().unwrap()]);
        assert_eq!(bans.is_banned(a, t0), None);
        assert_eq!(bans.record_refusal(a, t0), Verdict::Exempt);
        bans.set_allow([]);
        assert!(bans.is_banned(a, t0).is_some(), "the ban itself was kept");
    }

    #[test]
    fn a_reloaded_policy_applies_to_the_next_failure() {
        let (bans, t0) = list(BanPolicy::new(5).ban_time(MIN));
        let (a, b) = (ip("192.0.2.7"), ip("192.0.2.8"));
        for _ in 0..2 {
            assert_eq!(bans.record_refusal(a, t0), Verdict::Counted);
        }
        bans.set_policy(&BanPolicy::new(2).ban_time(2 * MIN).user_lockout(1));
        // Past the new threshold already: banned at the next failure, for the new time.
        assert_eq!(bans.record_refusal(a, t0), Verdict::Banned(2 * MIN));
        assert_eq!(bans.record_refusal(b, t0), Verdict::Counted);
        assert_eq!(bans.record_login_failure(b, "u", t0).user, Verdict::Banned(10 * MIN));
        // Off again: nothing is refused, nothing counted.
        bans.set_policy(&BanPolicy::new(0));
        assert_eq!(bans.is_banned(a, t0), None);
        assert_eq!(bans.record_refusal(b, t0), Verdict::Exempt);
    }

    #[test]
    fn the_allow_list_is_never_banned() {
        let policy =
            BanPolicy::new(1).allow("10.0.0.0/8".parse().unwrap()).allow("2001:db8::/32".parse().unwrap());
        let (bans, t0) = list(policy);
        for a in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8::1"] {
            for _ in 0..10 {
                assert_eq!(bans.record_login_failure(ip(a), "x", t0).address, Verdict::Exempt, "{a}");
            }
            assert_eq!(bans.is_banned(ip(a), t0), None, "{a}");
        }
        assert!(matches!(bans.record_refusal(ip("11.0.0.1"), t0), Verdict::Banned(_)));
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let (bans, t0) = list(BanPolicy::new(2));
        bans.record_refusal(ip("2001:db8:1:2::1"), t0);
        assert!(matches!(bans.record_refusal(ip("2001:db8:1:2:ffff::9"), t0), Verdict::Banned(_)));
        assert!(bans.is_banned(ip("2001:db8:1:2::77"), t0).is_some());
        assert!(bans.is_banned(ip("2001:db8:1:3::1"), t0).is_none());
        bans.record_refusal(ip("192.0.2.1"), t0);
        bans.record_refusal(ip("::ffff:192.0.2.1"), t0);
        assert!(bans.is_banned(ip("192.0.2.1"), t0).is_some());
    }

    #[test]
    fn a_user_is_locked_out_after_failures_from_any_address() {
        let (bans, t0) = list(BanPolicy::new(100).user_lockout(3).user_lockout_time(MIN));
        for (i, a) in ["192.0.2.1", "192.0.2.2"].iter().enumerate() {
            let f = bans.record_login_failure(ip(a), "alice", t0 + Duration::from_secs(i as u64));
            assert_eq!(f.user, Verdict::Counted);
        }
        let t = t0 + Duration::from_secs(2);
        let f = bans.record_login_failure(ip("192.0.2.3"), "alice", t);
        assert_eq!(f, LoginFailure { address: Verdict::Counted, user: Verdict::Banned(MIN) });
        assert_eq!(bans.is_locked_out("alice", t), Some(MIN));
        assert_eq!(bans.is_locked_out("bob", t), None);
        // No address is banned by it.
        assert_eq!(bans.is_banned(ip("192.0.2.3"), t), None);
        assert_eq!(bans.is_locked_out("alice", t + MIN), None);
    }

    #[test]
    fn a_success_forgives_the_failures_so_far() {
        let (bans, t0) = list(BanPolicy::new(3).user_lockout(3));
        let a = ip("192.0.2.5");
        bans.record_login_failure(a, "carol", t0);
        bans.record_login_failure(a, "carol", t0);
        bans.record_login_success(a, "carol", t0);
        bans.record_login_failure(a, "carol", t0);
        let f = bans.record_login_failure(a, "carol", t0);
        assert_eq!(f, LoginFailure { address: Verdict::Counted, user: Verdict::Counted });
        assert_eq!(bans.is_banned(a, t0), None);
        assert_eq!(bans.is_locked_out("carol", t0), None);
    }

    #[test]
    fn off_by_default_switches() {
        let (bans, t0) = list(BanPolicy::new(0));
        let f = bans.record_login_failure(ip("192.0.2.1"), "u", t0);
        assert_eq!(f, LoginFailure { address: Verdict::Exempt, user: Verdict::Exempt });
        assert_eq!(bans.is_banned(ip("192.0.2.1"), t0), None);
        assert_eq!(bans.is_locked_out("u", t0), None);
    }

    #[test]
    fn a_full_table_keeps_its_bans_and_reuses_slots_once_they_end() {
        // One bucket of four slots: every address lands in it.
        let (bans, t0) = list(BanPolicy::new(1).ban_time(MIN).table_size(4));
        let banned: Vec<IpAddr> = (1..=4).map(|i| ip(&format!("192.0.2.{i}"))).collect();
        for &a in &banned {
            assert_eq!(bans.record_refusal(a, t0), Verdict::Banned(MIN));
        }
        let newcomer = ip("198.51.100.1");
        assert_eq!(bans.record_refusal(newcomer, t0), Verdict::Untracked);
        assert_eq!(bans.untracked(), 1);
        assert_eq!(bans.is_banned(newcomer, t0), None);
        for &a in &banned {
            assert!(bans.is_banned(a, t0).is_some(), "{a} lost its ban to make room");
        }
        // Once the bans end, slots are reused (the oldest failure first).
        let later = t0 + MIN;
        assert_eq!(bans.record_refusal(newcomer, later), Verdict::Banned(MIN));
        assert_eq!(bans.is_banned(newcomer, later), Some(MIN));
        assert_eq!(banned.iter().filter(|&&a| bans.is_banned(a, later).is_some()).count(), 0);
    }

    #[test]
    fn a_full_table_evicts_the_least_recent_unbanned_entry() {
        let (bans, t0) = list(BanPolicy::new(3).table_size(4));
        for i in 0..4u64 {
            bans.record_refusal(ip(&format!("192.0.2.{i}")), t0 + Duration::from_secs(i));
        }
        // A fifth address takes the slot of 192.0.2.0, the least recent: that one's count
        // starts over, the others keep theirs.
        let t = t0 + Duration::from_secs(10);
        assert_eq!(bans.record_refusal(ip("198.51.100.1"), t), Verdict::Counted);
        assert_eq!(bans.record_refusal(ip("192.0.2.1"), t), Verdict::Counted);
        assert!(matches!(bans.record_refusal(ip("192.0.2.1"), t), Verdict::Banned(_)));
        assert_eq!(bans.untracked(), 0);
    }

    #[test]
    fn shared_by_threads() {
        let (bans, t0) = list(BanPolicy::new(1000));
        let bans = std::sync::Arc::new(bans);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let bans = std::sync::Arc::clone(&bans);
                std::thread::spawn(move || {
                    let mut banned = 0;
                    for _ in 0..250 {
                        if matches!(bans.record_refusal(ip("192.0.2.77"), t0), Verdict::Banned(_)) {
                            banned += 1;
                        }
                    }
                    banned
                })
            })
            .collect();
        let banned: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 1000 failures from four threads: exactly one crosses the threshold.
        assert_eq!(banned, 1);
        assert!(bans.is_banned(ip("192.0.2.77"), t0).is_some());
    }
}
