//! batch/v1 kinds.

use k8s_openapi::api::batch::v1::*;

use crate::strategy::KindHooks;

impl KindHooks for CronJob {}
impl KindHooks for Job {}
