//! coordination.k8s.io/v1 Lease, with upstream's validation
//! (pkg/apis/coordination/validation) and printer.

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{json, Value};

use super::apps::{age_cell, name_cell};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};

const LEASE_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
    Column::age(),
];

/// `strategy` and `preferredHolder` belong to the CoordinatedLeaderElection gate, off in 1.32.
fn drop_coordinated_fields(lease: &mut Lease, old: Option<&Lease>) {
    let in_use = old
        .and_then(|o| o.spec.as_ref())
        .is_some_and(|s| s.strategy.is_some() || s.preferred_holder.is_some());
    if let Some(spec) = lease.spec.as_mut().filter(|_| !in_use) {
        spec.strategy = None;
        spec.preferred_holder = None;
    }
}

impl KindHooks for Lease {
    fn defaults(&mut self) {
        // A non-pointer struct upstream: always serialized.
        self.spec.get_or_insert_with(Default::default);
    }

    fn prepare_for_create(&mut self) {
        drop_coordinated_fields(self, None);
    }

    fn prepare_for_update(&mut self, old: &Self) {
        drop_coordinated_fields(self, Some(old));
    }

    fn validate(&self, errs: &mut ErrorList) {
        let Some(spec) = &self.spec else { return };
        let path = Path::new("spec");
        if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
            errs.push(FieldError::invalid(
                path.child("leaseDurationSeconds"),
                d,
                "must be greater than 0",
            ));
        }
        if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
            errs.push(FieldError::invalid(
                path.child("leaseTransitions"),
                t,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(s) = spec.strategy.as_deref() {
            if s != "OldestEmulationVersion" {
                errs.push(FieldError::not_supported(
                    path.child("strategy"),
                    s,
                    &["OldestEmulationVersion"],
                ));
            }
        }
        if spec
            .preferred_holder
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            && spec.strategy.as_deref().is_none_or(str::is_empty)
        {
            errs.push(FieldError::forbidden(
                path.child("preferredHolder"),
                "may only be specified if `strategy` is defined",
            ));
        }
    }

    fn columns() -> &'static [Column] {
        LEASE_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let holder = self
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        vec![
            name_cell(&self.metadata),
            json!(holder),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row};
    use super::*;

    #[test]
    fn leases_check_durations_and_print_their_holder() {
        let l = create::<Lease>(json!({
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 0, "strategy": "OldestEmulationVersion"}
        }));
        assert!(l["spec"].get("strategy").is_none());
        assert_eq!(
            errors::<Lease>(&l),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        assert_eq!(
            row::<Lease>(&l),
            vec![json!("node-1"), json!("node-1"), json!("60m")]
        );
    }
}
