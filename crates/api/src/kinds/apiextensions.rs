//! apiextensions.k8s.io/v1 CustomResourceDefinitions: upstream's defaults, create/update
//! preparation (stored versions) and the main parts of its validation (names, group, scope,
//! versions, structural schemas, conversion, stored versions). Custom resources themselves are
//! not served yet.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionStatus, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use serde_json::Value;

use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::validation::{dns1035_label, dns1123_subdomain, immutable_field};

fn join(errs: Vec<String>) -> String {
    errs.join(",")
}

fn dns1035(value: &str, path: Path, errs: &mut ErrorList) {
    let e = dns1035_label(value);
    if !e.is_empty() {
        errs.push(FieldError::invalid(path, value, join(e)));
    }
}

fn mixed_case_dns1035(value: &str, path: Path, errs: &mut ErrorList) {
    let e = dns1035_label(&value.to_lowercase());
    if !value.is_empty() && !e.is_empty() {
        errs.push(FieldError::invalid(
            path,
            value,
            format!(
                "may have mixed case, but should otherwise match: {}",
                join(e)
            ),
        ));
    }
}

fn validate_names(names: &CustomResourceDefinitionNames, path: &Path, errs: &mut ErrorList) {
    let singular = names.singular.as_deref().unwrap_or("");
    let list_kind = names.list_kind.as_deref().unwrap_or("");
    for (field, value) in [
        ("plural", names.plural.as_str()),
        ("singular", singular),
        ("kind", names.kind.as_str()),
        ("listKind", list_kind),
    ] {
        if value.is_empty() {
            errs.push(FieldError::required(path.child(field), ""));
        }
    }
    if !names.plural.is_empty() {
        dns1035(&names.plural, path.child("plural"), errs);
    }
    if !singular.is_empty() {
        dns1035(singular, path.child("singular"), errs);
    }
    mixed_case_dns1035(&names.kind, path.child("kind"), errs);
    mixed_case_dns1035(list_kind, path.child("listKind"), errs);
    for (i, s) in names.short_names.iter().flatten().enumerate() {
        dns1035(s, path.child("shortNames").index(i), errs);
    }
    if !names.kind.is_empty() && names.kind == list_kind {
        errs.push(FieldError::invalid(
            path.child("listKind"),
            list_kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, c) in names.categories.iter().flatten().enumerate() {
        dns1035(c, path.child("categories").index(i), errs);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// The structural-schema invariants upstream checks first (types present, arrays with items,
/// an object at the root, string kind and apiVersion).
fn validate_structural(s: &JSONSchemaProps, level: Level, path: &Path, errs: &mut ErrorList) {
    let t = s.type_.as_deref().unwrap_or("");
    if t == "array" && s.items.is_none() {
        errs.push(FieldError::required(
            path.child("items"),
            "must be specified",
        ));
    }
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => {
            validate_structural(item, Level::Item, &path.child("items"), errs)
        }
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            for (i, item) in items.iter().enumerate() {
                validate_structural(item, Level::Item, &path.child("items").index(i), errs);
            }
        }
        None => {}
    }
    for (k, v) in s.properties.iter().flatten() {
        validate_structural(v, Level::Field, &path.child("properties").key(k), errs);
    }
    let embedded = s.x_kubernetes_embedded_resource == Some(true);
    let int_or_string = s.x_kubernetes_int_or_string == Some(true);
    if embedded && t != "object" {
        let tp = path.child("type");
        if t.is_empty() {
            errs.push(FieldError::required(
                tp,
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(FieldError::invalid(
                tp,
                t,
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if t.is_empty() && !int_or_string {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(path.child("type"), detail));
    }
    if level == Level::Root {
        if !t.is_empty() && t != "object" {
            errs.push(FieldError::invalid(
                path.child("type"),
                t,
                "must be object at the root",
            ));
        }
        for field in ["kind", "apiVersion"] {
            if let Some(p) = s.properties.as_ref().and_then(|p| p.get(field)) {
                let pt = p.type_.as_deref().unwrap_or("");
                if pt != "string" {
                    errs.push(FieldError::invalid(
                        path.child("properties").key(field).child("type"),
                        pt,
                        "must be string",
                    ));
                }
            }
        }
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn storage_version(spec: &CustomResourceDefinitionSpec) -> Option<&str> {
    spec.versions
        .iter()
        .find(|v| v.storage)
        .map(|v| v.name.as_str())
}

/// Adds the storage version to status.storedVersions when it is not there yet.
fn record_storage_version(crd: &mut CustomResourceDefinition) {
    let Some(v) = storage_version(&crd.spec).map(str::to_string) else {
        return;
    };
    let stored = crd
        .status
        .get_or_insert_with(Default::default)
        .stored_versions
        .get_or_insert_with(Vec::new);
    if !stored.contains(&v) {
        stored.push(v);
    }
}

fn validate_stored_versions(crd: &CustomResourceDefinition, errs: &mut ErrorList) {
    let path = Path::new("status").child("storedVersions");
    let stored = crd
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    if stored.is_empty() {
        errs.push(FieldError::invalid(
            &path,
            Value::Null,
            "must have at least one stored version",
        ));
        return;
    }
    for v in &crd.spec.versions {
        if v.storage && !stored.contains(&v.name) {
            errs.push(FieldError::invalid(
                &path,
                serde_json::to_value(v).unwrap_or(Value::Null),
                format!("must have the storage version {}", v.name),
            ));
        }
    }
    for (i, s) in stored.iter().enumerate() {
        if !crd.spec.versions.iter().any(|v| &v.name == s) {
            errs.push(FieldError::invalid(
                path.index(i),
                s.as_str(),
                "must appear in spec.versions",
            ));
        }
    }
}

impl KindHooks for CustomResourceDefinition {
    fn defaults(&mut self) {
        let names = &mut self.spec.names;
        if names.singular.as_deref().unwrap_or("").is_empty() {
            names.singular = Some(names.kind.to_lowercase());
        }
        if names.list_kind.as_deref().unwrap_or("").is_empty() && !names.kind.is_empty() {
            names.list_kind = Some(format!("{}List", names.kind));
        }
        let conversion = self.spec.conversion.get_or_insert_with(Default::default);
        if conversion.strategy.is_empty() {
            conversion.strategy = "None".into();
        }
        let service = conversion
            .webhook
            .as_mut()
            .and_then(|w| w.client_config.as_mut())
            .and_then(|c| c.service.as_mut());
        if let Some(service) = service {
            service.port.get_or_insert(443);
        }
    }

    fn prepare_for_create(&mut self) {
        let status = self
            .status
            .get_or_insert_with(CustomResourceDefinitionStatus::default);
        status.accepted_names.get_or_insert_with(Default::default);
        record_storage_version(self);
    }

    fn prepare_for_update(&mut self, _old: &Self) {
        record_storage_version(self);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let spec = &self.spec;
        let name = self.metadata.name.as_deref().unwrap_or("");
        if !name.is_empty() && name != format!("{}.{}", spec.names.plural, spec.group) {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        let path = Path::new("spec");
        if spec.group.is_empty() {
            errs.push(FieldError::required(path.child("group"), ""));
        } else {
            let e = dns1123_subdomain(&spec.group);
            if !e.is_empty() {
                errs.push(FieldError::invalid(
                    path.child("group"),
                    spec.group.as_str(),
                    join(e),
                ));
            } else if !spec.group.contains('.') {
                errs.push(FieldError::invalid(
                    path.child("group"),
                    spec.group.as_str(),
                    "should be a domain with at least one dot",
                ));
            }
        }
        match spec.scope.as_str() {
            "" => errs.push(FieldError::required(path.child("scope"), "")),
            "Cluster" | "Namespaced" => {}
            other => errs.push(FieldError::not_supported(
                path.child("scope"),
                other,
                &["Cluster", "Namespaced"],
            )),
        }
        let vp = path.child("versions");
        let mut seen: Vec<&str> = Vec::new();
        let mut unique = true;
        for (i, v) in spec.versions.iter().enumerate() {
            let p = vp.index(i);
            if seen.contains(&v.name.as_str()) {
                unique = false;
            } else {
                seen.push(&v.name);
            }
            dns1035(&v.name, p.child("name"), errs);
            match v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
            {
                None => errs.push(FieldError::required(
                    p.child("schema").child("openAPIV3Schema"),
                    "schemas are required",
                )),
                Some(schema) => {
                    let mut structural = Vec::new();
                    validate_structural(
                        schema,
                        Level::Root,
                        &p.child("schema").child("openAPIV3Schema"),
                        &mut structural,
                    );
                    structural.sort_by_key(ToString::to_string);
                    errs.extend(structural);
                }
            }
        }
        let versions_value = || serde_json::to_value(&spec.versions).unwrap_or(Value::Null);
        if !unique {
            errs.push(FieldError::invalid(
                &vp,
                versions_value(),
                "must contain unique version names",
            ));
        }
        if spec.versions.iter().filter(|v| v.storage).count() != 1 {
            errs.push(FieldError::invalid(
                &vp,
                versions_value(),
                "must have exactly one version marked as storage version",
            ));
        }
        validate_names(&spec.names, &path.child("names"), errs);
        if let Some(c) = &spec.conversion {
            let cp = path.child("conversion");
            match c.strategy.as_str() {
                "None" => {
                    if c.webhook.is_some() {
                        errs.push(FieldError::forbidden(
                            cp.child("webhook"),
                            "should not be set when strategy is not set to Webhook",
                        ));
                    }
                }
                "Webhook" => {
                    if c.webhook
                        .as_ref()
                        .and_then(|w| w.client_config.as_ref())
                        .is_none()
                    {
                        errs.push(FieldError::required(
                            cp.child("webhook").child("clientConfig"),
                            "required when strategy is set to Webhook",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    cp.child("strategy"),
                    other,
                    &["None", "Webhook"],
                )),
            }
        }
        if spec.preserve_unknown_fields == Some(true) {
            errs.push(FieldError::invalid(
                path.child("preserveUnknownFields"),
                true,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
            ));
        }
        validate_stored_versions(self, errs);
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let path = Path::new("spec");
        if is_established(old) {
            immutable_field(&self.spec.scope, &old.spec.scope, path.child("scope"), errs);
            immutable_field(
                &self.spec.names.kind,
                &old.spec.names.kind,
                path.child("names").child("kind"),
                errs,
            );
        }
        immutable_field(&self.spec.group, &old.spec.group, path.child("group"), errs);
        immutable_field(
            &self.spec.names.plural,
            &old.spec.names.plural,
            path.child("names").child("plural"),
            errs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, update};
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                    }}}
                }]
            }
        })
    }

    #[test]
    fn a_crd_gets_upstreams_defaults_and_stored_versions() {
        let c = create::<CustomResourceDefinition>(crd());
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(
            c["status"],
            json!({"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": ["v1"]})
        );
        assert!(
            errors::<CustomResourceDefinition>(&c).is_empty(),
            "{:?}",
            errors::<CustomResourceDefinition>(&c)
        );
    }

    #[test]
    fn crd_names_versions_and_schemas_are_checked() {
        let mut c = crd();
        c["metadata"]["name"] = json!("widgets.other.com");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["versions"][0]["schema"] =
            json!({"openAPIV3Schema": {"properties": {"spec": {}}}});
        let errs = errors::<CustomResourceDefinition>(&create::<CustomResourceDefinition>(c));
        assert_eq!(errs[0], "metadata.name: Invalid value: \"widgets.other.com\": must be spec.names.plural+\".\"+spec.group");
        assert_eq!(
            errs[1],
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
        );
        assert_eq!(
            errs[2],
            "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root"
        );
        assert!(
            errs[3].ends_with("must have exactly one version marked as storage version"),
            "{}",
            errs[3]
        );
        assert_eq!(
            errs[4],
            "status.storedVersions: Invalid value: null: must have at least one stored version"
        );
    }

    #[test]
    fn crds_without_schemas_are_refused() {
        let mut c = crd();
        c["spec"]["versions"][0]
            .as_object_mut()
            .expect("version")
            .remove("schema");
        let errs = errors::<CustomResourceDefinition>(&create::<CustomResourceDefinition>(c));
        assert_eq!(
            errs,
            vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
        );
    }

    #[test]
    fn a_crds_group_and_plural_are_fixed() {
        let old = create::<CustomResourceDefinition>(crd());
        let mut new = crd();
        new["spec"]["group"] = json!("example.org");
        new["metadata"]["name"] = json!("widgets.example.org");
        let (_, errs) = update::<CustomResourceDefinition>(new, &old);
        assert!(
            errs.contains(
                &"spec.group: Invalid value: \"example.org\": field is immutable".to_string()
            ),
            "{errs:?}"
        );
    }
}
