//! The end-to-end harness: every test gets its own tansu broker (in memory, random port), its
//! own PostgreSQL cluster (temp dir, random port), its own object store directory, and the roar
//! services running in-process on port 0, so tests run in parallel and leave nothing behind.
//! `projection` drives the projector alone; `deploy` reads the deployment files.

// benches/projector.rs includes this file too and uses only part of it.
#![allow(dead_code)]

pub mod deploy;
pub mod jobs;
pub mod projection;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roar::stack::{find_tansu, free_port, Broker, Postgres, TansuFlavor};
use roar_common::auth::Authenticator;
use roar_common::config::Secret;
use roar_common::Config;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "e2e-token-key-7c2a9f4e1b3d8065a7";
/// The link-signing key of test servers: its own key, never the token key.
pub const LINK_KEY: &str = "e2e-link-key-5b0d8f3a9c1e7246b8d0f2";
/// The key that seals webhook signing secrets in test servers: a third purpose, a third key.
pub const WEBHOOK_KEY: &str = "e2e-webhook-key-3e8a1c6f0d2b9475e1c3";

pub struct Infra {
    pub pg: Postgres,
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

impl Infra {
    pub async fn start() -> Infra {
        let dir = tempfile::tempdir().expect("temp dir");
        let tansu = find_tansu(
            &std::env::var("ROAR_DEV__TANSU_BIN").unwrap_or_default(),
            TansuFlavor::Memory,
        )
        .unwrap_or_else(|| {
            panic!(
                "tansu not found: run `{}` (the README's test command does)",
                TansuFlavor::Memory.install_command()
            )
        });
        let broker = start_with_retry(|| {
            Broker::start(
                &tansu,
                free_port()?,
                "memory://tansu/",
                &dir.path().join("tansu.log"),
            )
        });
        let pg = start_with_retry(|| Postgres::start(&dir.path().join("pg"), free_port()?));
        pg.ensure_database("roar").await.expect("create database");
        Infra { pg, broker, dir }
    }

    pub fn config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.kafka.brokers = self.broker.bootstrap();
        cfg.kafka.partitions = 2;
        cfg.kafka.session_timeout_ms = 6000;
        cfg.database.url = Secret::new(self.pg.url("roar"));
        cfg.database.max_connections = 5;
        cfg.storage.url = format!("file://{}", self.store_dir().display());
        cfg.auth.jwt_secret = Secret::new(SECRET);
        cfg.auth.link_secret = Secret::new(LINK_KEY);
        cfg.webhooks.secret_key = Secret::new(WEBHOOK_KEY);
        cfg.http.addr = "127.0.0.1:0".parse().unwrap();
        // Tests run in parallel: every ops endpoint on a port of its own.
        cfg.projector.ops_addr = "127.0.0.1:0".parse().unwrap();
        cfg.http.metrics_addr = "127.0.0.1:0".parse().unwrap();
        cfg.processor.ops_addr = "127.0.0.1:0".parse().unwrap();
        cfg.pipeline.ops_addr = "127.0.0.1:0".parse().unwrap();
        cfg.webhooks.ops_addr = "127.0.0.1:0".parse().unwrap();
        cfg.telemetry.log_level = "warn".into();
        // The CREPE weights the README's test command fetches; progress fast enough to observe.
        cfg.processor.models_dir = models_dir();
        cfg.processor.progress_per_second = 20.0;
        cfg.processor.heartbeat_seconds = 1;
        cfg.validate().expect("test config is valid");
        cfg
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

/// Free ports can be taken between probing and binding; try a few times.
fn start_with_retry<T>(mut f: impl FnMut() -> anyhow::Result<T>) -> T {
    let mut last = None;
    for _ in 0..3 {
        match f() {
            Ok(t) => return t,
            Err(e) => last = Some(e),
        }
    }
    panic!("could not start test infrastructure: {:#}", last.unwrap());
}

/// The roar services running in this process against some infrastructure.
pub struct Services {
    pub base: String,
    pub cfg: Arc<Config>,
    cancel: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Services {
    pub async fn start(cfg: Config) -> Services {
        Self::start_with(
            cfg,
            roar::services::Roles {
                pipeline: true,
                webhooks: false,
            },
        )
        .await
    }

    /// [`Services::start`] with only the optional roles `roles` names in this process.
    pub async fn start_with(cfg: Config, roles: roar::services::Roles) -> Services {
        roar_common::telemetry::init_tracing(&cfg.telemetry);
        let listener = tokio::net::TcpListener::bind(cfg.http.addr).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Signed links point at this server.
        let mut cfg = cfg;
        cfg.http.public_url = base.clone();
        let cfg = Arc::new(cfg);
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(roar::services::all_with(
            cfg.clone(),
            listener,
            cancel.clone(),
            roles,
        ));
        let s = Services {
            base,
            cfg,
            cancel,
            handle: Some(handle),
        };
        s.wait_healthy().await;
        s
    }

    /// Helpers for an orchestrator running elsewhere (another process) at `base`; `stop`
    /// then stops nothing.
    pub async fn attach(base: String, cfg: Config) -> Services {
        let s = Services {
            base,
            cfg: Arc::new(cfg),
            cancel: CancellationToken::new(),
            handle: None,
        };
        s.wait_healthy().await;
        s
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/ready", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("services did not become ready");
    }

    /// Cancels every service and waits for a clean stop.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            let r = tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("services stop within 30 s");
            r.expect("services task").expect("services stopped cleanly");
        }
    }

    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        Authenticator::new(&self.cfg.auth)
            .mint(sub, roles, None)
            .unwrap()
    }

    pub async fn upload(&self, token: &str, filename: &str, bytes: Vec<u8>) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string());
        let form = reqwest::multipart::Form::new().part("file", part);
        reqwest::Client::new()
            .post(format!("{}/upload", self.base))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn status(&self, token: &str, file_id: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}/status/{file_id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Polls `/status/{file_id}` until `done` holds for the body (30 s at most).
    pub async fn wait_for(
        &self,
        token: &str,
        file_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_within(token, file_id, Duration::from_secs(30), done)
            .await
    }

    /// `wait_for` with a longer bound, for a condition that needs a model to run through a long
    /// input (a loaded machine can take several times the quiet one's time).
    pub async fn wait_for_within(
        &self,
        token: &str,
        file_id: &str,
        bound: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        for _ in 0..bound.as_millis().div_ceil(100) {
            let r = self.status(token, file_id).await;
            if r.status().is_success() {
                last = r.json().await.unwrap();
                if done(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("condition not met for {file_id}; last status: {last:#}");
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `<repo>/.roar/models`, or `ROAR_PROCESSOR__MODELS_DIR` / `ROAR_MODELS_DIR` when set.
pub fn models_dir() -> PathBuf {
    ["ROAR_PROCESSOR__MODELS_DIR", "ROAR_MODELS_DIR"]
        .iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".roar/models"))
}

/// `text` spoken by espeak-ng at `words_per_minute`, as a WAV file (22.05 kHz mono, 16-bit).
pub fn espeak_wav(text: &str, words_per_minute: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", &words_per_minute.to_string(), "-w"])
        .arg(&wav)
        .arg(text)
        .output()
        .expect("espeak-ng is installed (the README's test command installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(wav).unwrap()
}

/// A 16-bit WAV of a melody: each (Hz, seconds) a sine (0 Hz: silence), `channels` identical.
pub fn melody_wav(notes: &[(f32, f32)], rate: u32, channels: u16) -> Vec<u8> {
    let mut mono = Vec::new();
    for &(hz, secs) in notes {
        let n = (secs * rate as f32) as usize;
        mono.extend(
            (0..n).map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5),
        );
    }
    let inter: Vec<f32> = mono
        .iter()
        .flat_map(|s| std::iter::repeat_n(*s, channels as usize))
        .collect();
    roar_processors::audio::wav_pcm16(&inter, rate, channels)
}

/// A raw Kafka producer on the test broker (what an external client or a replay would use).
pub fn raw_producer(infra: &Infra) -> rdkafka::producer::FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra.broker.bootstrap())
        .create()
        .unwrap()
}

/// Produces one roar event and waits for the broker's acknowledgement.
pub async fn produce<E: roar_schemas::Event>(infra: &Infra, topic: &str, key: &str, ev: &E) {
    let payload = roar_schemas::encode(ev);
    raw_producer(infra)
        .send(
            rdkafka::producer::FutureRecord::to(topic)
                .key(key)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// The event kinds of a file's history, oldest first (for "exactly once" checks).
pub async fn history_kinds(infra: &Infra, file_id: &str) -> Vec<(Option<String>, String)> {
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let rows: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT job_id, kind FROM events WHERE file_id = $1 ORDER BY seq")
            .bind(file_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows
}

/// A file's history with each event's time, oldest applied first: (job id, kind, occurred_at).
pub async fn history_times(
    infra: &Infra,
    file_id: &str,
) -> Vec<(Option<String>, String, chrono::DateTime<chrono::Utc>)> {
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT job_id, kind, occurred_at FROM events WHERE file_id = $1 ORDER BY seq",
    )
    .bind(file_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/audio/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// HTTP helpers for the API tests: every call returns (status, JSON body or Null).
impl Services {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Fetches a `/status` output through its download link (absolute, presigned, or a path
    /// on the API); asserts 200.
    pub async fn download(&self, token: &str, output: &Value) -> Vec<u8> {
        let url = output["url"]
            .as_str()
            .expect("outputs carry a download url");
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            self.url(url)
        };
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{output:#}");
        r.bytes().await.unwrap().to_vec()
    }

    pub async fn get_json(&self, token: &str, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status_and_json(r).await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        status_and_json(r).await
    }

    /// Uploads a fixture and waits until the probe has made it `ready`; returns its id.
    pub async fn ready_file(&self, token: &str, name: &str, bytes: Vec<u8>) -> String {
        let r = self.upload(token, name, bytes).await;
        assert_eq!(r.status(), 201, "upload {name}");
        let id = r.json::<Value>().await.unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_string();
        self.wait_for(token, &id, |v| v["file"]["status"] == "ready")
            .await;
        id
    }

    /// The job `job_id` in `/status/{file_id}`, once `done` holds for it.
    pub async fn wait_job(
        &self,
        token: &str,
        file_id: &str,
        job_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let v = self
            .wait_for(token, file_id, |v| find_job(v, job_id).is_some_and(&done))
            .await;
        find_job(&v, job_id).unwrap().clone()
    }

    /// An idempotent producer on the test's broker, as a worker would use.
    pub fn producer(&self) -> roar_common::kafka::EventProducer {
        roar_common::kafka::EventProducer::new(&self.cfg.kafka).unwrap()
    }
}

pub fn find_job<'a>(status: &'a Value, job_id: &str) -> Option<&'a Value> {
    status["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["job_id"] == job_id)
}

pub async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let code = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Every message on `topic`, from offset 0 to the end of each partition.
///
/// The end is the high watermark a Fetch response carries, not ListOffsets' answer: tansu 0.6's
/// object-store engine (the S3 and memory storages) answers ListOffsets `latest` with the batch
/// object modified last, not the highest offset, so batches written within one second of each
/// other (S3 keeps seconds) or out of offset order give a high watermark too low, and a reader
/// that trusted it stopped early. The start is offset 0 for the same reason (`earliest` is the
/// batch modified first).
pub fn read_topic(brokers: &str, topic: &str) -> Vec<roar_common::kafka::Delivery> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "roar-test-topic-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    // Next offset to read, per partition.
    let mut next: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        next.insert(p.id(), 0);
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(0))
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last_message = std::time::Instant::now();
    loop {
        assert!(std::time::Instant::now() < deadline, "{topic} not read");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let d = roar_common::kafka::Delivery::from_message(&m.unwrap());
            next.insert(d.partition, d.offset + 1);
            out.push(d);
            last_message = std::time::Instant::now();
        }
        // The client caches each partition's high watermark from its latest Fetch response
        // (negative until one arrived). An offset the broker reserved and never wrote (it was
        // killed between the two) leaves a gap: at the end of a partition, only a quiet spell
        // says that nothing more is coming.
        let highs: Vec<(i64, i64)> = next
            .iter()
            .map(|(p, at)| {
                let high = fetched_high(&c, topic, *p);
                (*at, high)
            })
            .collect();
        let known = highs.iter().all(|(_, high)| *high >= 0);
        let reached = highs.iter().all(|(at, high)| at >= high);
        if known && (reached || last_message.elapsed() > Duration::from_secs(5)) {
            return out;
        }
    }
}

/// The high watermark of `topic`/`partition` that the client's latest Fetch response carried,
/// or negative before one arrived (rdkafka has no safe binding for this cached value).
fn fetched_high(c: &rdkafka::consumer::BaseConsumer, topic: &str, partition: i32) -> i64 {
    use rdkafka::consumer::Consumer;
    let topic = std::ffi::CString::new(topic).expect("a topic name without NUL");
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer lives as long as `c`, the name is a valid C string for the
    // call, and the call only copies the client's cached offsets into the two locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            c.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    if err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        high
    } else {
        -1
    }
}

/// The total number of messages on `topic` (sum of high watermarks).
pub fn topic_len(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    (0..parts)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// A Server-Sent Events reader over a streaming response; comments are heartbeats.
pub struct SseReader {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, or None when the stream ends or `wait` passes first.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.next_block(deadline).await? {
                Block::Event(ev) => return Some(ev),
                Block::Comment => {}
            }
        }
    }

    /// Waits for the next heartbeat comment: `Ok` when one comes first, `Err(Some(event))`
    /// when an event comes first, `Err(None)` when the stream ends or `wait` passes.
    pub async fn heartbeat(&mut self, wait: Duration) -> Result<(), Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + wait;
        match self.next_block(deadline).await {
            Some(Block::Comment) => Ok(()),
            Some(Block::Event(ev)) => Err(Some(ev)),
            None => Err(None),
        }
    }

    /// The next block (up to a blank line) that is an event or only comments.
    async fn next_block(&mut self, deadline: tokio::time::Instant) -> Option<Block> {
        use futures::StreamExt;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let (mut is_event, mut is_comment) = (false, false);
                for line in block.lines() {
                    if line.starts_with(':') {
                        is_comment = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                        is_event = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_string());
                        is_event = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.trim_start());
                        is_event = true;
                    }
                }
                if is_event {
                    return Some(Block::Event(ev));
                }
                if is_comment {
                    return Some(Block::Comment);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.ok()?));
        }
    }
}

enum Block {
    Event(SseEvent),
    Comment,
}

/// A real S3-compatible server for the presigned-URL paths: moto's server mode
/// (`pip install 'moto[server]'`, which scripts/test.sh does), on a free port, with one bucket.
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    pub async fn start(bucket: &str) -> S3Server {
        let bin = std::env::var("ROAR_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        for _ in 0..3 {
            let port = free_port().unwrap();
            let child = std::process::Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{bin}: {e}; install it with: pip install 'moto[server]'")
                });
            let mut s = S3Server {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                bucket: bucket.to_string(),
            };
            let client = reqwest::Client::new();
            for _ in 0..100 {
                let url = format!("{}/{bucket}", s.endpoint);
                if let Ok(r) = client.put(&url).send().await {
                    if r.status().is_success() {
                        return s;
                    }
                }
                if s.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = s.child.kill();
        }
        panic!("moto_server did not start");
    }

    /// Points `cfg`'s object storage at this server.
    pub fn configure(&self, cfg: &mut Config) {
        cfg.storage.url = format!("s3://{}", self.bucket);
        cfg.storage.s3_endpoint = self.endpoint.clone();
        cfg.storage.s3_region = "us-east-1".into();
        cfg.storage.s3_access_key_id = Secret::new("testing");
        cfg.storage.s3_secret_access_key = Secret::new("testing");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
