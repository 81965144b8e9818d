//! IPv4 CIDRs as capstan's networking uses them: the cluster, service and simulated pod ranges
//! given as flags, a node's podCIDR, and the /24 blocks node IPAM hands out ([`Blocks`]).
//! Pure; one parser for the server's flags, node IPAM, the CNI config and simulated nodes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 network: the address with its host bits cleared, and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not a CIDR such as 10.42.0.0/16")]
    Syntax(String),
    #[error("{0:?}: the prefix length must be between {1} and {2}")]
    Length(String, u8, u8),
}

impl Cidr {
    /// Parses `a.b.c.d/len` with len up to 30 (a network with room for hosts).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        Self::parse_within(s, 0, 30)
    }

    /// Parses a CIDR whose prefix length must lie in `min..=max`.
    pub fn parse_within(s: &str, min: u8, max: u8) -> Result<Cidr, CidrError> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (ip, len) = s.trim().split_once('/').ok_or_else(syntax)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        if len > 32 {
            return Err(syntax());
        }
        if !(min..=max).contains(&len) {
            return Err(CidrError::Length(s.to_string(), min, max.min(30)));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Cidr {
            base: u32::from(ip) & mask,
            len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// How many addresses the network holds.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.len)
    }

    /// The first host address: a node's bridge gateway, or a simulated node's own address.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= self.base && ip - self.base < self.size()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

/// The /24 blocks of a range, handed out as nodes' podCIDRs.
#[derive(Clone, Debug)]
pub struct Blocks {
    range: Cidr,
    /// Where [`Blocks::allocate`] goes on looking.
    next: u32,
}

impl Blocks {
    /// The blocks of `range`, which must be a /24 or larger.
    pub fn new(range: Cidr) -> Result<Self, CidrError> {
        if range.len > 24 {
            return Err(CidrError::Length(range.to_string(), 0, 24));
        }
        Ok(Self { range, next: 0 })
    }

    fn count(&self) -> u32 {
        self.range.size() >> 8
    }

    fn block(&self, i: u32) -> String {
        Cidr {
            base: self.range.base + (i << 8),
            len: 24,
        }
        .to_string()
    }

    /// The lowest block not in `used` (a freed block is handed out again), as upstream's
    /// node IPAM does.
    pub fn first_free(&self, used: &BTreeSet<String>) -> Option<String> {
        (0..self.count())
            .map(|i| self.block(i))
            .find(|b| !used.contains(b))
    }

    /// The next block not in `used`, going on from the last one handed out: one pass over the
    /// range for thousands of nodes registered at once.
    pub fn allocate(&mut self, used: &BTreeSet<String>) -> Option<String> {
        while self.next < self.count() {
            let block = self.block(self.next);
            self.next += 1;
            if !used.contains(&block) {
                return Some(block);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_with_host_bits_cleared_and_print_back() {
        let c = Cidr::parse("10.42.3.7/16").expect("cidr");
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(c.first_host(), Ipv4Addr::new(10, 42, 0, 1));
        assert_eq!(c.size(), 65536);
        assert!(c.contains(Ipv4Addr::new(10, 42, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 0, 0)));
        for bad in [
            "10.42.3.0",
            "10.42.3.0/33",
            "x/8",
            "10.42.0.0/x",
            "10.42.0.0/31",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Cidr::parse_within("10.0.0.0/4", 8, 30),
            Err(CidrError::Length("10.0.0.0/4".into(), 8, 30))
        );
    }

    #[test]
    fn the_lowest_free_block_is_handed_out_again() {
        let b = Blocks::new(Cidr::parse("10.42.0.0/16").expect("cidr")).expect("blocks");
        let mut used = BTreeSet::new();
        assert_eq!(b.first_free(&used).as_deref(), Some("10.42.0.0/24"));
        used.insert("10.42.0.0/24".to_string());
        assert_eq!(b.first_free(&used).as_deref(), Some("10.42.1.0/24"));
        let small = Blocks::new(Cidr::parse("10.9.0.0/24").expect("cidr")).expect("blocks");
        assert_eq!(
            small.first_free(&BTreeSet::from(["10.9.0.0/24".to_string()])),
            None
        );
        assert!(Blocks::new(Cidr::parse("10.9.0.0/25").expect("cidr")).is_err());
    }

    #[test]
    fn allocation_goes_on_from_the_last_block_and_skips_used_ones() {
        let mut b = Blocks::new(Cidr::parse("10.64.0.0/10").expect("cidr")).expect("blocks");
        let used: BTreeSet<String> = ["10.64.0.0/24".to_string()].into_iter().collect();
        assert_eq!(b.allocate(&used).as_deref(), Some("10.64.1.0/24"));
        assert_eq!(b.allocate(&used).as_deref(), Some("10.64.2.0/24"));
        let mut small = Blocks::new(Cidr::parse("10.9.0.0/24").expect("cidr")).expect("blocks");
        assert!(small.allocate(&BTreeSet::new()).is_some());
        assert!(small.allocate(&BTreeSet::new()).is_none());
    }
}
