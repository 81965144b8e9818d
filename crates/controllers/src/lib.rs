//! capstan's controller manager: [`start`] runs leader election on a Lease and, while this
//! server leads, every enabled controller on the shared `capstan_runtime`. Each controller is a plain
//! client of the Kubernetes API (kube-rs), exactly as kube-controller-manager is.
#![forbid(unsafe_code)]

pub mod claim;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod ephemeral;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod manager;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod owner;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod status;
pub mod ttlafterfinished;
pub mod volume;

pub use manager::{start, Config, CONTROLLERS};
