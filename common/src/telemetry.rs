//! Logging, tracing and metrics set-up. Logs are human-readable on a terminal and JSON in
//! production; spans become OpenTelemetry spans (exported over OTLP/HTTP when
//! `telemetry.otlp_endpoint` is set) whose context travels in every event's `traceparent`;
//! metrics go to a Prometheus recorder whose handle renders `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::TelemetryConfig;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global tracing subscriber as service `roar`. Safe to call more than once
/// (tests): later calls are ignored.
pub fn init_tracing(cfg: &TelemetryConfig) {
    init(cfg, "roar");
}

/// Installs the global tracing subscriber: log lines filtered by `telemetry.log_level`, and
/// roar's own spans (INFO and up, whatever the log level) as OpenTelemetry spans of `service`.
/// Later calls are ignored.
pub fn init(cfg: &TelemetryConfig, service: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = if cfg.log_format == "json" {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    } else {
        logs.compact().boxed()
    };
    let provider = PROVIDER.get_or_init(|| tracer_provider(cfg, service));
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("roar"))
        .with_filter(Targets::new().with_target("roar", LevelFilter::INFO));
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .is_ok();
    if installed {
        roar_schemas::trace::set_trace_source(crate::trace::current_traceparent);
    }
}

/// A provider that always makes span contexts (so events carry a `traceparent`), and exports
/// them in batches only when an endpoint is configured.
fn tracer_provider(cfg: &TelemetryConfig, service: &str) -> SdkTracerProvider {
    let resource = Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let sampler =
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.trace_sample_ratio)));
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler);
    if !cfg.otlp_endpoint.is_empty() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(&cfg.otlp_endpoint))
            .with_headers(Default::default())
            .build();
        match exporter {
            Ok(e) => builder = builder.with_batch_exporter(e),
            // Config validation checked the URL; tracing is not worth refusing to start over.
            Err(e) => eprintln!("warning: spans will not be exported: {e}"),
        }
    }
    builder.build()
}

/// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is used as it is.
fn traces_url(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_string(),
    }
}

/// Exports the spans still buffered (call at shutdown; it blocks while the exporter sends).
pub fn flush_traces() {
    if let Some(p) = PROVIDER.get() {
        if let Err(e) = p.force_flush() {
            tracing::warn!(error = %e, "spans not exported");
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 900.0, 3600.0,
                ])
                .expect("static bucket list is non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (several services in one test process);
            // then this handle still renders, just without the others' samples.
            let _ = metrics::set_global_recorder(recorder);
            crate::metrics::describe();
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_only_to_a_bare_endpoint() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c/otlp/v1/traces"),
            "http://c/otlp/v1/traces"
        );
    }
}
