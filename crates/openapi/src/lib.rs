//! What capstan knows about the shape of its kinds: the OpenAPI v3 documents it serves
//! ([`index`], [`document`]), the type model those documents describe ([`model`]), and the patch
//! engines that model drives ([`patch`]). [`v2`] serves the same definitions as Swagger 2.0,
//! in JSON and gnostic's protobuf form, for kubectl's client-side validation.
//!
//! Architecture invariant: no I/O and no HTTP here. The API server routes `/openapi/v3` and
//! `/openapi/v3/<path>` to [`index`] and [`document`] and sends the bytes with
//! [`CONTENT_TYPE`]; everything is built lazily on first use and kept for the process lifetime.

#![forbid(unsafe_code)]

mod document;
mod extensions;
mod kinds;
pub mod model;
mod params;
pub mod patch;
mod paths;
mod schemas;
pub mod v2;

pub use document::{document, document_paths, index, server_relative_url, warm, CONTENT_TYPE};
pub use model::{ListType, MapType, Model, PatchMeta, PatchStrategy, Shape, TypeRef};
