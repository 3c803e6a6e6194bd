//! Logs and traces: one `tracing` subscriber for the process. Events go to stderr as text
//! (coloured only on a terminal, never with `NO_COLOR`) or one JSON object per line, filtered by
//! `RUST_LOG` (default `spindle=info,wasmtime=warn`). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (Spin's convention, and OpenTelemetry's), spans are also exported over OTLP/HTTP (protobuf):
//! one `request` span per request with its `wasi_nn.load` and `wasi_nn.compute` children.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Longest text a span field keeps of what a client or guest chose (a path, a model name), so
/// that neither can make the spans the host keeps for export large.
pub const MAX_FIELD: usize = 256;

/// `text` cut to at most [`MAX_FIELD`] bytes, at a character boundary.
pub fn clip(text: &str) -> &str {
    if text.len() <= MAX_FIELD {
        return text;
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (request id, component, …).
    Json,
}

/// The installed subscriber; dropping it flushes the spans not exported yet.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing OTLP spans: {e}");
        }
    }
}

/// Installs the process's subscriber.
pub fn init(format: LogFormat) -> Result<Tracing> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "spindle=info,wasmtime=warn".into());
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = match format {
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).boxed(),
        LogFormat::Json => fmt::layer().json().with_current_span(true).with_span_list(false).with_writer(std::io::stderr).boxed(),
    };
    let provider = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .context("OTEL_EXPORTER_OTLP_ENDPOINT is set: building the OTLP/HTTP span exporter")?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("spindle").build();
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        None => None,
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("spindle"))
            // Spans down to debug (the wasi:nn calls), events down to info.
            .with_filter(filter_fn(|meta| {
                meta.target().starts_with("spindle") && *meta.level() <= if meta.is_span() { Level::DEBUG } else { Level::INFO }
            }))
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(spans).try_init().context("installing the log subscriber")?;
    Ok(Tracing { provider })
}
