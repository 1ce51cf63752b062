//! Logging and metrics set-up. Logs are human-readable on a terminal and JSON in production;
//! metrics go to a Prometheus recorder whose handle renders `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::TelemetryConfig;

/// Installs the global tracing subscriber. Safe to call more than once (tests): later calls
/// are ignored.
pub fn init_tracing(cfg: &TelemetryConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if cfg.log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
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
