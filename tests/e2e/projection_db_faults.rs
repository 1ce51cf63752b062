//! A database failure that says nothing about the events (here a deadlock, raised by a
//! trigger while a flag row exists) must not cost an event: the projector retries the batch
//! with backoff until the database recovers, dead-letters nothing and applies everything once.

use std::time::Duration;

use crate::support::projection::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_database_error_is_retried_not_dead_lettered() {
    let env = Env::start().await;
    // A sequence counts the failed tries: nextval survives the rollback of its transaction.
    for sql in [
        "CREATE TABLE fault_on (x int)",
        "CREATE SEQUENCE fault_hits",
        "INSERT INTO fault_on VALUES (1)",
        "CREATE FUNCTION inject_deadlock() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM fault_on) THEN
             PERFORM nextval('fault_hits');
             RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01';
           END IF;
           RETURN NULL;
         END $$",
        "CREATE TRIGGER inject_deadlock BEFORE INSERT ON events
         FOR EACH STATEMENT EXECUTE FUNCTION inject_deadlock()",
    ] {
        sqlx::query(sql).execute(&env.pool).await.unwrap();
    }
    let up = uploaded("dora", 1, 0);
    let r = request(&up.file_id, "dora", "pitch", "tiny", "v1", 1);
    env.send_file(&up).await;
    env.send_request(&r).await;
    env.send_job(&job_event(&r, 2, started(1))).await;
    let p = env.spawn_projector();

    // Let it fail a few times (each batch try, and in the old code its one-by-one fallback).
    let mut hits = 0;
    for _ in 0..600 {
        hits = env
            .count("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fault_hits")
            .await;
        if hits >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hits >= 3, "the injected fault hit {hits} times");
    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
    sqlx::query("DELETE FROM fault_on")
        .execute(&env.pool)
        .await
        .unwrap();

    // Every event is applied once the database recovers: none was dead-lettered or skipped.
    env.wait_history(3).await;
    assert_eq!(env.count("SELECT count(*) FROM events").await, 3);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM jobs WHERE job_id = '{}' AND status = 'running'",
            r.job_id
        ))
        .await,
        1
    );
    p.stop().await;
}
