//! Every role as its own `roar` process (orchestrator, projector, probe, the pitch worker, the
//! pipeline manager, the webhook dispatcher), the way a deployment runs them: after an upload and a pitch job, each role's `/health`, `/ready`
//! and `/metrics` answer on its own port, and each `/metrics` carries the series
//! docs/operations.md says that role exports. Every metric name in `roar_common::metrics` is in
//! that table, and every `roar_*` series scraped is documented.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roar::stack::free_port;
use serde_json::{json, Value};

use crate::support::{melody_wav, Infra, Services};

/// Series a role must show: (metric name, label pairs the sample must carry).
type Series = Vec<(&'static str, Vec<&'static str>)>;

/// The roar processes of the test, killed when it ends (pass or fail).
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_role(infra: &Infra, log: &str, args: &[&str], env: &[(&str, String)]) -> Child {
    let cfg = infra.config();
    let log = std::fs::File::create(infra.dir.path().join(log)).expect("log file");
    // Each role gets only the secrets it uses: the API keys go to the orchestrator alone (the
    // other roles refuse to start with them).
    let mut api_keys: Vec<(&str, &str)> = if args == ["orchestrator"] {
        vec![
            ("ROAR_AUTH__JWT_SECRET", cfg.auth.jwt_secret.expose()),
            ("ROAR_AUTH__LINK_SECRET", cfg.auth.link_secret.expose()),
        ]
    } else {
        Vec::new()
    };
    // The webhook sealing key: the API seals with it, the dispatcher opens with it.
    if args == ["orchestrator"] || args == ["webhooks"] {
        api_keys.push((
            "ROAR_WEBHOOKS__SECRET_KEY",
            cfg.webhooks.secret_key.expose(),
        ));
    }
    Command::new(env!("CARGO_BIN_EXE_roar"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ROAR_KAFKA__BROKERS", &cfg.kafka.brokers)
        .env("ROAR_KAFKA__PARTITIONS", "2")
        .env("ROAR_KAFKA__SESSION_TIMEOUT_MS", "6000")
        .env("ROAR_DATABASE__URL", cfg.database.url.expose())
        .env("ROAR_DATABASE__MAX_CONNECTIONS", "3")
        .env("ROAR_STORAGE__URL", &cfg.storage.url)
        .envs(api_keys)
        .env("ROAR_PROCESSOR__MODELS_DIR", &cfg.processor.models_dir)
        .env("ROAR_PROCESSOR__HEARTBEAT_SECONDS", "1")
        .env("ROAR_TELEMETRY__LOG_LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("roar binary starts")
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `url` until it answers 200 (a role loading weights or joining its group takes a
/// while on a busy machine).
async fn wait_ok(url: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let (code, body) = get(url).await;
        if code == 200 {
            return body;
        }
        assert!(start.elapsed() < within, "{url}: {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `name{labels} value` lines of a Prometheus text page, comments skipped.
fn samples(page: &str) -> Vec<(String, String, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((name.to_string(), labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn value(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    samples(page)
        .into_iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|want| l.contains(want)))
        .map(|(_, _, v)| v)
}

/// The metric names in `common/src/metrics.rs` (its `pub const X: &str = "roar_..."` lines).
fn declared_names() -> BTreeSet<String> {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/common/src/metrics.rs"
    ))
    .unwrap();
    src.lines()
        .filter(|l| l.starts_with("pub const "))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

/// The metric names in docs/operations.md's table (first column, in backticks).
fn documented_names() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `roar_"))
        .filter_map(|rest| rest.split('`').next().map(|n| format!("roar_{n}")))
        .collect()
}

#[test]
fn every_metric_name_is_documented_and_every_documented_name_declared() {
    let declared = declared_names();
    assert!(declared.len() >= 20, "{declared:?}");
    assert_eq!(declared, documented_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_serves_health_ready_and_its_documented_metrics() {
    let infra = Infra::start().await;
    let api_port = free_port().unwrap();
    let ports: Vec<u16> = (0..6).map(|_| free_port().unwrap()).collect();
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut procs = Procs(Vec::new());
    let roles: [(&str, &[&str], (&str, String)); 6] = [
        (
            "orchestrator",
            &["orchestrator"],
            ("ROAR_HTTP__ADDR", addr(api_port)),
        ),
        (
            "projector",
            &["projector"],
            ("ROAR_PROJECTOR__OPS_ADDR", addr(ports[0])),
        ),
        (
            "probe",
            &["processor", "probe"],
            ("ROAR_PROCESSOR__OPS_ADDR", addr(ports[1])),
        ),
        (
            "pitch",
            &["processor", "pitch"],
            ("ROAR_PROCESSOR__OPS_ADDR", addr(ports[2])),
        ),
        (
            "pipeline",
            &["pipeline"],
            ("ROAR_PIPELINE__OPS_ADDR", addr(ports[3])),
        ),
        (
            "webhooks",
            &["webhooks"],
            ("ROAR_WEBHOOKS__OPS_ADDR", addr(ports[5])),
        ),
    ];
    for (name, args, env) in &roles {
        let mut env = vec![env.clone()];
        if *name == "orchestrator" {
            // Metrics on their own port, never the API's.
            env.push(("ROAR_HTTP__METRICS_ADDR", addr(ports[4])));
        }
        let child = spawn_role(&infra, &format!("{name}.log"), args, &env);
        procs.0.push((name.to_string(), child));
    }
    let base = |p: u16| format!("http://127.0.0.1:{p}");
    let endpoints = [
        ("orchestrator", base(ports[4])),
        ("projector", base(ports[0])),
        ("probe", base(ports[1])),
        ("pitch", base(ports[2])),
        ("pipeline", base(ports[3])),
        ("webhooks", base(ports[5])),
    ];
    for (role, url) in &endpoints {
        let health: Value =
            serde_json::from_str(&wait_ok(&format!("{url}/health"), Duration::from_secs(60)).await)
                .unwrap_or(Value::Null);
        assert_eq!(health["status"], "ok", "{role}: {health}");
        wait_ok(&format!("{url}/ready"), Duration::from_secs(120)).await;
    }

    // A workload through every role: an upload (orchestrator → probe → projector) and a pitch
    // job (orchestrator → worker → projector).
    let mut cfg = infra.config();
    cfg.http.public_url = base(api_port);
    let svc = Services::attach(base(api_port), cfg).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "tone.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch", "variation": "tiny"}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    let job = body["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;

    // Pitch tiny's workers read as the group of the version they serve (leaked: the table
    // below holds 'static labels).
    let pitch_group: &'static str = String::leak(format!(
        "group=\"{}\"",
        roar_schemas::topics::version_group(
            "pitch",
            "tiny",
            &crate::e2e_versions::served("pitch", "tiny")
        )
    ));
    // What each role must show once the work above went through it. The projector's view of
    // the pipeline refreshes on a timer: poll until it has caught up.
    let expect: [(&str, &str, Series); 6] = [
        (
            "orchestrator",
            &endpoints[0].1,
            vec![
                ("roar_build_info", vec!["role=\"orchestrator\""]),
                ("roar_http_requests_total", vec!["status=\"202\""]),
                ("roar_http_request_duration_seconds_count", vec![]),
                (
                    "roar_events_produced_total",
                    vec!["topic=\"roar.jobs.pitch.v1\""],
                ),
                ("roar_workers_live", vec!["model=\"pitch\""]),
            ],
        ),
        (
            "projector",
            &endpoints[1].1,
            vec![
                ("roar_build_info", vec!["role=\"projector\""]),
                ("roar_projector_events_total", vec![]),
                ("roar_projector_batch_seconds_count", vec![]),
                ("roar_projector_lag_seconds", vec![]),
                ("roar_projector_lag_events", vec![]),
                ("roar_consumer_lag", vec![pitch_group]),
                (
                    "roar_consumer_lag",
                    vec!["group=\"roar-pipeline\"", "topic=\"roar.job-events.v1\""],
                ),
                (
                    "roar_consumer_lag",
                    vec!["group=\"roar-pipeline\"", "topic=\"roar.pipelines.v1\""],
                ),
                ("roar_consumer_lag", vec!["group=\"roar-webhooks\""]),
                ("roar_queue_depth", vec!["model=\"pitch\""]),
                ("roar_dlq_depth", vec![]),
            ],
        ),
        (
            "probe",
            &endpoints[2].1,
            vec![
                ("roar_build_info", vec!["role=\"probe\""]),
                ("roar_probe_files_total", vec!["outcome=\"probed\""]),
                ("roar_probe_seconds_count", vec![]),
                (
                    "roar_messages_consumed_total",
                    vec!["topic=\"roar.files.v1\""],
                ),
                (
                    "roar_events_produced_total",
                    vec!["topic=\"roar.files.v1\""],
                ),
            ],
        ),
        (
            "pitch",
            &endpoints[3].1,
            vec![
                ("roar_build_info", vec!["role=\"processor\""]),
                (
                    "roar_worker_device",
                    vec!["model=\"pitch\"", "device=\"cpu\""],
                ),
                (
                    "roar_jobs_total",
                    vec!["model=\"pitch\"", "outcome=\"completed\""],
                ),
                ("roar_jobs_in_flight", vec!["model=\"pitch\""]),
                ("roar_inference_seconds_count", vec!["model=\"pitch\""]),
                ("roar_messages_consumed_total", vec![pitch_group]),
            ],
        ),
        (
            "pipeline",
            &endpoints[4].1,
            vec![
                ("roar_build_info", vec!["role=\"pipeline\""]),
                ("roar_pipeline_steps_total", vec!["outcome=\"requested\""]),
                (
                    "roar_messages_consumed_total",
                    vec!["group=\"roar-pipeline\"", "topic=\"roar.job-events.v1\""],
                ),
            ],
        ),
        (
            "webhooks",
            &endpoints[5].1,
            vec![
                ("roar_build_info", vec!["role=\"webhooks\""]),
                (
                    "roar_webhook_deliveries_total",
                    vec!["outcome=\"delivered\""],
                ),
                ("roar_webhook_pending", vec![]),
                (
                    "roar_messages_consumed_total",
                    vec!["group=\"roar-webhooks\"", "topic=\"roar.job-events.v1\""],
                ),
            ],
        ),
    ];
    let documented = documented_names();
    for (role, url, series) in &expect {
        let start = Instant::now();
        let page = loop {
            let (code, page) = get(&format!("{url}/metrics")).await;
            assert_eq!(code, 200, "{role}");
            let missing: Vec<_> = series
                .iter()
                .filter(|(n, l)| value(&page, n, l).is_none())
                .collect();
            if missing.is_empty() {
                break page;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{role} lacks {missing:?}:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // Only documented names (histograms add their _bucket/_sum/_count suffixes).
        for (name, _, _) in samples(&page)
            .iter()
            .filter(|(n, _, _)| n.starts_with("roar_"))
        {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| documented.contains(*b))
                .unwrap_or(name);
            assert!(
                documented.contains(base),
                "{role}: {name} is not documented"
            );
        }
    }
    // A finished job left nothing in flight, and one job succeeded on the worker.
    let (_, pitch) = get(&format!("{}/metrics", endpoints[3].1)).await;
    assert_eq!(
        value(&pitch, "roar_jobs_in_flight", &["model=\"pitch\""]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &pitch,
            "roar_jobs_total",
            &["model=\"pitch\"", "outcome=\"completed\""]
        ),
        Some(1.0)
    );
    // Each role's process is its own: the worker did not serve HTTP, the probe ran no job.
    assert!(value(&pitch, "roar_http_requests_total", &[]).is_none());
    // The pitch worker runs on the CPU: its GPU series are absent (not 0, an idle GPU).
    for gpu_series in ["roar_gpu_utilization_ratio", "roar_gpu_memory_used_bytes"] {
        assert!(value(&pitch, gpu_series, &[]).is_none(), "{gpu_series}");
    }
    let (_, probe) = get(&format!("{}/metrics", endpoints[2].1)).await;
    assert!(value(&probe, "roar_jobs_total", &[]).is_none());
    svc.stop().await;
    drop(procs);
}
