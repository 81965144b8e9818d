//! Pod addresses of simulated nodes: per node the pod IPs of its podCIDR ([`PodIps`]: the first
//! address is the node's own InternalIP, pods get the rest, handed out round-robin so a freed
//! address is not reused at once). The podCIDRs themselves come from `capstan_api::net::Blocks`.
//! Pure.

use std::net::Ipv4Addr;

use capstan_api::net::Cidr;

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
    fn pod_ips_skip_the_node_address_and_do_not_reuse_at_once() {
        let cidr = Cidr::parse("10.64.3.0/24").expect("cidr");
        assert_eq!(cidr.first_host(), Ipv4Addr::new(10, 64, 3, 1));
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
