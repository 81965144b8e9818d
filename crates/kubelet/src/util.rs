//! Small helpers shared by the agent's loops.

use tokio::sync::watch;

/// Resolves once `shutdown` is true (or its sender is gone). Holds no borrow across awaits, so
/// it can sit in a `select!` of a `Send` future.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await.map(|_| ());
}

/// RFC 3339 with second precision, as Kubernetes writes `Time` fields.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A CRI timestamp (nanoseconds since the epoch) as a Kubernetes time string.
pub fn rfc3339_nanos(ns: i64) -> Option<String> {
    if ns <= 0 {
        return None;
    }
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(rfc3339)
}
