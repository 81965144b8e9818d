//! Namespaces: the `kubernetes` finalizer and Active phase on create, the
//! `kubernetes.io/metadata.name` label, finalizer name checks, STATUS column, `status.phase`.

use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};
use serde_json::{json, Value};

use super::{age_cell, finalizer_name, s};
use crate::field_error::{ErrorList, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::NameRule;

const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn set_name_label(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(NAME_LABEL.to_string(), name);
    }
}

static COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Status", "string", "The status of the namespace"),
    Column::age(),
];

impl KindHooks for Namespace {
    const NAME_RULE: NameRule = NameRule::Dns1123Label;
    const FIELD_SELECTORS: &'static [&'static str] = &["status.phase"];

    fn defaults(&mut self) {
        set_name_label(self);
        let status = self.status.get_or_insert_with(Default::default);
        if s(&status.phase).is_empty() {
            status.phase = Some("Active".to_string());
        }
    }

    fn prepare_for_create(&mut self) {
        self.status = Some(NamespaceStatus {
            phase: Some("Active".to_string()),
            ..Default::default()
        });
        let spec = self.spec.get_or_insert_with(Default::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == "kubernetes") {
            finalizers.push("kubernetes".to_string());
        }
        set_name_label(self);
    }

    /// Upstream changes spec.finalizers only through the finalize subresource (which the
    /// server keeps out of this hook): ordinary updates keep the old ones.
    fn prepare_for_update(&mut self, old: &Self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.finalizers = old.spec.as_ref().and_then(|s| s.finalizers.clone());
        set_name_label(self);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let path = Path::new("spec").child("finalizers");
        for f in self.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
            finalizer_name(f, &path, errs);
        }
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let phase = self
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(phase),
            age_cell(&self.metadata, ctx),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "status.phase" => Some(
                self.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Strategy, Typed};

    #[test]
    fn a_created_namespace_is_active_with_the_kubernetes_finalizer() {
        let st: &dyn Strategy = &Typed::<Namespace>::NEW;
        let mut unknown = Vec::new();
        let mut obj = st
            .decode(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
                &mut unknown,
            )
            .expect("ns");
        st.apply_defaults(&mut obj);
        obj["status"] = json!({});
        st.prepare_for_create(&mut obj);
        assert_eq!(obj["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(obj["status"], json!({"phase": "Active"}));
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "team-a"})
        );
        let ctx = RowContext::now();
        assert_eq!(st.row(&obj, &ctx)[1], json!("Active"));
        assert_eq!(
            st.field_value(&obj, "status.phase").as_deref(),
            Some("Active")
        );
    }

    #[test]
    fn ordinary_updates_keep_the_spec_finalizers() {
        let ns = |v: Value| -> Namespace { serde_json::from_value(v).expect("ns") };
        let old = ns(json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}}));
        let mut added = ns(
            json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes", "example.com/x"]}}),
        );
        added.prepare_for_update(&old);
        assert_eq!(
            added.spec.and_then(|s| s.finalizers),
            Some(vec!["kubernetes".to_string()])
        );
        let mut omitted = ns(json!({"metadata": {"name": "a"}}));
        omitted.prepare_for_update(&old);
        assert_eq!(
            omitted.spec.and_then(|s| s.finalizers),
            Some(vec!["kubernetes".to_string()])
        );
        // Removing them is the finalize subresource's job, which does not run this hook.
        let mut emptied = ns(json!({"metadata": {"name": "a"}, "spec": {"finalizers": []}}));
        emptied.prepare_for_update(&old);
        assert_eq!(
            emptied.spec.and_then(|s| s.finalizers),
            Some(vec!["kubernetes".to_string()])
        );
    }

    #[test]
    fn unqualified_finalizers_are_rejected() {
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}}),
        )
        .expect("ns");
        let mut errs = Vec::new();
        ns.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]
        );
    }
}
