//! The pod network to nodes on another subnet, as flannel's vxlan backend: one VXLAN device per
//! node (`capstan.vxlan`, VNI 1, UDP 8472, no learning) whose address is the node's podCIDR
//! network address (/32) and whose MAC the node publishes in an annotation on its Node. For a
//! peer, three static entries: a route to its podCIDR via its podCIDR network address over the
//! device (onlink), a neighbour entry giving that address the peer's MAC, and a forwarding
//! entry sending frames for that MAC to the peer's InternalIP. Nothing is learned or flooded.
//! The device is created only once a peer needs it, so nodes that share a link never have one.

use std::net::{IpAddr, Ipv4Addr};

use capstan_api::net::Cidr;
use futures::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::neighbour::NeighbourFlags;
use rtnetlink::{Handle, LinkVxlan};

pub const DEVICE: &str = "capstan.vxlan";
pub const VNI: u32 = 1;
/// Linux's and flannel's VXLAN port.
pub const PORT: u16 = 8472;
/// Where a node publishes its VXLAN device's MAC.
pub const MAC_ANNOTATION: &str = "capstan.io/vxlan-mac";

/// This node's VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vtep {
    pub index: u32,
    pub mac: String,
}

/// What a peer on another subnet needs: where its frames go and its device's MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node_ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC in an annotation, if it is one.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .trim()
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<Vec<u8>>>()?;
    parts.try_into().ok()
}

async fn find(handle: &Handle) -> Option<Vtep> {
    let links: Vec<_> = handle
        .link()
        .get()
        .match_name(DEVICE.to_string())
        .execute()
        .try_collect()
        .await
        .ok()?;
    let link = links.into_iter().next()?;
    let mac = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(format_mac(m)),
        _ => None,
    })?;
    Some(Vtep {
        index: link.header.index,
        mac,
    })
}

/// The device (created when missing, adopted after a restart) with `own_pod_cidr`'s network
/// address, sending from `node_ip`.
pub async fn ensure(
    handle: &Handle,
    node_ip: Ipv4Addr,
    own_pod_cidr: Cidr,
) -> Result<Vtep, rtnetlink::Error> {
    if find(handle).await.is_none() {
        handle
            .link()
            .add(
                LinkVxlan::new(DEVICE, VNI)
                    .port(PORT)
                    .local(node_ip)
                    .learning(false)
                    .up()
                    .build(),
            )
            .execute()
            .await?;
        tracing::info!(device = DEVICE, vni = VNI, port = PORT, local = %node_ip, "created the VXLAN device for nodes on other subnets");
    }
    let vtep = find(handle).await.ok_or(rtnetlink::Error::RequestFailed)?;
    match handle
        .address()
        .add(vtep.index, IpAddr::V4(own_pod_cidr.network()), 32)
        .execute()
        .await
    {
        Err(e) if !crate::podroutes::is_errno(&e, std::io::ErrorKind::AlreadyExists) => {
            return Err(e)
        }
        _ => {}
    }
    Ok(vtep)
}

fn neighbour(
    handle: &Handle,
    vtep: &Vtep,
    peer_cidr: Cidr,
    peer: &Peer,
) -> rtnetlink::NeighbourAddRequest {
    handle
        .neighbours()
        .add(vtep.index, IpAddr::V4(peer_cidr.network()))
        .link_layer_address(&peer.mac)
}

fn forwarding(handle: &Handle, vtep: &Vtep, peer: &Peer) -> rtnetlink::NeighbourAddRequest {
    handle
        .neighbours()
        .add_bridge(vtep.index, &peer.mac)
        .destination(IpAddr::V4(peer.node_ip))
        .flags(NeighbourFlags::Own)
}

/// The neighbour and forwarding entries for the peer owning `peer_cidr` (replaced whole).
pub async fn add_peer(
    handle: &Handle,
    vtep: &Vtep,
    peer_cidr: Cidr,
    peer: &Peer,
) -> Result<(), rtnetlink::Error> {
    neighbour(handle, vtep, peer_cidr, peer)
        .replace()
        .execute()
        .await?;
    forwarding(handle, vtep, peer).replace().execute().await
}

/// Removes what [`add_peer`] added; entries already gone are fine.
pub async fn remove_peer(handle: &Handle, vtep: &Vtep, peer_cidr: Cidr, peer: &Peer) {
    let mut n = neighbour(handle, vtep, peer_cidr, peer);
    let mut f = forwarding(handle, vtep, peer);
    let _ = handle
        .neighbours()
        .del(n.message_mut().clone())
        .execute()
        .await;
    let _ = handle
        .neighbours()
        .del(f.message_mut().clone())
        .execute()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip_and_bad_ones_are_refused() {
        let mac = [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f];
        assert_eq!(format_mac(&mac), "0a:1b:2c:3d:4e:5f");
        assert_eq!(parse_mac("0a:1b:2c:3d:4e:5f"), Some(mac));
        assert_eq!(parse_mac("0a:1b:2c:3d:4e"), None);
        assert_eq!(parse_mac("0a:1b:2c:3d:4e:5f:00"), None);
        assert_eq!(parse_mac("a:1b:2c:3d:4e:5f"), None);
        assert_eq!(parse_mac("zz:1b:2c:3d:4e:5f"), None);
    }
}
