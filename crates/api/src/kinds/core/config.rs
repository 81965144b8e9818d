//! ConfigMaps, Secrets and ServiceAccounts: key and size checks, secret types, immutability,
//! `stringData` folded into `data` as upstream's conversion does, and their table columns.

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use serde_json::{json, Value};

use super::{age_cell, checks, s};
use crate::field_error::{ErrorList, FieldError, FieldErrorType, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::immutable_field;

/// Upstream's MaxSecretSize, shared by ConfigMaps.
const MAX_SIZE: usize = 1024 * 1024;
const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

fn check_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &Path, errs: &mut ErrorList) {
    for k in keys {
        for m in checks::config_map_key(k) {
            errs.push(FieldError::invalid(path.key(k), k.as_str(), m));
        }
    }
}

fn too_long(path: &str) -> FieldError {
    FieldError::new(
        FieldErrorType::TooLong,
        path,
        None,
        format!("may not be more than {MAX_SIZE} bytes"),
    )
}

static CONFIGMAP_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Data", "string", "Data contains the configuration data."),
    Column::age(),
];

impl KindHooks for ConfigMap {
    fn validate(&self, errs: &mut ErrorList) {
        let data_path = Path::new("data");
        let mut total = 0;
        for (k, v) in self.data.iter().flatten() {
            check_keys(std::iter::once(k), &data_path, errs);
            if self.binary_data.as_ref().is_some_and(|b| b.contains_key(k)) {
                errs.push(FieldError::invalid(
                    data_path.key(k),
                    k.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
            total += v.len();
        }
        for (k, v) in self.binary_data.iter().flatten() {
            check_keys(std::iter::once(k), &Path::new("binaryData"), errs);
            total += v.0.len();
        }
        if total > MAX_SIZE {
            errs.push(too_long(""));
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
            }
            if self.data != old.data {
                errs.push(FieldError::forbidden("data", IMMUTABLE_MSG));
            }
            if self.binary_data != old.binary_data {
                errs.push(FieldError::forbidden("binaryData", IMMUTABLE_MSG));
            }
        }
    }

    fn columns() -> &'static [Column] {
        CONFIGMAP_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let n = self.data.as_ref().map_or(0, |d| d.len())
            + self.binary_data.as_ref().map_or(0, |d| d.len());
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(n),
            age_cell(&self.metadata, ctx),
        ]
    }
}

static SECRET_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    Column::new("Data", "string", "Data contains the secret data."),
    Column::age(),
];

impl KindHooks for Secret {
    const FIELD_SELECTORS: &'static [&'static str] = &["type"];

    fn defaults(&mut self) {
        if s(&self.type_).is_empty() {
            self.type_ = Some("Opaque".to_string());
        }
        // Upstream's conversion writes stringData over data and never stores it.
        if let Some(sd) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (k, v) in sd {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let data_path = Path::new("data");
        let data = self.data.clone().unwrap_or_default();
        check_keys(data.keys(), &data_path, errs);
        if data.values().map(|v| v.0.len()).sum::<usize>() > MAX_SIZE {
            errs.push(too_long("data"));
        }
        let has = |k: &str| data.contains_key(k);
        let json_ok = |k: &str, errs: &mut ErrorList| {
            if let Some(v) = data.get(k) {
                if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&v.0) {
                    errs.push(FieldError::invalid(
                        data_path.key(k),
                        "<secret contents redacted>",
                        e.to_string(),
                    ));
                }
            }
        };
        match s(&self.type_) {
            "kubernetes.io/service-account-token" => {
                let name = self
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/service-account.name"))
                    .map(String::as_str)
                    .unwrap_or("");
                if name.is_empty() {
                    errs.push(FieldError::required(
                        Path::new("metadata")
                            .child("annotations")
                            .key("kubernetes.io/service-account.name"),
                        "",
                    ));
                }
            }
            "kubernetes.io/dockercfg" => {
                if has(".dockercfg") {
                    json_ok(".dockercfg", errs);
                } else {
                    errs.push(FieldError::required(data_path.key(".dockercfg"), ""));
                }
            }
            "kubernetes.io/dockerconfigjson" => {
                if has(".dockerconfigjson") {
                    json_ok(".dockerconfigjson", errs);
                } else {
                    errs.push(FieldError::required(data_path.key(".dockerconfigjson"), ""));
                }
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                errs.push(FieldError::required(data_path.key("username"), ""));
                errs.push(FieldError::required(data_path.key("password"), ""));
            }
            "kubernetes.io/ssh-auth"
                if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) =>
            {
                errs.push(FieldError::required(data_path.key("ssh-privatekey"), ""));
            }
            "kubernetes.io/tls" => {
                if !has("tls.crt") {
                    errs.push(FieldError::required(data_path.key("tls.crt"), ""));
                }
                if !has("tls.key") {
                    errs.push(FieldError::required(data_path.key("tls.key"), ""));
                }
            }
            _ => {}
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        immutable_field(&self.type_, &old.type_, "type", errs);
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
            }
            if self.data != old.data {
                errs.push(FieldError::forbidden("data", IMMUTABLE_MSG));
            }
        }
    }

    fn columns() -> &'static [Column] {
        SECRET_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(s(&self.type_)),
            json!(self.data.as_ref().map_or(0, |d| d.len())),
            age_cell(&self.metadata, ctx),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "type" => Some(s(&self.type_).to_string()),
            _ => None,
        }
    }
}

static SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    Column::age(),
];

impl KindHooks for ServiceAccount {
    fn columns() -> &'static [Column] {
        SERVICE_ACCOUNT_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(self.secrets.as_ref().map_or(0, |v| v.len())),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_default_to_opaque_and_fold_string_data() {
        let mut sec: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"a": "y", "b": "z"}})).expect("s");
        sec.defaults();
        let v = serde_json::to_value(&sec).expect("json");
        assert_eq!(v["type"], "Opaque");
        assert_eq!(v["data"], json!({"a": "eQ==", "b": "eg=="}));
        assert!(v.get("stringData").is_none());
    }

    #[test]
    fn tls_secrets_need_a_certificate_and_key() {
        let sec: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}})).expect("s");
        let mut errs = Vec::new();
        sec.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["data[tls.key]: Required value"]
        );
    }

    #[test]
    fn docker_config_secrets_need_json() {
        let sec: Secret = serde_json::from_value(
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson"}),
        )
        .expect("s");
        let mut errs = Vec::new();
        sec.validate(&mut errs);
        assert_eq!(
            errs[0].to_string(),
            "data[.dockerconfigjson]: Required value"
        );
    }

    #[test]
    fn config_map_keys_must_be_valid() {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "data": {"a b": "x", "ok.key": "y"}}),
        )
        .expect("cm");
        let mut errs = Vec::new();
        cm.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
        );
    }

    #[test]
    fn config_maps_over_a_mebibyte_are_too_long() {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "data": {"big": "x".repeat(MAX_SIZE + 1)}}),
        )
        .expect("cm");
        let mut errs = Vec::new();
        cm.validate(&mut errs);
        assert_eq!(
            errs[0].to_string(),
            "Too long: may not be more than 1048576 bytes"
        );
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let old: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}}),
        )
        .expect("cm");
        let new: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}}),
        )
        .expect("cm");
        let mut errs = Vec::new();
        new.validate_update(&old, &mut errs);
        assert_eq!(
            errs[0].to_string(),
            "data: Forbidden: field is immutable when `immutable` is set"
        );
    }

    #[test]
    fn secret_type_is_immutable() {
        let old: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "type": "Opaque"}))
                .expect("s");
        let new: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"}))
                .expect("s");
        let mut errs = Vec::new();
        new.validate_update(&old, &mut errs);
        assert_eq!(
            errs[0].to_string(),
            "type: Invalid value: \"kubernetes.io/tls\": field is immutable"
        );
    }

    #[test]
    fn rows_count_data_entries() {
        let sec: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "b": "eA=="}})).expect("s");
        let row = sec.row(&RowContext::now());
        assert_eq!(row[..3], [json!("s"), json!("Opaque"), json!(2)]);
        assert_eq!(sec.field_value("type").as_deref(), Some("Opaque"));
    }
}
