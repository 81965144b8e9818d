//! Per-kind behaviour: one [`KindHooks`](crate::strategy::KindHooks) implementation per kind,
//! grouped by API group, plus conversions between versions that share storage.
//!
//! A kind without special behaviour gets an empty impl and so the generic defaults: no extra
//! defaults or validation, and upstream's generic "Name, Created At" table.

pub mod apiextensions;
pub mod apps;
pub mod autoscaling;
pub mod batch;
pub mod conversion;
pub mod coordination;
pub mod core;
pub mod events;
pub mod networking;
pub mod pod_spec;
pub mod policy;
pub mod rbac;
pub mod storage;
