//! The catalogue of kinds capstan serves, and everything the API server needs to know per kind.
//!
//! The API server is generic: it routes, negotiates, stores and watches without knowing any kind.
//! What differs between kinds lives here, as data ([`catalogue::ResourceInfo`]) plus a stateless
//! [`strategy::Strategy`] per kind (decoding, defaults, create/update preparation, validation,
//! table columns, field selectors), following the upstream registry/strategy pattern.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of HTTP or storage.

pub mod catalogue;
pub mod field_error;
pub mod kinds;
pub mod meta;
pub mod net;
pub mod selector;
pub mod strategy;
pub mod table;
pub mod validation;
pub mod volume;

pub use catalogue::{ResourceInfo, Scope};
pub use field_error::{ErrorList, FieldError, FieldErrorType};
pub use strategy::Strategy;
