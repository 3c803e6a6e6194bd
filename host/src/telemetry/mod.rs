//! What the host tells its operator: Prometheus [`metrics`] and the [`admin`] listener that
//! serves them, logs and OTLP [`traces`], and the request id that ties them together
//! ([`request_id`]). Every other room records into it; it depends on none of them.

pub mod admin;
pub mod audit;
pub mod metrics;
pub mod request_id;
pub mod traces;
