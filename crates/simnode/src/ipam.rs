//! Addresses for simulated nodes and their pods: /24 podCIDRs handed out from a range for nodes
//! that have none ([`Blocks`]), and per node the pod IPs of its podCIDR ([`PodIps`]: the first
//! address is the node's own InternalIP, pods get the rest, handed out round-robin so a freed
//! address is not reused at once). Pure.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        if len > 30 {
            return None;
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Some(Cidr {
            base: u32::from(ip) & mask,
            len,
        })
    }

    pub fn size(&self) -> u32 {
        1u32 << (32 - self.len)
    }

    /// The node's own address: the first host address.
    pub fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= self.base && ip - self.base < self.size()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

/// The /24 blocks of the simulated nodes' pod range.
#[derive(Clone, Debug)]
pub struct Blocks {
    range: Cidr,
    next: u32,
}

impl Blocks {
    pub fn new(base: Ipv4Addr, len: u8) -> Self {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Self {
            range: Cidr {
                base: u32::from(base) & mask,
                len: len.min(24),
            },
            next: 0,
        }
    }

    /// The next /24 not in `used` (podCIDRs other nodes already have).
    pub fn allocate(&mut self, used: &BTreeSet<String>) -> Option<String> {
        let count = self.range.size() >> 8;
        while self.next < count {
            let block = Cidr {
                base: self.range.base + (self.next << 8),
                len: 24,
            }
            .to_string();
            self.next += 1;
            if !used.contains(&block) {
                return Some(block);
            }
        }
        None
    }
}

/// The pod addresses of one node.
#[derive(Clone, Debug)]
pub struct PodIps {
    cidr: Cidr,
    used: Vec<u64>,
    cursor: u32,
}

impl PodIps {
    pub fn new(cidr: Cidr) -> Self {
        let words = cidr.size().div_ceil(64) as usize;
        Self {
            cidr,
            used: vec![0; words],
            cursor: 0,
        }
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    fn usable(&self, offset: u32) -> bool {
        // Not the network address, not the node's own address, not the broadcast address.
        offset >= 2 && offset + 1 < self.cidr.size()
    }

    fn bit(&self, offset: u32) -> bool {
        self.used[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    fn set(&mut self, offset: u32, on: bool) {
        let w = &mut self.used[(offset / 64) as usize];
        if on {
            *w |= 1 << (offset % 64);
        } else {
            *w &= !(1 << (offset % 64));
        }
    }

    /// A free address, if any is left.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.cidr.size();
        for step in 0..size {
            let offset = (self.cursor + step) % size;
            if self.usable(offset) && !self.bit(offset) {
                self.set(offset, true);
                self.cursor = (offset + 1) % size;
                return Some(Ipv4Addr::from(self.cidr.base + offset));
            }
        }
        None
    }

    /// Marks an address a pod already has (after a restart).
    pub fn mark(&mut self, ip: Ipv4Addr) -> bool {
        if !self.cidr.contains(ip) {
            return false;
        }
        let offset = u32::from(ip) - self.cidr.base;
        if !self.usable(offset) || self.bit(offset) {
            return false;
        }
        self.set(offset, true);
        true
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if self.cidr.contains(ip) {
            let offset = u32::from(ip) - self.cidr.base;
            self.set(offset, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_skip_the_ones_in_use() {
        let mut b = Blocks::new(Ipv4Addr::new(10, 64, 0, 0), 10);
        let used: BTreeSet<String> = ["10.64.0.0/24".to_string()].into_iter().collect();
        assert_eq!(b.allocate(&used).as_deref(), Some("10.64.1.0/24"));
        assert_eq!(b.allocate(&used).as_deref(), Some("10.64.2.0/24"));
        let mut small = Blocks::new(Ipv4Addr::new(10, 9, 0, 0), 24);
        assert!(small.allocate(&BTreeSet::new()).is_some());
        assert!(small.allocate(&BTreeSet::new()).is_none());
    }

    #[test]
    fn pod_ips_skip_the_node_address_and_do_not_reuse_at_once() {
        let cidr = Cidr::parse("10.64.3.0/24").expect("cidr");
        assert_eq!(cidr.node_ip(), Ipv4Addr::new(10, 64, 3, 1));
        let mut ips = PodIps::new(cidr);
        let a = ips.allocate().expect("ip");
        assert_eq!(a, Ipv4Addr::new(10, 64, 3, 2));
        ips.release(a);
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 64, 3, 3)));
        assert!(ips.mark(Ipv4Addr::new(10, 64, 3, 4)));
        assert!(!ips.mark(Ipv4Addr::new(10, 64, 3, 4)));
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 64, 3, 5)));
    }

    #[test]
    fn a_full_block_has_no_address_left() {
        let mut ips = PodIps::new(Cidr::parse("10.0.0.0/29").expect("cidr"));
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| ips.allocate()).collect();
        // 8 addresses minus network, node and broadcast.
        assert_eq!(got.len(), 5);
    }
}
