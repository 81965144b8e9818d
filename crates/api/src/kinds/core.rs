//! core/v1 kinds.

pub(crate) mod checks;
pub mod quantity;

use k8s_openapi::api::core::v1::*;

use crate::strategy::KindHooks;

impl KindHooks for ConfigMap {}
impl KindHooks for Endpoints {}
impl KindHooks for Event {}
impl KindHooks for LimitRange {}
impl KindHooks for Namespace {}
impl KindHooks for Node {}
impl KindHooks for PersistentVolumeClaim {}
impl KindHooks for PersistentVolume {}
impl KindHooks for Pod {}
impl KindHooks for PodTemplate {}
impl KindHooks for ReplicationController {}
impl KindHooks for ResourceQuota {}
impl KindHooks for Secret {}
impl KindHooks for ServiceAccount {}
impl KindHooks for Service {}
