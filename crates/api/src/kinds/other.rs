//! Kinds of the smaller groups: coordination, events, policy, rbac, storage, apiextensions.

use k8s_openapi::api::{coordination::v1::Lease, events::v1::Event, policy::v1::PodDisruptionBudget, rbac::v1 as rbac, storage::v1::StorageClass};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::strategy::KindHooks;
use crate::validation::NameRule;

impl KindHooks for Lease {}
impl KindHooks for Event {}
impl KindHooks for PodDisruptionBudget {}
impl KindHooks for StorageClass {}
impl KindHooks for CustomResourceDefinition {}
impl KindHooks for rbac::ClusterRoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;
}
impl KindHooks for rbac::ClusterRole {
    const NAME_RULE: NameRule = NameRule::PathSegment;
}
impl KindHooks for rbac::RoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;
}
impl KindHooks for rbac::Role {
    const NAME_RULE: NameRule = NameRule::PathSegment;
}
