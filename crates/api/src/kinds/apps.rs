//! apps/v1 kinds.

use k8s_openapi::api::apps::v1::*;

use crate::strategy::KindHooks;

impl KindHooks for ControllerRevision {}
impl KindHooks for DaemonSet {}
impl KindHooks for Deployment {}
impl KindHooks for ReplicaSet {}
impl KindHooks for StatefulSet {}
