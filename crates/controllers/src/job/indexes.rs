//! Indexed Jobs' bookkeeping: the `completedIndexes` / `failedIndexes` interval strings
//! ("1,3-5,7") as sets, and a pod's completion index, as upstream's `indexed_job_utils.go`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// Annotation (and label) carrying a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation: how many pods of this index failed before this one (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The environment variable each container of an Indexed Job's pod sees its index in.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// A set of completion indexes; formats as upstream's ordered intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexSet(BTreeSet<i32>);

impl IndexSet {
    /// Parses "1,3-5"; entries that are not indexes below `completions` are skipped, as
    /// upstream's `parseIndexesFromString` does.
    pub fn parse(s: Option<&str>, completions: i32) -> Self {
        let mut out = BTreeSet::new();
        for part in s.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(lo), Ok(hi)) = (lo, hi) else {
                continue;
            };
            for i in lo.max(0)..=hi.min(completions - 1) {
                out.insert(i);
            }
        }
        Self(out)
    }

    pub fn contains(&self, i: i32) -> bool {
        self.0.contains(&i)
    }

    pub fn insert(&mut self, i: i32) -> bool {
        self.0.insert(i)
    }

    pub fn total(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().copied()
    }

    /// "1,3-5,7"; `None` when empty (the field is then left out).
    pub fn format(&self) -> Option<String> {
        let mut parts = Vec::new();
        let mut it = self.0.iter().copied().peekable();
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&(hi + 1)) {
                hi += 1;
                it.next();
            }
            parts.push(if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            });
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// A pod's completion index from its annotation (or, failing that, its label), if it is a
/// valid index below `completions`.
pub fn pod_index(p: &Pod, completions: i32) -> Option<i32> {
    let m = &p.metadata;
    let raw = m
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))?;
    raw.parse::<i32>()
        .ok()
        .filter(|i| *i >= 0 && *i < completions)
}

/// How many pods of this pod's index failed before it (0 when unset or unreadable).
pub fn index_failure_count(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_FAILURE_COUNT))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intervals_round_trip_and_out_of_range_entries_are_dropped() {
        let s = IndexSet::parse(Some("0,2-4,6,9-12"), 11);
        assert_eq!(s.format().as_deref(), Some("0,2-4,6,9-10"));
        assert_eq!(s.total(), 7);
        assert!(IndexSet::parse(None, 3).format().is_none());
        assert_eq!(
            IndexSet::parse(Some("x,1,2-y"), 3).format().as_deref(),
            Some("1")
        );
        let mut s = IndexSet::default();
        for i in [5, 1, 2, 3, 7] {
            s.insert(i);
        }
        assert_eq!(s.format().as_deref(), Some("1-3,5,7"));
    }

    #[test]
    fn a_pods_index_comes_from_its_annotation_and_must_be_in_range() {
        let p = |v| serde_json::from_value::<Pod>(v).expect("pod");
        let a = p(json!({"metadata": {"annotations": {COMPLETION_INDEX: "2"}}}));
        assert_eq!(pod_index(&a, 3), Some(2));
        assert_eq!(pod_index(&a, 2), None);
        let l = p(json!({"metadata": {"labels": {COMPLETION_INDEX: "1"}}}));
        assert_eq!(pod_index(&l, 3), Some(1));
        let bad = p(json!({"metadata": {"annotations": {COMPLETION_INDEX: "-1"}}}));
        assert_eq!(pod_index(&bad, 3), None);
        let f = p(json!({"metadata": {"annotations": {INDEX_FAILURE_COUNT: "2"}}}));
        assert_eq!(index_failure_count(&f), 2);
    }
}
