//! batch/v1 kinds.

pub mod cron;

use k8s_openapi::api::batch::v1::*;

use crate::strategy::KindHooks;

impl KindHooks for CronJob {}
impl KindHooks for Job {}
