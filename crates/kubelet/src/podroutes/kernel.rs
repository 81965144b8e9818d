//! Reading and writing the kernel's routing state over rtnetlink.

use std::net::{IpAddr, Ipv4Addr};

use capstan_api::net::Cidr;
use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::desired::PodRoute;
use super::ROUTE_PROTOCOL;
use crate::vxlan::Vtep;

/// A netlink failure with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NetlinkError {
    what: String,
    #[source]
    source: rtnetlink::Error,
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

/// The host's IPv4 addresses with prefix lengths.
pub(crate) async fn addresses(handle: &Handle) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses"))?;
    let mut out = Vec::new();
    for m in msgs {
        let local = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local.or(addr) {
            out.push((ip, m.header.prefix_len));
        }
    }
    Ok(out)
}

/// The routes with capstan's mark inside `cluster` in the main table.
pub(crate) async fn owned_routes(
    handle: &Handle,
    cluster: Cidr,
) -> Result<Vec<PodRoute>, NetlinkError> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let msgs: Vec<_> = handle
        .route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
            continue;
        }
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let via = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let (Some(dst), Some(via)) = (dst, via) else {
            continue;
        };
        let Ok(dst) = Cidr::parse_within(
            &format!("{dst}/{}", m.header.destination_prefix_length),
            0,
            32,
        ) else {
            continue;
        };
        if cluster.contains(dst.network()) {
            out.push(PodRoute::host_gw(dst, via));
        }
    }
    Ok(out)
}

pub(crate) fn message(
    r: &PodRoute,
    vtep: Option<&Vtep>,
) -> netlink_packet_route::route::RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.network(), r.dst.len)
        .gateway(r.via)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
    match (&r.vxlan, vtep) {
        // The peer's podCIDR address is on no link: the device is the link.
        (Some(_), Some(v)) => b.output_interface(v.index).onlink().build(),
        _ => b.build(),
    }
}

/// The kernel's answer was this errno.
pub(crate) fn is_errno(e: &rtnetlink::Error, kind: std::io::ErrorKind) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.to_io().kind() == kind)
}
