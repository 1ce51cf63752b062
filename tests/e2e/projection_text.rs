//! Text PostgreSQL cannot store: a NUL in an event's free text (a prompt, a progress message,
//! a failure's cause) must not cost the event or its batch. The read model shows U+FFFD in its
//! place and the history keeps the exact bytes.

use roar_schemas::{ids, JobBody};

use crate::support::projection::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_in_free_text_is_projected_not_dead_lettered() {
    let env = Env::start().await;
    let up = uploaded("nina", 1, 0);
    let mut r = request(&up.file_id, "nina", "whisper", "tiny", "v1", 1);
    r.params_json = r#"{"initial_prompt":"la\u0000la"}"#.into();
    r.job_id = ids::job_id(&r.file_id, &r.model, &r.variation, &r.params_json, "v1");
    let other = request(&up.file_id, "nina", "pitch", "tiny", "v1", 1);
    env.send_file(&up).await;
    env.send_request(&r).await;
    env.send_request(&other).await;
    env.send_job(&job_event(&r, 2, started(1))).await;
    env.send_job(&job_event(
        &r,
        3,
        JobBody::Progress {
            percent: 10.0,
            message: "step\0one".into(),
        },
    ))
    .await;
    env.send_job(&job_event(
        &r,
        4,
        JobBody::Failed {
            code: "bad\0code".into(),
            message: "cause\0here".into(),
            retryable: false,
        },
    ))
    .await;
    // Everything is on the topics before the projector starts: one batch holds it all.
    let p = env.spawn_projector();
    env.wait_history(6).await;

    let (params, code, message): (serde_json::Value, String, String) =
        sqlx::query_as("SELECT params, error_code, error_message FROM jobs WHERE job_id = $1")
            .bind(&r.job_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(params["initial_prompt"], "la\u{FFFD}la");
    assert_eq!(code, "bad\u{FFFD}code");
    assert_eq!(message, "cause\u{FFFD}here");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM jobs WHERE job_id = '{}' AND status = 'queued'",
            other.job_id
        ))
        .await,
        1,
        "the batch's other events are applied"
    );
    // The history keeps the payload byte for byte: a NUL inside a string of the Avro message.
    let raw: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM events WHERE job_id = $1")
        .bind(&r.job_id)
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert!(raw.iter().any(|p| p.windows(5).any(|w| w == b"step\0")));
    p.stop().await;
}
