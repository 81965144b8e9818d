//! networking.k8s.io/v1 and discovery.k8s.io/v1 kinds.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::*;

use crate::strategy::KindHooks;

impl KindHooks for EndpointSlice {}
impl KindHooks for IngressClass {}
impl KindHooks for Ingress {}
impl KindHooks for NetworkPolicy {}
