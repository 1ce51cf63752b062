//! The projector against a real broker and a real Postgres: exactly-once effect when it is
//! killed mid-stream (task dropped, database sessions terminated mid-transaction), order
//! tolerance across topics, and poison events to the dead-letter topic without stalling.

use std::str::FromStr;
use std::time::{Duration, Instant};

use roar_projections::ReadModel;
use roar_schemas::topics::{jobs_topic, JOB_EVENTS};
use roar_schemas::{FileStatus, JobStatus};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::support::projection::*;

/// Files produced per round of the kill test; each is nine events (upload, request, started,
/// five progress, completed), so a round is more than one batch of 40.
const FILES_PER_ROUND: usize = 8;

/// A projector on its own pool, tagged so the test can terminate exactly its sessions.
async fn tagged_projector(env: &Env) -> Projector {
    let opts = PgConnectOptions::from_str(env.cfg.database.url.expose())
        .unwrap()
        .application_name("projector-under-test");
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(opts)
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn({
        let (cfg, producer, cancel) = (env.cfg.clone(), env.producer.clone(), cancel.clone());
        async move { roar_projections::run(&cfg, pool, producer, cancel).await }
    });
    Projector { cancel, handle }
}

/// Logs every history row the projector commits, in a table without a unique key. The history
/// itself cannot show an event applied twice: its `UNIQUE (topic, partition, offset)` with `ON
/// CONFLICT DO NOTHING` drops the second copy. A BEFORE INSERT trigger sees every proposed row,
/// conflicting or not, and its row commits or rolls back with the projector's transaction, so
/// this log counts the applications themselves.
async fn log_applications(env: &Env) {
    for sql in [
        r#"CREATE TABLE applied_log (topic text, partition integer, "offset" bigint, event_id text)"#,
        r#"CREATE FUNCTION log_applied() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             INSERT INTO applied_log VALUES (NEW.topic, NEW.partition, NEW."offset", NEW.event_id);
             RETURN NEW;
           END $$"#,
        "CREATE TRIGGER log_applied BEFORE INSERT ON events
         FOR EACH ROW EXECUTE FUNCTION log_applied()",
    ] {
        sqlx::query(sql).execute(&env.pool).await.unwrap();
    }
}

/// What the kill test put on the topics: each message's position and event id.
#[derive(Default)]
struct Produced {
    files: usize,
    messages: Vec<(String, i32, i64, String)>,
}

impl Produced {
    /// Produces the nine events of `n` more files.
    async fn files(&mut self, env: &Env, n: usize) {
        for _ in 0..n {
            let k = self.files;
            self.files += 1;
            let up = uploaded("alice", k, 0);
            let r = request(&up.file_id, "alice", "pitch", "tiny", "v1", 1);
            let topic = roar_schemas::topics::FILES;
            let at = env.producer.send(topic, &up.file_id, &up).await.unwrap();
            self.messages
                .push((topic.into(), at.0, at.1, up.meta.event_id.clone()));
            let topic = jobs_topic("pitch");
            let at = env.producer.send(&topic, &r.file_id, &r).await.unwrap();
            self.messages
                .push((topic, at.0, at.1, r.meta.event_id.clone()));
            let mut evs = vec![job_event(&r, 2, started(1))];
            for (i, p) in [10.0, 30.0, 50.0, 70.0, 90.0].into_iter().enumerate() {
                evs.push(job_event(&r, 3 + i as i64, progress(p)));
            }
            evs.push(job_event(&r, 9, completed(&format!("outputs/{k}.json"))));
            for e in &evs {
                let at = env.producer.send(JOB_EVENTS, &e.file_id, e).await.unwrap();
                self.messages
                    .push((JOB_EVENTS.into(), at.0, at.1, e.meta.event_id.clone()));
            }
        }
    }
}

/// Terminates the tagged projector's sessions that are inside a transaction; how many.
async fn terminate_in_transaction(env: &Env) -> i64 {
    env.count(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'projector-under-test' AND xact_start IS NOT NULL) t",
    )
    .await
}

/// Polls `probe` until it holds (60 s at most).
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut probe: impl FnMut() -> F) {
    for _ in 0..600 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 60 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_projector_neither_loses_nor_doubles_an_event() {
    let env = Env::start_with(|c| {
        c.projector.batch_size = 40;
        c.projector.batch_linger_ms = 20;
    })
    .await;
    log_applications(&env).await;
    let history = || env.count("SELECT count(*) FROM events");

    // Each round, a fresh projector starts while more events stream in, and is killed once it
    // has committed part of them: by dropping its task (odd rounds), or (even rounds) after its
    // database sessions were terminated inside a transaction, which the test polls for, feeding
    // the projector a file at a time until one is caught open.
    let mut produced = Produced::default();
    let mut killed_in_tx = 0i64;
    for round in 0..8 {
        let before = history().await;
        let p = tagged_projector(&env).await;
        produced.files(&env, FILES_PER_ROUND).await;
        if round % 2 == 0 {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut polls = 0u32;
            loop {
                let n = terminate_in_transaction(&env).await;
                if n > 0 {
                    killed_in_tx += n;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no projector transaction caught open in 60 s"
                );
                polls += 1;
                if polls.is_multiple_of(200) && history().await == produced.messages.len() as i64 {
                    produced.files(&env, 1).await;
                }
            }
            // It recovers from the lost sessions: everything produced so far gets applied.
            let total = produced.messages.len() as i64;
            until("the projector recovers", || async {
                history().await == total
            })
            .await;
        } else {
            until("the projector commits a batch", || async {
                history().await > before
            })
            .await;
        }
        p.kill().await;
    }

    let p = tagged_projector(&env).await;
    let total = produced.messages.len() as i64;
    env.wait_history(total).await;
    p.stop().await;

    // Exactly once, judged without the history's unique key: every message produced was
    // applied in exactly one committed transaction, and the history holds exactly those events.
    let mut expected: Vec<(String, i32, i64)> = produced
        .messages
        .iter()
        .map(|(t, p, o, _)| (t.clone(), *p, *o))
        .collect();
    expected.sort();
    let applied: Vec<(String, i32, i64)> = sqlx::query_as(
        r#"SELECT topic, partition, "offset" FROM applied_log ORDER BY topic, partition, "offset""#,
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        applied.len(),
        expected.len(),
        "applications in committed transactions"
    );
    assert_eq!(applied, expected, "each produced message applied once");
    let mut ids: Vec<String> = produced.messages.iter().map(|m| m.3.clone()).collect();
    ids.sort();
    let history_ids: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM events ORDER BY event_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(history_ids, ids, "the history holds the produced events");
    assert_eq!(
        env.count("SELECT count(*) FROM files").await,
        produced.files as i64
    );
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE status = 'completed' AND progress = 100 AND attempt = 1")
            .await,
        produced.files as i64
    );
    // Every partition's stored position is exactly the number of messages it holds.
    let stored: i64 = env
        .count("SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets")
        .await;
    assert_eq!(stored, total);
    let lag = roar_projections::lag::events_behind(&env.cfg.kafka, &env.pool)
        .await
        .unwrap();
    assert_eq!(lag, 0);
    eprintln!("sessions terminated inside a transaction: {killed_in_tx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_out_of_order_and_duplicated_across_topics_end_in_the_right_state() {
    let env = Env::start().await;
    let up = uploaded("bob", 1, 0);
    let a = request(&up.file_id, "bob", "pitch", "tiny", "v1", 1);
    let b = request(&up.file_id, "bob", "pitch", "full", "v1", 1);
    let b_again = request(&up.file_id, "bob", "pitch", "full", "v1", 9);

    // Job a: its end first, its start last, everything twice, its request after all of it,
    // then a late progress; the file's upload after its jobs.
    let a_events = [
        job_event(&a, 9, completed("outputs/a.json")),
        job_event(&a, 5, progress(60.0)),
        job_event(&a, 2, started(1)),
        job_event(&a, 4, progress(30.0)),
        job_event(&a, 6, progress(40.0)),
    ];
    for e in a_events.iter().chain(a_events.iter()) {
        env.send_job(e).await;
    }
    env.send_request(&a).await;
    env.send_request(&a).await;
    // Job b fails, is asked again (the request arrives before the failure), and succeeds.
    env.send_request(&b_again).await;
    for e in [
        job_event(&b, 2, started(1)),
        job_event(&b, 3, progress(80.0)),
        job_event(&b, 5, failed(true)),
        job_event(&b, 10, started(2)),
        job_event(&b, 11, progress(20.0)),
        job_event(&b, 15, completed("outputs/b.json")),
    ] {
        env.send_job(&e).await;
    }
    env.send_request(&b).await;
    env.send_file(&up).await;

    let p = env.spawn_projector();
    let produced = 10 + 2 + 1 + 6 + 1 + 1;
    env.wait_history(produced).await;
    let read = ReadModel::new(env.pool.clone());
    let ja = read.job(&a.job_id).await.unwrap().unwrap();
    assert_eq!(ja.status, JobStatus::Completed);
    assert_eq!(ja.progress, 100.0);
    assert_eq!(ja.owner, "bob");
    assert_eq!(ja.started_at, Some(at(2)));
    assert_eq!(ja.finished_at, Some(at(9)));
    assert_eq!(ja.outputs[0]["path"], "outputs/a.json");
    let jb = read.job(&b.job_id).await.unwrap().unwrap();
    assert_eq!(jb.status, JobStatus::Completed, "{jb:?}");
    assert_eq!(jb.attempt, 2);
    assert_eq!(jb.error_code, None);
    assert_eq!(jb.outputs[0]["path"], "outputs/b.json");
    assert_eq!(jb.requested_at, Some(at(9)));
    let f = read.file(&up.file_id).await.unwrap().unwrap();
    assert_eq!(f.status, FileStatus::Uploaded);
    assert_eq!(f.owner, "bob");
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        produced,
        "each delivery is in the history once"
    );

    // A late start and progress of job a, sent now, change nothing.
    env.send_job(&job_event(&a, 3, started(1))).await;
    env.send_job(&job_event(&a, 8, progress(95.0))).await;
    env.wait_history(produced + 2).await;
    assert_eq!(read.job(&a.job_id).await.unwrap().unwrap(), ja);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing() {
    let env = Env::start().await;
    let p = env.spawn_projector();
    let up = uploaded("carol", 1, 0);
    let r = request(&up.file_id, "carol", "pitch", "tiny", "v1", 1);
    env.send_file(&up).await;
    env.send_request(&r).await;
    env.send_job(&job_event(&r, 2, started(1))).await;

    let mut poison = Vec::new();
    let bad_progress = job_event(&r, 3, progress(300.0));
    poison.push((
        env.producer
            .send(JOB_EVENTS, &r.file_id, &bad_progress)
            .await
            .unwrap(),
        JOB_EVENTS.to_string(),
        "outside 0..=100",
    ));
    let mut stolen = request(&up.file_id, "mallory", "pitch", "tiny", "v1", 4);
    stolen.job_id = r.job_id.clone();
    let topic = jobs_topic("pitch");
    poison.push((
        env.producer
            .send(&topic, &r.file_id, &stolen)
            .await
            .unwrap(),
        topic.clone(),
        "changes owner",
    ));
    let mut moved = job_event(&r, 4, progress(40.0));
    moved.file_id = file_id("carol", 2);
    poison.push((
        env.producer
            .send(JOB_EVENTS, &r.file_id, &moved)
            .await
            .unwrap(),
        JOB_EVENTS.to_string(),
        "changes file",
    ));
    poison.push((
        env.producer
            .send_raw(JOB_EVENTS, r.file_id.as_bytes(), b"not avro")
            .await
            .unwrap(),
        JOB_EVENTS.to_string(),
        "",
    ));
    // The good events after the poison still land.
    env.send_job(&job_event(&r, 5, progress(50.0))).await;
    env.send_job(&job_event(&r, 6, completed("outputs/c.json")))
        .await;

    let read = ReadModel::new(env.pool.clone());
    for _ in 0..300 {
        if read
            .job(&r.job_id)
            .await
            .unwrap()
            .is_some_and(|j| j.status == JobStatus::Completed)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let j = read.job(&r.job_id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Completed);
    assert_eq!(j.owner, "carol");
    assert_eq!(j.file_id, up.file_id);

    let letters = env.dead_letters(4).await;
    for ((partition, offset), topic, reason) in &poison {
        let l = letters
            .iter()
            .find(|l| {
                l.source_partition == *partition
                    && l.source_offset == *offset
                    && l.source_topic == *topic
            })
            .unwrap_or_else(|| {
                panic!("no dead letter for {topic}/{partition}/{offset}: {letters:#?}")
            });
        assert_eq!(l.consumer_group, roar_projections::GROUP);
        if reason.is_empty() {
            assert_eq!(l.error_kind, "undecodable");
            assert_eq!(l.payload.as_deref(), Some(&b"not avro"[..]));
        } else {
            assert_eq!(l.error_kind, "invalid");
            assert!(l.error.contains(reason), "{}: {}", reason, l.error);
        }
        assert_eq!(l.key.as_deref(), Some(r.file_id.as_bytes()));
    }
    // Poison is not history; the good events are, and the positions moved past everything.
    assert_eq!(env.count("SELECT count(*) FROM events").await, 5);
    assert_eq!(
        roar_projections::lag::events_behind(&env.cfg.kafka, &env.pool)
            .await
            .unwrap(),
        0
    );
    p.stop().await;
}
