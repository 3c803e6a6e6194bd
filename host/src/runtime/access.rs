//! Who may call a component: optional bearer tokens, named in the manifest by their source and
//! never by value. A source is a file of hashed tokens (`spindle token add PRINCIPAL --file
//! FILE` appends `PRINCIPAL sha256:HEX` and prints the token once) or an environment variable
//! holding `PRINCIPAL:TOKEN` pairs separated by commas (as a Kubernetes secret would give them).
//!
//! Only SHA-256 digests are kept in memory, and a presented token is hashed and compared with
//! every digest in constant time, so neither the answer nor its timing says how close a guess
//! came or which principals exist.

use crate::manifest::{AccessSource, Manifest};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Shortest token accepted from a variable (`spindle token add` makes 68-character ones).
const MIN_TOKEN_LEN: usize = 16;

/// The tokens that may call one component (or the host's own endpoints).
#[derive(Debug)]
pub struct Tokens {
    /// Principal and the SHA-256 of its token; a principal may have several (rotation).
    entries: Vec<(String, [u8; 32])>,
    /// Where they came from, for messages.
    source: String,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// No `Authorization: Bearer` header.
    #[error("this route needs a bearer token (Authorization: Bearer TOKEN)")]
    Missing,
    /// A token that is not one of this route's.
    #[error("the bearer token is not valid for this route")]
    Invalid,
}

impl Tokens {
    /// Reads the tokens `source` names, relative to the manifest.
    pub fn load(manifest: &Manifest, source: &AccessSource) -> Result<Self> {
        match source {
            AccessSource { tokens_file: Some(file), tokens_env: None } => {
                let path = manifest.resolve(file);
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading the tokens file {}", path.display()))?;
                let entries = Self::parse_file(&text).with_context(|| format!("the tokens file {}", path.display()))?;
                if entries.is_empty() {
                    tracing::warn!("the tokens file {} holds no tokens: every request to its routes is refused", path.display());
                }
                Ok(Self { entries, source: format!("tokens file {}", path.display()) })
            }
            AccessSource { tokens_file: None, tokens_env: Some(var) } => {
                let value = std::env::var(var).with_context(|| format!("the tokens variable {var} is not set"))?;
                let mut entries = Vec::new();
                for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let Some((principal, token)) =
                        pair.split_once(':').map(|(p, t)| (p.trim(), t.trim())).filter(|(p, _)| valid_principal(p))
                    else {
                        bail!("the tokens variable {var} must hold PRINCIPAL:TOKEN pairs separated by commas");
                    };
                    if token.len() < MIN_TOKEN_LEN {
                        bail!("the tokens variable {var}: the token of '{principal}' is shorter than {MIN_TOKEN_LEN} characters");
                    }
                    entries.push((principal.to_owned(), digest(token)));
                }
                if entries.is_empty() {
                    bail!("the tokens variable {var} holds no tokens");
                }
                Ok(Self { entries, source: format!("tokens variable {var}") })
            }
            _ => bail!("name exactly one of tokens_file and tokens_env"),
        }
    }

    fn parse_file(text: &str) -> Result<Vec<(String, [u8; 32])>> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line.split_once(char::is_whitespace).and_then(|(principal, hash)| {
                let hex = hash.trim().strip_prefix("sha256:")?;
                let bytes =
                    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()?;
                Some((principal.to_owned(), <[u8; 32]>::try_from(bytes).ok()?)).filter(|(p, _)| valid_principal(p))
            });
            match parsed {
                Some(entry) => entries.push(entry),
                None => bail!("line {n}: expected `PRINCIPAL sha256:HEX` (64 hex digits), as `spindle token add` writes"),
            }
        }
        // No tokens is a valid state: every request is refused (revoking the last token works).
        Ok(entries)
    }

    /// The principal whose token the `Authorization` header carries.
    pub fn authenticate(&self, authorization: Option<&http::HeaderValue>) -> Result<&str, Refused> {
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refused::Missing)?;
        let presented = digest(token);
        let mut found = None;
        for (principal, expected) in &self.entries {
            // Every entry is compared, each in full: no early exit.
            let differs = presented.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differs == 0 {
                found = Some(principal.as_str());
            }
        }
        found.ok_or(Refused::Invalid)
    }

    /// Where the tokens came from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Principals are names for logs: letters, digits and `._-@`, at most 64.
fn valid_principal(p: &str) -> bool {
    !p.is_empty() && p.len() <= 64 && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// `spindle token add`: makes a token for `principal`, appends only its SHA-256 to `file`
/// (created with mode 0600), and returns the token, to be shown once.
pub fn add_token(principal: &str, file: &Path) -> Result<String> {
    if !valid_principal(principal) {
        bail!("principal '{principal}': use 1–64 letters, digits or . _ - @");
    }
    let mut random = [0u8; 32];
    // SAFETY: the buffer is valid for its length.
    let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    if got != 32 {
        bail!("the system gave no random bytes: {}", std::io::Error::last_os_error());
    }
    let token = format!("spt_{}", hex(&random));
    let mut out = std::fs::OpenOptions::new();
    out.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
    let mut out = out.open(file).with_context(|| format!("opening {}", file.display()))?;
    writeln!(out, "{principal} sha256:{}", hex(&digest(&token))).with_context(|| format!("writing {}", file.display()))?;
    Ok(token)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_token_authenticates_its_principal_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let alice = add_token("alice", &file).unwrap();
        let bob = add_token("bob", &file).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&alice) && !text.contains(&bob), "only digests are stored");
        let tokens = Tokens { entries: Tokens::parse_file(&text).unwrap(), source: "test".into() };
        let header = |t: &str| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        assert_eq!(tokens.authenticate(Some(&header(&alice))), Ok("alice"));
        assert_eq!(tokens.authenticate(Some(&header(&bob))), Ok("bob"));
        assert_eq!(tokens.authenticate(Some(&header("spt_nope"))), Err(Refused::Invalid));
        assert_eq!(tokens.authenticate(None), Err(Refused::Missing));
        assert_eq!(tokens.authenticate(Some(&http::HeaderValue::from_static("Basic abc"))), Err(Refused::Missing));
        assert!(Tokens::parse_file("alice sha256:12").is_err());
        assert_eq!(tokens.authenticate(Some(&header(&alice).to_str().unwrap().replace("Bearer", "BEARER").parse().unwrap())), Ok("alice"));
        let none = Tokens { entries: Tokens::parse_file("# revoked\n").unwrap(), source: "test".into() };
        assert_eq!(none.authenticate(Some(&header(&alice))), Err(Refused::Invalid), "an empty file refuses everyone");
    }
}
