//! autoscaling/v1 and v2 HorizontalPodAutoscalers.

use k8s_openapi::api::autoscaling::{v1, v2};

use crate::strategy::KindHooks;

impl KindHooks for v1::HorizontalPodAutoscaler {}
impl KindHooks for v2::HorizontalPodAutoscaler {}
