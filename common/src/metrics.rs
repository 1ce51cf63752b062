//! Every metric name roar exports, in one place, with its description. docs/operations.md has
//! the same list as a table (which role exports each series, its labels, what to watch); the
//! e2e test `ops_metrics` scrapes every role of a running stack and finds them. Labels:
//! `route`, `status`, `model`, `outcome`, `topic`, `group`, `kind`, `role`, `device`, `gpu`.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

// Every role.
pub const BUILD_INFO: &str = "roar_build_info";
pub const EVENTS_PRODUCED: &str = "roar_events_produced_total";
// The orchestrator.
pub const HTTP_REQUESTS: &str = "roar_http_requests_total";
pub const HTTP_LATENCY: &str = "roar_http_request_duration_seconds";
pub const WORKERS_LIVE: &str = "roar_workers_live";
pub const SSE_HISTORY_READS: &str = "roar_sse_history_reads_total";
pub const STATUS_CACHE: &str = "roar_status_cache_total";
// Every consumer group (probe, workers).
pub const MESSAGES_CONSUMED: &str = "roar_messages_consumed_total";
pub const DLQ_MESSAGES: &str = "roar_dlq_messages_total";
pub const HANDLER_RETRIES: &str = "roar_handler_retries_total";
// The probe.
pub const PROBE_FILES: &str = "roar_probe_files_total";
pub const PROBE_SECONDS: &str = "roar_probe_seconds";
// Model workers.
pub const WORKER_DEVICE: &str = "roar_worker_device";
pub const JOBS: &str = "roar_jobs_total";
pub const JOBS_IN_FLIGHT: &str = "roar_jobs_in_flight";
pub const INFERENCE_SECONDS: &str = "roar_inference_seconds";
pub const JOB_QUEUE_SECONDS: &str = "roar_job_queue_seconds";
// Model workers on CUDA only (absent on CPU).
pub const GPU_UTILIZATION: &str = "roar_gpu_utilization_ratio";
pub const GPU_MEMORY_USED: &str = "roar_gpu_memory_used_bytes";
// The projector, and what it observes of the whole pipeline.
pub const PROJECTOR_EVENTS: &str = "roar_projector_events_total";
pub const PROJECTOR_BATCH_SECONDS: &str = "roar_projector_batch_seconds";
pub const PROJECTOR_LAG_EVENTS: &str = "roar_projector_lag_events";
pub const PROJECTOR_LAG_SECONDS: &str = "roar_projector_lag_seconds";
pub const CONSUMER_LAG: &str = "roar_consumer_lag";
pub const QUEUE_DEPTH: &str = "roar_queue_depth";
pub const DLQ_DEPTH: &str = "roar_dlq_depth";
// The pipelines' process manager.
pub const PIPELINE_EVENTS: &str = "roar_pipeline_events_total";
pub const PIPELINE_STEPS: &str = "roar_pipeline_steps_total";
pub const PIPELINE_HANDOFF_SECONDS: &str = "roar_pipeline_handoff_seconds";
// The webhooks dispatcher.
pub const WEBHOOK_DELIVERIES: &str = "roar_webhook_deliveries_total";
pub const WEBHOOK_PENDING: &str = "roar_webhook_pending";
pub const WEBHOOK_DELIVERY_SECONDS: &str = "roar_webhook_delivery_seconds";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "1 per role running in this process, by role and version"
    );
    describe_counter!(
        EVENTS_PRODUCED,
        "events acknowledged by the broker, by topic"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    describe_histogram!(HTTP_LATENCY, Unit::Seconds, "HTTP request latency by route");
    describe_counter!(
        SSE_HISTORY_READS,
        "history reads for event streams, by kind: fanout (one per commit for all streams), \
         subscribe (first stream of a file), catch_up (a stream's backlog)"
    );
    describe_counter!(
        STATUS_CACHE,
        "plain GET /status reads by result: hit (answered from the cache), miss (read and kept)"
    );
    describe_gauge!(
        WORKERS_LIVE,
        "workers that announced themselves on the control topic and have not expired, by model"
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
    describe_counter!(PROBE_FILES, "uploads probed, by outcome (probed, failed)");
    describe_histogram!(
        PROBE_SECONDS,
        Unit::Seconds,
        "time to fetch and decode one upload"
    );
    describe_gauge!(
        WORKER_DEVICE,
        "1 per model worker, by model and the device it runs on (cpu, cuda:0, ...)"
    );
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
    describe_gauge!(
        GPU_UTILIZATION,
        "share of the last sample period a kernel ran on the GPU (0..=1), by model and gpu; \
         CUDA workers only"
    );
    describe_gauge!(
        GPU_MEMORY_USED,
        Unit::Bytes,
        "GPU memory in use (every process on it), by model and gpu; CUDA workers only"
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
    describe_gauge!(
        CONSUMER_LAG,
        "messages on a topic not yet committed by a consumer group, by group and topic"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "jobs queued in the read model (requested, not started), by model"
    );
    describe_gauge!(DLQ_DEPTH, "messages held on the dead-letter topic");
    describe_counter!(
        PIPELINE_EVENTS,
        "pipeline requests and cancels handled by the process manager, by kind"
    );
    describe_counter!(
        PIPELINE_STEPS,
        "pipeline steps the process manager requested or ended, by outcome"
    );
    describe_histogram!(
        PIPELINE_HANDOFF_SECONDS,
        Unit::Seconds,
        "time from an upstream job's terminal event to its dependent's request"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "webhook delivery attempts by outcome: delivered, retry (failed, tried again later), \
         failed (out of attempts), refused (the SSRF guard)"
    );
    describe_gauge!(
        WEBHOOK_PENDING,
        "webhook deliveries waiting for an attempt (the retry queue)"
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_SECONDS,
        Unit::Seconds,
        "time of one webhook delivery attempt, connection included"
    );
}
