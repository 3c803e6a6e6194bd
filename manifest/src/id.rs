//! Component ids, validated when parsed.

use serde::Deserialize;
use std::fmt;

/// A component id: lowercase words of letters and digits joined by `-` or `_` (Spin's rule).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(String);

/// An id that breaks Spin's rule.
#[derive(Debug, thiserror::Error)]
#[error("invalid component id '{0}': use lowercase letters and digits, words joined by '-' (e.g. 'cifar10', 'my-model')")]
pub struct InvalidComponentId(String);

impl ComponentId {
    /// Checks `s` against Spin's rule.
    pub fn parse(s: &str) -> Result<Self, InvalidComponentId> {
        let ok_word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let starts_ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if starts_ok && s.split(['-', '_']).all(ok_word) { Ok(Self(s.to_owned())) } else { Err(InvalidComponentId(s.to_owned())) }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ComponentId::parse(&s).map_err(serde::de::Error::custom)
    }
}
