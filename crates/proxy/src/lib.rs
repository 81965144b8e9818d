//! capstan's service proxy, run by every real node agent as kube-proxy's nftables mode runs on
//! every node: Services and EndpointSlices (watched through `capstan_runtime` informers) are
//! turned into one nftables table (`ip capstan` by default) of verdict maps keyed by
//! `address . protocol . port` and one chain per Service port and endpoint.
//!
//! - [`endpoints`] picks the endpoints that get traffic; [`rules`] generates one Service's
//!   [`fragment::Fragment`] (pure); [`ruleset`] turns fragments into nft scripts (the shared
//!   base, a per-Service diff, adoption of an existing table).
//! - [`proxier::Proxier`] keeps what was programmed and applies differences through
//!   [`nft::Netfilter`] (`nft -f -`, one transaction per sync).
//! - [`run`] wires informers to the proxier, coalescing bursts of changes.
#![forbid(unsafe_code)]

pub mod endpoints;
pub mod fragment;
pub mod metrics;
pub mod nft;
pub mod proxier;
pub mod rules;
pub mod ruleset;
pub mod run;

pub use metrics::Metrics;
pub use nft::{Netfilter, NftCommand};
pub use proxier::Proxier;
pub use run::{run, Settings};

/// The default table name.
pub const DEFAULT_TABLE: &str = "capstan";

/// Deletes table `ip <table>` (`capstan server|agent --cleanup`); false when there was none.
pub fn cleanup(table: &str) -> nft::Result<bool> {
    NftCommand::default().delete_table(table)
}
