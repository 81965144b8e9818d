//! Leader election on a coordination.k8s.io/v1 Lease (the controller manager's is
//! `kube-system/capstan-controller-manager`),
//! as client-go's leaderelection: acquire when the lease is free or its holder has not
//! renewed within the lease duration (measured on our own clock, so clock skew between servers
//! does not matter), renew every [`RETRY_PERIOD`], step down when renewing fails for
//! [`RENEW_DEADLINE`] or on shutdown (releasing the lease so another server takes over at once).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;

/// Upstream's defaults (kube-controller-manager): 15s lease, 10s renew deadline, 2s retry.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Errors talking to the API about the lease; all retryable (the next try comes after
/// [`RETRY_PERIOD`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the lease: {0}")]
    Read(#[source] kube::Error),
    #[error("writing the lease: {0}")]
    Write(#[source] kube::Error),
    #[error("the lease is held by {0}")]
    HeldByOther(String),
}

/// The lease as last seen, with the local time it last changed.
struct Observed {
    record: Option<(String, String)>, // (holder, resourceVersion)
    changed_at: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    observed: Observed,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity,
            observed: Observed {
                record: None,
                changed_at: Instant::now(),
            },
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One acquire-or-renew attempt; Ok when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<(), Error> {
        let now = MicroTime(Timestamp::now());
        let current = self.api.get_opt(&self.name).await.map_err(Error::Read)?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            self.api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(Error::Write)?;
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen = Some((holder.clone(), rv));
        if self.observed.record != seen {
            self.observed = Observed {
                record: seen,
                changed_at: Instant::now(),
            };
        }
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(LEASE_DURATION);
        let ours = holder == self.identity;
        if !holder.is_empty() && !ours && self.observed.changed_at.elapsed() < duration {
            return Err(Error::HeldByOther(holder));
        }
        let (acquired, transitions) = if ours {
            (
                spec.acquire_time.clone().unwrap_or(now.clone()),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (now.clone(), spec.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(self.spec(acquired, now, transitions));
        // The write carries the resourceVersion we read: two servers cannot both win.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(Error::Write)?;
        self.observed = Observed {
            record: Some((
                self.identity.clone(),
                written.metadata.resource_version.unwrap_or_default(),
            )),
            changed_at: Instant::now(),
        };
        Ok(())
    }

    fn spec(&self, acquire: MicroTime, renew: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquire),
            renew_time: Some(renew),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Gives the lease up (on shutdown) so another server need not wait for it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        let _ = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
    }
}
