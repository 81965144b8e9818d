//! The three patch formats of `PATCH` (JSON patch, JSON merge patch, strategic merge patch) as
//! pure functions on `serde_json::Value`, plus the diffs that produce merge and strategic merge
//! patches (what kubectl computes, useful for tests and for `kubectl edit`-like flows).
//!
//! Server-side apply is not here: it needs managed fields and ownership, not just a merge.
//!
//! Every error type has `status_code()`: the HTTP status upstream answers with for it (400 for
//! a malformed patch, 422 for a patch that cannot apply to this object), so the API server can
//! turn it into a `Status` without guessing. None of these errors is worth retrying unchanged.

pub mod json;
pub mod merge;
pub mod strategic;
