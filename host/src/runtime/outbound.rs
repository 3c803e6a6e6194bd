//! Outbound HTTP from guests: only to what the manifest's `allowed_outbound_hosts` grants.

use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Outbound HTTP only to what `allowed_outbound_hosts` grants (`scheme://host[:port]`, with
/// `*` for any scheme, host or port and `*.domain` for subdomains); everything else is denied.
#[derive(Clone, Default)]
pub struct OutboundPolicy {
    allowed: Arc<[String]>,
}

impl OutboundPolicy {
    /// The policy for a component's `allowed_outbound_hosts`.
    pub fn new(allowed: &[String]) -> Self {
        Self { allowed: allowed.iter().cloned().collect() }
    }

    /// Whether a request to `uri` is granted.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("http");
        let Some(host) = uri.host() else { return false };
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.allowed.iter().any(|rule| {
            let Some((rule_scheme, rest)) = rule.split_once("://") else { return false };
            let (rule_host, rule_port) = match rest.trim_end_matches('/').rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest.trim_end_matches('/'), None),
            };
            let scheme_ok = rule_scheme == "*" || rule_scheme == scheme;
            let host_ok = rule_host == "*"
                || rule_host.eq_ignore_ascii_case(host)
                || rule_host.strip_prefix("*.").is_some_and(|d| host.to_ascii_lowercase().ends_with(&format!(".{d}")));
            let port_ok = match rule_port {
                None => port == if rule_scheme == "https" { 443 } else { 80 } || rule_scheme == "*",
                Some("*") => true,
                Some(p) => p.parse() == Ok(port),
            };
            scheme_ok && host_ok && port_ok
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        _ = fut;
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outbound request denied: not in allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OutboundPolicy;

    #[test]
    fn outbound_hosts_follow_the_manifest() {
        let none = OutboundPolicy::default();
        assert!(!none.allows(&"http://example.com/".parse().unwrap()));
        let p = OutboundPolicy::new(&["https://api.example.com".into(), "http://127.0.0.1:*".into(), "https://*.models.dev".into()]);
        assert!(p.allows(&"https://api.example.com/x".parse().unwrap()));
        assert!(!p.allows(&"http://api.example.com/x".parse().unwrap()));
        assert!(!p.allows(&"https://api.example.com:8443/x".parse().unwrap()));
        assert!(p.allows(&"http://127.0.0.1:9000/".parse().unwrap()));
        assert!(p.allows(&"https://a.models.dev/".parse().unwrap()));
        assert!(!p.allows(&"https://models.dev.evil.com/".parse().unwrap()));
    }
}
