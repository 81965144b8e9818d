//! Which Ingresses are this controller's ([`serves`]), given the cluster's IngressClasses
//! (the server creates `capstan`, marked default, at start: `apiserver::bootstrap`).

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The IngressClass this controller serves.
pub const CLASS_NAME: &str = "capstan";
/// The class's `spec.controller`.
pub const CONTROLLER: &str = "capstan.io/ingress";
/// Marks the class that Ingresses without one belong to.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation Ingresses used before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

fn is_default(c: &IngressClass) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

fn is_ours(c: &IngressClass) -> bool {
    c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
}

/// Whether this controller serves `ing`, given the cluster's IngressClasses: its class (by
/// `spec.ingressClassName`, else the legacy annotation) is one whose controller is ours, or
/// `capstan` itself; an Ingress naming no class belongs to the default class, so it is ours
/// when the default class is ours or no class is marked default.
pub fn serves(ing: &Ingress, classes: &[std::sync::Arc<IngressClass>]) -> bool {
    let named = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned())
        })
        .filter(|n| !n.is_empty());
    match named {
        Some(name) => match classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
        {
            Some(c) => is_ours(c),
            None => name == CLASS_NAME,
        },
        None => {
            let defaults: Vec<_> = classes.iter().filter(|c| is_default(c)).collect();
            defaults.is_empty() || defaults.iter().any(|c| is_ours(c))
        }
    }
}

/// The `capstan` IngressClass as the server creates it (`apiserver::bootstrap`).
pub fn default_class() -> IngressClass {
    let mut c = IngressClass::default();
    c.metadata.name = Some(CLASS_NAME.into());
    c.metadata.annotations = Some(
        [(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]
            .into_iter()
            .collect(),
    );
    c.spec = Some(k8s_openapi::api::networking::v1::IngressClassSpec {
        controller: Some(CONTROLLER.into()),
        parameters: None,
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn ing(v: serde_json::Value) -> Ingress {
        serde_json::from_value(v).expect("ingress")
    }

    fn class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
        let mut c = default_class();
        c.metadata.name = Some(name.into());
        if !default {
            c.metadata.annotations = None;
        }
        if let Some(s) = c.spec.as_mut() {
            s.controller = Some(controller.into());
        }
        Arc::new(c)
    }

    #[test]
    fn ingresses_of_our_class_the_default_class_or_the_legacy_annotation_are_served() {
        let ours = class(CLASS_NAME, CONTROLLER, true);
        let nginx = class("nginx", "k8s.io/ingress-nginx", false);
        let classes = vec![ours.clone(), nginx.clone()];
        let none = ing(json!({"metadata": {"name": "a"}, "spec": {}}));
        let named =
            ing(json!({"metadata": {"name": "a"}, "spec": {"ingressClassName": "capstan"}}));
        let other = ing(json!({"metadata": {"name": "a"}, "spec": {"ingressClassName": "nginx"}}));
        let legacy = ing(json!({"metadata": {"name": "a",
            "annotations": {LEGACY_CLASS_ANNOTATION: "capstan"}}, "spec": {}}));
        let legacy_other = ing(json!({"metadata": {"name": "a",
            "annotations": {LEGACY_CLASS_ANNOTATION: "nginx"}}, "spec": {}}));
        assert!(serves(&none, &classes));
        assert!(serves(&named, &classes));
        assert!(!serves(&other, &classes));
        assert!(serves(&legacy, &classes));
        assert!(!serves(&legacy_other, &classes));
        // Before the class exists (or its informer has it), our own name still counts.
        assert!(serves(&named, &[]));
        assert!(serves(&none, &[]));
        // Another controller's default class takes the Ingresses without a class.
        let theirs = class("nginx", "k8s.io/ingress-nginx", true);
        let not_default = class(CLASS_NAME, CONTROLLER, false);
        assert!(!serves(&none, &[not_default, theirs]));
    }
}
