//! Who a connection comes from, and connections per source, so one peer cannot take every
//! slot of a listener.
//!
//! A source is an IPv4 address or an IPv6 /64 (what one host is usually given). The table
//! holds only sources with a live connection, so it is bounded by the connection limit.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
};

/// The peer of the connection a request came on (a request extension the listener adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The part of an address that names one source.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

/// Live connections by source, with a per-source cap.
#[derive(Debug, Clone)]
pub struct Sources {
    cap: usize,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Holds one connection's place in its source's count.
#[derive(Debug)]
pub struct SourceGuard {
    key: IpAddr,
    live: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            let mut map = live.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

impl Sources {
    /// `cap` connections per source; 0: unlimited.
    pub fn new(cap: usize) -> Sources {
        Sources {
            cap,
            live: Arc::default(),
        }
    }

    /// A place for one more connection from `ip`, or `None` when its source is at the cap.
    pub fn admit(&self, ip: IpAddr) -> Option<SourceGuard> {
        let key = source_key(ip);
        if self.cap == 0 {
            return Some(SourceGuard { key, live: None });
        }
        let mut map = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(SourceGuard {
            key,
            live: Some(self.live.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_at_most_its_cap_and_slots_come_back() {
        let s = Sources::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let g1 = s.admit(a);
        let g2 = s.admit(a);
        assert!(g1.is_some() && g2.is_some());
        assert!(s.admit(a).is_none());
        assert!(s.admit(b).is_some());
        drop(g1);
        assert!(s.admit(a).is_some());
    }

    #[test]
    fn ipv6_hosts_are_grouped_by_64_and_mapped_v4_is_v4() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(IpAddr::from([0; 4]));
        let y: IpAddr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(source_key(x), source_key(y));
        let m: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(source_key(m), IpAddr::from([192, 0, 2, 7]));
        assert!(Sources::new(0).admit(x).is_some());
    }
}
