//! `DELETE /songs/{file_id}` and crypto-shredding, from outside: a song is uploaded and
//! processed (pitch, tiny), then deleted; its objects, its rows and every readable trace of its
//! name are gone, in the live model and after `roar projector rebuild`, while the log's raw
//! bytes never held the name at all. Another tenant's DELETE is a 404 that changes nothing; a
//! deletion while a job runs cancels the job and leaves no output behind; a song with hundreds
//! of queued jobs is deleted by one cancel for them all, which a worker started afterwards
//! honours job by job. A generated song's prompt is on no topic readable (it is in an object
//! erased with the song), and work asked for after a deletion that is not projected yet is
//! refused (404) with nothing emitted.

use std::path::Path;
use std::time::Duration;

use roar_schemas::topics::{jobs_topic, CONTROL, FILES, JOB_EVENTS, PIPELINES};
use roar_schemas::{EventMeta, JobBody, JobEvent, JobRequested};
use serde_json::{json, Value};

use crate::support::{melody_wav, produce, read_topic, topic_len, Infra, Services};

/// A name no audio, id or key can contain by chance.
const SECRET_NAME: &str = "Grandmas-Surprise-Zq7x.wav";
const KEPT_NAME: &str = "Keeper-Wv3k.wav";
/// A generated song's prompt, as distinctive.
const SECRET_PROMPT: &str = "lullaby for Quillon Vexmarch";

async fn delete(svc: &Services, token: &str, file_id: &str) -> u16 {
    reqwest::Client::new()
        .delete(svc.url(&format!("/songs/{file_id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every object key under `dir` (recursively), relative to it.
fn objects(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

fn objects_of(infra: &Infra, file_id: &str) -> Vec<String> {
    objects(&infra.store_dir())
        .into_iter()
        .filter(|k| k.contains(file_id))
        .collect()
}

/// Waits until the projector has erased the song's rows, then checks `/status` no longer knows it.
async fn projected_gone(svc: &Services, token: &str, pool: &sqlx::PgPool, file: &str) {
    wait_until("the deletion is projected", || async {
        rows_of(pool, file).await.is_empty()
    })
    .await;
    assert_eq!(svc.get_json(token, &format!("/status/{file}")).await.0, 404);
}

/// Rows anywhere in the read model that name the file, by table.
async fn rows_of(pool: &sqlx::PgPool, file_id: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in [
        "files",
        "jobs",
        "events",
        "pipelines",
        "upload_registrations",
    ] {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE file_id = $1"))
                .bind(file_id)
                .fetch_one(pool)
                .await
                .unwrap();
        if n > 0 {
            out.push((table.to_string(), n));
        }
    }
    out
}

/// Whether `needle` is anywhere in the database's readable text: every row of every table, in
/// the live model and in the tables a rebuild retired, as text.
async fn db_mentions(pool: &sqlx::PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
         WHERE table_schema IN ('public', 'roar_retired')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut hits = Vec::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {t} x WHERE strpos(x::text, $1) > 0"
        ))
        .bind(needle)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            hits.push(t);
        }
    }
    hits
}

/// Topics whose raw message bytes contain `needle`.
fn topics_mentioning(brokers: &str, needle: &str) -> Vec<String> {
    let mut topics = vec![
        FILES.to_string(),
        JOB_EVENTS.to_string(),
        PIPELINES.to_string(),
    ];
    topics.push(jobs_topic("pitch"));
    topics.push(jobs_topic("musicgen"));
    topics
        .into_iter()
        .filter(|t| {
            read_topic(brokers, t).iter().any(|d| {
                d.payload
                    .as_deref()
                    .is_some_and(|p| p.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
        })
        .collect()
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s: {what}");
}

async fn rebuild(svc: &Services, pool: &sqlx::PgPool) {
    tokio::time::timeout(
        Duration::from_secs(120),
        roar_projections::rebuild(&svc.cfg, pool, &tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("rebuild within 2 minutes")
    .expect("rebuild succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_song_leaves_no_object_row_or_readable_name_even_after_a_rebuild() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let brokers = svc.cfg.kafka.brokers.clone();
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);

    let wav = |hz: f32| melody_wav(&[(hz, 0.5)], 16_000, 1);
    let file = svc.ready_file(&alice, SECRET_NAME, wav(440.0)).await;
    let kept = svc.ready_file(&alice, KEPT_NAME, wav(660.0)).await;
    // A generated song (no musicgen worker here: its job stays queued). Its prompt is in an
    // object under the song's uploads/ folder, shown by /status, and on no topic readable.
    let (code, g) = svc
        .post_json(
            &alice,
            "/generate",
            &json!({"prompt": SECRET_PROMPT, "duration_seconds": 1.0}),
        )
        .await;
    assert_eq!(code, 202, "{g}");
    let song = g["file_id"].as_str().unwrap().to_string();
    let song_job = g["job"]["job_id"].as_str().unwrap().to_string();
    let st = svc
        .wait_for(&alice, &song, |v| {
            v["jobs"][0]["params"]["prompt"].is_string()
        })
        .await;
    assert_eq!(st["file"]["generation"]["prompt"], SECRET_PROMPT, "{st:#}");
    assert_eq!(st["jobs"][0]["params"]["prompt"], SECRET_PROMPT, "{st:#}");
    assert!(
        st["jobs"][0]["params"].get("prompt_object").is_none(),
        "{st:#}"
    );
    assert!(objects_of(&infra, &song)
        .iter()
        .any(|k| k == &format!("uploads/{song}/prompts/{song_job}")));
    let (code, job) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch", "variation": "tiny"}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let done = svc
        .wait_job(&alice, &file, &job_id, |j| j["status"] == "completed")
        .await;
    let output = done["outputs"][0].clone();
    // The projector opened the sealed name; the log never held it readable.
    let (_, st) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(st["file"]["filename"], SECRET_NAME);
    assert_eq!(
        topics_mentioning(&brokers, SECRET_NAME),
        Vec::<String>::new()
    );
    assert_eq!(topics_mentioning(&brokers, "Quillon"), Vec::<String>::new());
    assert!(!objects_of(&infra, &file).is_empty());
    // The worker's marker of the request it handled (ids only): erased with the song too.
    let marker = format!("handled/{file}/");
    wait_until("the worker marks the request handled", || async {
        objects_of(&infra, &file)
            .iter()
            .any(|k| k.starts_with(&marker))
    })
    .await;

    // A rebuild before the deletion: the retired tables then hold the name too.
    rebuild(&svc, &pool).await;
    let before = db_mentions(&pool, "Grandmas").await;
    for t in ["public.files", "roar_retired.files"] {
        assert!(before.iter().any(|b| b == t), "{t}: {before:?}");
    }

    // Another tenant: 404, nothing emitted, nothing erased.
    let files_before = topic_len(&brokers, FILES);
    assert_eq!(delete(&svc, &bob, &file).await, 404);
    assert_eq!(topic_len(&brokers, FILES), files_before);
    assert_eq!(
        svc.get_json(&alice, &format!("/status/{file}")).await.0,
        200
    );
    svc.download(&alice, &output).await;

    let stream = reqwest::Client::new()
        .get(svc.url(&format!("/status/{file}/events")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut stream = crate::support::SseReader::new(stream);

    assert_eq!(delete(&svc, &alice, &file).await, 202);
    assert!(
        objects_of(&infra, &file).is_empty(),
        "{:?}",
        objects_of(&infra, &file)
    );
    // The open event stream ends once the deletion is projected (not by a timeout).
    let started = std::time::Instant::now();
    let bound = Duration::from_secs(30);
    loop {
        let left = bound.saturating_sub(started.elapsed());
        match stream.heartbeat(left).await {
            Ok(()) | Err(Some(_)) => continue,
            Err(None) => break,
        }
    }
    assert!(started.elapsed() < bound, "the stream stayed open");
    projected_gone(&svc, &alice, &pool, &file).await;
    assert_eq!(delete(&svc, &alice, &file).await, 404, "deleted already");
    assert_eq!(delete(&svc, &alice, &song).await, 202);
    assert_eq!(objects_of(&infra, &song), Vec::<String>::new());
    projected_gone(&svc, &alice, &pool, &song).await;
    let (_, songs) = svc.get_json(&alice, "/songs").await;
    let listed: Vec<&str> = songs["songs"]
        .as_array()
        .unwrap_or_else(|| panic!("{songs}"))
        .iter()
        .map(|s| s["file_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [kept.as_str()]);
    let url = output["url"].as_str().unwrap();
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        svc.url(url)
    };
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a link to a deleted output");
    let key: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT data_key FROM file_keys WHERE file_id = $1")
            .bind(&file)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(key, None, "the data key is destroyed");
    assert_eq!(db_mentions(&pool, "Grandmas").await, Vec::<String>::new());
    assert_eq!(db_mentions(&pool, "Quillon").await, Vec::<String>::new());
    for needle in ["Grandmas", "Quillon"] {
        assert_eq!(topics_mentioning(&brokers, needle), Vec::<String>::new());
    }

    // A rebuild from the topics brings none of it back, and still opens the kept song's name.
    rebuild(&svc, &pool).await;
    assert_eq!(rows_of(&pool, &file).await, Vec::<(String, i64)>::new());
    assert_eq!(rows_of(&pool, &song).await, Vec::<(String, i64)>::new());
    assert_eq!(db_mentions(&pool, "Grandmas").await, Vec::<String>::new());
    assert_eq!(db_mentions(&pool, "Quillon").await, Vec::<String>::new());
    let (code, st) = svc.get_json(&alice, &format!("/status/{kept}")).await;
    assert_eq!(code, 200);
    assert_eq!(st["file"]["filename"], KEPT_NAME);
    assert_eq!(
        svc.get_json(&alice, &format!("/status/{file}")).await.0,
        404
    );

    // The same content again: the same id, a new key, a new life; the erased one stays gone.
    let again = svc.ready_file(&alice, "Again-Hn2p.wav", wav(440.0)).await;
    assert_eq!(again, file);
    let (_, st) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(st["file"]["filename"], "Again-Hn2p.wav");
    assert_eq!(st["jobs"], json!([]), "{st:#}");
    assert_eq!(db_mentions(&pool, "Grandmas").await, Vec::<String>::new());

    pool.close().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_song_while_its_job_runs_cancels_the_job_and_leaves_no_output() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // The sweeper erases what the canceled worker may still write after the deletion.
    cfg.http.sweep_interval_seconds = 1;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    // Two minutes at a 1 ms hop: tracking lasts far longer than the test waits.
    let file = svc
        .ready_file(&alice, "long.wav", melody_wav(&[(330.0, 120.0)], 16_000, 1))
        .await;
    let (code, job) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch", "variation": "tiny", "params": {"hop_ms": 1.0}}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &job_id, |j| {
        j["progress"].as_f64().unwrap_or(0.0) > 2.0
    })
    .await;

    assert_eq!(delete(&svc, &alice, &file).await, 202);
    let brokers = svc.cfg.kafka.brokers.clone();
    let canceled = |brokers: String, job_id: String| async move {
        read_topic(&brokers, JOB_EVENTS).iter().any(|d| {
            roar_schemas::decode::<JobEvent>(d.payload.as_deref().unwrap_or_default())
                .is_ok_and(|e| e.job_id == job_id && matches!(e.body, JobBody::Canceled { .. }))
        })
    };
    wait_until("the worker confirms the cancel", || {
        canceled(brokers.clone(), job_id.clone())
    })
    .await;
    let no_completion = !read_topic(&brokers, JOB_EVENTS).iter().any(|d| {
        roar_schemas::decode::<JobEvent>(d.payload.as_deref().unwrap_or_default())
            .is_ok_and(|e| e.job_id == job_id && matches!(e.body, JobBody::Completed { .. }))
    });
    assert!(no_completion, "the job ran to its end");
    wait_until("no object of the file is left", || async {
        objects_of(&infra, &file).is_empty()
    })
    .await;
    let (code, v): (u16, Value) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(code, 404, "{v}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_asked_for_after_a_deletion_is_refused_before_the_deletion_is_projected() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "race.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;
    let cfg = (*svc.cfg).clone();
    svc.stop().await;
    // The API alone: no projector removes the song's rows, so the read model shows the song
    // for as long as this test looks (a lagging projector, held still).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let api = tokio::spawn(roar::services::orchestrator(
        std::sync::Arc::new(cfg.clone()),
        listener,
        stop.clone(),
    ));
    let svc = Services::attach(base, cfg).await;
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let brokers = svc.cfg.kafka.brokers.clone();
    let pitch = jobs_topic("pitch");
    let (jobs_before, pipelines_before) =
        (topic_len(&brokers, &pitch), topic_len(&brokers, PIPELINES));

    assert_eq!(delete(&svc, &alice, &file).await, 202);
    for body in [
        json!({"file_id": file, "model": "pitch", "variation": "tiny"}),
        json!([{"file_id": file, "model": "pitch", "variation": "full"}]),
        json!({"file_id": file, "preset": "karaoke"}),
        json!({"file_id": file, "model": "pitch", "input": {"model": "demucs", "output": "vocals"}}),
    ] {
        let (code, v) = svc.post_json(&alice, "/process", &body).await;
        assert_eq!(code, 404, "{body}: {v}");
    }
    assert_eq!(
        topic_len(&brokers, &pitch),
        jobs_before,
        "a job was requested"
    );
    assert_eq!(
        topic_len(&brokers, PIPELINES),
        pipelines_before,
        "a pipeline was requested"
    );
    // Refused by the deletion's record, not by the read model: the song's row is still there.
    assert!(
        rows_of(&pool, &file)
            .await
            .iter()
            .any(|(t, _)| t == "files"),
        "the deletion was projected: this test proves nothing"
    );
    stop.cancel();
    api.await.unwrap().unwrap();
    pool.close().await;
}

/// The job events on the log for the jobs `ids`, decoded.
fn job_events(brokers: &str, ids: &std::collections::HashSet<String>) -> Vec<JobEvent> {
    read_topic(brokers, JOB_EVENTS)
        .iter()
        .filter_map(|d| roar_schemas::decode::<JobEvent>(d.payload.as_deref()?).ok())
        .filter(|e| ids.contains(&e.job_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_song_with_hundreds_of_queued_jobs_is_deleted_by_one_cancel_and_each_job_ends_canceled() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    let models = cfg.processor.models_dir.clone();
    // No model worker at first: the jobs stay queued, as on a busy or scaled-down cluster.
    let no_models = infra.dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();
    cfg.processor.models_dir = no_models;
    cfg.quota.jobs_in_flight = 0;
    cfg.quota.jobs_per_day = 0;
    cfg.http.rate_limit_per_second = 0.0;
    let svc = Services::start(cfg).await;
    let brokers = svc.cfg.kafka.brokers.clone();
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "many.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;

    // 500 pitch jobs, 20 per request (the most one takes), all different.
    let mut jobs = std::collections::HashSet::new();
    for r in 0..25 {
        let batch: Vec<Value> = (0..20)
            .map(|i| {
                let hop = 1.0 + 0.1 * f64::from(r * 20 + i);
                json!({"file_id": file, "model": "pitch", "variation": "tiny", "params": {"hop_ms": hop}})
            })
            .collect();
        let (code, body) = svc.post_json(&alice, "/process", &json!(batch)).await;
        assert_eq!(code, 202, "{body}");
        for j in body["jobs"].as_array().unwrap() {
            jobs.insert(j["job_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(jobs.len(), 500);
    // And a pipeline: pitch on the vocals of a separation that no worker has run yet.
    let (code, chained) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch", "input": {"model": "demucs", "output": "vocals"}}),
        )
        .await;
    assert_eq!(code, 202, "{chained}");
    let step = chained["job_id"].as_str().unwrap().to_string();
    let upstream = chained["input"]["job_id"].as_str().unwrap().to_string();
    wait_until("the jobs are projected", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE file_id = $1")
            .bind(&file)
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 502
    })
    .await;

    let before = |t: &str| topic_len(&brokers, t);
    let (control, events, pipelines) = (before(CONTROL), before(JOB_EVENTS), before(PIPELINES));
    let started = std::time::Instant::now();
    assert_eq!(delete(&svc, &alice, &file).await, 202);
    let took = started.elapsed();
    // One cancel for the whole song, nothing per job or per pipeline: the request's cost does
    // not grow with the song's jobs (it took tens of seconds for thousands, job by job).
    assert_eq!(topic_len(&brokers, CONTROL), control + 1);
    assert_eq!(topic_len(&brokers, JOB_EVENTS), events);
    assert_eq!(topic_len(&brokers, PIPELINES), pipelines);
    // A client's usual 10 s timeout is far off, whatever the load on the machine.
    assert!(took < Duration::from_secs(10), "DELETE took {took:?}");
    projected_gone(&svc, &alice, &pool, &file).await;

    // The separation completes just as the song goes (its worker had not seen the cancel): the
    // pipeline manager cancels the pitch step instead of requesting it.
    let done = JobEvent {
        meta: EventMeta::new("late", "worker:demucs-test"),
        job_id: upstream.clone(),
        file_id: file.clone(),
        model: "demucs".into(),
        variation: "htdemucs".into(),
        body: JobBody::Completed {
            outputs: vec![],
            duration_seconds: 1.0,
        },
    };
    produce(&infra, JOB_EVENTS, &file, &done).await;
    let step_ids = std::collections::HashSet::from([step.clone()]);
    let brokers2 = brokers.clone();
    wait_until(
        "the manager cancels the pipeline's waiting step",
        move || {
            let (b, ids) = (brokers2.clone(), step_ids.clone());
            async move {
                job_events(&b, &ids)
                    .iter()
                    .any(|e| matches!(e.body, JobBody::Canceled { .. }))
            }
        },
    )
    .await;

    // A worker started now cancels every queued job of the song, runs none, and leaves no
    // marker behind.
    let mut worker_cfg = (*svc.cfg).clone();
    worker_cfg.processor.models_dir = models;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(roar::services::processor(
        std::sync::Arc::new(worker_cfg),
        "pitch",
        stop.clone(),
    ));
    let mut all = jobs.clone();
    all.insert(step.clone());
    let mut canceled = 0;
    for _ in 0..1200 {
        let evs = job_events(&brokers, &jobs);
        canceled = evs
            .iter()
            .filter(|e| matches!(e.body, JobBody::Canceled { .. }))
            .map(|e| e.job_id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        if canceled == jobs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        canceled,
        jobs.len(),
        "jobs canceled by the worker within 120 s"
    );
    let evs = job_events(&brokers, &all);
    let ran: Vec<&JobEvent> = evs
        .iter()
        .filter(|e| !matches!(e.body, JobBody::Canceled { .. }))
        .collect();
    assert!(ran.is_empty(), "{ran:?}");
    let requested_step = read_topic(&brokers, &jobs_topic("pitch"))
        .iter()
        .filter_map(|d| roar_schemas::decode::<JobRequested>(d.payload.as_deref()?).ok())
        .any(|r| r.job_id == step);
    assert!(!requested_step, "the step of a deleted song was requested");
    let markers: Vec<String> = objects(&infra.store_dir())
        .into_iter()
        .filter(|k| k.contains(&file))
        .collect();
    assert_eq!(markers, Vec::<String>::new());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    pool.close().await;
    svc.stop().await;
}
