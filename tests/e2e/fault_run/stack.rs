//! The stack of the fault-injection run: every part a child process the run kills with SIGKILL
//! and starts again on its own state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roar::stack::{find_tansu, free_port, tied, Postgres, TansuFlavor};
use sqlx::Connection;

use crate::support::{models_dir, S3Server, LINK_KEY, SECRET, WEBHOOK_KEY};

/// The consumer groups' session timeout: how long the broker keeps a killed member.
pub(super) const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The parts a fault kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Part {
    Orchestrator,
    Projector,
    Probe,
    /// The model workers: `roar processor pitch` and `roar processor demucs`, killed together.
    Worker,
    Broker,
    Postgres,
    /// The demucs worker: a service of its own, killed with the pitch worker as [`Part::Worker`].
    Demucs,
}

/// The kinds of fault.
pub(super) const PARTS: [Part; 6] = [
    Part::Orchestrator,
    Part::Projector,
    Part::Probe,
    Part::Worker,
    Part::Broker,
    Part::Postgres,
];

impl Part {
    /// The roar command line of a service part.
    fn args(self) -> &'static [&'static str] {
        match self {
            Part::Orchestrator => &["orchestrator"],
            Part::Projector => &["projector"],
            Part::Probe => &["processor", "probe"],
            Part::Worker => &["processor", "pitch"],
            Part::Demucs => &["processor", "demucs"],
            Part::Broker | Part::Postgres => &[],
        }
    }
}

impl Part {
    /// Whether the part is the only member of a consumer group (the probe's, each of the
    /// worker's): its SIGKILL leaves the group's leader dead until the session times out.
    pub(super) fn leads_a_group(self) -> bool {
        matches!(self, Part::Probe | Part::Worker)
    }

    /// The service processes a fault of this kind kills.
    fn services(self) -> &'static [Part] {
        match self {
            Part::Worker => &[Part::Worker, Part::Demucs],
            Part::Broker | Part::Postgres => &[],
            Part::Orchestrator => &[Part::Orchestrator],
            Part::Projector => &[Part::Projector],
            Part::Probe => &[Part::Probe],
            Part::Demucs => &[Part::Demucs],
        }
    }
}

const SERVICES: [Part; 5] = [
    Part::Orchestrator,
    Part::Projector,
    Part::Probe,
    Part::Worker,
    Part::Demucs,
];

/// The stack, each part a child process this test may kill and start again.
pub(super) struct Stack {
    dir: PathBuf,
    _s3: S3Server,
    s3_endpoint: String,
    tansu: PathBuf,
    kafka: u16,
    pg_port: u16,
    http: u16,
    broker: Option<Child>,
    pg: Option<Postgres>,
    services: HashMap<Part, Child>,
    /// Services that exited without being killed (restarted, as a supervisor would).
    pub(super) unplanned_exits: usize,
}

impl Stack {
    pub(super) async fn start(dir: &Path) -> Stack {
        let tansu = find_tansu(
            &std::env::var("ROAR_DEV__TANSU_BIN").unwrap_or_default(),
            TansuFlavor::Memory,
        )
        .expect("tansu is installed (scripts/install-tansu.sh)");
        let s3 = S3Server::start("tansu").await;
        let mut stack = Stack {
            dir: dir.to_path_buf(),
            s3_endpoint: s3.endpoint.clone(),
            _s3: s3,
            tansu,
            kafka: free_port().unwrap(),
            pg_port: free_port().unwrap(),
            http: free_port().unwrap(),
            broker: None,
            pg: None,
            services: HashMap::new(),
            unplanned_exits: 0,
        };
        stack.start_broker().await;
        stack.start_postgres().await;
        let url = stack.db_url("postgres");
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE DATABASE roar")
            .execute(&mut conn)
            .await
            .unwrap();
        stack.install_models();
        let out = stack.roar(&["projector", "migrate"]).status().unwrap();
        assert!(out.success(), "migrate failed:\n{}", stack.logs());
        for part in SERVICES {
            stack.start_service(part);
        }
        stack.wait_ready(Duration::from_secs(120)).await;
        eprintln!("fault run: the stack is ready");
        stack
    }

    /// The run's models directory: CREPE's weights (pitch tiny) and the small 4-source HTDemucs
    /// fixture generated from the reference (processors/demucs/tests/fixtures), installed as
    /// `demucs/htdemucs`, as e2e_demucs does: a demucs job on a short clip stays cheap.
    fn install_models(&self) {
        let models = self.models();
        let htdemucs = models.join("demucs/htdemucs");
        std::fs::create_dir_all(&htdemucs).unwrap();
        std::os::unix::fs::symlink(models_dir().join("crepe"), models.join("crepe")).unwrap();
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/processors/demucs/tests/fixtures/small.safetensors"
        );
        std::fs::copy(fixture, htdemucs.join("model.safetensors")).unwrap();
    }

    fn models(&self) -> PathBuf {
        self.dir.join("models")
    }

    pub(super) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub(super) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka)
    }

    pub(super) fn db_url(&self, db: &str) -> String {
        format!("postgres://roar@127.0.0.1:{}/{db}", self.pg_port)
    }

    pub(super) fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// `roar <args>` configured for this stack.
    pub(super) fn roar(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roar"));
        let any = "127.0.0.1:0";
        cmd.args(args)
            .env_remove("DATABASE_URL")
            .env("ROAR_KAFKA__BROKERS", self.brokers())
            .env("ROAR_KAFKA__PARTITIONS", "2")
            .env(
                "ROAR_KAFKA__SESSION_TIMEOUT_MS",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            // A killed member never leaves its group: the broker drops it after this long.
            .env("ROAR_KAFKA__MAX_POLL_INTERVAL_MS", "15000")
            // tansu 0.6 on S3 records an idempotent producer's sequence number before it writes
            // the batch: a SIGKILL between the two, and the retry after its restart is answered
            // "duplicate", which librdkafka counts as delivered (the event is lost). Without
            // idempotence the retry writes the event (docs/reliability.md).
            .env("ROAR_KAFKA__IDEMPOTENCE", "false")
            // tansu 0.6 on S3 answers a fetch with the batches that start at or after its
            // offset: a member resuming inside a batch of several events (after a pause, a kill
            // or a rebalance) never sees the rest of it. One event per batch leaves no inside
            // (docs/reliability.md).
            .env("ROAR_KAFKA__BATCH_MAX_MESSAGES", "1")
            .env("ROAR_DATABASE__URL", self.db_url("roar"))
            .env(
                "ROAR_STORAGE__URL",
                format!("file://{}", self.store().display()),
            )
            .env("ROAR_HTTP__ADDR", format!("127.0.0.1:{}", self.http))
            .env("ROAR_HTTP__PUBLIC_URL", self.base())
            .env("ROAR_HTTP__METRICS_ADDR", any)
            // One user sends every request: no rate limit.
            .env("ROAR_HTTP__RATE_LIMIT_PER_SECOND", "0")
            .env("ROAR_PROJECTOR__OPS_ADDR", any)
            .env("ROAR_PROCESSOR__OPS_ADDR", any)
            .env("ROAR_PIPELINE__OPS_ADDR", any)
            .env("ROAR_PROCESSOR__MODELS_DIR", self.models())
            .env("ROAR_PROCESSOR__HEARTBEAT_SECONDS", "1")
            .env("ROAR_PROCESSOR__SHUTDOWN_GRACE_SECONDS", "0")
            // One user makes every request: no per-user quota may refuse it.
            .env("ROAR_QUOTA__JOBS_IN_FLIGHT", "0")
            .env("ROAR_QUOTA__JOBS_PER_DAY", "0")
            // FAULT_RUN_LOG=info (say) for a post-mortem: rebalances, consumer starts.
            .env(
                "ROAR_TELEMETRY__LOG_LEVEL",
                std::env::var("FAULT_RUN_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("services.log")));
        // Only the API holds the token and link keys: the other roles refuse to start with them.
        if args.first() == Some(&"orchestrator") {
            cmd.env("ROAR_AUTH__JWT_SECRET", SECRET)
                .env("ROAR_AUTH__LINK_SECRET", LINK_KEY)
                .env("ROAR_WEBHOOKS__SECRET_KEY", WEBHOOK_KEY);
        } else {
            cmd.env_remove("ROAR_AUTH__JWT_SECRET")
                .env_remove("ROAR_AUTH__LINK_SECRET")
                .env_remove("ROAR_WEBHOOKS__SECRET_KEY");
        }
        cmd
    }

    fn start_service(&mut self, part: Part) {
        let child = self.roar(part.args()).spawn().unwrap();
        self.services.insert(part, child);
    }

    async fn start_broker(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.kafka);
        let child = Command::new(&self.tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "s3://tansu/"])
            // The group coordinator's membership changes (a member expired, a leader chosen)
            // at info: what a post-mortem of a stalled rebalance needs.
            .env(
                "RUST_LOG",
                "warn,tansu_broker::coordinator::group::administrator=info",
            )
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &self.s3_endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .stdin(Stdio::null())
            // tansu logs to stdout.
            .stdout(log_file(&self.dir.join("tansu.log")))
            .stderr(log_file(&self.dir.join("tansu.log")))
            .spawn()
            .unwrap();
        self.broker = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.kafka)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_postgres(&mut self) {
        let (dir, port) = (self.dir.join("pg"), self.pg_port);
        let pg = tokio::task::spawn_blocking(move || Postgres::start(&dir, port))
            .await
            .unwrap()
            .expect("PostgreSQL starts on its cluster");
        self.pg = Some(pg);
    }

    /// SIGKILL of `part` (a PostgreSQL server's backends with it, as when its machine dies).
    pub(super) async fn kill(&mut self, part: Part) {
        match part {
            Part::Broker => {
                let mut child = self.broker.take().expect("the broker runs");
                child.kill().unwrap();
                child.wait().unwrap();
            }
            Part::Postgres => {
                let pg = self.pg.take().expect("PostgreSQL runs");
                let pids: Vec<u32> = std::iter::once(pg.pid())
                    .chain(children(pg.pid()))
                    .collect();
                for pid in &pids {
                    // SAFETY: kill has no memory effects; these are this test's own processes.
                    unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
                }
                // Dropping the handle reaps the server (its stop finds nothing to stop).
                drop(pg);
                let deadline = Instant::now() + Duration::from_secs(30);
                while pids.iter().any(|p| tied::alive(*p)) {
                    assert!(Instant::now() < deadline, "PostgreSQL processes linger");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            kind => {
                for service in kind.services() {
                    let mut child = self.services.remove(service).expect("the service runs");
                    child.kill().unwrap();
                    child.wait().unwrap();
                }
            }
        }
    }

    pub(super) async fn restart(&mut self, part: Part) {
        match part {
            Part::Broker => self.start_broker().await,
            Part::Postgres => self.start_postgres().await,
            kind => {
                for service in kind.services() {
                    self.start_service(*service);
                }
            }
        }
    }

    /// Starts again any service that exited on its own (a dependency was down when it started
    /// or while it ran), as a process supervisor would.
    pub(super) fn supervise(&mut self) {
        let exited: Vec<Part> = self
            .services
            .iter_mut()
            .filter_map(|(p, c)| c.try_wait().ok().flatten().map(|_| *p))
            .collect();
        for part in exited {
            self.unplanned_exits += 1;
            self.start_service(part);
        }
    }

    async fn wait_ready(&mut self, within: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            let url = format!("{}/ready", self.base());
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.logs());
            self.supervise();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What tansu keeps of `topic` in its bucket (each key, and each watermark's JSON), for a
    /// post-mortem of a missing message.
    pub(super) async fn broker_objects(&self, topic: &str) -> String {
        let http = reqwest::Client::new();
        let prefix = format!("clusters/tansu_cluster/topics/{topic}/");
        let list = http
            .get(format!(
                "{}/tansu?list-type=2&prefix={prefix}",
                self.s3_endpoint
            ))
            .send()
            .await;
        let Ok(list) = list else {
            return "(the S3 server does not answer)".into();
        };
        let xml = list.text().await.unwrap_or_default();
        let mut out = String::new();
        for key in xml
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
        {
            out.push_str(key);
            if key.ends_with(".json") {
                let body = match http
                    .get(format!("{}/tansu/{key}", self.s3_endpoint))
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                out.push_str(&format!(" = {body}"));
            }
            out.push('\n');
        }
        out
    }

    pub(super) fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(40).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        format!(
            "services:\n{}\ntansu:\n{}",
            tail("services.log"),
            tail("tansu.log")
        )
    }

    /// Stops every service politely (the broker and PostgreSQL stay for the checks).
    pub(super) async fn stop_services(&mut self) {
        for (_, child) in self.services.drain() {
            tied::stop(child.id(), libc::SIGTERM, Duration::from_secs(20));
            let mut child = child;
            let _ = child.wait();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in self.services.values_mut().chain(self.broker.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(super) fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Every child process of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Every consumer group as the broker describes it (state, protocol, members with the bytes
/// of their assignments), for a post-mortem of a stalled rebalance.
pub(super) fn groups(brokers: &str) -> String {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = match rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
    {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match c.fetch_group_list(None, Duration::from_secs(10)) {
        Ok(list) => list
            .groups()
            .iter()
            .map(|g| {
                let members: Vec<String> = g
                    .members()
                    .iter()
                    .map(|m| {
                        format!(
                            "{} (assignment {} bytes)",
                            m.id(),
                            m.assignment().map_or(0, <[u8]>::len)
                        )
                    })
                    .collect();
                format!("{} {} {}: {members:?}", g.name(), g.state(), g.protocol())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => e.to_string(),
    }
}
