//! `Selector`: label selectors (matchLabels, matchExpressions, or a plain map as
//! ReplicationControllers and Services use) and owner references, as controllers match them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};

/// A parsed label selector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    exprs: Vec<LabelSelectorRequirement>,
    /// A nil selector matches nothing; an empty one matches everything.
    nothing: bool,
}

impl Selector {
    pub fn from_label_selector(s: Option<&LabelSelector>) -> Self {
        match s {
            None => Self {
                nothing: true,
                ..Default::default()
            },
            Some(s) => Self {
                labels: s.match_labels.clone().unwrap_or_default(),
                exprs: s.match_expressions.clone().unwrap_or_default(),
                nothing: false,
            },
        }
    }

    /// A map selector (RC, Service): nil or empty matches nothing, as upstream's
    /// `SelectorFromValidatedSet` of an empty set is only used after a nil check.
    pub fn from_map(m: Option<&BTreeMap<String, String>>) -> Self {
        match m {
            Some(m) if !m.is_empty() => Self {
                labels: m.clone(),
                ..Default::default()
            },
            _ => Self {
                nothing: true,
                ..Default::default()
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.nothing && self.labels.is_empty() && self.exprs.is_empty()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.nothing {
            return false;
        }
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|r| {
                let vals = r.values.as_deref().unwrap_or(&[]);
                let have = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => have.is_some_and(|v| vals.contains(v)),
                    "NotIn" => have.is_none_or(|v| !vals.contains(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }

    /// The selector as a query string for `labelSelector=`.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.exprs {
            let vals = r.values.clone().unwrap_or_default().join(",");
            parts.push(match r.operator.as_str() {
                "In" => format!("{} in ({vals})", r.key),
                "NotIn" => format!("{} notin ({vals})", r.key),
                "Exists" => r.key.clone(),
                _ => format!("!{}", r.key),
            });
        }
        parts.join(",")
    }
}

/// The owner reference with controller=true, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller owner reference to an owner, with blockOwnerDeletion as upstream sets it.
pub fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions_combine() {
        let s = Selector::from_label_selector(Some(&LabelSelector {
            match_labels: Some(labels(&[("app", "a")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["web".into(), "api".into()]),
            }]),
        }));
        assert!(s.matches(Some(&labels(&[("app", "a"), ("tier", "web")]))));
        assert!(!s.matches(Some(&labels(&[("app", "a"), ("tier", "db")]))));
        assert!(!s.matches(Some(&labels(&[("tier", "web")]))));
        assert_eq!(s.to_query(), "app=a,tier in (web,api)");
    }

    #[test]
    fn nil_selectors_match_nothing_and_empty_ones_everything() {
        assert!(!Selector::from_label_selector(None).matches(Some(&labels(&[("a", "b")]))));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(None));
        assert!(!Selector::from_map(None).matches(Some(&labels(&[("a", "b")]))));
        assert!(Selector::from_map(Some(&labels(&[("a", "b")])))
            .matches(Some(&labels(&[("a", "b"), ("c", "d")]))));
    }
}
