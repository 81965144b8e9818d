//! Query parameters of API requests and content negotiation (what the client accepts).

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// Query parameters, parsed once per request.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(q) = q {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                m.entry(k.into_owned()).or_default().push(v.into_owned());
            }
        }
        Self(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, k: &str) -> &[String] {
        self.0.get(k).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | "True"))
    }

    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))
            }),
        }
    }

    /// `dryRun=All` (the only value upstream accepts).
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.all("dryRun") {
            [] => Ok(false),
            vals if vals.iter().all(|v| v == "All") => Ok(true),
            vals => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {:?}: supported values: \"All\"",
                vals[0]
            ))),
        }
    }

    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// How unknown and duplicate fields in a body are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// The response representations the server can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// meta.k8s.io Table (v1 or v1beta1).
    Table {
        v1beta1: bool,
    },
    /// meta.k8s.io PartialObjectMetadata(List).
    Metadata {
        v1beta1: bool,
    },
}

impl Format {
    pub fn is_table(self) -> bool {
        matches!(self, Format::Table { .. })
    }
}

/// One entry of an Accept header.
#[derive(Debug)]
struct MediaRange {
    mime: String,
    params: HashMap<String, String>,
}

fn parse_accept(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let mime = it.next()?.trim().to_ascii_lowercase();
            if mime.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(MediaRange { mime, params })
        })
        .collect()
}

/// Picks the first representation in the Accept header the server can produce, as upstream
/// negotiates: an `as=Table` range is honoured only with `g=meta.k8s.io`; protobuf and unknown
/// types are skipped; nothing acceptable is 406.
pub fn negotiate(accept: Option<&str>) -> ApiResult<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Format::Json);
    };
    for r in parse_accept(accept) {
        let json_like = matches!(
            r.mime.as_str(),
            "application/json" | "*/*" | "application/*"
        );
        let yaml = r.mime == "application/yaml";
        if !(json_like || yaml) {
            continue;
        }
        match r.params.get("as").map(String::as_str) {
            None => return Ok(if yaml { Format::Yaml } else { Format::Json }),
            Some(kind) => {
                let group_ok = r.params.get("g").map(String::as_str) == Some("meta.k8s.io");
                let version = r.params.get("v").map(String::as_str);
                let v1beta1 = version == Some("v1beta1");
                if !group_ok || !matches!(version, Some("v1" | "v1beta1")) || !json_like {
                    continue;
                }
                match kind {
                    "Table" => return Ok(Format::Table { v1beta1 }),
                    "PartialObjectMetadata" | "PartialObjectMetadataList" => {
                        return Ok(Format::Metadata { v1beta1 })
                    }
                    _ => continue,
                }
            }
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml (asked for {accept:?})"
    )))
}

/// What a Table row's `object` holds (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(q: &Query) -> ApiResult<Self> {
        match q.get("includeObject") {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(o) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {o:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_accept_gets_a_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(Some(a)).expect("ok"),
            Format::Table { v1beta1: false }
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let a = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(negotiate(Some(a)).expect("ok"), Format::Json);
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf")).is_err());
    }

    #[test]
    fn missing_or_wildcard_accept_is_json() {
        assert_eq!(negotiate(None).expect("ok"), Format::Json);
        assert_eq!(negotiate(Some("*/*")).expect("ok"), Format::Json);
        assert_eq!(
            negotiate(Some("application/yaml")).expect("ok"),
            Format::Yaml
        );
    }

    #[test]
    fn queries_parse_repeated_and_encoded_values() {
        let q = Query::parse(Some("labelSelector=app%3Dweb&command=a&command=b&limit=5"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.all("command").len(), 2);
        assert_eq!(q.int("limit").expect("int"), Some(5));
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}
