//! `/openapi/v2`: the Swagger 2.0 document of every served kind, in JSON or in gnostic's
//! protobuf form, built on first request and kept. Entry point: [`respond`].
//!
//! kubectl still needs it: when it cannot confirm through `/openapi/v3` that the server
//! validates a kind's fields itself (always for a `kind: List` file, as `kubectl get -o yaml`
//! writes), `create -f`, `apply -f` and `edit` validate on the client, against the definitions
//! of this document, and read only its protobuf form. It also falls back to the PATCH
//! operations here to look for `fieldValidation`, and to the definitions' patch merge keys.
//!
//! The document is derived from the v3 documents (`convert`), encoded with the messages in
//! [`gnostic`] (`encode`, `yaml`), and served as upstream's kube-openapi handler serves it: content
//! negotiation over the Accept header (406 when nothing fits), one ETag (the SHA-512 of the
//! JSON, uppercase hex, quoted) for both forms, `Vary: Accept`, and 304 for a matching
//! `If-None-Match`.
//!
//! Architecture invariant: the v2 definitions are the v3 schemas in Swagger 2.0 form, never a
//! second source; a change to a v3 schema shows up here unchanged.

mod convert;
mod encode;
pub mod gnostic;
mod yaml;

use std::sync::OnceLock;

/// The Content-Type of the protobuf form (what upstream answers, whichever of the two protobuf
/// media types was asked for).
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The protobuf media type kubectl (client-go's discovery client) asks for.
pub const PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The Content-Type of the JSON form.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The two forms of the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Swagger 2.0 JSON, for people and generic tools.
    Json,
    /// gnostic's `openapi.v2.Document`, the only form kubectl reads.
    Protobuf,
}

impl Format {
    /// The Content-Type a response in this form carries.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_CONTENT_TYPE,
            Format::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }

    /// The form an Accept header asks for, as upstream negotiates it (goautoneg): clauses by
    /// falling quality, exact types before wildcards; JSON is preferred for a wildcard. A
    /// missing header means `*/*`. None when no clause fits (upstream answers 406).
    pub fn negotiate(accept: Option<&str>) -> Option<Format> {
        const OFFERED: &[(&str, Format)] = &[
            ("json", Format::Json),
            (
                "com.github.proto-openapi.spec.v2@v1.0+protobuf",
                Format::Protobuf,
            ),
            (
                "com.github.proto-openapi.spec.v2.v1.0+protobuf",
                Format::Protobuf,
            ),
        ];
        let accept = accept.filter(|a| !a.trim().is_empty()).unwrap_or("*/*");
        let mut clauses: Vec<(f32, &str, &str)> = accept
            .split(',')
            .filter_map(|clause| {
                let mut parts = clause.split(';');
                let media = parts.next()?.trim();
                let (ty, sub) = media.split_once('/').unwrap_or((media, "*"));
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, ty.trim(), sub.trim()))
            })
            .filter(|(q, _, _)| *q > 0.0)
            .collect();
        let specificity = |ty: &str, sub: &str| u8::from(ty == "*") + u8::from(sub == "*");
        clauses.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(specificity(a.1, a.2).cmp(&specificity(b.1, b.2)))
        });
        clauses.iter().find_map(|(_, ty, sub)| {
            if *ty != "application" && *ty != "*" {
                return None;
            }
            OFFERED
                .iter()
                .find(|(offered, _)| *sub == "*" || sub.eq_ignore_ascii_case(offered))
                .map(|(_, format)| *format)
        })
    }
}

/// The built document in both forms.
struct Built {
    /// `"<SHA-512 of the JSON>"`, quoted as an ETag header value is.
    etag: String,
    json: Vec<u8>,
    protobuf: Vec<u8>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        use prost::Message;
        let swagger = convert::swagger();
        let json = serde_json::to_vec(&swagger).unwrap_or_default();
        let protobuf = encode::document(&swagger).encode_to_vec();
        Built {
            etag: format!("\"{}\"", sha512_hex(&json)),
            json,
            protobuf,
        }
    })
}

/// SHA-512 in uppercase hex, as upstream's `computeETag`.
fn sha512_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(128), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

/// The document in `format`, with its ETag (quoted). The first call builds both forms (a
/// fraction of a second); later calls are free.
pub fn document(format: Format) -> (&'static str, &'static [u8]) {
    let b = built();
    let bytes = match format {
        Format::Json => &b.json,
        Format::Protobuf => &b.protobuf,
    };
    (b.etag.as_str(), bytes.as_slice())
}

/// Builds the document now (e.g. on a background thread after start-up).
pub fn warm() {
    built();
}

/// What to answer a GET of `/openapi/v2`.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// 200, 304 (the client's copy is current) or 406 (no acceptable form).
    pub status: u16,
    /// The Content-Type (plain text for an empty 406).
    pub content_type: &'static str,
    /// The ETag header value, None for 406.
    pub etag: Option<&'static str>,
    /// The body: the document for 200, empty otherwise.
    pub body: &'static [u8],
}

/// The answer to a GET of `/openapi/v2` with these `Accept` and `If-None-Match` headers. Every
/// reply also carries `Vary: Accept`, since the body depends on it.
pub fn respond(accept: Option<&str>, if_none_match: Option<&str>) -> Reply {
    let Some(format) = Format::negotiate(accept) else {
        return Reply {
            status: 406,
            content_type: "text/plain; charset=utf-8",
            etag: None,
            body: &[],
        };
    };
    let (etag, body) = document(format);
    let current = if_none_match.is_some_and(|header| matches_etag(header, etag));
    Reply {
        status: if current { 304 } else { 200 },
        content_type: format.content_type(),
        etag: Some(etag),
        body: if current { &[] } else { body },
    }
}

/// Whether an If-None-Match header names `etag` (weak comparison, as Go's `ServeContent`).
fn matches_etag(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests;
