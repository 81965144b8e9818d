//! capstan's node agent (a kubelet): runs the pods bound to this node on containerd through
//! CRI v1.
//!
//! Entry point: [`Agent::run`]. It registers the Node, starts (or adopts) containerd with a
//! generated config and the CNI bridge network for the node's podCIDR, imports the air-gap
//! images and, when containerd lacks it, the built-in pause image ([`pause`]), then runs the
//! node status and lease loops, the log server and the pod manager ([`pods::run`]), which
//! keeps one state-machine worker per pod.
#![forbid(unsafe_code)]

pub mod agent;
pub mod backoff;
pub mod cgroups;
pub mod claims;
pub mod cni;
pub mod containerd;
pub mod cri;
pub mod events;
pub mod images;
pub mod join;
pub mod localpath;
pub mod logs;
pub mod masquerade;
pub mod metrics;
pub mod node;
pub mod pause;
pub mod podroutes;
pub mod pods;
pub mod registries;
pub mod server;
pub mod streams;
pub mod util;
pub mod vxlan;

pub use agent::{Agent, Config, RuntimeEndpoint};
