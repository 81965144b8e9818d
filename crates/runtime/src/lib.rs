//! What every in-process client of the Kubernetes API shares, written once: [`informer`]
//! (list+watch into a shared cache with change handlers), [`queue`] (deduplicating work queue
//! with per-key backoff), [`workers`] (a pool running a [`workers::Reconciler`] on a queue),
//! [`events`] (the event recorder with client-go's correlation, spam filter and rate limits),
//! [`leader`] (Lease-based leader election) and [`files`] (owner-only, fsynced private files).
//!
//! Everything here is a plain kube-rs client: it would run against upstream Kubernetes as is.
//! Pure helpers with no I/O that the API server needs too (label, field and node selectors,
//! quantities) live in `capstan_api` instead, so the server does not depend on a client stack.
#![forbid(unsafe_code)]

pub mod events;
pub mod files;
pub mod informer;
pub mod leader;
pub mod queue;
pub mod workers;

pub use events::{EventType, Recorder, RecorderConfig};
pub use informer::{key_of, split_key, Cache, Change, Informer};
pub use queue::Queue;
pub use workers::{run_workers, sleep_or_shutdown, ReconcileError, Reconciler, WorkerObserver};
