//! Which address a PASV reply announces (RFC 959 §4.1.2; EPSV, RFC 2428, names only the
//! port, so none of this touches it).
//!
//! Behind NAT or a balancer the address a node listens on is not the one its clients reach,
//! and clients on different networks may reach it at different addresses. In order: the
//! first [`crate::ServerBuilder::public_address_for`] rule whose network holds the client's
//! real address, the [`crate::ServerBuilder::public_host`] name's latest resolution, the
//! plain [`crate::ServerBuilder::public_address`], and the address the client connected to.
//! The name is resolved at start and re-resolved by a background thread; PASV reads the
//! result without a lock.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::config::Config;
use crate::proto::address::canonical;
use crate::server::StartError;

/// How often the public name is resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);

/// The address to announce to `client` for a listener on `local`.
pub(crate) fn announce(config: &Config, client: IpAddr, local: IpAddr) -> IpAddr {
    let client = canonical(client);
    if let Some((_, ip)) = config.public_address_rules.iter().find(|(net, _)| net.contains(&client)) {
        return *ip;
    }
    if let Some(ip) = config.public_resolved.load().as_deref() {
        return *ip;
    }
    config.public_address.unwrap_or(local)
}

/// Resolves the public name (if there is one) and starts the thread that keeps it fresh.
/// The thread ends within a second once the server's configuration is dropped.
pub(crate) fn start_resolver(config: &Config) -> Result<(), StartError> {
    let Some(name) = config.public_host.clone() else {
        return Ok(());
    };
    let ip = resolve(&name).map_err(|e| StartError::Resolve(name.clone(), e))?;
    tracing::info!(%name, %ip, "public address resolved");
    config.public_resolved.store(Some(Arc::new(ip)));
    let slot = Arc::downgrade(&config.public_resolved);
    std::thread::Builder::new()
        .name("ringftp-resolve".into())
        .spawn(move || refresh(&name, &slot))
        .map_err(StartError::Thread)?;
    Ok(())
}

fn refresh(name: &str, slot: &Weak<ArcSwapOption<IpAddr>>) {
    let mut next = Instant::now() + RESOLVE_EVERY;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(slot) = slot.upgrade() else { return };
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + RESOLVE_EVERY;
        match resolve(name) {
            Ok(ip) => {
                if slot.load().as_deref() != Some(&ip) {
                    tracing::info!(%name, %ip, "public address changed");
                    slot.store(Some(Arc::new(ip)));
                }
            }
            // The last good address stays: a resolver hiccup must not break PASV.
            Err(e) => {
                tracing::warn!(%name, error = %e, "cannot resolve the public address; keeping the last one")
            }
        }
    }
}

/// The name's first IPv4 address (PASV can only announce IPv4), else its first address.
fn resolve(name: &str) -> std::io::Result<IpAddr> {
    let addrs: Vec<IpAddr> = (name, 0).to_socket_addrs()?.map(|a| a.ip()).collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_then_name_then_default_then_local() {
        let mut c = Config::default();
        let local: IpAddr = "10.1.1.1".parse().unwrap();
        let inside: IpAddr = "10.2.3.4".parse().unwrap();
        let outside: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(announce(&c, outside, local), local);
        c.public_address = Some("203.0.113.1".parse().unwrap());
        assert_eq!(announce(&c, outside, local), "203.0.113.1".parse::<IpAddr>().unwrap());
        c.public_resolved.store(Some(Arc::new("203.0.113.2".parse().unwrap())));
        assert_eq!(announce(&c, outside, local), "203.0.113.2".parse::<IpAddr>().unwrap());
        c.public_address_rules.push(("10.0.0.0/8".parse().unwrap(), "10.0.0.5".parse().unwrap()));
        c.public_address_rules.push(("10.2.0.0/16".parse().unwrap(), "10.2.0.5".parse().unwrap()));
        assert_eq!(announce(&c, inside, local), "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            announce(&c, "::ffff:10.2.3.4".parse().unwrap(), local),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(announce(&c, outside, local), "203.0.113.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn resolves_names_preferring_ipv4() {
        assert_eq!(resolve("localhost").unwrap(), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(resolve("127.0.0.3").unwrap(), "127.0.0.3".parse::<IpAddr>().unwrap());
        assert!(resolve("no-such-name.invalid").is_err());
    }
}
