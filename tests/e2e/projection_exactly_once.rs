//! The projector against a real broker and a real Postgres: exactly-once effect when it is
//! killed mid-stream (task dropped, database sessions terminated mid-transaction), order
//! tolerance across topics, and poison events to the dead-letter topic without stalling.

use std::str::FromStr;
use std::time::Duration;

use roar_projections::ReadModel;
use roar_schemas::topics::{jobs_topic, JOB_EVENTS};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::support::projection::*;

const FILES_N: usize = 60;
/// Per file: upload, request, started, 5 progress, completed.
const PER_FILE: usize = 9;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_projector_neither_loses_nor_doubles_an_event() {
    let env = Env::start_with(|c| {
        c.projector.batch_size = 40;
        c.projector.batch_linger_ms = 20;
    })
    .await;

    let producing = tokio::spawn({
        let producer = env.producer.clone();
        async move {
            for n in 0..FILES_N {
                let up = uploaded("alice", n, 0);
                let r = request(&up.file_id, "alice", "pitch", "tiny", "v1", 1);
                producer
                    .send(roar_schemas::topics::FILES, &up.file_id, &up)
                    .await
                    .unwrap();
                producer
                    .send(&jobs_topic("pitch"), &r.file_id, &r)
                    .await
                    .unwrap();
                let mut evs = vec![job_event(&r, 2, started(1))];
                for (i, p) in [10.0, 30.0, 50.0, 70.0, 90.0].into_iter().enumerate() {
                    evs.push(job_event(&r, 3 + i as i64, progress(p)));
                }
                evs.push(job_event(&r, 9, completed(&format!("outputs/{n}.json"))));
                for e in &evs {
                    producer.send(JOB_EVENTS, &e.file_id, e).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    });

    // Kill the projector again and again while events stream in: by dropping its task, and by
    // terminating its database sessions, counting those caught inside a transaction.
    let mut killed_in_tx = 0i64;
    for round in 0..8 {
        let p = tagged_projector(&env).await;
        tokio::time::sleep(Duration::from_millis(150 + 70 * round)).await;
        if round % 2 == 0 {
            // Transactions last milliseconds: poll until one is caught open (or 2 s pass).
            for _ in 0..1000 {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = 'projector-under-test' AND xact_start IS NOT NULL) t",
                )
                .fetch_one(&env.pool)
                .await
                .unwrap();
                killed_in_tx += n;
                if n > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p.kill().await;
    }
    producing.await.unwrap();

    let p = tagged_projector(&env).await;
    let total = (FILES_N * PER_FILE) as i64;
    env.wait_history(total).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.count("SELECT count(*) FROM events").await, total);
    assert_eq!(
        env.count("SELECT count(DISTINCT event_id) FROM events")
            .await,
        total
    );
    assert_eq!(
        env.count("SELECT count(*) FROM files").await,
        FILES_N as i64
    );
    assert_eq!(
        env.count("SELECT count(*) FROM jobs WHERE status = 'completed' AND progress = 100 AND attempt = 1")
            .await,
        FILES_N as i64
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
    p.stop().await;
    eprintln!("sessions terminated inside a transaction: {killed_in_tx}");
    assert!(killed_in_tx > 0, "no kill landed inside a transaction");
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
    assert_eq!(ja.status, "completed");
    assert_eq!(ja.progress, 100.0);
    assert_eq!(ja.owner, "bob");
    assert_eq!(ja.started_at, Some(at(2)));
    assert_eq!(ja.finished_at, Some(at(9)));
    assert_eq!(ja.outputs[0]["path"], "outputs/a.json");
    let jb = read.job(&b.job_id).await.unwrap().unwrap();
    assert_eq!(jb.status, "completed", "{jb:?}");
    assert_eq!(jb.attempt, 2);
    assert_eq!(jb.error_code, None);
    assert_eq!(jb.outputs[0]["path"], "outputs/b.json");
    assert_eq!(jb.requested_at, Some(at(9)));
    let f = read.file(&up.file_id).await.unwrap().unwrap();
    assert_eq!(f.status, "uploaded");
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
            .is_some_and(|j| j.status == "completed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let j = read.job(&r.job_id).await.unwrap().unwrap();
    assert_eq!(j.status, "completed");
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
