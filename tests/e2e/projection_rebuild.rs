//! `roar projector rebuild` against a real broker and Postgres: the rebuilt model equals the
//! live one row for row after a mixed workload (duplicates, reordering, retries, poison), and the
//! swap happens while the live projector runs and events stream in, without readers ever seeing
//! a smaller model and without losing or doubling an event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roar_common::kafka::EventProducer;
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS};
use roar_schemas::{EventMeta, FileBody, FileEvent, JobEvent, JobRequested, ProbeSummary};
use tokio_util::sync::CancellationToken;

use crate::support::projection::*;

/// Messages sent, and how many of them the history should keep (poison is left out).
struct Sent {
    messages: i64,
    history: i64,
}

async fn job(p: &EventProducer, e: &JobEvent, sent: &mut Sent) {
    p.send(JOB_EVENTS, &e.file_id, e).await.unwrap();
    sent.messages += 1;
    sent.history += 1;
}

async fn req(p: &EventProducer, r: &JobRequested, sent: &mut Sent) {
    p.send(&jobs_topic(&r.model), &r.file_id, r).await.unwrap();
    sent.messages += 1;
    sent.history += 1;
}

async fn file(p: &EventProducer, e: &FileEvent, sent: &mut Sent) {
    p.send(FILES, &e.file_id, e).await.unwrap();
    sent.messages += 1;
    sent.history += 1;
}

/// A mixed workload over files `range`: duplicates, events before their request, progress out
/// of order, a failure then a retry asked before the failure is seen, poison.
async fn workload(p: &EventProducer, range: std::ops::Range<usize>) -> Sent {
    let mut sent = Sent {
        messages: 0,
        history: 0,
    };
    for n in range {
        let t = 100 * n as i64;
        let up = uploaded("dora", n, t);
        file(p, &up, &mut sent).await;
        if n % 3 == 0 {
            let mut meta = EventMeta::new("probe", "test");
            meta.occurred_at = at(t + 1);
            let probed = FileEvent {
                sealed: None,
                meta,
                file_id: up.file_id.clone(),
                body: FileBody::Probed(ProbeSummary {
                    metadata_key: format!("outputs/{}/metadata.json", up.file_id),
                    codec: "pcm_s16le".into(),
                    duration_seconds: 1.5,
                    sample_rate: 22050,
                    channels: 2,
                    frames: 33075,
                    peak_dbfs: -6.0,
                    rms_dbfs: -9.0,
                }),
            };
            file(p, &probed, &mut sent).await;
            file(p, &probed, &mut sent).await;
        }
        let r1 = request(&up.file_id, "dora", "pitch", "tiny", "v1", t + 2);
        let request_last = n % 5 == 0;
        if !request_last {
            req(p, &r1, &mut sent).await;
        }
        let s = job_event(&r1, t + 3, started(1));
        job(p, &s, &mut sent).await;
        job(p, &s, &mut sent).await;
        job(p, &job_event(&r1, t + 5, progress(50.0)), &mut sent).await;
        job(p, &job_event(&r1, t + 4, progress(20.0)), &mut sent).await;
        if n % 7 == 0 {
            let poison = job_event(&r1, t + 6, progress(300.0));
            p.send(JOB_EVENTS, &poison.file_id, &poison).await.unwrap();
            sent.messages += 1;
        }
        let c = job_event(&r1, t + 8, completed(&format!("outputs/{n}/tiny.json")));
        job(p, &c, &mut sent).await;
        job(p, &c, &mut sent).await;
        if request_last {
            req(p, &r1, &mut sent).await;
        }
        if n % 4 == 0 {
            let r2 = request(&up.file_id, "dora", "pitch", "full", "v1", t + 2);
            let again = request(&up.file_id, "dora", "pitch", "full", "v1", t + 20);
            req(p, &r2, &mut sent).await;
            req(p, &again, &mut sent).await;
            job(p, &job_event(&r2, t + 3, started(1)), &mut sent).await;
            job(p, &job_event(&r2, t + 10, failed(true)), &mut sent).await;
            job(p, &job_event(&r2, t + 21, started(2)), &mut sent).await;
            if n % 8 == 0 {
                let done = completed(&format!("outputs/{n}/full.json"));
                job(p, &job_event(&r2, t + 30, done), &mut sent).await;
            }
        }
    }
    sent
}

async fn rebuild(env: &Env) -> roar_projections::RebuildReport {
    tokio::time::timeout(
        Duration::from_secs(120),
        roar_projections::rebuild(&env.cfg, &env.pool, &CancellationToken::new()),
    )
    .await
    .expect("rebuild within 2 minutes")
    .expect("rebuild succeeds")
}

/// Logs every history row proposed to any `events` table with the table's oid, in a table
/// without a unique key. The history's `UNIQUE (topic, partition, offset)` with `ON CONFLICT DO
/// NOTHING` hides an event applied twice; the log, which commits or rolls back with the
/// applying transaction, does not. An event trigger puts the logging trigger on every `events`
/// table created later (each rebuild's); a swap moves tables between schemas, and their oids
/// stay.
async fn log_applications(env: &Env) {
    for sql in [
        r#"CREATE TABLE public.applied_log (rel oid, topic text, partition integer, "offset" bigint)"#,
        r#"CREATE FUNCTION public.log_applied() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             INSERT INTO public.applied_log VALUES (TG_RELID, NEW.topic, NEW.partition, NEW."offset");
             RETURN NEW;
           END $$"#,
        "CREATE TRIGGER log_applied BEFORE INSERT ON public.events
         FOR EACH ROW EXECUTE FUNCTION public.log_applied()",
        r#"CREATE FUNCTION public.log_new_events() RETURNS event_trigger LANGUAGE plpgsql AS $$
           DECLARE r record;
           BEGIN
             FOR r IN SELECT object_identity FROM pg_event_trigger_ddl_commands()
                      WHERE object_type = 'table' AND object_identity LIKE '%.events' LOOP
               EXECUTE format('CREATE TRIGGER log_applied BEFORE INSERT ON %s
                               FOR EACH ROW EXECUTE FUNCTION public.log_applied()', r.object_identity);
             END LOOP;
           END $$"#,
        "CREATE EVENT TRIGGER log_new_events ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
         EXECUTE FUNCTION public.log_new_events()",
    ] {
        sqlx::query(sql).execute(&env.pool).await.unwrap();
    }
}

/// Checks that no `events` table ever had a message applied twice, and that the live one had
/// exactly the messages it holds applied.
async fn applied_once(env: &Env) {
    let doubled: Vec<(String, i32, i64, i64)> = sqlx::query_as(
        r#"SELECT topic, partition, "offset", count(*) FROM applied_log
           GROUP BY rel, topic, partition, "offset" HAVING count(*) > 1"#,
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(doubled.is_empty(), "applied twice: {doubled:?}");
    let live = env
        .count("SELECT count(*) FROM applied_log WHERE rel = 'public.events'::regclass")
        .await;
    assert_eq!(live, env.count("SELECT count(*) FROM events").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_equals_the_live_model_and_swaps_in_under_load() {
    let env = Env::start_with(|c| c.projector.batch_size = 50).await;
    log_applications(&env).await;
    let projector = env.spawn_projector();

    // 1. A quiet rebuild equals the live model row for row.
    let a = workload(&env.producer, 0..24).await;
    env.wait_history(a.history).await;
    let live = snapshot(&env.pool, "public").await;
    assert_eq!(live.0.len(), 24);
    assert_eq!(live.2.len() as i64, a.history);
    let report = rebuild(&env).await;
    assert!(report.events >= a.messages as u64, "{report:?}");
    let rebuilt = snapshot(&env.pool, "public").await;
    assert_eq!(rebuilt.0, live.0, "files");
    assert_eq!(rebuilt.1, live.1, "jobs");
    assert_eq!(rebuilt.2, live.2, "history");
    assert_eq!(
        snapshot(&env.pool, roar_projections::RETIRED_SCHEMA).await,
        live
    );

    // 2. A rebuild while events stream in and the live projector runs; a reader watches.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (pool, stop) = (env.pool.clone(), stop.clone());
        async move {
            let (mut files, mut events, mut reads) = (0i64, 0i64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let (f, e): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM events)",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                assert!(
                    f >= files && e >= events,
                    "the model shrank: {f} < {files} or {e} < {events}"
                );
                (files, events, reads) = (f, e, reads + 1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            reads
        }
    });
    let (b, report) = tokio::join!(workload(&env.producer, 24..48), rebuild(&env));
    eprintln!("rebuild under load: {report:?}");
    env.wait_history(a.history + b.history).await;
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.unwrap() > 10);
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        a.history + b.history,
        "no event lost across the swap"
    );
    applied_once(&env).await;
    assert_eq!(env.count("SELECT count(*) FROM files").await, 48);
    let live = snapshot(&env.pool, "public").await;

    // 3. And a rebuild of that equals it too.
    rebuild(&env).await;
    assert_eq!(snapshot(&env.pool, "public").await, live);
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE status = 'completed'")
            .await,
        48 + 6,
        "every tiny job, and the full jobs whose retry completed"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE status = 'running' AND attempt = 2")
            .await,
        6
    );
    // The live projector still works on the swapped-in tables.
    let more = workload(&env.producer, 48..50).await;
    env.wait_history(a.history + b.history + more.history).await;
    applied_once(&env).await;
    projector.stop().await;
}
