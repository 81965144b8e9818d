//! Turns a request path into what it addresses: a fixed endpoint, a discovery document, or a
//! resource (collection, object or subresource) of a served kind, following upstream's
//! RequestInfo rules (e.g. `namespaces/{ns}/status` is the namespace's own status).

use capstan_api::catalogue::{self, ResourceInfo};

use crate::error::ApiError;

/// What a path addresses.
#[derive(Debug)]
pub enum Route {
    Version,
    Health(String),
    Metrics,
    /// `/api`: core group versions.
    CoreGroup,
    /// `/apis`: the group list.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiV3Index,
    OpenApiV3(String),
    OpenApiV2,
    Resource(ResourceRoute),
}

/// A resource request: collection when `name` is None.
#[derive(Debug)]
pub struct ResourceRoute {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Subresources of a namespace that are addressed as `namespaces/{name}/{sub}`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses a request path (already percent-decoded per segment).
pub fn parse(path: &str) -> Result<Route, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<String> = trimmed
        .split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health(segs[0].to_string())),
        ["metrics"] => Ok(Route::Metrics),
        ["api"] => Ok(Route::CoreGroup),
        ["apis"] => Ok(Route::Groups),
        ["openapi", "v3"] => Ok(Route::OpenApiV3Index),
        ["openapi", "v3", rest @ ..] => Ok(Route::OpenApiV3(rest.join("/"))),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["api", version] => known_gv("", version),
        ["apis", group] => {
            if catalogue::groups().iter().any(|g| g.name == *group) {
                Ok(Route::Group(group.to_string()))
            } else {
                Err(ApiError::no_such_resource())
            }
        }
        ["apis", group, version] => known_gv(group, version),
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => Err(ApiError::no_such_resource()),
    }
}

fn known_gv(group: &str, version: &str) -> Result<Route, ApiError> {
    if catalogue::in_group_version(group, version).next().is_some() {
        Ok(Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        })
    } else {
        Err(ApiError::no_such_resource())
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    let (namespace, parts) = match rest {
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty() && !NAMESPACE_SUBRESOURCES.contains(&tail[0]) =>
        {
            (Some(ns.to_string()), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match parts {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_such_resource()),
    };
    let info = catalogue::lookup(group, version, plural).ok_or_else(ApiError::no_such_resource)?;
    if namespace.is_some() && !info.namespaced() {
        return Err(ApiError::no_such_resource());
    }
    if let Some(sub) = &subresource {
        if info.subresource(sub).is_none() {
            return Err(ApiError::no_such_resource());
        }
    }
    if matches!(name.as_deref(), Some("")) {
        return Err(ApiError::no_such_resource());
    }
    Ok(Route::Resource(ResourceRoute {
        info,
        namespace,
        name,
        subresource,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRoute {
        match parse(path).expect("parses") {
            Route::Resource(r) => r,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn namespaced_objects_and_collections_parse() {
        let r = res("/api/v1/namespaces/default/pods/p1");
        assert_eq!(r.info.kind, "Pod");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("p1"));
        let r = res("/apis/apps/v1/deployments");
        assert!(r.namespace.is_none() && r.name.is_none());
    }

    #[test]
    fn namespace_status_is_a_subresource_of_the_namespace() {
        let r = res("/api/v1/namespaces/ns1/status");
        assert_eq!(r.info.kind, "Namespace");
        assert_eq!(r.name.as_deref(), Some("ns1"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/api/v1/namespaces/ns1");
        assert_eq!(r.name.as_deref(), Some("ns1"));
    }

    #[test]
    fn subresources_parse_and_unknown_ones_are_rejected() {
        let r = res("/apis/apps/v1/namespaces/d/deployments/web/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert!(parse("/api/v1/namespaces/d/configmaps/x/scale").is_err());
    }

    #[test]
    fn unknown_resources_are_not_found() {
        assert!(parse("/api/v1/widgets").is_err());
        assert!(parse("/apis/nope/v1").is_err());
        assert!(parse("/api/v1/namespaces/d/nodes").is_err());
    }

    #[test]
    fn discovery_paths_parse() {
        assert!(matches!(parse("/api").expect("api"), Route::CoreGroup));
        assert!(matches!(
            parse("/apis/apps").expect("apps"),
            Route::Group(_)
        ));
        assert!(matches!(
            parse("/apis/apps/v1").expect("apps/v1"),
            Route::GroupVersion { .. }
        ));
        assert!(matches!(
            parse("/healthz/ping").expect("h"),
            Route::Health(_)
        ));
    }
}
