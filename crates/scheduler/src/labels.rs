//! Label maps as the scheduler keeps them. Selectors (label, node) are the shared
//! `capstan_api::selector` ones.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;
