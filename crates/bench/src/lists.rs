//! List timings ([`run`]): the whole collection as a plain JSON list, as one Table (kubectl's
//! `Accept` header) and as Tables paged 500 at a time (what `kubectl get` really sends).

use std::time::Instant;

use http::StatusCode;
use serde::Serialize;

use crate::client::{Conn, Target};
use crate::stats::median;

/// The `Accept` header kubectl sends for `kubectl get`.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// kubectl's default `--chunk-size`.
const KUBECTL_PAGE: usize = 500;

#[derive(Debug, Clone, Serialize)]
pub struct ListTiming {
    pub what: &'static str,
    /// Objects (or rows) received, checked against what was created.
    pub items: usize,
    pub bytes: usize,
    pub requests: usize,
    pub best_ms: f64,
    pub median_ms: f64,
}

#[derive(Clone, Copy)]
enum Kind {
    Json,
    Table,
    TablePaged,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Json => "JSON list",
            Kind::Table => "Table",
            Kind::TablePaged => "Table in pages of 500, as kubectl get",
        }
    }
}

/// Lists `namespace`'s ConfigMaps `repeats` times each way, on one connection.
pub async fn run(
    target: &Target,
    namespace: &str,
    repeats: usize,
) -> anyhow::Result<Vec<ListTiming>> {
    let mut conn = target.connect().await?;
    let mut out = Vec::new();
    for kind in [Kind::Json, Kind::Table, Kind::TablePaged] {
        let mut times = Vec::new();
        let mut last = (0, 0, 0);
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            let (bodies, requests) = fetch(&mut conn, target, namespace, kind).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            // Counting parses the bodies: done after the clock stopped.
            let items = count(&bodies, kind)?;
            last = (items, bodies.iter().map(|b| b.len()).sum(), requests);
        }
        let timing = ListTiming {
            what: kind.describe(),
            items: last.0,
            bytes: last.1,
            requests: last.2,
            best_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
            median_ms: median(&times),
        };
        eprintln!(
            "  {}: {} items, {:.1} MB in {} request(s): best {:.0} ms, median {:.0} ms",
            timing.what,
            timing.items,
            timing.bytes as f64 / 1e6,
            timing.requests,
            timing.best_ms,
            timing.median_ms
        );
        out.push(timing);
    }
    Ok(out)
}

/// Fetches the whole list one way; returns the bodies and the number of requests.
async fn fetch(
    conn: &mut Conn,
    target: &Target,
    namespace: &str,
    kind: Kind,
) -> anyhow::Result<(Vec<bytes::Bytes>, usize)> {
    let base = format!("/api/v1/namespaces/{namespace}/configmaps");
    match kind {
        Kind::Json => {
            let body = conn
                .expect(target.get(&base, Some("application/json")), StatusCode::OK)
                .await?;
            Ok((vec![body], 1))
        }
        Kind::Table => {
            let body = conn
                .expect(target.get(&base, Some(TABLE_ACCEPT)), StatusCode::OK)
                .await?;
            Ok((vec![body], 1))
        }
        Kind::TablePaged => {
            let mut bodies = Vec::new();
            let mut query = format!("{base}?limit={KUBECTL_PAGE}");
            loop {
                let body = conn
                    .expect(target.get(&query, Some(TABLE_ACCEPT)), StatusCode::OK)
                    .await?;
                // kubectl must read the continue token before asking for the next page.
                let page: Page = serde_json::from_slice(&body)?;
                bodies.push(body);
                match page.metadata.r#continue.filter(|c| !c.is_empty()) {
                    Some(token) => query = format!("{base}?limit={KUBECTL_PAGE}&continue={token}"),
                    None => {
                        let requests = bodies.len();
                        return Ok((bodies, requests));
                    }
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    metadata: PageMeta,
}

#[derive(serde::Deserialize, Default)]
struct PageMeta {
    #[serde(default)]
    r#continue: Option<String>,
}

/// Items of a JSON list or rows of Tables.
fn count(bodies: &[bytes::Bytes], kind: Kind) -> anyhow::Result<usize> {
    let field = match kind {
        Kind::Json => "items",
        Kind::Table | Kind::TablePaged => "rows",
    };
    let mut n = 0;
    for body in bodies {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        n += value[field].as_array().map_or(0, Vec::len);
    }
    Ok(n)
}
