//! HTTP handlers: one function per verb, each a thin translation between the wire (query,
//! body, Accept) and the registry / read paths, plus the rendering of answers in the
//! negotiated format (JSON, YAML, Table, PartialObjectMetadata).

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use capstan_api::catalogue::{ResourceInfo, Source};
use futures::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

use crate::codec::{self, decode_stored};
use crate::error::{success_status, ApiError, ApiResult};
use crate::params::{negotiate, Format, IncludeObject, Query};
use crate::read::{self, Matcher, WatchEvent, BOOKMARK_INTERVAL};
use crate::registry::{decode_body, DeleteOptions, ObjectOut, Registry, WriteOptions, Written};
use crate::route::ResourceRoute;
use crate::table;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A request, as the handlers see it.
pub struct Req<'a> {
    pub route: ResourceRoute,
    pub query: Query,
    pub accept: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// Names the field manager of writes that do not send `fieldManager`.
    pub user_agent: Option<&'a str>,
    pub body: Bytes,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response with the given status.
pub fn json_response(status: u16, bytes: impl Into<Bytes>, content_type: &str) -> Response<Body> {
    let mut r = Response::new(full(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// A JSON document response (discovery, Status, ...), written as upstream's encoder writes
/// it: objects in wire order, ending with a newline.
pub fn json_value_response(status: u16, v: Value, content_type: &str) -> Response<Body> {
    json_response(status, to_vec(v).unwrap_or_default(), content_type)
}

/// A Status response for an error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_value_response(e.code, e.to_status(), "application/json");
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
}

/// Renders one object in the negotiated format.
fn object_response(
    info: &ResourceInfo,
    status: u16,
    out: &ObjectOut,
    format: Format,
    q: &Query,
) -> ApiResult<Response<Body>> {
    match (format, out) {
        (Format::Json, ObjectOut::Stored(kv)) => Ok(json_response(
            status,
            codec::render_response(info, kv)?,
            "application/json",
        )),
        (Format::Json, ObjectOut::Value(v)) => Ok(json_response(
            status,
            to_vec(v.clone())?,
            "application/json",
        )),
        (_, out) => {
            let v = match out {
                ObjectOut::Stored(kv) => decode_stored(info, kv)?,
                ObjectOut::Value(v) => v.clone(),
            };
            single_value_response(info, status, v, format, q)
        }
    }
}

fn single_value_response(
    info: &ResourceInfo,
    status: u16,
    v: Value,
    format: Format,
    q: &Query,
) -> ApiResult<Response<Body>> {
    match format {
        Format::Json => Ok(json_response(status, to_vec(v)?, "application/json")),
        Format::Yaml => Ok(json_response(
            status,
            codec::to_yaml(&v)?,
            "application/yaml",
        )),
        Format::Table { v1beta1 } => {
            // Computed objects (componentstatuses) have no resourceVersion: omitted, not null.
            let meta = match &v["metadata"]["resourceVersion"] {
                Value::String(rv) => json!({"resourceVersion": rv}),
                _ => json!({}),
            };
            let t = table::table(info, &[v], IncludeObject::parse(q)?, meta, v1beta1);
            Ok(json_response(status, to_vec(t)?, "application/json"))
        }
        Format::Metadata { v1beta1 } => Ok(json_response(
            status,
            to_vec(table::partial_metadata(&v, v1beta1))?,
            "application/json",
        )),
    }
}

/// A response body: in wire order, with the newline Go's `json.Encoder` ends it with.
fn to_vec(v: Value) -> ApiResult<Vec<u8>> {
    let mut out = serde_json::to_vec(&codec::response_order(v)).map_err(ApiError::internal)?;
    out.push(b'\n');
    Ok(out)
}

fn write_options(req: &Req<'_>) -> ApiResult<WriteOptions> {
    let q = &req.query;
    Ok(WriteOptions {
        dry_run: q.dry_run()?,
        field_validation: q.field_validation()?,
        field_manager: Some(crate::fieldmanager::manager_or_user_agent(
            q.get("fieldManager"),
            req.user_agent,
        )),
        fields_tracked: false,
    })
}

/// Parses and decodes the body of a create or update into the route's kind.
fn decode_request_body(req: &Req<'_>, warnings: &mut Vec<String>) -> ApiResult<Value> {
    let kind = codec::body_type(req.content_type)?;
    let raw = codec::parse_body(&req.body, kind)?;
    let duplicates = crate::strict::duplicate_fields(&req.body, kind);
    decode_body(
        req.route.info,
        raw,
        req.query.field_validation()?,
        &duplicates,
        warnings,
    )
}

/// The deprecation warning of a deprecated API, as upstream sends it on every request.
fn add_deprecation(info: &ResourceInfo, r: &mut Response<Body>) {
    if let Some(w) = info.deprecation {
        add_warnings(r, &[w.to_string()]);
    }
}

/// GET of a computed (not stored) object: a component's status.
async fn get_computed(reg: &Registry, req: &Req<'_>, name: &str) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let format = negotiate(req.accept)?;
    let v = crate::components::get(reg.components(), reg.store().as_ref(), name).await?;
    let mut resp = single_value_response(r.info, 200, v, format, &req.query)?;
    add_deprecation(r.info, &mut resp);
    Ok(resp)
}

/// LIST of computed objects: every component's status (no resourceVersion, as upstream).
async fn list_computed(reg: &Registry, req: &Req<'_>) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let format = negotiate(req.accept)?;
    let matcher = Matcher::from_query(r.info, &req.query)?;
    let objects =
        crate::components::list(r.info, reg.components(), reg.store().as_ref(), &matcher).await;
    let mut resp = list_response(r.info, objects, json!({}), format, &req.query)?;
    add_deprecation(r.info, &mut resp);
    Ok(resp)
}

/// GET on an object (or its status).
pub async fn get(reg: &Registry, req: &Req<'_>, name: &str) -> ApiResult<Response<Body>> {
    let r = &req.route;
    if r.info.source == Source::ComponentHealth && r.subresource.is_none() {
        return get_computed(reg, req, name).await;
    }
    let format = negotiate(req.accept)?;
    let kv = reg.get(r.info, r.namespace.as_deref(), name).await?;
    match r.subresource.as_deref() {
        None | Some("status") => {
            object_response(r.info, 200, &ObjectOut::Stored(kv), format, &req.query)
        }
        Some("ephemeralcontainers") if r.info.plural == "pods" => {
            object_response(r.info, 200, &ObjectOut::Stored(kv), format, &req.query)
        }
        Some("scale") => {
            let obj = decode_stored(r.info, &kv)?;
            let scale = crate::scale::to_scale(r.info, &obj)?;
            Ok(json_response(200, to_vec(scale)?, "application/json"))
        }
        Some("log") if r.info.plural == "pods" => {
            crate::node_proxy::pod_log(reg, r.info, r.namespace.as_deref(), name, &req.query).await
        }
        Some(other) => Err(not_implemented_subresource(r.info, other)),
    }
}

fn not_implemented_subresource(info: &ResourceInfo, sub: &str) -> ApiError {
    ApiError::not_implemented(format!(
        "the {sub} subresource of {} is not implemented yet",
        info.qualified_resource()
    ))
}

/// GET on a collection: a list page.
pub async fn list(reg: &Registry, req: &Req<'_>) -> ApiResult<Response<Body>> {
    let r = &req.route;
    if r.info.source == Source::ComponentHealth {
        return list_computed(reg, req).await;
    }
    let format = negotiate(req.accept)?;
    let matcher = Matcher::from_query(r.info, &req.query)?;
    let page = read::list(
        reg.store(),
        r.info,
        r.namespace.as_deref(),
        &req.query,
        &matcher,
    )
    .await?;
    let mut list_meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        list_meta["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        list_meta["remainingItemCount"] = json!(n);
    }
    match format {
        Format::Json => {
            // Assembled from stored bytes: no object is parsed for a plain list.
            let mut out = BytesMut::with_capacity(
                64 + page
                    .items
                    .iter()
                    .map(|(kv, _)| kv.value.len() + 32)
                    .sum::<usize>(),
            );
            out.extend_from_slice(
                format!(
                    "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
                    r.info.kind,
                    r.info.api_version(),
                    list_meta
                )
                .as_bytes(),
            );
            for (i, (kv, _)) in page.items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(&codec::render(r.info, kv)?);
            }
            out.extend_from_slice(b"]}\n");
            Ok(json_response(200, out.freeze(), "application/json"))
        }
        _ => {
            let mut objects = Vec::with_capacity(page.items.len());
            for (kv, decoded) in page.items {
                objects.push(match decoded {
                    Some(v) => v,
                    None => decode_stored(r.info, &kv)?,
                });
            }
            list_response(r.info, objects, list_meta, format, &req.query)
        }
    }
}

/// A list of decoded objects in the negotiated format.
fn list_response(
    info: &ResourceInfo,
    objects: Vec<Value>,
    list_meta: Value,
    format: Format,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let v = match format {
        Format::Table { v1beta1 } => {
            table::table_owned(info, objects, IncludeObject::parse(q)?, list_meta, v1beta1)
        }
        Format::Metadata { v1beta1 } => table::metadata_list(&objects, list_meta, v1beta1),
        _ => json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": list_meta,
            "items": objects,
        }),
    };
    if format == Format::Yaml {
        return Ok(json_response(200, codec::to_yaml(&v)?, "application/yaml"));
    }
    Ok(json_response(200, to_vec(v)?, "application/json"))
}

/// GET with watch=true: a chunked stream of JSON watch events.
pub async fn watch(
    reg: &Registry,
    req: &Req<'_>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    on_end: impl FnOnce() + Send + 'static,
    on_cut: impl FnOnce() + Send + 'static,
) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let format = negotiate(req.accept)?;
    let mut matcher = Matcher::from_query(r.info, &req.query)?;
    if let Some(name) = &r.name {
        // Watching one object is watching the collection filtered by name.
        matcher
            .fields
            .0
            .push(capstan_api::selector::FieldRequirement {
                field: "metadata.name".into(),
                value: name.clone(),
                negate: false,
            });
    }
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let timeout = req
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t.unsigned_abs()))
        // Upstream closes watches after 30-60 minutes so clients rebalance; so do we.
        .unwrap_or_else(|| Duration::from_secs(1800 + rand::random::<u64>() % 1800));
    let include = IncludeObject::parse(&req.query)?;
    let info = r.info;
    let raw = format == Format::Json;
    let (events, from) = read::watch(
        reg.store().clone(),
        info,
        r.namespace.clone(),
        &req.query,
        matcher,
        raw,
    )
    .await?;

    let stream = async_stream(
        events, from, info, format, include, bookmarks, timeout, shutdown, on_cut,
    );
    let body = StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed_unsync(GuardedBody {
        inner: body,
        on_end: Some(Box::new(on_end)),
    }));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// Serialises watch events, interleaving bookmarks and ending on timeout or shutdown, even
/// while the client reads nothing (then `on_cut` runs, so the connection can be dropped).
#[allow(clippy::too_many_arguments)]
fn async_stream(
    events: impl futures::Stream<Item = WatchEvent> + Send + 'static,
    start_rv: i64,
    info: &'static ResourceInfo,
    format: Format,
    include: IncludeObject,
    bookmarks: bool,
    timeout: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    on_cut: impl FnOnce() + Send + 'static,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut events = Box::pin(events);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        let mut last_rv: i64 = start_rv;
        let mut first_table = true;
        let mut on_cut = Some(on_cut);
        let mut cut = move || {
            if let Some(f) = on_cut.take() {
                f();
            }
        };
        // A send waits for the client to read; the deadline and shutdown must still win.
        macro_rules! send {
            ($bytes:expr) => {
                tokio::select! {
                    r = tx.send($bytes) => r.is_ok(),
                    _ = &mut deadline => { cut(); return; }
                    _ = shutdown.changed() => { cut(); return; }
                }
            };
        }
        loop {
            let ev = tokio::select! {
                _ = &mut deadline => { cut(); break; }
                _ = shutdown.changed() => { cut(); break; }
                _ = ticker.tick(), if bookmarks => WatchEvent::Bookmark(last_rv),
                ev = events.next() => match ev { Some(ev) => ev, None => break },
            };
            if let WatchEvent::Bookmark(0) = ev {
                continue;
            }
            if let WatchEvent::Raw {
                type_name,
                object,
                revision,
            } = &ev
            {
                last_rv = *revision;
                let mut line = Vec::with_capacity(object.len() + 32);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(type_name.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(object);
                line.extend_from_slice(b"}\n");
                if !send!(Bytes::from(line)) {
                    break;
                }
                continue;
            }
            let is_error = matches!(ev, WatchEvent::Error(_));
            let object = match &ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                    if let Some(rv) = o["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                    {
                        last_rv = rv;
                    }
                    match format {
                        Format::Table { v1beta1 } => {
                            let mut t = table::table(
                                info,
                                std::slice::from_ref(o),
                                include,
                                json!({"resourceVersion": o["metadata"]["resourceVersion"].clone()}),
                                v1beta1,
                            );
                            // kubectl reuses the last column definitions when an event has none.
                            if !first_table {
                                t["columnDefinitions"] = json!([]);
                            }
                            first_table = false;
                            t
                        }
                        Format::Metadata { v1beta1 } => table::partial_metadata(o, v1beta1),
                        _ => o.clone(),
                    }
                }
                WatchEvent::Bookmark(rv) => read::bookmark_object(info, *rv),
                WatchEvent::InitialEventsEnd(rv) => read::initial_events_end_object(info, *rv),
                WatchEvent::Error(e) => e.to_status(),
                WatchEvent::Raw { .. } => continue,
            };
            let line = json!({"type": ev.type_name(), "object": object});
            let bytes = to_vec(line).unwrap_or_default();
            if !send!(Bytes::from(bytes)) || is_error {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A body that runs a callback when dropped (the watch ended): keeps the watcher gauge true.
struct GuardedBody<B> {
    inner: B,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> Drop for GuardedBody<B> {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}

/// POST on a collection: create.
pub async fn create(reg: &Registry, req: &Req<'_>) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let format = negotiate(req.accept)?;
    let opts = write_options(req)?;
    let mut warnings = Vec::new();
    let obj = decode_request_body(req, &mut warnings)?;
    let w = reg
        .create(r.info, r.namespace.as_deref(), obj, &opts, warnings)
        .await?;
    written_response(r.info, w, format, &req.query)
}

fn written_response(
    info: &ResourceInfo,
    w: Written,
    format: Format,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let status = if w.created { 201 } else { 200 };
    let mut resp = object_response(info, status, &w.object, format, q)?;
    add_warnings(&mut resp, &w.warnings);
    Ok(resp)
}

/// PUT on an object, its status, or its scale.
pub async fn update(reg: &Registry, req: &Req<'_>, name: &str) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let format = negotiate(req.accept)?;
    let opts = write_options(req)?;
    let ephemeral =
        r.info.plural == "pods" && r.subresource.as_deref() == Some("ephemeralcontainers");
    match r.subresource.as_deref() {
        Some("ephemeralcontainers") if !ephemeral => {
            Err(not_implemented_subresource(r.info, "ephemeralcontainers"))
        }
        None | Some("status") | Some("finalize") | Some("ephemeralcontainers") => {
            let mut warnings = Vec::new();
            let obj = decode_request_body(req, &mut warnings)?;
            let w = reg
                .update(
                    r.info,
                    r.namespace.as_deref(),
                    name,
                    obj,
                    &opts,
                    r.subresource.as_deref(),
                    warnings,
                )
                .await?;
            written_response(r.info, w, format, &req.query)
        }
        Some("scale") => {
            let kind = codec::body_type(req.content_type)?;
            let scale = codec::parse_body(&req.body, kind)?;
            let w = crate::scale::update_scale(
                reg,
                r.info,
                r.namespace.as_deref(),
                name,
                &scale,
                &opts,
            )
            .await?;
            Ok(json_response(200, to_vec(w)?, "application/json"))
        }
        Some(other) => Err(not_implemented_subresource(r.info, other)),
    }
}

/// POST on an object's subresource (pods/binding).
pub async fn create_subresource(
    reg: &Registry,
    req: &Req<'_>,
    name: &str,
) -> ApiResult<Response<Body>> {
    let r = &req.route;
    match (r.info.plural, r.subresource.as_deref()) {
        ("pods", Some("binding")) => {
            let kind = codec::body_type(req.content_type)?;
            let binding = codec::parse_body(&req.body, kind)?;
            let node = binding["target"]["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        r.info,
                        name,
                        &[capstan_api::FieldError::required("target.name", "")],
                    )
                })?;
            let ns = r.namespace.as_deref().unwrap_or("default");
            reg.bind_pod(ns, name, node).await?;
            Ok(json_response(
                201,
                to_vec(success_status(json!({})))?,
                "application/json",
            ))
        }
        (_, Some(other)) => Err(not_implemented_subresource(r.info, other)),
        (_, None) => Err(ApiError::method_not_supported()),
    }
}

/// Reads DeleteOptions from the query and an optional JSON body.
fn delete_options(req: &Req<'_>) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions {
        grace_period_seconds: req.query.int("gracePeriodSeconds")?,
        propagation_policy: req.query.get("propagationPolicy").map(str::to_string),
        dry_run: req.query.dry_run()?,
        ..Default::default()
    };
    if !req.body.is_empty() {
        let body = codec::parse_body(&req.body, codec::body_type(req.content_type)?)?;
        if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period_seconds = Some(g);
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation_policy = Some(p.to_string());
        }
        o.orphan_dependents = body.get("orphanDependents").and_then(Value::as_bool);
        if o.orphan_dependents == Some(true) && o.propagation_policy.is_none() {
            o.propagation_policy = Some("Orphan".into());
        }
        if let Some(pre) = body.get("preconditions") {
            o.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            o.precondition_resource_version = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"))
        {
            o.dry_run = true;
        }
    }
    if o.orphan_dependents.is_none() {
        o.orphan_dependents = match req.query.get("orphanDependents") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
    }
    if o.orphan_dependents == Some(true) && o.propagation_policy.is_none() {
        o.propagation_policy = Some("Orphan".into());
    }
    Ok(o)
}

/// DELETE on an object. As upstream: a deletion still pending (finalizers, a grace period, a
/// namespace's cleanup) answers with the object as it now is; a finished one with the object
/// as it was for kinds whose registry returns deleted objects, else with a success Status.
pub async fn delete(reg: &Registry, req: &Req<'_>, name: &str) -> ApiResult<Response<Body>> {
    let r = &req.route;
    if r.subresource.is_some() {
        return Err(ApiError::method_not_supported());
    }
    let format = negotiate(req.accept)?;
    let opts = delete_options(req)?;
    let d = reg
        .delete(r.info, r.namespace.as_deref(), name, &opts)
        .await?;
    if !d.gone || r.info.delete_returns_object {
        // Upstream answers 202 only when cascading was asked for with orphanDependents=false
        // and the object is still there (kept as is for compatibility).
        let status = if !d.gone && opts.orphan_dependents == Some(false) {
            202
        } else {
            200
        };
        return object_response(r.info, status, &d.object, format, &req.query);
    }
    let uid = match &d.object {
        ObjectOut::Stored(kv) => decode_stored(r.info, kv)?["metadata"]["uid"].clone(),
        ObjectOut::Value(v) => v["metadata"]["uid"].clone(),
    };
    // StatusDetails' field order: name, group, kind (the resource, as upstream sets it), uid.
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(name));
    if !r.info.group.is_empty() {
        details.insert("group".into(), json!(r.info.group));
    }
    details.insert("kind".into(), json!(r.info.plural));
    if !uid.is_null() {
        details.insert("uid".into(), uid);
    }
    Ok(json_response(
        200,
        to_vec(success_status(Value::Object(details)))?,
        "application/json",
    ))
}

/// DELETE on a collection: every matching object, with the same options. Answers, as
/// upstream's DeleteCollection, with the list of the objects it set out to delete.
pub async fn delete_collection(reg: &Registry, req: &Req<'_>) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let opts = delete_options(req)?;
    let matcher = Matcher::from_query(r.info, &req.query)?;
    let page = read::list(
        reg.store(),
        r.info,
        r.namespace.as_deref(),
        &Query::default(),
        &matcher,
    )
    .await?;
    let mut listed = Vec::with_capacity(page.items.len());
    for (kv, decoded) in page.items {
        let obj = match decoded {
            Some(v) => v,
            None => decode_stored(r.info, &kv)?,
        };
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        match reg.delete(r.info, ns.as_deref(), &name, &opts).await {
            Ok(_) => {}
            // Gone meanwhile: someone else deleted it, which is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        listed.push(obj);
    }
    let list = json!({
        "kind": format!("{}List", r.info.kind),
        "apiVersion": r.info.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": listed,
    });
    Ok(json_response(200, to_vec(list)?, "application/json"))
}

/// PATCH on an object, its status or its scale.
pub async fn patch(reg: &Registry, req: &Req<'_>, name: &str) -> ApiResult<Response<Body>> {
    let r = &req.route;
    let format = negotiate(req.accept)?;
    let opts = write_options(req)?;
    let patch_type = crate::patch::PatchType::from_content_type(req.content_type)?;
    let w = crate::patch::patch(reg, req, name, patch_type, &opts).await?;
    match w {
        crate::patch::Patched::Object(w) => written_response(r.info, w, format, &req.query),
        crate::patch::Patched::Scale(v) => Ok(json_response(200, to_vec(v)?, "application/json")),
    }
}
