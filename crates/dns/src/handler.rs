//! `Handler`: hickory-server's request handler for cluster DNS. Questions in the cluster zone are
//! answered from the [`Index`] ([`crate::answer`]); every other question is relayed to the
//! host's resolvers ([`Forwarder`]). UDP answers larger than the client can take (512 bytes
//! without EDNS, its advertised size with it) go out empty with the TC bit, so the client asks
//! again over TCP.

use std::sync::Arc;
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::{self, Answer, Zone};
use crate::forward::Forwarder;
use crate::index::Index;
use crate::metrics::{ForwardLabels, Metrics, QueryLabels};

/// Largest UDP answer sent, whatever a client advertises (EDNS's common ceiling).
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// A UDP answer's limit for a client without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

pub struct Handler {
    index: Index,
    zone: Arc<Zone>,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
}

impl Handler {
    pub fn new(index: Index, zone: Arc<Zone>, forwarder: Forwarder, metrics: Arc<Metrics>) -> Self {
        Self {
            index,
            zone,
            forwarder,
            metrics,
        }
    }
}

/// The sections to send and how.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
    edns: Option<Edns>,
}

impl Reply {
    fn error(request: &Request, rcode: ResponseCode) -> Self {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        metadata.recursion_available = true;
        Self {
            metadata,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            edns: response_edns(request),
        }
    }

    fn from_answer(request: &Request, a: Answer) -> Self {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = a.rcode;
        metadata.authoritative = true;
        metadata.recursion_available = true;
        Self {
            metadata,
            answers: a.answers,
            authority: a.authority,
            additionals: a.additionals,
            edns: response_edns(request),
        }
    }
}

/// The largest UDP answer this client takes.
fn udp_limit(request: &Request) -> u16 {
    match &request.edns {
        Some(e) => e.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
        None => CLASSIC_UDP_PAYLOAD,
    }
}

/// An OPT record for clients that sent one (never for those that did not, RFC 6891).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(udp_limit(request));
        e
    })
}

fn qtype_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::PTR => "PTR",
        RecordType::CNAME => "CNAME",
        RecordType::TXT => "TXT",
        RecordType::MX => "MX",
        RecordType::NS => "NS",
        RecordType::SOA => "SOA",
        RecordType::ANY => "ANY",
        RecordType::HTTPS => "HTTPS",
        _ => "other",
    }
}

pub fn rcode_label(c: ResponseCode) -> &'static str {
    match c {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::NotImp => "NOTIMP",
        _ => "other",
    }
}

impl Handler {
    /// What to answer `request` with (questions outside the zone go upstream).
    async fn reply(&self, request: &Request) -> (Reply, &'static str) {
        if request.metadata.op_code != OpCode::Query {
            return (Reply::error(request, ResponseCode::NotImp), "other");
        }
        let [query] = request.queries.queries() else {
            self.metrics.malformed.inc();
            return (Reply::error(request, ResponseCode::FormErr), "other");
        };
        let qtype = query.query_type();
        let label = qtype_label(qtype);
        let qname = query.original().name();
        if self.zone.contains(qname) {
            if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
                return (Reply::error(request, ResponseCode::Refused), label);
            }
            let a = answer::answer(&self.index, &self.zone, qname, qtype);
            return (Reply::from_answer(request, a), label);
        }
        if qtype == RecordType::PTR {
            if let Some(a) = answer::reverse(&self.index, &self.zone, qname) {
                return (Reply::from_answer(request, a), label);
            }
        }
        (self.forward(request).await, label)
    }

    async fn forward(&self, request: &Request) -> Reply {
        // A fresh ID upstream: the client's may collide with another client's.
        let mut raw = request.as_slice().to_vec();
        let id: u16 = rand::random();
        if raw.len() < 12 {
            return Reply::error(request, ResponseCode::FormErr);
        }
        raw[..2].copy_from_slice(&id.to_be_bytes());
        let tcp = request.protocol() == Protocol::Tcp;
        let result = self.forwarder.exchange(&raw, tcp).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .forwarded
            .get_or_create(&ForwardLabels {
                result: outcome.into(),
            })
            .inc();
        let message = match result.map(|bytes| Message::from_vec(&bytes)) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "upstream answer unreadable");
                return Reply::error(request, ResponseCode::ServFail);
            }
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                return Reply::error(request, ResponseCode::ServFail);
            }
        };
        let mut metadata = message.metadata;
        metadata.id = request.metadata.id;
        // Our own OPT record (the client's size limit), not the upstream's options.
        Reply {
            metadata,
            answers: message.answers,
            authority: message.authorities,
            additionals: message.additionals,
            edns: response_edns(request),
        }
    }

    async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        reply: Reply,
        mut response: R,
    ) -> ResponseInfo {
        let mut reply = reply;
        if request.protocol() == Protocol::Udp && !fits(request, &reply, udp_limit(request)) {
            // Too big for this client over UDP: an empty truncated answer makes it retry over
            // TCP, where the whole answer fits.
            reply.metadata.truncation = true;
            reply.answers.clear();
            reply.authority.clear();
            reply.additionals.clear();
        }
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = reply.edns.as_ref() {
            builder.edns(e);
        }
        let msg = builder.build(
            reply.metadata,
            reply.answers.iter(),
            reply.authority.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS answer failed");
                ResponseInfo::from(Header {
                    metadata: reply.metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Whether `reply` encodes within `limit` bytes.
fn fits(request: &Request, reply: &Reply, limit: u16) -> bool {
    let mut builder = MessageResponseBuilder::new(&request.queries, None);
    if let Some(e) = reply.edns.as_ref() {
        builder.edns(e);
    }
    let msg = builder.build(
        reply.metadata,
        reply.answers.iter(),
        reply.authority.iter(),
        std::iter::empty(),
        reply.additionals.iter(),
    );
    let mut bytes = Vec::with_capacity(usize::from(limit));
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    match msg.destructive_emit(&mut encoder) {
        Ok(info) => !info.truncation && bytes.len() <= usize::from(limit),
        Err(_) => false,
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let (reply, qtype) = self.reply(request).await;
        let info = self.send(request, reply, response).await;
        self.metrics
            .queries
            .get_or_create(&QueryLabels {
                qtype: qtype.into(),
                rcode: rcode_label(info.response_code).into(),
                proto: if request.protocol() == Protocol::Tcp {
                    "tcp".into()
                } else {
                    "udp".into()
                },
            })
            .inc();
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        info
    }
}
