//! Lists and watches: selectors, paging with continue tokens, resourceVersion semantics
//! (unset, "0", exact / not-older-than), and turning store events into watch events with
//! upstream's selector transitions (an object leaving a selector is DELETED for that watcher).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use capstan_api::catalogue::ResourceInfo;
use capstan_api::meta;
use capstan_store::{EventType, KeyValue, ListOptions, Store};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::codec::{self, decode_stored};
use crate::error::{from_store, ApiError, ApiResult};
use crate::params::Query;
use capstan_api::selector::{FieldSelector, Selector};

/// Label and field selectors of one request, checked against the kind's supported fields.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Matcher {
    pub fn from_query(info: &ResourceInfo, q: &Query) -> ApiResult<Self> {
        let labels = Selector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        for r in &fields.0 {
            let f = r.field.as_str();
            let known = matches!(f, "metadata.name" | "metadata.namespace")
                || info.strategy.field_selectors().contains(&f);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, info: &ResourceInfo, obj: &Value) -> bool {
        if !self.labels.matches(&meta::labels(obj)) {
            return false;
        }
        self.fields.matches(|f| match f {
            "metadata.name" => Some(meta::name(obj).unwrap_or("").to_string()),
            "metadata.namespace" => Some(meta::namespace(obj).unwrap_or("").to_string()),
            other => info.strategy.field_value(obj, other),
        })
    }
}

/// A page of a list.
pub struct Page {
    /// Matching objects, in key order, with their decoded served form.
    pub items: Vec<(KeyValue, Option<Value>)>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, last_key: &str) -> String {
    let t = ContinueToken {
        rv,
        start: last_key.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request("continue key is not valid: invalid continue token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

fn parse_rv(s: &str) -> ApiResult<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version \"{s}\"")))
}

/// Lists one page, honouring resourceVersion, resourceVersionMatch, limit and continue.
pub async fn list(
    store: &Arc<dyn Store>,
    info: &ResourceInfo,
    ns: Option<&str>,
    q: &Query,
    matcher: &Matcher,
) -> ApiResult<Page> {
    let limit = q
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let prefix = codec::prefix(info, ns);
    let current = store.current_revision().await.map_err(from_store)?;
    let (revision, mut start_after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            if q.get("resourceVersion").is_some_and(|rv| !rv.is_empty()) {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let t = decode_continue(c)?;
            if !t.start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid: the key does not belong to this list",
                ));
            }
            (Some(t.rv), Some(t.start))
        }
        None => {
            let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
            let rv_match = q.get("resourceVersionMatch").filter(|s| !s.is_empty());
            match (rv, rv_match) {
                (None, Some(m)) => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Forbidden: resourceVersionMatch \"{m}\" is forbidden unless resourceVersion is provided"
                    )))
                }
                (None, None) | (Some("0"), None) => (None, None),
                (Some(rv), m) => {
                    let n = parse_rv(rv)?;
                    let exact = match m {
                        Some("Exact") => true,
                        Some("NotOlderThan") => false,
                        // Legacy: a non-zero resourceVersion with a limit is an exact list.
                        None => limit.is_some() && n != 0,
                        Some(other) => {
                            return Err(ApiError::bad_request(format!(
                                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
                            )))
                        }
                    };
                    if n > current {
                        return Err(ApiError::too_large_resource_version(n, current));
                    }
                    if exact {
                        if n == 0 {
                            return Err(ApiError::bad_request(
                                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                            ));
                        }
                        (Some(n), None)
                    } else {
                        (None, None)
                    }
                }
            }
        }
    };
    let mut items = Vec::new();
    let mut served_at = revision.unwrap_or(current);
    let exhausted;
    let mut remaining = None;
    // Selectors filter after the store, so keep reading batches until the page is full.
    let batch = limit.map(|l| l.max(if matcher.is_empty() { l } else { 256 }));
    loop {
        let res = store
            .list(
                &prefix,
                ListOptions {
                    revision: Some(served_at),
                    limit: batch,
                    start_after: start_after.clone(),
                },
            )
            .await
            .map_err(|e| match e {
                capstan_store::Error::Compacted { .. } if q.get("continue").is_some() => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                capstan_store::Error::Compacted { .. } => {
                    ApiError::expired("The resourceVersion for the provided list is too old.")
                }
                other => from_store(other),
            })?;
        served_at = res.revision;
        let fetched = res.items.len();
        let mut stopped_early = false;
        for (i, kv) in res.items.into_iter().enumerate() {
            start_after = Some(kv.key.clone());
            if matcher.is_empty() {
                items.push((kv, None));
            } else {
                let obj = decode_stored(info, &kv)?;
                if matcher.matches(info, &obj) {
                    items.push((kv, Some(obj)));
                }
            }
            if limit.is_some_and(|l| items.len() >= l) {
                let left_in_batch = fetched - i - 1;
                if matcher.is_empty() {
                    remaining = Some(left_in_batch + res.remaining);
                }
                stopped_early = left_in_batch > 0 || res.remaining > 0;
                break;
            }
        }
        if limit.is_some_and(|l| items.len() >= l) {
            exhausted = !stopped_early;
            break;
        }
        if res.remaining == 0 || batch.is_none() {
            exhausted = true;
            break;
        }
    }
    let continue_token = if exhausted {
        None
    } else {
        items
            .last()
            .map(|(kv, _)| encode_continue(served_at, &kv.key))
    };
    Ok(Page {
        items,
        revision: served_at,
        continue_token,
        remaining: remaining.filter(|r| *r > 0 && !exhausted),
    })
}

/// One event of a watch response.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    Bookmark(i64),
    /// The bookmark that ends the initial events of a `sendInitialEvents=true` watch.
    InitialEventsEnd(i64),
    Error(ApiError),
    /// An event whose object is already serialised (plain JSON watches without selectors):
    /// the stored bytes with the revision spliced in, written out without parsing.
    Raw {
        type_name: &'static str,
        object: bytes::Bytes,
        revision: i64,
    },
}

impl WatchEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) | WatchEvent::InitialEventsEnd(_) => "BOOKMARK",
            WatchEvent::Raw { type_name, .. } => type_name,
            WatchEvent::Error(_) => "ERROR",
        }
    }
}

/// How often an idle watch with bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Starts a watch: synthetic ADDED events for the current state when the request's
/// resourceVersion is unset or "0", then changes after it.
/// Also returns the revision the watch starts after, the first bookmark's revision. With
/// `raw`, live events of a watch without selectors come as [`WatchEvent::Raw`].
pub async fn watch(
    store: Arc<dyn Store>,
    info: &'static ResourceInfo,
    ns: Option<String>,
    q: &Query,
    matcher: Matcher,
    raw: bool,
) -> ApiResult<(impl Stream<Item = WatchEvent> + Send + 'static, i64)> {
    let raw = raw && matcher.is_empty();
    let prefix = codec::prefix(info, ns.as_deref());
    let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
    let explicit_initial = q.get("sendInitialEvents") == Some("true");
    let send_initial = match q.get("sendInitialEvents") {
        Some("true") => true,
        Some("false") => false,
        _ => matches!(rv, None | Some("0")),
    };
    let (initial, from) = if send_initial {
        let res = store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(from_store)?;
        let mut events = Vec::new();
        for kv in &res.items {
            let obj = decode_stored(info, kv)?;
            if matcher.matches(info, &obj) {
                events.push(WatchEvent::Added(obj));
            }
        }
        // Streaming lists (sendInitialEvents=true) learn where the initial state ends from a
        // bookmark annotated k8s.io/initial-events-end.
        if explicit_initial && q.flag("allowWatchBookmarks") {
            events.push(WatchEvent::InitialEventsEnd(res.revision));
        }
        (events, res.revision)
    } else {
        let n = match rv {
            Some(s) => parse_rv(s)?,
            None => store.current_revision().await.map_err(from_store)?,
        };
        (Vec::new(), n)
    };
    let live = match store.watch(&prefix, from).await {
        Ok(s) => s,
        Err(capstan_store::Error::Compacted {
            requested,
            compacted,
        }) => {
            // Upstream answers 200 and then an ERROR event carrying 410 Expired.
            let e = ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ));
            return Ok((
                futures::stream::iter(vec![WatchEvent::Error(e)]).boxed(),
                from,
            ));
        }
        Err(e) => return Err(from_store(e)),
    };
    let events = live.filter_map(move |ev| {
        let matcher = matcher.clone();
        async move {
            match ev {
                Err(capstan_store::Error::Compacted {
                    requested,
                    compacted,
                }) => Some(WatchEvent::Error(ApiError::expired(format!(
                    "too old resource version: {requested} ({compacted})"
                )))),
                Err(e) => Some(WatchEvent::Error(from_store(e))),
                Ok(ev) if raw => translate_raw(info, ev),
                Ok(ev) => translate(info, &matcher, ev),
            }
        }
    });
    Ok((futures::stream::iter(initial).chain(events).boxed(), from))
}

/// A watch without selectors: every event passes, and its object is the stored bytes.
fn translate_raw(info: &ResourceInfo, ev: capstan_store::Event) -> Option<WatchEvent> {
    let type_name = match (ev.event_type, &ev.prev) {
        (EventType::Delete, _) => "DELETED",
        (EventType::Put, Some(_)) => "MODIFIED",
        (EventType::Put, None) if ev.kv.create_revision != ev.kv.mod_revision => "MODIFIED",
        (EventType::Put, None) => "ADDED",
    };
    let object = codec::render(info, &ev.kv).ok()?;
    Some(WatchEvent::Raw {
        type_name,
        object,
        revision: ev.kv.mod_revision,
    })
}

fn translate(
    info: &ResourceInfo,
    matcher: &Matcher,
    ev: capstan_store::Event,
) -> Option<WatchEvent> {
    let decode = |kv: &KeyValue| decode_stored(info, kv).ok();
    match ev.event_type {
        EventType::Delete => {
            let obj = decode(&ev.kv)?;
            matcher
                .matches(info, &obj)
                .then_some(WatchEvent::Deleted(obj))
        }
        EventType::Put => {
            let obj = decode(&ev.kv)?;
            let now = matcher.matches(info, &obj);
            let before = match &ev.prev {
                Some(_) if matcher.is_empty() => Some(true),
                Some(prev) => decode(prev).map(|p| matcher.matches(info, &p)),
                // Without the previous value, an object created earlier was an update.
                None if ev.kv.create_revision != ev.kv.mod_revision => Some(now),
                None => None,
            };
            match (before, now) {
                (None, true) | (Some(false), true) => Some(WatchEvent::Added(obj)),
                (Some(true), true) => Some(WatchEvent::Modified(obj)),
                (Some(true), false) => Some(WatchEvent::Deleted(obj)),
                _ => None,
            }
        }
    }
}

/// The object of a BOOKMARK event: only kind, apiVersion and resourceVersion.
pub fn bookmark_object(info: &ResourceInfo, rv: i64) -> Value {
    json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": rv.to_string()}})
}

/// The bookmark ending a streaming list's initial events.
pub fn initial_events_end_object(info: &ResourceInfo, rv: i64) -> Value {
    let mut b = bookmark_object(info, rv);
    b["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/core/pods/ns/p");
        let d = decode_continue(&t).expect("decodes");
        assert_eq!(d.rv, 42);
        assert_eq!(d.start, "/core/pods/ns/p");
        assert!(decode_continue("!!!").is_err());
        assert!(decode_continue("e30").is_err());
    }

    #[test]
    fn unsupported_field_selectors_are_refused() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let q = Query::parse(Some("fieldSelector=spec.foo%3Dx"));
        let e = Matcher::from_query(info, &q).expect_err("unsupported");
        assert_eq!(e.code, 400);
        assert!(e.message.contains("spec.foo"));
        let q = Query::parse(Some("fieldSelector=metadata.name%3Dx"));
        assert!(Matcher::from_query(info, &q).is_ok());
    }
}
