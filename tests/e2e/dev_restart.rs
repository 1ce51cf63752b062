//! `roar dev` after a crash, from outside: the binary runs as a child process and is killed with
//! SIGKILL in the middle of a job. Its PostgreSQL server and broker must go with it; running
//! `roar dev` again on the same directory must start (also over a server an earlier run left
//! behind) and the interrupted job must complete, once.
//!
//! `roar dev`'s broker keeps its log in the dev PostgreSQL (tansu's PostgreSQL engine, schema
//! `tansu`), so the interrupted job's events are still there after the restart.
//! The process-tying helpers (`roar::stack::tied`) are tested on their own below.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roar::stack::{find_tansu, free_port, tied, Postgres, TansuFlavor};
use roar_common::auth::Authenticator;
use roar_common::config::AuthConfig;
use roar_common::config::Secret;
use serde_json::{json, Value};

use crate::support::{melody_wav, models_dir, SECRET};

struct Dev {
    dir: std::path::PathBuf,
    tansu: std::path::PathBuf,
    http: u16,
    pg: u16,
    kafka: u16,
}

impl Dev {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// `roar dev` on this directory and these ports, its log appended to `dev.log`.
    fn command(&self) -> Command {
        let path = format!(
            "/usr/lib/postgresql/15/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roar"));
        cmd.args(["dev", "--no-install"])
            .env("PATH", path)
            .env_remove("DATABASE_URL")
            .env_remove("ROAR_DATABASE__URL")
            .env("ROAR_DEV__DIR", &self.dir)
            .env("ROAR_DEV__TANSU_BIN", &self.tansu)
            .env("ROAR_DEV__KAFKA_PORT", self.kafka.to_string())
            .env("ROAR_DEV__POSTGRES_PORT", self.pg.to_string())
            .env("ROAR_HTTP__ADDR", format!("127.0.0.1:{}", self.http))
            .env("ROAR_HTTP__PUBLIC_URL", self.base())
            .env("ROAR_AUTH__JWT_SECRET", SECRET)
            .env("ROAR_KAFKA__PARTITIONS", "2")
            // The killed run's members never leave their groups; the broker drops them when a
            // rebalance has waited this long for them (the loop polls throughout, so it is safe).
            .env("ROAR_KAFKA__MAX_POLL_INTERVAL_MS", "15000")
            .env("ROAR_PROCESSOR__MODELS_DIR", models_dir())
            .env("ROAR_PROCESSOR__SHUTDOWN_GRACE_SECONDS", "0")
            .env("ROAR_TELEMETRY__LOG_LEVEL", "info")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.with_extension("log"))
                    .unwrap(),
            );
        cmd
    }

    /// Starts `roar dev` and waits until it serves `/ready`.
    async fn start(&self) -> Running {
        let mut child = self.command().spawn().unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = client.get(format!("{}/ready", self.base())).send().await {
                if r.status().is_success() {
                    return Running(child);
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.with_extension("log")).unwrap();
                panic!("roar dev exited ({status}) before it was ready:\n{log}");
            }
            assert!(Instant::now() < deadline, "roar dev not ready within 180 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A `roar dev` process, killed if the test ends before it stops it (the kill takes its
/// children along: what the test is about).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every child process of `pid` (all its threads').
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

async fn all_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|p| !tied::alive(*p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn status(base: &str, token: &str, file_id: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{base}/status/{file_id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap_or(Value::Null)
}

async fn wait_for(dev: &Dev, token: &str, file_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = status(&dev.base(), token, file_id).await;
        if done(&v) {
            return v;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dev.dir.with_extension("log")).unwrap_or_default();
            let broker =
                std::fs::read_to_string(dev.dir.join("broker/tansu.log")).unwrap_or_default();
            panic!("condition not met; last: {v:#}\nroar dev's log:\n{log}\nbroker log:\n{broker}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn job_status(v: &Value, job_id: &str) -> String {
    v["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["job_id"] == job_id))
        .and_then(|j| j["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roar_dev_killed_mid_job_restarts_and_completes_the_job_once() {
    let tmp = tempfile::tempdir().unwrap();
    let tansu = find_tansu(
        &std::env::var("ROAR_DEV__TANSU_BIN").unwrap_or_default(),
        TansuFlavor::Durable,
    )
    .expect("tansu with PostgreSQL storage is installed (scripts/install-tansu.sh)");
    let dev = Dev {
        dir: tmp.path().join("dev"),
        tansu,
        http: free_port().unwrap(),
        pg: free_port().unwrap(),
        kafka: free_port().unwrap(),
    };

    // A server an earlier roar left running on the dev cluster, holding the port.
    std::env::set_var(
        "PATH",
        format!(
            "/usr/lib/postgresql/15/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    let leftover = Postgres::start(&dev.dir.join("pg"), dev.pg).unwrap();
    let leftover_pid = leftover.pid();
    std::mem::forget(leftover);

    let mut first = dev.start().await;
    assert!(
        !tied::alive(leftover_pid),
        "the leftover server was not stopped"
    );
    let auth = AuthConfig {
        jwt_secret: Secret::new(SECRET),
        ..AuthConfig::default()
    };
    let token = Authenticator::new(&auth).mint("alice", &[], None).unwrap();

    // 30 s at a 5 ms hop keeps the job running long enough to be killed in it.
    let part = reqwest::multipart::Part::bytes(melody_wav(&[(330.0, 30.0)], 16_000, 1))
        .file_name("long.wav");
    let r = reqwest::Client::new()
        .post(format!("{}/upload", dev.base()))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let file_id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(&dev, &token, &file_id, |v| v["file"]["status"] == "ready").await;
    let r = reqwest::Client::new()
        .post(format!("{}/process", dev.base()))
        .bearer_auth(&token)
        .json(&json!({"file_id": file_id, "model": "pitch", "params": {"hop_ms": 5.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job_id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(&dev, &token, &file_id, |v| {
        job_status(v, &job_id) == "running"
    })
    .await;

    // kill -9: nothing of roar dev may stay behind.
    let kids = children(first.0.id());
    assert!(kids.len() >= 2, "postgres and tansu are children: {kids:?}");
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(
        all_gone(&kids, Duration::from_secs(60)).await,
        "children outlived roar dev: {:?}",
        kids.iter().filter(|p| tied::alive(**p)).collect::<Vec<_>>()
    );

    // Again on the same directory and ports: it starts, and the job runs to the end once.
    let mut second = dev.start().await;
    let st = wait_for(&dev, &token, &file_id, |v| {
        job_status(v, &job_id) == "completed"
    })
    .await;
    // The read model's history of the job (what /status is built from).
    let pool = sqlx::PgPool::connect(&format!("postgres://roar@127.0.0.1:{}/roar", dev.pg))
        .await
        .unwrap();
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM events WHERE job_id = $1 ORDER BY seq")
            .bind(&job_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    // The broker's log is in the same database (what carried the job across the kill).
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM tansu.record")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(records > 0, "the broker's log is not in PostgreSQL");
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("completed"), 1, "{kinds:?}; status {st:#}");
    assert_eq!(
        count("started"),
        2,
        "started before and after the kill: {kinds:?}"
    );
    let outputs = dev
        .dir
        .join(format!("store/outputs/{file_id}/pitch/tiny/{job_id}"));
    assert_eq!(
        std::fs::read_dir(outputs).unwrap().count(),
        6,
        "5 outputs + manifest, written once"
    );

    // A second roar dev on the same directory refuses rather than stopping the first's servers.
    let other = dev.command().stderr(Stdio::piped()).output().unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("another `roar dev`"), "{err}");
    assert!(children(second.0.id()).iter().all(|p| tied::alive(*p)));

    // And a clean stop takes its children too.
    let kids = children(second.0.id());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(second.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "roar dev did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all_gone(&kids, Duration::from_secs(30)).await);
    assert!(
        !dev.dir.join("roar-dev.pid").exists(),
        "a clean stop leaves no marker"
    );
}

// The process-tying helpers `roar dev` relies on, on their own.
fn sleeper() -> Child {
    tied::spawn_tied(
        {
            let mut c = Command::new("sleep");
            c.arg("600");
            c
        },
        libc::SIGTERM,
    )
    .unwrap()
}

#[test]
fn a_pid_file_names_its_process_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    let file = dir.path().join("x.pid");
    tied::write_pid_file(&file, child.id()).unwrap();
    assert_eq!(tied::pid_file_process(&file), Some(child.id()));

    // Same pid, another start time: a stranger that reused the pid.
    let start = tied::start_time(child.id()).unwrap();
    std::fs::write(&file, format!("{} {}\n", child.id(), start + 1)).unwrap();
    assert_eq!(tied::pid_file_process(&file), None);
    std::fs::write(&file, "garbage").unwrap();
    assert_eq!(tied::pid_file_process(&file), None);

    // Our own child is a zombie until reaped, which counts as gone.
    assert!(tied::stop(
        child.id(),
        libc::SIGTERM,
        Duration::from_secs(5)
    ));
    child.wait().unwrap();
    assert!(!tied::alive(child.id()));
}

#[test]
fn a_tied_child_is_spawned_from_a_thread_that_outlives_its_caller() {
    // Spawned from a thread that then exits: the child must survive that.
    let child = std::thread::spawn(sleeper).join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        tied::alive(child.id()),
        "the child died with the thread that asked for it"
    );
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
}
