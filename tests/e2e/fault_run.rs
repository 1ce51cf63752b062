//! The fault-injection run (issue 20): the whole stack as separate processes (tansu on S3
//! storage, PostgreSQL, `roar orchestrator`, `roar projector`, `roar processor probe`, `roar
//! processor pitch`, `roar processor demucs`), clients uploading clips and asking for jobs
//! through the API (pitch tiny, and one in eight demucs on the small fixture network), and
//! between them SIGKILLs of each part at seeded random moments, each part restarted on its own
//! state (the broker on its S3 bucket, PostgreSQL on its cluster directory). Then, separately,
//! a clients-only phase: clients keep uploading and polling `/status` while parts are killed.
//! Afterwards:
//!
//! - every accepted upload is `ready` and every accepted job `completed`, and the history holds
//!   one kind of terminal event per job (never completed and failed);
//! - every completed job has exactly one set of outputs (its manifest lists exactly the objects
//!   in its folder, the read model's outputs are that set) and no object belongs to nothing;
//! - the read model equals what `roar projector rebuild` makes from the topics;
//! - the dead-letter topic holds only the poison messages the run injected.
//!
//! CI runs a short version (one fault of each kind, then two in the clients-only phase).
//! `FAULT_RUN_SEED`, `FAULT_RUN_JOBS`, `FAULT_RUN_FAULTS` and `FAULT_RUN_CLIENT_FAULTS` (a
//! third of the faults by default) make it longer, `FAULT_RUN_PARTS=worker,broker` hits only
//! those kinds (`orchestrator`, `projector`, `probe`, `worker`, `broker`, `postgres`);
//! `FAULT_RUN_REPORT=path` appends the figures as a markdown table row (docs/reliability.md
//! says how the published runs were made), `FAULT_RUN_PATIENCE=240` gives a loaded machine
//! longer before a wait counts as a stall (120 s by default). The names are not `ROAR_*`: the roar processes
//! inherit the environment and refuse unknown settings.

mod checks;
mod clients;
mod stack;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use roar_common::auth::Authenticator;
use roar_common::config::{AuthConfig, Secret};
use roar_schemas::topics::{jobs_topic, DLQ, FILES};
use roar_schemas::DeadLetter;
use serde_json::Value;

use self::checks::check_objects;
use self::clients::{client, count, uploader, Done};
use self::stack::{groups, log_file, Part, Stack, PARTS, SESSION_TIMEOUT};
use crate::support::projection::snapshot;
use crate::support::{read_topic, SECRET};

/// What a run does; the defaults are CI's short run.
struct Plan {
    seed: u64,
    jobs: usize,
    /// Faults of the job waves, one per wave.
    faults: usize,
    /// Faults of the clients-only phase.
    client_faults: usize,
    /// The kinds of part a fault may hit (`FAULT_RUN_PARTS=worker,broker`; all by default).
    parts: Vec<Part>,
}

impl Plan {
    fn from_env() -> Plan {
        let get = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
                })
                .unwrap_or(default)
        };
        let parts: Vec<Part> = match std::env::var("FAULT_RUN_PARTS") {
            Ok(list) => list
                .split(',')
                .map(|name| {
                    PARTS
                        .into_iter()
                        .find(|p| format!("{p:?}").eq_ignore_ascii_case(name.trim()))
                        .unwrap_or_else(|| panic!("FAULT_RUN_PARTS: {name}? one of {PARTS:?}"))
                })
                .collect(),
            Err(_) => PARTS.to_vec(),
        };
        let faults = get("FAULT_RUN_FAULTS", parts.len() as u64).max(1) as usize;
        Plan {
            seed: get("FAULT_RUN_SEED", 20_261_206),
            jobs: (get("FAULT_RUN_JOBS", 12) as usize).max(2 * faults),
            faults,
            client_faults: get("FAULT_RUN_CLIENT_FAULTS", faults as u64 / 3) as usize,
            parts,
        }
    }
}

/// splitmix64: a seeded sequence, so a run's faults can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }

    /// The kinds of `parts` for `n` faults: every kind once in a seeded order, then seeded
    /// random kinds.
    fn order(&mut self, parts: &[Part], n: usize) -> Vec<Part> {
        let mut order = parts.to_vec();
        for i in (1..order.len()).rev() {
            order.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
        while order.len() < n {
            order.push(parts[(self.next() % parts.len() as u64) as usize]);
        }
        order.truncate(n);
        order
    }
}

/// How long a client waits for an answer, a file or a job, and the run for a completion after a
/// fault: well inside nextest's limit, so a stall fails with the services' logs.
/// `FAULT_RUN_PATIENCE` (seconds) raises it for a machine so loaded that a healthy stack needs
/// longer: it bounds how long a stall goes unnoticed, not how fast recovery must be (the
/// recovery times are measured and published apart).
static PATIENCE: LazyLock<Duration> = LazyLock::new(|| {
    Duration::from_secs(
        std::env::var("FAULT_RUN_PATIENCE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(120),
    )
});

/// Completed jobs: what the job waves' recovery waits on.
const COMPLETED_JOBS: &str = "SELECT count(*) FROM jobs WHERE status = 'completed'";

/// Ready files: what the clients-only phase's recovery waits on.
const READY_FILES: &str = "SELECT count(*) FROM files WHERE status = 'ready'";

/// Clients uploading at once in the clients-only phase.
const UPLOADERS: usize = 4;

/// Garbage on a topic the probe, the worker and the projector read; returns where it landed.
async fn poison(brokers: &str, topic: &str) -> (String, i32, i64) {
    let p: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let (partition, offset) = p
        .send(
            FutureRecord::to(topic)
                .key("poison")
                .payload(&b"\x00not avro"[..]),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (topic.to_string(), partition, offset)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The machine's 1-minute load average: the run's recovery times mean little without it.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Reads `progress` (a count on the read model; waiting out a PostgreSQL outage, restarting
/// what exited), kills `part` and starts it again after a seeded pause. Returns the count read
/// and the moment of the kill.
async fn kill_and_restart(
    stack: &mut Stack,
    rng: &mut Rng,
    part: Part,
    progress: &str,
    what: &str,
) -> (i64, Instant) {
    let db = stack.db_url("roar");
    let before = loop {
        if let Some(n) = count(&db, progress).await {
            break n;
        }
        stack.supervise();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let killed_at = Instant::now();
    eprintln!("fault run: {what} ({before} done): SIGKILL of the {part:?}");
    stack.kill(part).await;
    tokio::time::sleep(rng.millis(0, 1_500)).await;
    if part.leads_a_group() {
        // Restarted only once the broker has dropped the killed member, as a supervisor's
        // restart backoff does: tansu 0.6 otherwise may form the group with an empty
        // assignment and leave the new member idle for good (docs/reliability.md).
        tokio::time::sleep(SESSION_TIMEOUT).await;
    }
    stack.restart(part).await;
    (before, killed_at)
}

/// Waits until `progress` grows past `before`; returns the time since the kill.
async fn recovered(
    stack: &mut Stack,
    part: Part,
    progress: &str,
    before: i64,
    killed_at: Instant,
) -> Duration {
    let db = stack.db_url("roar");
    let deadline = Instant::now() + *PATIENCE;
    loop {
        stack.supervise();
        if count(&db, progress).await.is_some_and(|n| n > before) {
            return killed_at.elapsed();
        }
        if Instant::now() >= deadline {
            panic!(
                "no progress ({progress}) within {:?} of killing the {part:?}:\n{}\ngroups:\n{}",
                *PATIENCE,
                stack.logs(),
                groups(&stack.brokers())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Recovery = BTreeMap<Part, Vec<Duration>>;

/// The job waves, one fault each: half the wave's clients start before the kill, half after
/// the restart, so there is always work whose completion shows that the stack recovered.
async fn job_waves(
    plan: &Plan,
    rng: &mut Rng,
    stack: &mut Stack,
    token: &str,
) -> (Vec<Done>, Recovery) {
    let per_wave = plan.jobs / plan.faults;
    let mut recovery = Recovery::new();
    let mut results = Vec::new();
    let started = Instant::now();
    for (wave, part) in rng.order(&plan.parts, plan.faults).into_iter().enumerate() {
        let first = wave * per_wave;
        let last = if wave + 1 == plan.faults {
            plan.jobs
        } else {
            first + per_wave
        };
        let middle = first + (last - first) / 2;
        let mut clients = tokio::task::JoinSet::new();
        for n in first..middle {
            clients.spawn(client(stack.base(), token.to_string(), n));
        }
        tokio::time::sleep(rng.millis(200, 2_000)).await;
        let what = format!(
            "wave {wave} ({first}..{last}) at {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (before, killed_at) = kill_and_restart(stack, rng, part, COMPLETED_JOBS, &what).await;
        for n in middle..last {
            clients.spawn(client(stack.base(), token.to_string(), n));
        }
        let took = recovered(stack, part, COMPLETED_JOBS, before, killed_at).await;
        eprintln!(
            "fault run: wave {wave}: a job completed {:.1} s after the kill",
            took.as_secs_f64()
        );
        recovery.entry(part).or_default().push(took);
        while let Some(r) = clients.join_next().await {
            results.push(r.expect("a client"));
        }
    }
    (results, recovery)
}

/// The clients-only phase: `UPLOADERS` clients keep uploading and polling while parts are
/// killed (not the model workers: no job runs here). Returns the files they were given.
async fn clients_phase(
    plan: &Plan,
    rng: &mut Rng,
    stack: &mut Stack,
    token: &str,
) -> (Vec<String>, Recovery) {
    let mut recovery = Recovery::new();
    let kinds: Vec<Part> = plan
        .parts
        .iter()
        .copied()
        .filter(|p| *p != Part::Worker)
        .collect();
    if plan.client_faults == 0 || kinds.is_empty() {
        return (Vec::new(), recovery);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut uploaders = tokio::task::JoinSet::new();
    for _ in 0..UPLOADERS {
        uploaders.spawn(uploader(
            stack.base(),
            token.to_string(),
            next.clone(),
            stop.clone(),
        ));
    }
    for (i, part) in rng
        .order(&kinds, plan.client_faults)
        .into_iter()
        .enumerate()
    {
        tokio::time::sleep(rng.millis(500, 3_000)).await;
        // An uploader ends only when told to: one that ended failed a check.
        if let Some(r) = uploaders.try_join_next() {
            panic!("an uploader ended early: {:?}", r.map(|files| files.len()));
        }
        let what = format!("clients phase, fault {i}");
        let (before, killed_at) = kill_and_restart(stack, rng, part, READY_FILES, &what).await;
        let took = recovered(stack, part, READY_FILES, before, killed_at).await;
        eprintln!(
            "fault run: clients phase, fault {i}: a file was ready {:.1} s after the kill",
            took.as_secs_f64()
        );
        recovery.entry(part).or_default().push(took);
    }
    stop.store(true, Ordering::Relaxed);
    let mut files = Vec::new();
    while let Some(r) = uploaders.join_next().await {
        files.extend(r.expect("an uploader"));
    }
    (files, recovery)
}

/// `Kind ×n: p50 …, p99 …;` per kind.
fn recovery_cell(recovery: &mut Recovery) -> String {
    let mut cell = String::new();
    for (part, times) in recovery {
        times.sort();
        cell.push_str(&format!(
            " {part:?} ×{}: p50 {:.1} s, p99 {:.1} s;",
            times.len(),
            percentile(times, 0.5).as_secs_f64(),
            percentile(times, 0.99).as_secs_f64()
        ));
    }
    cell
}

// CI's short run: one fault of each kind in the job waves, two in the clients-only phase. Both
// flakes it had were at the broker (docs/reliability.md): a test reader that trusted tansu's
// ListOffsets, and a worker or probe restarted before its killed member's session expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_when_every_part_is_killed_and_restarted() {
    let plan = Plan::from_env();
    let mut rng = Rng(plan.seed);
    let load_before = load();
    let mut tmp = tempfile::Builder::new()
        .prefix("roar-fault-run")
        .tempdir()
        .unwrap();
    // FAULT_RUN_KEEP=1 keeps the run's logs, cluster and store for a post-mortem.
    tmp.disable_cleanup(std::env::var_os("FAULT_RUN_KEEP").is_some());
    eprintln!("fault run: in {}", tmp.path().display());
    let mut stack = Stack::start(tmp.path()).await;
    let auth = Authenticator::new(&AuthConfig {
        jwt_secret: Secret::new(SECRET),
        ..Default::default()
    });
    let token = auth.mint("fault-run", &[], Some(3600)).unwrap();
    let db = stack.db_url("roar");
    let injected: HashSet<(String, i32, i64)> = HashSet::from([
        poison(&stack.brokers(), &jobs_topic("pitch")).await,
        poison(&stack.brokers(), FILES).await,
    ]);

    let started = Instant::now();
    let (results, mut job_recovery) = job_waves(&plan, &mut rng, &mut stack, &token).await;
    let (uploaded, mut client_recovery) = clients_phase(&plan, &mut rng, &mut stack, &token).await;
    let wall = started.elapsed();

    // Quiesce: once the read model stops changing (a redelivered event may still be on its
    // way after the last client saw its job end), stop the services.
    let pool = roar_projections::connect(&db, 2, Duration::from_secs(30))
        .await
        .unwrap();
    let mut last = snapshot(&pool, "public").await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = snapshot(&pool, "public").await;
        if now == last {
            break;
        }
        last = now;
    }
    stack.stop_services().await;
    let job_files: HashSet<&str> = results.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(job_files.len(), plan.jobs, "one file per upload");
    let upload_files: HashSet<&str> = uploaded.iter().map(String::as_str).collect();
    assert_eq!(upload_files.len(), uploaded.len(), "one file per upload");
    assert!(job_files.is_disjoint(&upload_files), "one file per upload");
    let files: HashSet<&str> = job_files.union(&upload_files).copied().collect();
    let jobs: HashMap<&str, (&str, _)> = results
        .iter()
        .map(|r| (r.job_id.as_str(), (r.file_id.as_str(), r.model)))
        .collect();
    let demucs = results
        .iter()
        .filter(|r| r.model == clients::Model::Demucs)
        .count();
    let ended: Vec<String> = results
        .iter()
        .filter(|r| r.status != "completed")
        .map(|r| format!("{} {}", r.job_id, r.status))
        .collect();

    // Every accepted request reached one terminal state: its file ready, its job completed,
    // and its history holds completions only (a redelivery may repeat one; never a failure).
    let rows: Vec<(String, String, String, Value)> =
        sqlx::query_as("SELECT job_id, file_id, status, outputs FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap();
    let rows: HashMap<String, (String, String, Value)> = rows
        .into_iter()
        .map(|(j, f, s, o)| (j, (f, s, o)))
        .collect();
    let ready: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT file_id FROM files WHERE status = 'ready'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let terminal: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT job_id, kind, count(*) FROM events WHERE kind IN ('completed', 'failed', \
         'canceled') AND job_id IS NOT NULL GROUP BY job_id, kind",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut kinds: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut repeated_completions = 0;
    for (job, kind, n) in &terminal {
        kinds.entry(job.as_str()).or_default().push(kind.as_str());
        repeated_completions += n - 1;
    }
    let lost: Vec<&str> = jobs
        .iter()
        .filter(|(j, (f, _))| !rows.contains_key(**j) || !ready.contains(*f))
        .map(|(j, _)| *j)
        .chain(
            upload_files
                .iter()
                .filter(|f| !ready.contains(**f))
                .copied(),
        )
        .collect();
    let stuck: Vec<&str> = jobs
        .keys()
        .filter(|j| {
            rows.get(**j).is_some_and(|r| r.1 != "completed")
                || kinds.get(**j).map(Vec::as_slice) != Some(&["completed"][..])
        })
        .copied()
        .collect();

    // One set of outputs per completed job, and no object that belongs to nothing.
    let objects = check_objects(&stack.store(), &files, &jobs, &rows);

    let row = format!(
        "| {} | {} ({demucs} demucs) | {} + {} | {} | {:.0} s | {load_before} → {} | {} | {} | {} | {} | {} | {} |{} |{} |",
        plan.seed,
        plan.jobs,
        plan.faults,
        client_recovery.values().map(Vec::len).sum::<usize>(),
        uploaded.len(),
        wall.as_secs_f64(),
        load(),
        lost.len(),
        objects.duplicated.len(),
        stuck.len(),
        objects.orphans.len(),
        repeated_completions,
        stack.unplanned_exits,
        recovery_cell(&mut job_recovery),
        recovery_cell(&mut client_recovery),
    );
    println!("fault run: {row}");
    if let Ok(path) = std::env::var("FAULT_RUN_REPORT") {
        use std::io::Write;
        writeln!(log_file(Path::new(&path)), "{row}").unwrap();
    }
    assert!(lost.is_empty(), "accepted, then lost: {lost:?}");
    assert!(ended.is_empty(), "jobs that did not complete: {ended:?}");
    assert!(
        stuck.is_empty(),
        "not completed exactly once: {stuck:?} {kinds:?}"
    );
    assert!(
        objects.duplicated.is_empty(),
        "outputs that are not exactly one set: {:#?}",
        objects.duplicated
    );
    assert!(
        objects.orphans.is_empty(),
        "objects that belong to nothing: {:#?}",
        objects.orphans
    );

    // The dead letters are the poison the run injected, and each of them is there.
    let letters: Vec<DeadLetter> = read_topic(&stack.brokers(), DLQ)
        .iter()
        .map(|d| d.decode().expect("a dead letter"))
        .collect();
    let sources: HashSet<(String, i32, i64)> = letters
        .iter()
        .map(|l| (l.source_topic.clone(), l.source_partition, l.source_offset))
        .collect();
    if sources != injected {
        panic!(
            "dead letters of {sources:?}, injected {injected:?}: {letters:#?}\nthe broker's objects of {DLQ}:\n{}",
            stack.broker_objects(DLQ).await
        );
    }

    // The read model equals a rebuild from the topics.
    let live = snapshot(&pool, "public").await;
    let out = stack.roar(&["projector", "rebuild"]).status().unwrap();
    assert!(out.success(), "rebuild failed:\n{}", stack.logs());
    assert_eq!(snapshot(&pool, "public").await, live, "the rebuild differs");
}
