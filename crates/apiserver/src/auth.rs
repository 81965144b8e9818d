//! Authentication: bearer tokens mapped to users. Only /version and the health endpoints
//! answer without credentials; everything else needs a known token (401 otherwise).

use std::collections::HashMap;

use http::HeaderMap;
use parking_lot::RwLock;

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn admin() -> Self {
        Self {
            name: "system:admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
}

#[derive(Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<String, User>>,
}

impl Authenticator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_token(&self, token: impl Into<String>, user: User) {
        self.tokens.write().insert(token.into(), user);
    }

    /// The user behind the request's bearer token, if any.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        if token.is_empty() {
            return None;
        }
        self.tokens.read().get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_bearer_tokens_authenticate() {
        let a = Authenticator::new();
        a.add_token("secret", User::admin());
        let mut h = HeaderMap::new();
        assert!(a.authenticate(&h).is_none());
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer wrong".parse().expect("hv"),
        );
        assert!(a.authenticate(&h).is_none());
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer secret".parse().expect("hv"),
        );
        assert_eq!(a.authenticate(&h), Some(User::admin()));
        h.insert(
            http::header::AUTHORIZATION,
            "Basic c2VjcmV0".parse().expect("hv"),
        );
        assert!(a.authenticate(&h).is_none());
    }
}
