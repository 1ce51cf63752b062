//! The end-to-end tests: one binary, so the workspace links the whole stack once rather than
//! once per file. Every test starts what it needs for itself (a tansu broker, a PostgreSQL
//! cluster, an object store directory, the roar services in process), so nextest runs them in
//! parallel, each in its own process. The modules are named by what they exercise:
//!
//! - `api_*`: the HTTP API from outside (requests in, status codes, bodies and events out);
//! - `e2e_*`: jobs through the real workers and models (`e2e_sdk_typescript`: the TypeScript
//!   SDK's own tests, run against a stack this test starts);
//! - `projection_*`: the projector and the read model alone, fed with hand-made events;
//! - `consumer_loop`: the shared at-least-once consumer loop against the broker alone;
//! - `consumer_rebalance`: the same loop under shutdown and rebalance;
//! - `dev_*`: `roar dev` itself (a crash and restart; a checkout the postgres user cannot reach);
//! - `cli_device`, `cli_fetch`, `cli_token`, `deploy_config`: the `roar` binary's `processor.device`,
//!   model fetch and `roar token`, and the deployment files;
//! - `ops_*`: what operations see: each role run as its own process (metrics, probes), one
//!   trace from a request to the worker, and a foreign analytics client reading the topics;
//! - `security_*`: issue 21's attacks from outside (keys, tenants, links, quotas, deletion).
//!
//! `support` is the one harness they share.

mod support;

mod api_bad_inputs;
mod api_fuzz;
mod api_fuzz_inputs;
mod api_jwks;
mod api_link_keys;
mod api_pipelines;
mod api_process;
mod api_routes_documented;
mod api_status_as_of;
mod api_stream;
mod api_upload;
mod api_upload_repeat;
mod cli_device;
mod cli_fetch;
mod cli_token;
mod consumer_idle;
mod consumer_loop;
mod consumer_rebalance;
mod deploy_config;
mod dev_cluster;
mod dev_restart;
mod e2e_dead_letter;
mod e2e_demucs;
mod e2e_dlq_redrive;
mod e2e_generate;
mod e2e_job_input;
mod e2e_lyrics;
mod e2e_lyrics_accuracy;
mod e2e_models;
mod e2e_musicgen;
mod e2e_pipeline;
mod e2e_pitch;
mod e2e_probe;
mod e2e_runtime;
mod e2e_sdk_typescript;
mod e2e_studio;
mod e2e_versions;
mod fault_run;
mod ops_analytics;
mod ops_metrics;
mod ops_topics;
mod ops_tracing;
mod projection_db_faults;
mod projection_exactly_once;
mod projection_history;
mod projection_rebuild;
mod projection_text;
mod security_bounds;
mod security_deletion;
mod security_downloads;
mod security_errors;
mod security_jwks;
mod security_kafka_tls;
mod security_links;
mod security_metrics;
mod security_quotas;
mod security_secrets;
mod security_streams;
mod security_uploads;
mod security_webhooks;
