//! Spin's variables, resolved once when the manifest is loaded: each of the app's `[variables]`
//! takes its value from the environment variable `SPIN_VARIABLE_` + its name in upper case, else
//! its `default`; one that is `required` and not set stops the app at start, naming it. Component
//! `variables` and `allowed_outbound_hosts` entries are templates over them: `{{ name }}` is
//! replaced by the value, nothing else is special, and a name the app does not declare is an
//! error. As in Spin, an outbound host that resolves to nothing (`""`, `http://`, `https://`) is
//! dropped, and `environment` values are taken literally.

use crate::{AppManifest, ComponentId, Invalid};
use std::collections::BTreeMap;
use std::fmt;

/// The resolved values of each component's `variables`.
#[derive(Clone, Default)]
pub struct ComponentVariables(BTreeMap<ComponentId, BTreeMap<String, String>>);

impl ComponentVariables {
    /// Component `id`'s variables, by name.
    pub fn of(&self, id: &ComponentId) -> Option<&BTreeMap<String, String>> {
        self.0.get(id)
    }
}

/// Names only: values may be secrets.
impl fmt::Debug for ComponentVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(id, vars)| (id, vars.keys().collect::<Vec<_>>()))).finish()
    }
}

/// Spin's rule for variable names: lower-case words of letters and digits, each starting with a
/// letter, joined by single `_`.
fn is_variable_name(name: &str) -> bool {
    name.split('_').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase()) && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// The environment variable that provides variable `name`.
pub fn environment_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Replaces every `{{ name }}` in `template` by the value of `name`.
fn expand(template: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("'{{' is not closed by '}}'")?;
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| format!("'{name}' is not declared in [variables]"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the app's variables from `env`, expands the templates in components' `variables`
/// and `allowed_outbound_hosts` (the latter in place), and returns the components' variables.
pub(crate) fn resolve(app: &mut AppManifest, env: &dyn Fn(&str) -> Option<String>) -> Result<ComponentVariables, Invalid> {
    let mut values = BTreeMap::new();
    for (name, variable) in &app.variables {
        if !is_variable_name(name) {
            return Err(Invalid::Variable(format!(
                "variables.{name}: a variable name is lower-case words of letters and digits, each starting with a letter, joined by '_'"
            )));
        }
        if variable.required == variable.default.is_some() {
            return Err(Invalid::Variable(format!("variables.{name}: give it either required = true or a default, not both or neither")));
        }
        let value = match (env(&environment_name(name)), &variable.default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(Invalid::Variable(format!("variable '{name}' is required: set {} in the environment", environment_name(name))));
            }
        };
        values.insert(name.as_str(), value);
    }
    let mut resolved = BTreeMap::new();
    for (id, component) in &mut app.component {
        let mut own = BTreeMap::new();
        for (name, template) in &component.variables {
            if !is_variable_name(name) {
                return Err(Invalid::Variable(format!(
                    "component.{id}.variables.{name}: not a variable name (lower-case words joined by '_')"
                )));
            }
            let value = expand(template, &values).map_err(|e| Invalid::Variable(format!("component.{id}.variables.{name}: {e}")))?;
            own.insert(name.clone(), value);
        }
        resolved.insert(id.clone(), own);
        let mut hosts = Vec::with_capacity(component.allowed_outbound_hosts.len());
        for template in &component.allowed_outbound_hosts {
            let host = expand(template, &values)
                .map_err(|e| Invalid::Variable(format!("component.{id}.allowed_outbound_hosts: '{template}': {e}")))?;
            if !matches!(host.as_str(), "" | "http://" | "https://") {
                hosts.push(host);
            }
        }
        component.allowed_outbound_hosts = hosts;
    }
    Ok(ComponentVariables(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_declared_values_and_nothing_else_is_special() {
        let values = BTreeMap::from([("host", "api.example.com".to_owned()), ("empty", String::new())]);
        assert_eq!(expand("https://{{ host }}/v1", &values).unwrap(), "https://api.example.com/v1");
        assert_eq!(expand("{{host}}{{  empty }}:{{host}}", &values).unwrap(), "api.example.com:api.example.com");
        assert_eq!(expand("a }} b { c", &values).unwrap(), "a }} b { c");
        assert!(expand("{{ host", &values).unwrap_err().contains("not closed"));
        assert!(expand("{{ other }}", &values).unwrap_err().contains("'other' is not declared"));
    }

    #[test]
    fn names_follow_spins_rule() {
        for good in ["api_key", "v2_host", "x"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["API_KEY", "api-key", "key_1", "_x", "a__b", "x_", ""] {
            assert!(!is_variable_name(bad), "{bad}");
        }
        assert_eq!(environment_name("api_key"), "SPIN_VARIABLE_API_KEY");
    }
}
