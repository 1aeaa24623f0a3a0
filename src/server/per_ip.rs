//! Connections counted by the IP address they come from, for
//! [`crate::Config::max_connections_per_ip`]: one client (or one address)
//! cannot hold every connection slot, whether with upgraded connections or
//! with handshakes it trickles.
//!
//! An IPv4 address counts as itself (the same as its IPv4-mapped IPv6 form,
//! as a dual-stack listener sees it); an IPv6 address counts whole (all 128
//! bits), so a client with a /64 of its own can use one address per
//! connection. Both maps give their memory back as they empty
//! ([`super::topics::release_spare`]), so a burst of addresses does not stay
//! resident.

use std::collections::HashMap;
use std::net::IpAddr;

use super::slab::ConnId;
use super::topics::release_spare;

/// How many connections each address has, and each counted connection's
/// address. Addresses are kept as IPv6 (an IPv4 one mapped, `::ffff:a.b.c.d`)
/// in a `u128`: plain integers hash with less code than `IpAddr`.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    counts: HashMap<u128, u32>,
    addresses: HashMap<ConnId, u128>,
}

/// `ip` as one integer, an IPv4 address mapped into IPv6.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

impl PerIp {
    /// Whether `ip` already has `limit` connections or more.
    pub(crate) fn is_full(&self, ip: IpAddr, limit: usize) -> bool {
        self.counts
            .get(&key(ip))
            .is_some_and(|&n| usize::try_from(n).unwrap_or(usize::MAX) >= limit)
    }

    /// Counts connection `id`, from `ip`.
    pub(crate) fn add(&mut self, id: ConnId, ip: IpAddr) {
        let ip = key(ip);
        if self.addresses.insert(id, ip).is_none() {
            let n = self.counts.entry(ip).or_default();
            *n = n.saturating_add(1);
        }
    }

    /// Stops counting connection `id`, if it was counted.
    pub(crate) fn remove(&mut self, id: ConnId) {
        let Some(ip) = self.addresses.remove(&id) else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&ip);
            }
        }
        release_spare(&mut self.addresses);
        release_spare(&mut self.counts);
    }

    /// How many addresses have connections.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ConnId {
        ConnId::from_u64((1 << 32) | n)
    }

    #[test]
    fn counts_by_address_and_forgets_an_address_with_none_left() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b2: IpAddr = "2001:db8::2".parse().unwrap();
        let mut p = PerIp::default();
        assert!(!p.is_full(a, 2));
        p.add(id(1), a);
        p.add(id(2), a);
        p.add(id(2), a); // counted once
        p.add(id(3), b);
        assert!(p.is_full(a, 2));
        assert!(!p.is_full(a, 3));
        assert!(!p.is_full(b, 2));
        assert!(!p.is_full(b2, 1), "IPv6 counts by the whole address");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(
            p.is_full(mapped, 2),
            "IPv4 mapped in IPv6 is the same address"
        );
        p.remove(id(1));
        assert!(!p.is_full(a, 2));
        p.remove(id(1)); // not counted any more: nothing happens
        p.remove(id(99));
        p.remove(id(2));
        p.remove(id(3));
        assert_eq!(p.addresses(), 0);
    }

    #[test]
    fn a_burst_of_addresses_gives_its_memory_back() {
        let mut p = PerIp::default();
        for n in 0..10_000u32 {
            p.add(id(u64::from(n)), IpAddr::from(n.to_be_bytes()));
        }
        let full = p.counts.capacity() + p.addresses.capacity();
        for n in 0..10_000u32 {
            p.remove(id(u64::from(n)));
        }
        let left = p.counts.capacity() + p.addresses.capacity();
        assert!(left <= 256 && full >= 20_000, "{full} then {left}");
    }
}
