//! Where new envelopes get their W3C `traceparent`. This crate knows nothing of tracing: the
//! process's telemetry set-up registers a source (the current span's context), and every
//! [`EventMeta::new`](crate::EventMeta::new) and [`EventMeta::follow`](crate::EventMeta::follow)
//! asks it, so each event names the span that caused it without any call site passing it along.

use std::sync::OnceLock;

static SOURCE: OnceLock<fn() -> Option<String>> = OnceLock::new();

/// Registers the process-wide source of the current trace context. The first registration
/// wins: the telemetry set-up calls it once per process (tests may call it again, harmlessly).
pub fn set_trace_source(source: fn() -> Option<String>) {
    let _ = SOURCE.set(source);
}

/// The current `traceparent`, if a source is registered and a span is active.
pub(crate) fn current() -> Option<String> {
    SOURCE.get().and_then(|f| f())
}
