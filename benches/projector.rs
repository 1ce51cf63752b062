//! The projector through a real broker (tansu, in memory) and a real PostgreSQL 15 on loopback.
//!
//!   cargo bench --bench projector [-- FILES RATE...]
//!
//! 1. Throughput: FILES × 9 events (upload, request, started, 5 × progress, completed) are on
//!    the topics before the projector starts; the time until its stored offsets cover all of
//!    them gives events/s projected (batched, one transaction per batch with its offsets).
//! 2. Latency at a steady load: for each RATE (events/s) the events are produced for 8 s while
//!    the projector runs; a LISTEN on the projector's channel reads each event back as soon as a
//!    batch commits, and event→visible latency is now − occurred_at (stamped just before send).

#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use roar_common::kafka::EventProducer;
use roar_projections::ReadModel;
use roar_schemas::ids::JobIdentity;
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS};
use roar_schemas::{ids, EventMeta, FileBody, FileEvent, FileInfo, JobBody, JobEvent, Output};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// One message: topic, key, Avro bytes.
type Msg = (String, String, Vec<u8>);

/// The nine events of one file's life, encoded, stamped now.
fn file_life(n: usize) -> Vec<Msg> {
    let sha = format!("{n:064x}");
    let file_id = ids::file_id("bench", &sha);
    let meta = || EventMeta::new(format!("r{n}"), "bench");
    let up = FileEvent {
        sealed: None,
        meta: meta(),
        file_id: file_id.clone(),
        body: FileBody::Uploaded(FileInfo {
            owner: "bench".into(),
            filename: format!("{n}.wav"),
            mime: "audio/wav".into(),
            size: 1,
            sha256: sha,
            storage_key: format!("uploads/{file_id}/original"),
        }),
    };
    let req = JobIdentity::new(&file_id, "pitch", "tiny", &serde_json::json!({}), "v1").request(
        meta(),
        "bench".into(),
        1,
    );
    let job = |body| JobEvent {
        meta: meta(),
        job_id: req.job_id.clone(),
        file_id: file_id.clone(),
        model: "pitch".into(),
        variation: "tiny".into(),
        body,
    };
    let mut out = vec![
        (
            FILES.to_string(),
            file_id.clone(),
            roar_schemas::encode(&up),
        ),
        (
            jobs_topic("pitch"),
            file_id.clone(),
            roar_schemas::encode(&req),
        ),
    ];
    let mut bodies = vec![JobBody::Started {
        worker: "w".into(),
        attempt: 1,
    }];
    for p in [20.0, 40.0, 60.0, 80.0, 99.0] {
        bodies.push(JobBody::Progress {
            percent: p,
            message: "tracking".into(),
        });
    }
    bodies.push(JobBody::Completed {
        outputs: vec![Output {
            path: format!("outputs/{file_id}/pitch/tiny/f0.json"),
            kind: "f0".into(),
            content_type: "application/json".into(),
            size: 100,
            sha256: "00".into(),
        }],
        duration_seconds: 1.0,
    });
    for b in bodies {
        out.push((
            JOB_EVENTS.to_string(),
            file_id.clone(),
            roar_schemas::encode(&job(b)),
        ));
    }
    out
}

async fn send_all(p: &EventProducer, msgs: Vec<Msg>) {
    let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
    for (t, k, v) in msgs {
        if in_flight.len() >= 2000 {
            let r: Result<(i32, i64), _> = in_flight.next().await.unwrap();
            r.unwrap();
        }
        let p = p.clone();
        in_flight.push(async move { p.send_raw(&t, k.as_bytes(), &v).await });
    }
    while let Some(r) = in_flight.next().await {
        r.unwrap();
    }
}

/// Events the projector has committed. A 21-row read, so polling it does not take CPU from
/// the projector and the database the way `count(*)` over the growing history would.
async fn projected(pool: &sqlx::PgPool) -> i64 {
    ReadModel::new(pool.clone()).events_applied().await.unwrap()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let files = args.first().copied().unwrap_or(20000);
    let rates: Vec<usize> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![1000, 5000]
    };

    let infra = support::Infra::start().await;
    let mut cfg = infra.config();
    cfg.kafka.partitions = 3;
    cfg.database.max_connections = 4;
    if let Some(b) = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()) {
        cfg.projector.batch_size = b;
    }
    roar::services::bootstrap_topics(&cfg).await?;
    let pool =
        roar_projections::connect(cfg.database.url.expose(), 4, Duration::from_secs(30)).await?;
    roar_projections::migrate(&pool).await?;
    let producer = EventProducer::new(&cfg.kafka)?;
    println!(
        "projector bench: batch_size {}, linger {} ms, {} partitions per topic",
        cfg.projector.batch_size, cfg.projector.batch_linger_ms, cfg.kafka.partitions
    );

    // 1. Throughput from a backlog.
    let msgs: Vec<Msg> = (0..files).flat_map(file_life).collect();
    let total = msgs.len() as i64;
    send_all(&producer, msgs).await;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn({
        let (cfg, pool, producer, cancel) =
            (cfg.clone(), pool.clone(), producer.clone(), cancel.clone());
        async move { roar_projections::run(&cfg, pool, producer, cancel).await }
    });
    while projected(&pool).await < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = started.elapsed();
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        history == total,
        "history holds {history} of {total} events"
    );
    println!(
        "backlog: {total} events projected in {:.2} s = {:.0} events/s",
        t.as_secs_f64(),
        total as f64 / t.as_secs_f64()
    );

    // 2. Latency at steady rates.
    let mut next_file = files;
    for rate in rates {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(roar_projections::NOTIFY_CHANNEL).await?;
        let mut last_seq: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM events")
            .fetch_one(&pool)
            .await?;
        let lives = 8 * rate / 9;
        let first = next_file;
        next_file += lives;
        let expected = (lives * 9) as i64;
        let producing = tokio::spawn({
            let producer = producer.clone();
            async move {
                // Every 10 ms, the whole files due by then; each file's nine events are made
                // (and stamped) right before they are sent, in order, without awaiting acks.
                let start = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut sent = 0;
                let mut sends = FuturesUnordered::new();
                while sent < lives {
                    tick.tick().await;
                    let due = (start.elapsed().as_secs_f64() * rate as f64 / 9.0) as usize;
                    while sent < due.min(lives) {
                        for (t, k, v) in file_life(first + sent) {
                            let p = producer.clone();
                            sends.push(async move { p.send_raw(&t, k.as_bytes(), &v).await });
                        }
                        sent += 1;
                    }
                    while let Some(Some(r)) = futures::FutureExt::now_or_never(sends.next()) {
                        r.unwrap();
                    }
                }
                while let Some(r) = sends.next().await {
                    r.unwrap();
                }
            }
        });
        let mut lat = Vec::with_capacity(expected as usize);
        while (lat.len() as i64) < expected {
            tokio::time::timeout(Duration::from_secs(30), listener.recv()).await??;
            let rows: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
                sqlx::query_as("SELECT seq, occurred_at FROM events WHERE seq > $1 ORDER BY seq")
                    .bind(last_seq)
                    .fetch_all(&pool)
                    .await?;
            let now = chrono::Utc::now();
            for (seq, at) in rows {
                last_seq = seq;
                lat.push((now - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
        producing.await?;
        lat.sort_by(|a, b| a.total_cmp(b));
        println!(
            "steady {rate} events/s: {} events, event→visible p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
    cancel.cancel();
    task.await??;
    Ok(())
}
