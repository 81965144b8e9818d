//! `answer`: one question about the cluster zone → the records CoreDNS's kubernetes plugin
//! would give (with `pods insecure`). Pure: it reads an [`Index`] view and nothing else, so
//! every record kind is tested here without a cluster.
//!
//! Names under the zone (`cluster.local` by default):
//! - `svc.ns.svc.zone`: A/AAAA of the cluster IPs; of the ready endpoints for a headless
//!   Service; a CNAME for an ExternalName Service; SRV of every named port.
//! - `_port._proto.svc.ns.svc.zone`: SRV of a named port (per endpoint for headless Services).
//! - `host.svc.ns.svc.zone`: an endpoint of a headless Service by its hostname (StatefulSet
//!   pods: hostname + subdomain) or its dashed address.
//! - `a-b-c-d.ns.pod.zone`: the address in the name.
//!
//! A name that does not exist is NXDOMAIN, a name that exists without records of the asked
//! type is NODATA (NOERROR, empty answer); both carry the zone's SOA in the authority section.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use crate::index::{EndpointEntry, Index, PortEntry, ServiceKind, View};

/// TTL of every answer, as CoreDNS's kubernetes plugin's default.
pub const TTL: u32 = 5;

/// The cluster zone and the names its SOA uses.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lowercase, fully qualified (`cluster.local.`).
    pub name: Name,
    soa_mname: Name,
    soa_rname: Name,
    /// The cluster DNS Service's addresses: `ns.dns.zone` answers with them, as CoreDNS does.
    pub dns_ips: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("{domain:?} is not a valid DNS domain: {source}")]
    InvalidDomain {
        domain: String,
        #[source]
        source: hickory_server::proto::ProtoError,
    },
}

impl Zone {
    pub fn new(domain: &str, dns_ips: Vec<IpAddr>) -> Result<Self, ZoneError> {
        let invalid = |source| ZoneError::InvalidDomain {
            domain: domain.to_string(),
            source,
        };
        let trimmed = domain.trim_end_matches('.');
        let mut name = Name::from_ascii(trimmed).map_err(invalid)?.to_lowercase();
        name.set_fqdn(true);
        let soa_mname = Name::from_ascii("ns.dns")
            .and_then(|n| n.append_domain(&name))
            .map_err(invalid)?;
        let soa_rname = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(&name))
            .map_err(invalid)?;
        Ok(Self {
            name,
            soa_mname,
            soa_rname,
            dns_ips,
        })
    }

    /// True when `qname` is the zone or under it.
    pub fn contains(&self, qname: &Name) -> bool {
        self.name.zone_of(&qname.to_lowercase())
    }

    /// The zone's SOA record (serial: the index's last change).
    pub fn soa(&self, serial: u32) -> Record {
        Record::from_rdata(
            self.name.clone(),
            TTL,
            RData::SOA(SOA::new(
                self.soa_mname.clone(),
                self.soa_rname.clone(),
                serial,
                7200,
                1800,
                86400,
                TTL,
            )),
        )
    }
}

/// The sections of a response.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    fn nxdomain(zone: &Zone, serial: u32) -> Self {
        Self {
            rcode: ResponseCode::NXDomain,
            authority: vec![zone.soa(serial)],
            ..Self::default()
        }
    }

    /// NOERROR with an empty answer and the SOA, or the answers found.
    fn records(zone: &Zone, serial: u32, answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        let authority = if answers.is_empty() {
            vec![zone.soa(serial)]
        } else {
            Vec::new()
        };
        Self {
            rcode: ResponseCode::NoError,
            answers,
            authority,
            additionals,
        }
    }
}

/// The address a reverse name spells (`4.3.2.1.in-addr.arpa.`, or 32 nibbles under
/// `ip6.arpa.`), if it spells a whole one.
pub fn parse_reverse(qname: &Name) -> Option<IpAddr> {
    let lower = qname.to_lowercase();
    let labels: Vec<&[u8]> = lower.iter().collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if *in_addr == b"in-addr" && *arpa == b"arpa" => {
            let octet = |l: &[u8]| std::str::from_utf8(l).ok()?.parse::<u8>().ok();
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && *ip6 == b"ip6" && *arpa == b"arpa" => {
            let mut v: u128 = 0;
            for l in nibbles.iter().rev() {
                let [c] = l else { return None };
                v = (v << 4) | u128::from((*c as char).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(v)))
        }
        _ => None,
    }
}

/// PTR records for a Service's cluster IP or a headless Service's ready endpoint, as CoreDNS's
/// kubernetes plugin answers reverse names; None for addresses the cluster does not know (the
/// question then goes upstream, as CoreDNS's `fallthrough in-addr.arpa ip6.arpa`). It looks
/// through every Service: reverse questions are rare, and a second index would cost memory.
pub fn reverse(index: &Index, zone: &Zone, qname: &Name) -> Option<Answer> {
    let ip = parse_reverse(qname)?;
    let view = index.view();
    let mut targets: Vec<String> = Vec::new();
    for (ns, svc, entry) in view.all_services() {
        match &entry.kind {
            ServiceKind::ClusterIp(ips) if ips.contains(&ip) => {
                targets.push(format!("{svc}.{ns}.svc"))
            }
            ServiceKind::Headless => {
                for slice in view.slices(ns, svc) {
                    for e in slice
                        .endpoints
                        .iter()
                        .filter(|e| e.ready || entry.publish_not_ready)
                    {
                        if e.addresses.contains(&ip) {
                            targets.push(format!("{}.{svc}.{ns}.svc", endpoint_label(e, &ip)));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if targets.is_empty() {
        return None;
    }
    targets.sort();
    targets.dedup();
    let answers = targets
        .iter()
        .filter_map(|t| {
            Name::from_ascii(t)
                .and_then(|n| n.append_domain(&zone.name))
                .ok()
        })
        .map(|t| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(t))))
        .collect();
    Some(Answer::records(zone, view.serial(), answers, Vec::new()))
}

/// Answers `qname`/`qtype`, a name inside `zone` (callers check [`Zone::contains`] first).
pub fn answer(index: &Index, zone: &Zone, qname: &Name, qtype: RecordType) -> Answer {
    let view = index.view();
    let serial = view.serial();
    let lower = qname.to_lowercase();
    if !zone.name.zone_of(&lower) {
        return Answer::nxdomain(zone, serial);
    }
    // Counted by hand: `num_labels` leaves out a leading `*`.
    let depth = lower
        .iter()
        .count()
        .saturating_sub(zone.name.iter().count());
    // Labels from the zone outwards: `web.shop.svc` → ["svc", "shop", "web"].
    let mut labels: Vec<&str> = Vec::with_capacity(depth);
    for l in lower.iter().take(depth) {
        match std::str::from_utf8(l) {
            Ok(s) => labels.push(s),
            Err(_) => return Answer::nxdomain(zone, serial),
        }
    }
    labels.reverse();
    let ctx = Ctx {
        zone,
        view: &view,
        qname,
        qtype,
        serial,
    };
    match labels.as_slice() {
        [] => ctx.apex(),
        ["dns"] => ctx.exists(Vec::new()),
        ["dns", "ns"] => ctx.exists(ctx.addresses(&zone.dns_ips)),
        ["svc"] | ["pod"] => ctx.exists(Vec::new()),
        ["svc", ns] | ["pod", ns] => {
            if view.namespace_has_services(ns) {
                ctx.exists(Vec::new())
            } else {
                Answer::nxdomain(zone, serial)
            }
        }
        ["svc", ns, svc] => ctx.service(ns, svc),
        ["svc", ns, svc, host] => ctx.endpoint_or_proto(ns, svc, host),
        ["svc", ns, svc, proto, port] => ctx.srv(ns, svc, proto, port),
        ["pod", _ns, dashed] => match parse_dashed(dashed) {
            Some(ip) => ctx.exists(ctx.addresses(&[ip])),
            None => Answer::nxdomain(zone, serial),
        },
        _ => Answer::nxdomain(zone, serial),
    }
}

/// `10-42-0-5` → 10.42.0.5; `fd00--5` → fd00::5 (CoreDNS writes `:` as `-`).
pub fn parse_dashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    if label.contains("--") || label.matches('-').count() == 7 {
        if let Ok(v6) = label.replace('-', ":").parse::<Ipv6Addr>() {
            return Some(IpAddr::V6(v6));
        }
    }
    None
}

/// 10.42.0.5 → `10-42-0-5`.
pub fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

struct Ctx<'a> {
    zone: &'a Zone,
    view: &'a View<'a>,
    qname: &'a Name,
    qtype: RecordType,
    serial: u32,
}

impl Ctx<'_> {
    /// The name exists; `answers` are its records of the asked type (maybe none: NODATA).
    fn exists(&self, answers: Vec<Record>) -> Answer {
        Answer::records(self.zone, self.serial, answers, Vec::new())
    }

    fn apex(&self) -> Answer {
        let answers = match self.qtype {
            RecordType::SOA => vec![self.zone.soa(self.serial)],
            RecordType::NS => vec![Record::from_rdata(
                self.zone.name.clone(),
                TTL,
                RData::NS(NS(self.zone.soa_mname.clone())),
            )],
            _ => Vec::new(),
        };
        self.exists(answers)
    }

    /// A/AAAA records for `ips` under the asked name, of the asked type only.
    fn addresses(&self, ips: &[IpAddr]) -> Vec<Record> {
        address_records(self.qname, self.qtype, ips)
    }

    fn service_name(&self, ns: &str, svc: &str) -> Option<Name> {
        Name::from_ascii(format!("{svc}.{ns}.svc"))
            .and_then(|n| n.append_domain(&self.zone.name))
            .ok()
    }

    /// The ready (or, when published, all) endpoints of a Service.
    fn endpoints(&self, ns: &str, svc: &str, publish_not_ready: bool) -> Vec<&EndpointEntry> {
        self.view
            .slices(ns, svc)
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.ready || publish_not_ready)
            .collect()
    }

    fn service(&self, ns: &str, svc: &str) -> Answer {
        let Some(entry) = self.view.service(ns, svc) else {
            return Answer::nxdomain(self.zone, self.serial);
        };
        match &entry.kind {
            ServiceKind::ExternalName(target) => self.cname(target),
            kind => {
                if self.qtype == RecordType::SRV {
                    let mut answers = Vec::new();
                    let mut additionals = Vec::new();
                    for p in entry.ports.iter().filter(|p| !p.name.is_empty()) {
                        self.srv_records(ns, svc, p, &mut answers, &mut additionals);
                    }
                    return Answer::records(self.zone, self.serial, answers, additionals);
                }
                let ips: Vec<IpAddr> = match kind {
                    ServiceKind::ClusterIp(ips) => ips.clone(),
                    _ => {
                        let mut ips: Vec<IpAddr> = self
                            .endpoints(ns, svc, entry.publish_not_ready)
                            .iter()
                            .flat_map(|e| e.addresses.iter().copied())
                            .collect();
                        ips.sort();
                        ips.dedup();
                        ips
                    }
                };
                self.exists(self.addresses(&ips))
            }
        }
    }

    fn cname(&self, target: &str) -> Answer {
        let Ok(mut target) = Name::from_ascii(target) else {
            return Answer {
                rcode: ResponseCode::ServFail,
                ..Answer::default()
            };
        };
        target.set_fqdn(true);
        let record = Record::from_rdata(self.qname.clone(), TTL, RData::CNAME(CNAME(target)));
        self.exists(vec![record])
    }

    /// `host.svc.ns.svc.zone` (an endpoint of a headless Service) or `_proto.svc.ns.svc.zone`
    /// (an empty non-terminal above SRV names).
    fn endpoint_or_proto(&self, ns: &str, svc: &str, host: &str) -> Answer {
        let Some(entry) = self.view.service(ns, svc) else {
            return Answer::nxdomain(self.zone, self.serial);
        };
        if let Some(proto) = host.strip_prefix('_') {
            return if entry.ports.iter().any(|p| p.protocol == proto) {
                self.exists(Vec::new())
            } else {
                Answer::nxdomain(self.zone, self.serial)
            };
        }
        if entry.kind != ServiceKind::Headless {
            return Answer::nxdomain(self.zone, self.serial);
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for e in self.endpoints(ns, svc, entry.publish_not_ready) {
            for ip in &e.addresses {
                if endpoint_label(e, ip) == host {
                    ips.push(*ip);
                }
            }
        }
        if ips.is_empty() {
            return Answer::nxdomain(self.zone, self.serial);
        }
        ips.sort();
        ips.dedup();
        self.exists(self.addresses(&ips))
    }

    fn srv(&self, ns: &str, svc: &str, proto: &str, port: &str) -> Answer {
        let (Some(proto), Some(port)) = (proto.strip_prefix('_'), port.strip_prefix('_')) else {
            return Answer::nxdomain(self.zone, self.serial);
        };
        let Some(entry) = self.view.service(ns, svc) else {
            return Answer::nxdomain(self.zone, self.serial);
        };
        let Some(p) = entry
            .ports
            .iter()
            .find(|p| !p.name.is_empty() && p.name == port && p.protocol == proto)
        else {
            return Answer::nxdomain(self.zone, self.serial);
        };
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        if self.qtype == RecordType::SRV {
            self.srv_records(ns, svc, p, &mut answers, &mut additionals);
        }
        Answer::records(self.zone, self.serial, answers, additionals)
    }

    /// SRV records of one Service port: one to the Service's name, or for a headless Service
    /// one per ready endpoint (to `hostname.svc.ns.svc.zone` or its dashed address), with the
    /// targets' addresses as additional records.
    fn srv_records(
        &self,
        ns: &str,
        svc: &str,
        port: &PortEntry,
        answers: &mut Vec<Record>,
        additionals: &mut Vec<Record>,
    ) {
        let Some(entry) = self.view.service(ns, svc) else {
            return;
        };
        let Some(svc_name) = self.service_name(ns, svc) else {
            return;
        };
        let owner = match Name::from_ascii(format!("_{}._{}", port.name, port.protocol))
            .and_then(|n| n.append_domain(&svc_name))
        {
            Ok(n) => n,
            Err(_) => return,
        };
        match &entry.kind {
            ServiceKind::ClusterIp(ips) => {
                answers.push(srv_record(&owner, 100, port.port, &svc_name));
                additionals.extend(address_records(&svc_name, RecordType::ANY, ips));
            }
            ServiceKind::Headless => {
                // Each endpoint's port of this name and protocol, from its slice.
                let mut targets: Vec<(Name, u16, IpAddr)> = Vec::new();
                for slice in self.view.slices(ns, svc) {
                    let Some(sp) = slice
                        .ports
                        .iter()
                        .find(|sp| sp.name == port.name && sp.protocol == port.protocol)
                    else {
                        continue;
                    };
                    for e in slice
                        .endpoints
                        .iter()
                        .filter(|e| e.ready || entry.publish_not_ready)
                    {
                        for ip in &e.addresses {
                            if let Ok(t) = Name::from_ascii(endpoint_label(e, ip))
                                .and_then(|n| n.append_domain(&svc_name))
                            {
                                targets.push((t, sp.port, *ip));
                            }
                        }
                    }
                }
                targets.sort();
                targets.dedup();
                let weight = u16::try_from(100 / targets.len().max(1))
                    .unwrap_or(1)
                    .max(1);
                for (t, p, ip) in targets {
                    answers.push(srv_record(&owner, weight, p, &t));
                    additionals.extend(address_records(&t, RecordType::ANY, &[ip]));
                }
            }
            ServiceKind::ExternalName(_) => {}
        }
    }
}

/// An endpoint's name under its Service: its hostname, or its dashed address.
fn endpoint_label(e: &EndpointEntry, ip: &IpAddr) -> String {
    match &e.hostname {
        Some(h) if !h.is_empty() => h.clone(),
        _ => dashed(ip),
    }
}

fn srv_record(owner: &Name, weight: u16, port: u16, target: &Name) -> Record {
    Record::from_rdata(
        owner.clone(),
        TTL,
        RData::SRV(SRV::new(0, weight, port, target.clone())),
    )
}

/// A records (for `A` or `ANY`) and AAAA records (for `AAAA` or `ANY`) of `ips` named `name`.
fn address_records(name: &Name, qtype: RecordType, ips: &[IpAddr]) -> Vec<Record> {
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                Some(Record::from_rdata(name.clone(), TTL, RData::A(A(*v4))))
            }
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(Record::from_rdata(
                name.clone(),
                TTL,
                RData::AAAA(AAAA(*v6)),
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
