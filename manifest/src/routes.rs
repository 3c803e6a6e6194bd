//! HTTP routes as data, with Spin's semantics.
//!
//! A route is exact (`/models/cifar10/classify`) or a wildcard tail (`/models/cifar10/...`,
//! which matches `/models/cifar10` and everything under it; `/...` matches everything).
//! An exact route beats any wildcard; among wildcards the longest prefix wins. A trailing `/`
//! on a request path is ignored for exact routes. Two triggers on the same route are an error.
//!
//! The router is built once, while the manifest is validated, and kept in the [`Manifest`]: the
//! server matches requests with the same value that was checked.
//!
//! [`Manifest`]: crate::Manifest

use crate::{AppManifest, ComponentId, RouteSpec};

/// The router, built once per app.
#[derive(Clone, Debug, Default)]
pub struct Router {
    exact: Vec<(String, ComponentId)>,
    /// Wildcard prefixes without the `/...` tail, longest first (`""` for `/...`).
    wildcards: Vec<(String, ComponentId)>,
}

/// What a request path matched.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The component the route leads to.
    pub component: &'a ComponentId,
    /// The route as written in the manifest.
    pub route: String,
    /// The part of the path after a wildcard's prefix (Spin's `spin-path-info`); `""` for exact.
    pub path_info: String,
}

/// Why the routes do not make a router.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[expect(missing_docs, reason = "the fields are named by the messages")]
pub enum RouteError {
    /// A route that does not start with `/`.
    #[error("route '{route}' (component '{component}') must start with '/'")]
    NotAbsolute { route: String, component: String },
    /// Two triggers on one route.
    #[error("route '{route}' is given twice: for component '{first}' and for component '{second}'")]
    Duplicate { route: String, first: String, second: String },
    /// `...` anywhere but at the end.
    #[error("route '{route}' (component '{component}'): '...' may only end a route, as '/...'")]
    BadWildcard { route: String, component: String },
}

impl Router {
    /// Builds the router from the manifest's `[[trigger.http]]` entries; private routes get none.
    pub fn build(app: &AppManifest) -> Result<Self, RouteError> {
        let mut router = Router::default();
        for trigger in &app.trigger.http {
            let (RouteSpec::Path(route), Some(component)) = (&trigger.route, trigger.component_id()) else { continue };
            router.add(route, component.clone())?;
        }
        router.wildcards.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(router)
    }

    fn add(&mut self, route: &str, component: ComponentId) -> Result<(), RouteError> {
        if !route.starts_with('/') {
            return Err(RouteError::NotAbsolute { route: route.into(), component: component.to_string() });
        }
        let (table, key) = match route.strip_suffix("/...") {
            Some(prefix) => (&mut self.wildcards, normalise(prefix)),
            None if route.contains("...") => {
                return Err(RouteError::BadWildcard { route: route.into(), component: component.to_string() });
            }
            None => (&mut self.exact, normalise(route)),
        };
        if let Some((_, first)) = table.iter().find(|(k, _)| *k == key) {
            return Err(RouteError::Duplicate { route: route.into(), first: first.to_string(), second: component.to_string() });
        }
        table.push((key, component));
        Ok(())
    }

    /// Finds the component for a request path.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let path = normalise(path);
        if let Some((route, component)) = self.exact.iter().find(|(r, _)| *r == path) {
            let route = if route.is_empty() { "/".to_owned() } else { route.clone() };
            return Some(RouteMatch { component, route, path_info: String::new() });
        }
        self.wildcards.iter().find_map(|(prefix, component)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| RouteMatch {
                component,
                route: format!("{prefix}/..."),
                path_info: rest.to_owned(),
            })
        })
    }

    /// Every routable path, for logs: `(route, component)`.
    pub fn routes(&self) -> impl Iterator<Item = (String, &ComponentId)> {
        let exact = self.exact.iter().map(|(r, c)| (if r.is_empty() { "/".into() } else { r.clone() }, c));
        exact.chain(self.wildcards.iter().map(|(p, c)| (format!("{p}/..."), c)))
    }
}

/// Drops trailing slashes, so `/a/` and `/a` are one route and `/` is `""`.
fn normalise(path: &str) -> String {
    path.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Result<Router, RouteError> {
        let mut toml = String::from("spin_manifest_version = 2\n[application]\nname = \"t\"\n");
        for (route, component) in routes {
            toml += &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{component}\"\n");
        }
        for (_, component) in routes {
            toml += &format!("[component.{component}]\nsource = \"x.wasm\"\n");
        }
        let app: AppManifest = toml::from_str(&toml).expect("test manifest");
        Router::build(&app)
    }

    fn target(r: &Router, path: &str) -> Option<(String, String)> {
        r.route(path).map(|m| (m.component.to_string(), m.path_info))
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r =
            router(&[("/...", "fallback"), ("/models/...", "models"), ("/models/cifar10/...", "cifar"), ("/models/cifar10/info", "info")])
                .expect("router");
        assert_eq!(target(&r, "/models/cifar10/info"), Some(("info".into(), "".into())));
        assert_eq!(target(&r, "/models/cifar10/info/"), Some(("info".into(), "".into())));
        assert_eq!(target(&r, "/models/cifar10/classify"), Some(("cifar".into(), "/classify".into())));
        assert_eq!(target(&r, "/models/cifar10"), Some(("cifar".into(), "".into())));
        assert_eq!(target(&r, "/models/cifar100"), Some(("models".into(), "/cifar100".into())));
        assert_eq!(target(&r, "/"), Some(("fallback".into(), "".into())));
        assert_eq!(target(&r, "/other"), Some(("fallback".into(), "/other".into())));
    }

    #[test]
    fn no_match_without_a_catch_all() {
        let r = router(&[("/a/...", "a"), ("/b", "b")]).expect("router");
        assert_eq!(target(&r, "/ab"), None);
        assert_eq!(target(&r, "/b/c"), None);
        assert_eq!(target(&r, "/"), None);
    }

    #[test]
    fn duplicates_and_bad_routes_are_errors() {
        let e = router(&[("/a", "x"), ("/a/", "y")]).expect_err("duplicate");
        assert_eq!(e, RouteError::Duplicate { route: "/a/".into(), first: "x".into(), second: "y".into() });
        assert!(matches!(router(&[("a", "x")]), Err(RouteError::NotAbsolute { .. })));
        assert!(matches!(router(&[("/a/.../b", "x")]), Err(RouteError::BadWildcard { .. })));
    }
}
