//! storage.k8s.io/v1 StorageClass, with upstream's defaults, validation
//! (pkg/apis/storage/validation) and printer. PersistentVolumes and claims are core/v1 kinds
//! (kinds::core's storage module).

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use super::apps::age_cell;
use crate::field_error::{ErrorList, FieldError};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::{immutable_field, qualified_name};

const MAX_PROVISIONER_PARAMETERS: usize = 512;
const MAX_PROVISIONER_PARAMETER_SIZE: usize = 256 * 1024;
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    Column::new("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
    Column::new("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
    Column::new("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    Column::age(),
];

impl KindHooks for StorageClass {
    fn defaults(&mut self) {
        self.reclaim_policy.get_or_insert_with(|| "Delete".into());
        self.volume_binding_mode
            .get_or_insert_with(|| "Immediate".into());
    }

    fn validate(&self, errs: &mut ErrorList) {
        if self.provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            let lower = self.provisioner.to_lowercase();
            for msg in qualified_name(&lower) {
                errs.push(FieldError::invalid("provisioner", lower.as_str(), msg));
            }
        }
        if let Some(params) = &self.parameters {
            if params.len() > MAX_PROVISIONER_PARAMETERS {
                errs.push(FieldError::too_long(
                    "parameters",
                    MAX_PROVISIONER_PARAMETERS,
                ));
            } else {
                let mut size = 0;
                for (k, v) in params {
                    if k.is_empty() {
                        errs.push(FieldError::invalid(
                            "parameters",
                            "",
                            "field can not be empty.",
                        ));
                    }
                    size += k.len() + v.len();
                }
                if size > MAX_PROVISIONER_PARAMETER_SIZE {
                    errs.push(FieldError::too_long(
                        "parameters",
                        MAX_PROVISIONER_PARAMETER_SIZE,
                    ));
                }
            }
        }
        if let Some(p) = self.reclaim_policy.as_deref().filter(|p| !p.is_empty()) {
            if p != "Delete" && p != "Retain" {
                errs.push(FieldError::not_supported(
                    "reclaimPolicy",
                    p,
                    &["Delete", "Retain"],
                ));
            }
        }
        match self.volume_binding_mode.as_deref() {
            None => errs.push(FieldError::required("volumeBindingMode", "")),
            Some("Immediate" | "WaitForFirstConsumer") => {}
            Some(other) => errs.push(FieldError::not_supported(
                "volumeBindingMode",
                other,
                &["Immediate", "WaitForFirstConsumer"],
            )),
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        if self.parameters != old.parameters {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if self.provisioner != old.provisioner {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        immutable_field(
            &self.volume_binding_mode,
            &old.volume_binding_mode,
            "volumeBindingMode",
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        STORAGE_CLASS_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let annotations = self.metadata.annotations.clone().unwrap_or_default();
        let is_default = [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
            .iter()
            .any(|a| annotations.get(*a).map(String::as_str) == Some("true"));
        let mut name = self.metadata.name.clone().unwrap_or_default();
        if is_default {
            name.push_str(" (default)");
        }
        vec![
            json!(name),
            json!(self.provisioner),
            json!(self
                .reclaim_policy
                .clone()
                .unwrap_or_else(|| "Delete".to_string())),
            json!(self
                .volume_binding_mode
                .clone()
                .unwrap_or_else(|| "Immediate".to_string())),
            json!(self.allow_volume_expansion.unwrap_or(false)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row, update};
    use super::*;

    #[test]
    fn storage_classes_default_and_freeze_their_parameters() {
        let sc = create::<StorageClass>(json!({
            "metadata": {"name": "local", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": "rancher.io/local-path",
            "parameters": {"path": "/data"}
        }));
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(errors::<StorageClass>(&sc).is_empty());
        assert_eq!(
            row::<StorageClass>(&sc),
            vec![
                json!("local (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false),
                json!("60m"),
            ]
        );
        let mut new = sc.clone();
        new["parameters"]["path"] = json!("/other");
        let (_, errs) = update::<StorageClass>(new, &sc);
        assert_eq!(
            errs,
            vec!["parameters: Forbidden: updates to parameters are forbidden."]
        );
        let bad = create::<StorageClass>(json!({"metadata": {"name": "x"}}));
        assert_eq!(
            errors::<StorageClass>(&bad),
            vec!["provisioner: Required value"]
        );
    }
}
