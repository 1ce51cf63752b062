//! Every metric name roar exports, in one place, with its description. Labels: `route`,
//! `status`, `model`, `outcome`, `topic`, `group`.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const HTTP_REQUESTS: &str = "roar_http_requests_total";
pub const HTTP_LATENCY: &str = "roar_http_request_duration_seconds";
pub const EVENTS_PRODUCED: &str = "roar_events_produced_total";
pub const MESSAGES_CONSUMED: &str = "roar_messages_consumed_total";
pub const DLQ_MESSAGES: &str = "roar_dlq_messages_total";
pub const HANDLER_RETRIES: &str = "roar_handler_retries_total";
pub const JOBS: &str = "roar_jobs_total";
pub const JOBS_IN_FLIGHT: &str = "roar_jobs_in_flight";
pub const INFERENCE_SECONDS: &str = "roar_inference_seconds";
pub const JOB_QUEUE_SECONDS: &str = "roar_job_queue_seconds";
pub const PROJECTOR_EVENTS: &str = "roar_projector_events_total";
pub const PROJECTOR_BATCH_SECONDS: &str = "roar_projector_batch_seconds";
pub const PROJECTOR_LAG_EVENTS: &str = "roar_projector_lag_events";
pub const PROJECTOR_LAG_SECONDS: &str = "roar_projector_lag_seconds";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    describe_histogram!(HTTP_LATENCY, Unit::Seconds, "HTTP request latency by route");
    describe_counter!(
        EVENTS_PRODUCED,
        "events acknowledged by the broker, by topic"
    );
    describe_counter!(
        MESSAGES_CONSUMED,
        "messages handled, by topic, group and outcome"
    );
    describe_counter!(
        DLQ_MESSAGES,
        "messages sent to the dead-letter topic, by source topic and kind"
    );
    describe_counter!(HANDLER_RETRIES, "retryable handler failures, by group");
    describe_counter!(JOBS, "jobs finished, by model and outcome");
    describe_gauge!(JOBS_IN_FLIGHT, "jobs running now, by model");
    describe_histogram!(
        INFERENCE_SECONDS,
        Unit::Seconds,
        "model run time per job, by model"
    );
    describe_histogram!(
        JOB_QUEUE_SECONDS,
        Unit::Seconds,
        "time from a job request to its start (queue lag), by model"
    );
    describe_counter!(
        PROJECTOR_EVENTS,
        "events applied to the read model, by topic"
    );
    describe_histogram!(
        PROJECTOR_BATCH_SECONDS,
        Unit::Seconds,
        "time to apply one projector batch"
    );
    describe_gauge!(
        PROJECTOR_LAG_EVENTS,
        "events on the topics not yet applied to the read model"
    );
    describe_gauge!(
        PROJECTOR_LAG_SECONDS,
        "age of the newest applied event when applied"
    );
}
