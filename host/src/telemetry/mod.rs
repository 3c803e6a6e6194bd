//! What the host tells its operator: Prometheus [`metrics`] and the [`admin`] listener that
//! serves them. Every other room records into it; it depends on none of them.

pub mod admin;
pub mod metrics;
