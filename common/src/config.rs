//! One typed configuration for every role: compiled-in defaults, then an optional TOML file
//! (`--config` or `ROAR_CONFIG`), then `ROAR_` environment variables with `__` between levels
//! (`ROAR_KAFKA__BROKERS=host:9092`). Unknown keys are rejected and values are validated at
//! start-up; secrets print as `***`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

pub use crate::device::DeviceSpec;
use serde::{Deserialize, Serialize};

// Settings types with logic of their own; they build on this module, never the reverse.
mod kafka_security;
mod link_keys;
mod webhooks;

pub use kafka_security::KafkaSecurity;
pub use link_keys::{LinkKeys, MIN_LINK_SECRET_LEN};
pub use webhooks::{Cidr, WebhooksConfig, MIN_WEBHOOK_KEY_LEN};

/// A value that must never reach a log line.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub processor: ProcessorConfig,
    pub musicgen: MusicgenConfig,
    pub whisper: WhisperConfig,
    pub projector: ProjectorConfig,
    pub pipeline: PipelineConfig,
    pub telemetry: TelemetryConfig,
    pub dev: DevConfig,
    pub quota: QuotaConfig,
    pub webhooks: WebhooksConfig,
}

/// Per-user limits the orchestrator enforces (each 0 = unlimited). `GET /me/usage` shows a
/// user's usage against them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Jobs one user may have queued or running at once (429 `jobs_in_flight` beyond).
    pub jobs_in_flight: u64,
    /// Jobs one user may request in 24 hours, retries included (429 `jobs_per_day` beyond).
    pub jobs_per_day: u64,
    /// Bytes one user may store: uploads (pending ones reserved at their declared size) and
    /// job outputs (413 `storage_quota` beyond).
    pub stored_bytes: u64,
    /// Direct uploads one user may have registered and not completed (429 `pending_uploads`).
    pub pending_uploads: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            jobs_in_flight: 100,
            jobs_per_day: 5000,
            stored_bytes: 50 << 30,
            pending_uploads: 50,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the orchestrator listens on.
    pub addr: SocketAddr,
    /// Where the orchestrator serves `/metrics` (with `/health` and `/ready`) for Prometheus:
    /// never the public API port, whose callers must not read per-route traffic and errors.
    pub metrics_addr: SocketAddr,
    /// Base URL clients use to reach the orchestrator (for signed upload/download links).
    pub public_url: String,
    /// Largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Origins allowed by CORS; empty allows any origin.
    pub cors_origins: Vec<String>,
    /// Lifetime of signed upload/download links and presigned URLs, in seconds.
    pub link_ttl_seconds: u64,
    /// Longest `GET /status/{id}?after=<token>` waits for the projection, in ms.
    pub consistency_wait_ms: u64,
    /// Bytes of rendered `GET /status` bodies kept until the projection's next commit (0 turns
    /// the cache off); a body over an eighth of this is rendered every time.
    pub status_cache_bytes: usize,
    /// Longest a cached `GET /status` body is served, in ms: bounds what changes without a
    /// commit (the download links' remaining lifetime, a waiting job's live-worker note).
    /// At most a tenth of `link_ttl_seconds`.
    pub status_cache_max_age_ms: u64,
    /// Requests per second one user may make (token bucket refill); 0 disables the limit.
    pub rate_limit_per_second: f64,
    /// Requests one user may make in a burst.
    pub rate_limit_burst: u32,
    /// Bytes per second all of one user's downloads (`GET /files/…`) together may take, after
    /// a burst of one second's worth; the owner is the owner of the file a link names. Per
    /// orchestrator instance. While set, output links on S3 are the orchestrator's own, not
    /// presigned URLs (whose bytes would bypass it). 0 disables the limit.
    pub download_bytes_per_second_per_user: u64,
    /// Interval between SSE heartbeat comments, in seconds.
    pub sse_heartbeat_seconds: u64,
    /// How often an SSE stream re-reads the history when no notification arrives, in ms.
    pub sse_poll_ms: u64,
    /// Most SSE streams open at once (each holds a connection, not a database connection).
    pub sse_max_streams: usize,
    /// Serve the `/studio` page from this folder instead of the copy built into the binary
    /// (a customised page, or working on the page without rebuilding roar); empty: built in.
    pub studio_dir: String,
    /// Most SSE streams one user may hold open at once (per orchestrator instance), so that
    /// one user cannot take every slot.
    pub sse_max_streams_per_user: usize,
    /// Longest a request may take to be answered, in seconds (503 `timeout` beyond). Uploads
    /// are exempt (bounded by `body_idle_timeout_seconds` and their size); must exceed
    /// `consistency_wait_ms`.
    pub request_timeout_seconds: u64,
    /// Longest a request body may stall between two chunks, in seconds (the upload ends with
    /// 400 beyond).
    pub body_idle_timeout_seconds: u64,
    /// Longest a client may take to send a request's head (request line and headers), in
    /// seconds, from the connection's start or the end of its previous request: the
    /// connection is closed beyond (slowloris). Also how long an idle keep-alive connection
    /// stays open.
    pub header_read_timeout_seconds: u64,
    /// How often the orchestrator sweeps expired direct uploads and leftover temporary objects,
    /// in seconds; 0 disables the sweeper.
    pub sweep_interval_seconds: u64,
    /// How long after its link expired a direct upload that never completed is kept (and
    /// its staged object), and how old a leftover temporary object must be before it is
    /// removed, in seconds.
    pub upload_grace_seconds: u64,
    /// Most history events `GET /status/{id}?as_of=` folds (422 beyond).
    pub as_of_max_events: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Partitions of each event topic created at bootstrap.
    pub partitions: i32,
    /// Replication factor of topics created at bootstrap.
    pub replication: i32,
    /// Create missing topics at start-up.
    pub create_topics: bool,
    /// librdkafka `session.timeout.ms` for consumer groups.
    pub session_timeout_ms: u32,
    /// librdkafka `max.poll.interval.ms`. Long jobs do not need it raised: the worker keeps
    /// polling while a job runs.
    pub max_poll_interval_ms: u32,
    /// How often stored offsets are committed, in ms.
    pub commit_interval_ms: u32,
    /// Attempts at a message whose handler reports a retryable error before it goes to the DLQ.
    pub max_handler_attempts: u32,
    /// librdkafka `enable.idempotence` for every roar producer. Off only against a broker that
    /// records a producer's sequence number before the batch is durable (tansu 0.6 on S3,
    /// docs/reliability.md): a retry after its crash is answered "duplicate", which librdkafka
    /// counts as delivered, and the event is lost. Off, a retry may write an event twice
    /// (every consumer tolerates a repeat) and one request is in flight per connection, so a
    /// partition keeps its order.
    pub idempotence: bool,
    /// librdkafka `batch.num.messages`: the most events one produce request carries per
    /// partition. 1 only against a broker that answers a fetch with the batches *starting* at or
    /// after the fetch offset (tansu 0.6's object-store engine, docs/reliability.md): a consumer
    /// resuming inside a batch of several events (after a pause, a restart or a rebalance)
    /// would never see the batch's rest. One event per batch leaves no inside to resume at.
    pub batch_max_messages: u32,
    /// A consumer that has seen no message for this long pauses its partitions (no fetches
    /// at all) until this process produces to one of its topics or `idle_peek_ms` passes; 0
    /// never pauses. Unset: 1000 under `roar dev` (one process, so an event wakes its
    /// consumer at once), 0 elsewhere (roles in separate processes would see each other's
    /// events only at the next peek).
    pub idle_pause_ms: Option<u64>,
    /// How often a paused consumer looks for events produced by another process (a resume of
    /// at least 500 ms); bounds their extra delay on an idle topic. Each look costs the fetches
    /// of that half second, so a shorter period raises the idle cost.
    pub idle_peek_ms: u64,
    /// TLS and SASL of the broker connection (`kafka.security.*`).
    pub security: KafkaSecurity,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Postgres URL of the read model.
    pub url: Secret,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `file:///abs/dir` for a local directory, `s3://bucket/prefix` for S3-compatible stores,
    /// `memory://` for tests.
    pub url: String,
    /// S3 endpoint (MinIO etc.); empty uses AWS's.
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key_id: Secret,
    pub s3_secret_access_key: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret for development tokens. Empty disables HS256.
    pub jwt_secret: Secret,
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// Lifetime of tokens minted by `roar token`, in seconds.
    pub token_ttl_seconds: u64,
    /// Key that signs upload/download links of the local store (file://, memory://): at least
    /// 32 characters, never the token key. Required by the orchestrator unless storage is S3.
    pub link_secret: Secret,
    /// Id of `link_secret`, carried in every link it signs (1 to 16 of `A-Za-z0-9_-`).
    pub link_key_id: String,
    /// Retired link keys that still verify the links they signed, as `<id>:<key>` pairs
    /// separated by commas; remove one once `http.link_ttl_seconds` have passed.
    pub link_previous_keys: Secret,
    /// The identity provider's JWKS (public keys for RS/ES tokens); empty disables them.
    pub jwks_url: String,
    /// Asymmetric algorithms accepted with JWKS keys (RS256, RS384, RS512, PS256, ES256, ES384).
    pub jwks_algorithms: Vec<String>,
    /// How often the JWKS is fetched again, in seconds.
    pub jwks_refresh_seconds: u64,
    /// Shortest interval between the extra JWKS fetches that tokens with an unknown `kid`
    /// trigger (key rotation), in seconds.
    pub jwks_min_refetch_seconds: u64,
}

/// The asymmetric algorithms `auth.jwks_algorithms` may name (validated at start-up; the
/// authenticator accepts exactly these).
pub fn asymmetric_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm;
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        _ => None,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Jobs run at once by one worker process (one GPU job at a time by default).
    pub concurrency: usize,
    /// How long a running job may finish after SIGTERM before it is abandoned to another worker.
    pub shutdown_grace_seconds: u64,
    /// Retries of a retryable job failure before it is failed for good.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt.
    pub retry_base_seconds: u64,
    /// Longest audio the probe and the workers decode, in seconds actually decoded.
    pub max_audio_seconds: f64,
    /// Largest input file the probe and the workers read, in bytes.
    pub max_input_bytes: u64,
    /// Most decoded samples a worker holds for its model (frames × channels × 4 bytes); the
    /// probe fails files over it, so it should be the same for the probe and every worker.
    /// Keep it well below a worker's memory limit.
    pub max_decoded_bytes: u64,
    /// Where model weights live, one folder per model family (`crepe/tiny.pth`, ...).
    pub models_dir: PathBuf,
    /// Most progress events per second per job.
    pub progress_per_second: f64,
    /// How often a worker announces itself on the control topic.
    pub heartbeat_seconds: u64,
    /// How often a worker on CUDA reads its GPUs' utilisation and memory (`nvidia-smi`) for
    /// `/metrics`; 0 turns it off. Workers on the CPU never read it.
    pub gpu_metrics_seconds: u64,
    /// Where a processor process (the probe or a model worker) serves `/metrics`, `/health` and
    /// `/ready`; port 0 picks a free one.
    pub ops_addr: SocketAddr,
    /// Longest the broker holds a fetch of the probe's or a worker's consumer that has no new
    /// data (`fetch.wait.max.ms`): bounds how long a request on an idle topic waits before a
    /// worker sees it (librdkafka's default, 500, adds up to 0.5 s to each job's pickup).
    pub fetch_wait_ms: u64,
    /// What a model worker runs its model on: `auto` (the first CUDA GPU when the build has CUDA
    /// and one is there, else the CPU), `cpu`, `cuda:N` or `metal:N`; a GPU the build or the
    /// machine lacks stops the worker at start-up with an error saying so.
    pub device: DeviceSpec,
    /// `model → variation → version`: the version a worker's weights are when they are not the
    /// ones this build's catalogue names (new weights deployed without a new build, e.g. during
    /// a rollout). A worker serves each variation at exactly one version, this one or the
    /// catalogue's, and runs only jobs that ask for it (`docs/ARCHITECTURE.md`, model versions).
    pub model_versions: BTreeMap<String, BTreeMap<String, String>>,
}

/// How the whisper worker runs Whisper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WhisperConfig {
    /// Arithmetic of the network's linear layers. `f32` is the reference's; `int8` keeps 8-bit
    /// weights (blocks of 32 sharing a scale: a quarter of the weight memory), slower than f32
    /// with candle's kernels on the CPUs measured (docs/benchmarks-whisper.md), and its
    /// transcripts can differ. An int8 worker serves every variation at the version +
    /// [`WhisperPrecision::VERSION_SUFFIX`], so a job asking for the float weights' version
    /// never runs on these.
    pub precision: WhisperPrecision,
}

/// [`WhisperConfig::precision`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WhisperPrecision {
    #[default]
    F32,
    Int8,
}

impl WhisperPrecision {
    /// Appended to the versions an int8 worker serves.
    pub const VERSION_SUFFIX: &'static str = "-int8";
}

/// Limits of music generation, checked by the orchestrator (422) and again by the musicgen
/// worker (a request written to the topic directly fails for good).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MusicgenConfig {
    /// Longest song one job generates, in seconds (generation time grows with it; at most
    /// [`MusicgenConfig::DURATION_CEILING`]).
    pub max_duration_seconds: f64,
    /// Longest prompt, in characters (at most [`MusicgenConfig::PROMPT_CEILING`]).
    pub max_prompt_chars: usize,
    /// Longest end of a song a continuation reads, in seconds (at most
    /// [`MusicgenConfig::PROMPT_SECONDS_CEILING`]).
    pub max_prompt_seconds: f64,
}

impl MusicgenConfig {
    /// What the catalogue accepts at most: a configured limit may only lower these.
    pub const DURATION_CEILING: f64 = crate::catalog::MUSICGEN_DURATION_CEILING;
    pub const PROMPT_CEILING: usize = 2000;
    pub const PROMPT_SECONDS_CEILING: f64 = crate::catalog::MUSICGEN_PROMPT_SECONDS_CEILING;

    /// Checks a musicgen job's resolved parameters against these limits; the message names
    /// the parameter and its limit.
    pub fn check(&self, params: &serde_json::Value) -> Result<(), String> {
        let num = |k: &str| params.get(k).and_then(serde_json::Value::as_f64);
        if let Some(d) = num("duration") {
            if d > self.max_duration_seconds {
                return Err(format!(
                    "duration {d} s is over this service's limit of {} s (musicgen.max_duration_seconds)",
                    self.max_duration_seconds
                ));
            }
        }
        if let Some(p) = num("prompt_seconds") {
            if p > self.max_prompt_seconds {
                return Err(format!(
                    "prompt_seconds {p} is over this service's limit of {} s (musicgen.max_prompt_seconds)",
                    self.max_prompt_seconds
                ));
            }
        }
        if let Some(p) = params.get("prompt").and_then(serde_json::Value::as_str) {
            let n = p.chars().count();
            if n > self.max_prompt_chars {
                return Err(format!(
                    "prompt has {n} characters, over this service's limit of {} (musicgen.max_prompt_chars)",
                    self.max_prompt_chars
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Most events applied in one transaction.
    pub batch_size: usize,
    /// Longest an event waits for its batch to fill, in ms.
    pub batch_linger_ms: u64,
    /// Longest the broker holds a fetch that has no new data (`fetch.wait.max.ms`); bounds the
    /// event→visible latency of a quiet topic (librdkafka's default, 500, shows as 0.5 s).
    pub fetch_wait_ms: u64,
    /// Where the projector serves `/metrics`, `/health` and `/ready`; port 0 picks a free one.
    pub ops_addr: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Where the pipelines' process manager (`roar pipeline`) serves `/metrics`, `/health` and
    /// `/ready`; port 0 picks a free one.
    pub ops_addr: SocketAddr,
    /// Longest the broker holds a fetch of the manager's consumer that has no new data
    /// (`fetch.wait.max.ms`): bounds the wait between an upstream step's completion and its
    /// dependents' requests on a quiet log.
    pub fetch_wait_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `pretty` for terminals, `json` for production.
    pub log_format: String,
    /// tracing filter, e.g. `info,roar=debug`. `RUST_LOG` overrides it.
    pub log_level: String,
    /// OTLP/HTTP (protobuf) collector that receives the spans, e.g. `http://otel:4318`
    /// (`/v1/traces` is added when the URL has no path). Empty: spans are not exported, though
    /// events still carry their `traceparent`.
    pub otlp_endpoint: String,
    /// Share of new traces recorded (0..=1); a request's sampling decision follows it through
    /// Kafka to the workers.
    pub trace_sample_ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    /// Where `roar dev` keeps its state (Postgres cluster, broker data, object store).
    pub dir: PathBuf,
    /// The tansu broker binary; `~/.cargo/roar/tansu-<version>-<features>/bin/tansu` when empty.
    pub tansu_bin: String,
    pub kafka_port: u16,
    pub postgres_port: u16,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".parse().expect("static address"),
            metrics_addr: "127.0.0.1:9180".parse().expect("static address"),
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 1 << 20,
            max_upload_bytes: 1 << 30,
            cors_origins: Vec::new(),
            link_ttl_seconds: 3600,
            consistency_wait_ms: 5000,
            status_cache_bytes: 64 << 20,
            status_cache_max_age_ms: 1000,
            rate_limit_per_second: 50.0,
            rate_limit_burst: 200,
            download_bytes_per_second_per_user: 0,
            sse_heartbeat_seconds: 15,
            sse_poll_ms: 2000,
            sse_max_streams: 10_000,
            studio_dir: String::new(),
            sse_max_streams_per_user: 16,
            request_timeout_seconds: 30,
            body_idle_timeout_seconds: 30,
            header_read_timeout_seconds: 10,
            sweep_interval_seconds: 300,
            upload_grace_seconds: 3600,
            as_of_max_events: 10_000,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            partitions: 3,
            replication: 1,
            create_topics: true,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            commit_interval_ms: 1_000,
            max_handler_attempts: 8,
            idempotence: true,
            batch_max_messages: 10_000,
            idle_pause_ms: None,
            idle_peek_ms: 10_000,
            security: KafkaSecurity::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://roar@127.0.0.1:5432/roar"),
            max_connections: 10,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "file:///var/lib/roar/store".into(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: Secret::default(),
            s3_secret_access_key: Secret::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            issuer: "roar".into(),
            audience: "roar".into(),
            token_ttl_seconds: 3600,
            link_secret: Secret::default(),
            link_key_id: "1".into(),
            link_previous_keys: Secret::default(),
            jwks_url: String::new(),
            jwks_algorithms: vec!["RS256".into(), "ES256".into()],
            jwks_refresh_seconds: 300,
            jwks_min_refetch_seconds: 30,
        }
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            concurrency: 1,
            shutdown_grace_seconds: 30,
            max_attempts: 3,
            retry_base_seconds: 5,
            max_audio_seconds: 3.0 * 3600.0,
            max_input_bytes: 1 << 30,
            max_decoded_bytes: 1 << 30,
            models_dir: PathBuf::from(".roar/models"),
            progress_per_second: 2.0,
            heartbeat_seconds: 10,
            gpu_metrics_seconds: 15,
            ops_addr: "127.0.0.1:9182".parse().expect("static address"),
            fetch_wait_ms: 10,
            device: DeviceSpec::Auto,
            model_versions: BTreeMap::new(),
        }
    }
}

impl Default for MusicgenConfig {
    fn default() -> Self {
        Self {
            max_duration_seconds: 30.0,
            max_prompt_chars: 2000,
            max_prompt_seconds: 12.0,
        }
    }
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            batch_linger_ms: 5,
            fetch_wait_ms: 10,
            ops_addr: "127.0.0.1:9181".parse().expect("static address"),
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            ops_addr: "127.0.0.1:9183".parse().expect("static address"),
            fetch_wait_ms: 10,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: "pretty".into(),
            log_level: "info".into(),
            otlp_endpoint: String::new(),
            trace_sample_ratio: 1.0,
        }
    }
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".roar"),
            tansu_bin: String::new(),
            kafka_port: 9092,
            postgres_port: 5433,
        }
    }
}

/// Largest `*.fetch_wait_ms` accepted (librdkafka wants it well below `socket.timeout.ms`).
pub const MAX_FETCH_WAIT_MS: u64 = 10_000;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` (if any), then `ROAR_*` environment variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ROAR_CONFIG").map(PathBuf::from));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        // ROAR_CONFIG names the file and ROAR_DEMUCS_URL_ROOT / ROAR_MUSICGEN_URL_ROOT /
        // ROAR_GEMMA_URL_ROOT are `roar models fetch`'s download roots; none is a service setting. ROAR_MODELS_DIR is the model crates'
        // own variable (their tests and tools read it): an alias of processor.models_dir.
        // The rest steer the test suite (scripts/test.sh sets ROAR_REQUIRE_AVX512 on AVX-512
        // hosts), and a roar started by a test inherits them.
        fig = fig.merge(Env::prefixed("ROAR_").split("__").ignore(&[
            "CONFIG",
            "MODELS_DIR",
            "DEMUCS_URL_ROOT",
            "MUSICGEN_URL_ROOT",
            "GEMMA_URL_ROOT",
            "REQUIRE_AVX512",
            "BLESS",
            "UPDATE_OPENAPI",
            "TEST_MOTO_SERVER",
            "TEST_SCHEMATHESIS",
            "ANALYTICS_PYTHON",
        ]));
        if let Some(dir) = std::env::var_os("ROAR_MODELS_DIR") {
            if std::env::var_os("ROAR_PROCESSOR__MODELS_DIR").is_none() {
                fig = fig.merge(("processor.models_dir", PathBuf::from(dir)));
            }
        }
        let cfg: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: ranges, formats, combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty".into());
        }
        self.kafka
            .security
            .validate()
            .map_err(ConfigError::Invalid)?;
        if self.kafka.partitions < 1 {
            return bad(format!(
                "kafka.partitions must be ≥ 1, got {}",
                self.kafka.partitions
            ));
        }
        if !(1000..=600_000).contains(&self.kafka.idle_peek_ms) {
            return bad(format!(
                "kafka.idle_peek_ms must be in 1000..=600000, got {}",
                self.kafka.idle_peek_ms
            ));
        }
        if !(1..=1_000_000).contains(&self.kafka.batch_max_messages) {
            return bad(format!(
                "kafka.batch_max_messages must be in 1..=1000000, got {}",
                self.kafka.batch_max_messages
            ));
        }
        if matches!(self.kafka.idle_pause_ms, Some(ms) if ms > 0 && ms < 500) {
            // A resumed member needs a few hundred ms to fetch again: a shorter pause would
            // pause it before that fetch, and the event would wait for the next peek.
            return bad("kafka.idle_pause_ms must be 0 or ≥ 500".into());
        }
        if !self.processor.progress_per_second.is_finite()
            || self.processor.progress_per_second <= 0.0
        {
            return bad("processor.progress_per_second must be > 0".into());
        }
        if self.processor.heartbeat_seconds < 1 {
            return bad("processor.heartbeat_seconds must be ≥ 1".into());
        }
        self.check_model_versions().map_err(ConfigError::Invalid)?;
        if !(self.processor.max_audio_seconds.is_finite() && self.processor.max_audio_seconds > 0.0)
        {
            return bad("processor.max_audio_seconds must be > 0".into());
        }
        if self.processor.max_input_bytes < 1 || self.processor.max_decoded_bytes < 1 {
            return bad("processor.max_input_bytes and max_decoded_bytes must be ≥ 1".into());
        }
        if self.http.link_ttl_seconds < 1 || self.http.link_ttl_seconds > 7 * 24 * 3600 {
            return bad("http.link_ttl_seconds must be in 1..=604800 (S3's limit)".into());
        }
        if self.http.status_cache_bytes > 0
            && (self.http.status_cache_max_age_ms < 1
                || self.http.status_cache_max_age_ms > self.http.link_ttl_seconds * 100)
        {
            return bad(
                "http.status_cache_max_age_ms must be in 1..=link_ttl_seconds × 100 (a tenth of a \
                 link's lifetime, so cached links stay usable)"
                    .into(),
            );
        }
        if self.http.rate_limit_per_second.is_nan() || self.http.rate_limit_per_second < 0.0 {
            return bad("http.rate_limit_per_second must be ≥ 0".into());
        }
        if self.http.sse_heartbeat_seconds < 1 || self.http.sse_poll_ms < 10 {
            return bad("http.sse_heartbeat_seconds must be ≥ 1 and http.sse_poll_ms ≥ 10".into());
        }
        if !self.http.studio_dir.is_empty() && !Path::new(&self.http.studio_dir).is_dir() {
            return bad(format!(
                "http.studio_dir: {} is not a directory",
                self.http.studio_dir
            ));
        }
        if self.http.sse_max_streams_per_user < 1 {
            return bad("http.sse_max_streams_per_user must be ≥ 1".into());
        }
        if self.http.request_timeout_seconds.saturating_mul(1000) <= self.http.consistency_wait_ms {
            return bad(
                "http.request_timeout_seconds must exceed http.consistency_wait_ms (a waiting \
                 GET /status would time out)"
                    .into(),
            );
        }
        if self.http.upload_grace_seconds > 365 * 24 * 3600 {
            return bad("http.upload_grace_seconds must be at most a year (31536000)".into());
        }
        if self.http.body_idle_timeout_seconds < 1 {
            return bad("http.body_idle_timeout_seconds must be ≥ 1".into());
        }
        if self.http.header_read_timeout_seconds < 1 {
            return bad("http.header_read_timeout_seconds must be ≥ 1".into());
        }
        if self.http.as_of_max_events < 1 {
            return bad("http.as_of_max_events must be ≥ 1".into());
        }
        let m = &self.musicgen;
        if !(m.max_duration_seconds >= 1.0
            && m.max_duration_seconds <= MusicgenConfig::DURATION_CEILING)
        {
            return bad(format!(
                "musicgen.max_duration_seconds must be in 1..={}, got {}",
                MusicgenConfig::DURATION_CEILING,
                m.max_duration_seconds
            ));
        }
        if !(1..=MusicgenConfig::PROMPT_CEILING).contains(&m.max_prompt_chars) {
            return bad(format!(
                "musicgen.max_prompt_chars must be in 1..={}, got {}",
                MusicgenConfig::PROMPT_CEILING,
                m.max_prompt_chars
            ));
        }
        if !(m.max_prompt_seconds >= 0.1
            && m.max_prompt_seconds <= MusicgenConfig::PROMPT_SECONDS_CEILING)
        {
            return bad(format!(
                "musicgen.max_prompt_seconds must be in 0.1..={}, got {}",
                MusicgenConfig::PROMPT_SECONDS_CEILING,
                m.max_prompt_seconds
            ));
        }
        if self.processor.concurrency < 1 {
            return bad("processor.concurrency must be ≥ 1".into());
        }
        if self.projector.batch_size < 1 {
            return bad("projector.batch_size must be ≥ 1".into());
        }
        for (knob, ms) in [
            ("processor.fetch_wait_ms", self.processor.fetch_wait_ms),
            ("projector.fetch_wait_ms", self.projector.fetch_wait_ms),
            ("pipeline.fetch_wait_ms", self.pipeline.fetch_wait_ms),
        ] {
            // 0 turns every idle consumer into a busy loop against the broker; far above a
            // few seconds it approaches librdkafka's socket timeout and only adds latency.
            if !(1..=MAX_FETCH_WAIT_MS).contains(&ms) {
                return bad(format!(
                    "{knob} must be in 1..={MAX_FETCH_WAIT_MS}, got {ms}"
                ));
            }
        }
        if !["pretty", "json"].contains(&self.telemetry.log_format.as_str()) {
            return bad(format!(
                "telemetry.log_format must be pretty or json, got {:?}",
                self.telemetry.log_format
            ));
        }
        let t = &self.telemetry;
        if !(0.0..=1.0).contains(&t.trace_sample_ratio) {
            return bad("telemetry.trace_sample_ratio must be in 0..=1".into());
        }
        if !t.otlp_endpoint.is_empty() {
            let ok = url::Url::parse(&t.otlp_endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return bad(format!(
                    "telemetry.otlp_endpoint is not an http(s) URL: {:?}",
                    t.otlp_endpoint
                ));
            }
        }
        let scheme = self.storage.url.split("://").next().unwrap_or_default();
        if !["file", "s3", "memory"].contains(&scheme) || !self.storage.url.contains("://") {
            return bad(format!(
                "storage.url must start with file://, s3:// or memory://, got {:?}",
                self.storage.url
            ));
        }
        if url::Url::parse(&self.http.public_url).is_err() {
            return bad(format!(
                "http.public_url is not a URL: {:?}",
                self.http.public_url
            ));
        }
        if !self.auth.jwt_secret.expose().is_empty() && self.auth.jwt_secret.expose().len() < 16 {
            return bad("auth.jwt_secret must be at least 16 characters".into());
        }
        if !self.auth.jwks_url.is_empty() {
            let ok = url::Url::parse(&self.auth.jwks_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return bad(format!(
                    "auth.jwks_url is not an http(s) URL: {:?}",
                    self.auth.jwks_url
                ));
            }
        }
        if let Some(a) = self
            .auth
            .jwks_algorithms
            .iter()
            .find(|a| asymmetric_algorithm(a).is_none())
        {
            return bad(format!(
                "auth.jwks_algorithms: {a:?} is not one of RS256, RS384, RS512, PS256, ES256, ES384"
            ));
        }
        // Link keys that are set are checked in every role; whether one is required at all is
        // the orchestrator's question (`validate_link_signing`).
        LinkKeys::from_config(&self.auth)?;
        self.webhooks.validate()?;
        // One key per purpose: a leaked sealing key must not mint tokens nor sign links.
        for (_, key) in self.webhooks.secret_keys()? {
            if key == self.auth.jwt_secret.expose() || key == self.auth.link_secret.expose() {
                return bad(
                    "webhooks.secret_key must differ from auth.jwt_secret and auth.link_secret: \
                     one key per purpose"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The key that signs local upload/download links. Only `auth.link_secret`: an empty key
    /// must never be filled in from the token key (or anything else), or links become forgeable
    /// by whoever holds the other key, or by anyone when both are empty.
    pub fn link_secret(&self) -> &str {
        self.auth.link_secret.expose()
    }

    /// Whether this configuration's API signs links itself: every store but S3, which
    /// presigns its own URLs.
    pub fn signs_links(&self) -> bool {
        !self.storage.url.starts_with("s3://")
    }

    /// The orchestrator's start-up check: where it signs links, `auth.link_secret` must be a
    /// real key. Kept out of `validate` because workers and the projector never sign links and
    /// should not need (or hold) the key.
    /// `processor.model_versions` names catalogue models and variations, and versions that fit
    /// in a job id and a consumer group name.
    fn check_model_versions(&self) -> Result<(), String> {
        for (model, variations) in &self.processor.model_versions {
            let spec = crate::catalog::model(model)
                .ok_or_else(|| format!("processor.model_versions: unknown model {model:?}"))?;
            for (variation, version) in variations {
                if spec.variation(variation).is_none() {
                    return Err(format!(
                        "processor.model_versions.{model}: unknown variation {variation:?}"
                    ));
                }
                // An int8 whisper worker serves the version with a suffix: that must fit too.
                let int8 = model == "whisper" && self.whisper.precision == WhisperPrecision::Int8;
                let suffix = if int8 {
                    WhisperPrecision::VERSION_SUFFIX
                } else {
                    ""
                };
                if !crate::catalog::is_version(&format!("{version}{suffix}")) {
                    return Err(format!(
                        "processor.model_versions.{model}.{variation}: {version:?} is not a \
                         version (1–{} of A-Z a-z 0-9 . _ -)",
                        100 - suffix.len()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn validate_link_signing(&self) -> Result<(), ConfigError> {
        if !self.signs_links() {
            return Ok(());
        }
        if self.link_secret().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "auth.link_secret (ROAR_AUTH__LINK_SECRET) is not set, but storage.url {:?} \
                 serves links the API signs: set at least {MIN_LINK_SECRET_LEN} random \
                 characters (e.g. `openssl rand -hex 32`)",
                self.storage.url
            )));
        }
        LinkKeys::from_config(&self.auth).map(|_| ())
    }

    /// The link keys by id (current first); empty when none is configured.
    pub fn link_keys(&self) -> Result<LinkKeys, ConfigError> {
        LinkKeys::from_config(&self.auth)
    }
}

/// Whether a secret is a template value someone forgot to replace (or a trivially guessable
/// one), so that a copied example never becomes a production key.
pub fn looks_like_placeholder(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    let words = [
        "change",
        "replace",
        "example",
        "placeholder",
        "dev-only",
        "default",
        "secret",
        "xxxx",
    ];
    let distinct = secret
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    words.iter().any(|w| lower.contains(w)) || distinct < 8
}

#[cfg(test)]
mod tests {
    #![allow(clippy::result_large_err)] // figment::Jail returns figment::Error, which is large.
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut c = Config::default();
        c.database.url = Secret::new("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn roar_models_dir_is_an_alias_of_processor_models_dir() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ROAR_MODELS_DIR", "/m/a");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.processor.models_dir, PathBuf::from("/m/a"));
            jail.set_env("ROAR_PROCESSOR__MODELS_DIR", "/m/b");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.processor.models_dir, PathBuf::from("/m/b"));
            Ok(())
        });
    }

    #[test]
    fn processor_device_comes_from_file_or_env_and_bad_ones_are_refused() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::default().processor.device, DeviceSpec::Auto);
            jail.create_file("roar.toml", "[processor]\ndevice = \"cpu\"\n")?;
            let c = Config::load(Some(Path::new("roar.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.processor.device, DeviceSpec::Cpu);
            jail.set_env("ROAR_PROCESSOR__DEVICE", "cuda:1");
            let c = Config::load(Some(Path::new("roar.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.processor.device, DeviceSpec::Cuda(1));
            jail.set_env("ROAR_PROCESSOR__DEVICE", "gpu");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("\"gpu\"") && e.contains("cuda:N"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn file_then_env_override_defaults_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("roar.toml", "[kafka]\nbrokers = \"b:1\"\npartitions = 7\n")?;
            jail.set_env("ROAR_KAFKA__PARTITIONS", "9");
            let c = Config::load(Some(Path::new("roar.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.brokers, "b:1");
            assert_eq!(c.kafka.partitions, 9);
            assert_eq!(c.http.max_body_bytes, 1 << 20);

            jail.set_env("ROAR_KAFKA__PARTITONS", "9");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("partitons"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut c = Config::default();
        c.storage.url = "ftp://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("storage.url"));
        let mut c = Config::default();
        c.kafka.partitions = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.auth.jwt_secret = Secret::new("short");
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.kafka.batch_max_messages = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.batch_max_messages"), "{e}");
        c.kafka.batch_max_messages = 1;
        c.validate().unwrap();
        let mut c = Config::default();
        c.http.studio_dir = "/nonexistent/roar-studio".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("http.studio_dir"), "{e}");
        c.http.studio_dir = std::env::temp_dir().display().to_string();
        c.validate().unwrap();
    }

    #[test]
    fn fetch_waits_default_short_and_are_bounded() {
        let c = Config::default();
        c.validate().unwrap();
        // Every consumer group defaults well below librdkafka's 500 ms, so a quiet topic does
        // not add half a second to each hand-off.
        for ms in [
            c.processor.fetch_wait_ms,
            c.projector.fetch_wait_ms,
            c.pipeline.fetch_wait_ms,
        ] {
            assert!((1..=50).contains(&ms), "{ms}");
        }
        for (knob, set) in [
            (
                "processor.fetch_wait_ms",
                (|c: &mut Config, v| c.processor.fetch_wait_ms = v) as fn(&mut Config, u64),
            ),
            ("projector.fetch_wait_ms", |c, v| {
                c.projector.fetch_wait_ms = v
            }),
            ("pipeline.fetch_wait_ms", |c, v| {
                c.pipeline.fetch_wait_ms = v
            }),
        ] {
            for bad in [0, MAX_FETCH_WAIT_MS + 1] {
                let mut c = Config::default();
                set(&mut c, bad);
                let e = c.validate().unwrap_err().to_string();
                assert!(e.contains(knob), "{knob}={bad}: {e}");
            }
            let mut c = Config::default();
            set(&mut c, MAX_FETCH_WAIT_MS);
            c.validate().unwrap();
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("ROAR_PIPELINE__FETCH_WAIT_MS", "25");
            jail.set_env("ROAR_PROCESSOR__FETCH_WAIT_MS", "40");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                (c.pipeline.fetch_wait_ms, c.processor.fetch_wait_ms),
                (25, 40)
            );
            jail.set_env("ROAR_PIPELINE__FETCH_WAIT_MS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("pipeline.fetch_wait_ms"), "{e}");
            Ok(())
        });
    }

    /// JWKS tokens and no HS256 key used to leave links signed with an empty HMAC key.
    #[test]
    fn link_signing_needs_its_own_real_key() {
        let jwks = || {
            let mut c = Config::default();
            c.storage.url = "file:///tmp/roar-store".into();
            c.auth.jwks_url = "https://idp.example/jwks.json".into();
            c
        };
        let c = jwks();
        c.validate().unwrap();
        assert!(c.link_secret().is_empty());
        let e = c.validate_link_signing().unwrap_err().to_string();
        assert!(
            e.contains("auth.link_secret") && e.contains("ROAR_AUTH__LINK_SECRET"),
            "{e}"
        );

        // No fallback from the token key either.
        let mut c = jwks();
        c.auth.jwt_secret = Secret::new("0123456789abcdef-token-key");
        assert_eq!(c.link_secret(), "");
        assert!(c.validate_link_signing().is_err());

        let good = "9f2c4e7a1b3d5f6e8a0c2e4b6d8f1a3c";
        for (key, why) in [
            ("0123456789abcdef", "at least 32"),
            ("REPLACE-ME-with-a-long-random-link-key", "placeholder"),
            ("dev-only-link-secret-change-me-please", "placeholder"),
            ("abababababababababababababababababab", "placeholder"),
        ] {
            let mut c = jwks();
            c.auth.link_secret = Secret::new(key);
            for e in [c.validate(), c.validate_link_signing()] {
                let e = e.unwrap_err().to_string();
                assert!(
                    e.contains("auth.link_secret") && e.contains(why),
                    "{key}: {e}"
                );
            }
        }
        let mut c = jwks();
        c.auth.jwt_secret = Secret::new(good);
        c.auth.link_secret = Secret::new(good);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("differ from auth.jwt_secret"), "{e}");

        let mut c = jwks();
        c.auth.link_secret = Secret::new(good);
        c.validate().unwrap();
        c.validate_link_signing().unwrap();
        assert_eq!(c.link_secret(), good);

        // S3 presigns its own URLs: no link key needed there.
        let mut c = jwks();
        c.storage.url = "s3://bucket".into();
        c.validate_link_signing().unwrap();
    }

    #[test]
    fn musicgen_limits_are_checked_at_start_up_and_on_each_request() {
        for (set, name) in [
            ((0.5, 2000, 12.0), "max_duration_seconds"),
            ((301.0, 2000, 12.0), "max_duration_seconds"),
            ((f64::NAN, 2000, 12.0), "max_duration_seconds"),
            ((30.0, 0, 12.0), "max_prompt_chars"),
            ((30.0, 2001, 12.0), "max_prompt_chars"),
            ((30.0, 2000, 0.0), "max_prompt_seconds"),
            ((30.0, 2000, 31.0), "max_prompt_seconds"),
        ] {
            let mut c = Config::default();
            (
                c.musicgen.max_duration_seconds,
                c.musicgen.max_prompt_chars,
                c.musicgen.max_prompt_seconds,
            ) = set;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("musicgen.{name}")), "{set:?}: {e}");
        }
        let m = MusicgenConfig {
            max_duration_seconds: 20.0,
            max_prompt_chars: 5,
            max_prompt_seconds: 3.0,
        };
        let ok = serde_json::json!({"duration": 20.0, "prompt": "héllo", "prompt_seconds": 3});
        m.check(&ok).unwrap();
        for (bad, name) in [
            (
                serde_json::json!({"duration": 20.5}),
                "max_duration_seconds",
            ),
            (serde_json::json!({"prompt": "hello!"}), "max_prompt_chars"),
            (
                serde_json::json!({"prompt_seconds": 3.5}),
                "max_prompt_seconds",
            ),
        ] {
            let e = m.check(&bad).unwrap_err();
            assert!(e.contains(name), "{bad}: {e}");
        }
    }
}
