//! The first path end to end, against a real broker and a real Postgres: upload → FileUploaded
//! → the probe decodes it and writes metadata.json → FileProbed → the projection → /status.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use roar_schemas::DeadLetter;
use serde_json::Value;

use crate::support::{fixture, Infra, Services};

fn file_status(v: &Value) -> &str {
    v["file"]["status"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_supported_format_is_probed_and_visible_in_status() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);

    for (name, codec) in [
        ("sine.wav", "pcm_s16le"),
        ("sine.flac", "flac"),
        ("sine.mp3", "mp3"),
        ("sine.ogg", "vorbis"),
    ] {
        let resp = svc.upload(&alice, name, fixture(name)).await;
        assert_eq!(resp.status(), 201, "{name}");
        assert!(resp.headers().contains_key("x-request-id"));
        let body: Value = resp.json().await.unwrap();
        let file_id = body["file_id"].as_str().unwrap().to_string();

        let status = svc
            .wait_for(&alice, &file_id, |v| file_status(v) == "ready")
            .await;
        let meta = &status["file"]["metadata"];
        assert_eq!(meta["codec"], codec, "{name}: {status:#}");
        assert_eq!(meta["sample_rate"], 22050, "{name}");
        assert_eq!(meta["channels"], 2, "{name}");
        let duration = meta["duration_seconds"].as_f64().unwrap();
        // Lossy codecs pad the stream by a frame or so.
        assert!(
            (1.45..1.6).contains(&duration),
            "{name}: duration {duration}"
        );
        let peak = meta["peak_dbfs"].as_f64().unwrap();
        assert!((-7.5..-5.0).contains(&peak), "{name}: peak {peak}");
        assert_eq!(status["file"]["filename"], name);

        // metadata.json is in the object store with what the seed asks for.
        let path = infra
            .store_dir()
            .join(format!("outputs/{file_id}/metadata.json"));
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        // The probe reads the name from the log, where it is sealed (crypto-shredding): only
        // the placeholder with the extension reaches it; /status (above) shows the name.
        assert_eq!(
            written["original_filename"],
            roar_projections::keys::placeholder(name)
        );
        assert_eq!(written["uploaded_by"], "alice");
        assert_eq!(written["sample_rate"], 22050);
        assert!(written["request_ids"].as_array().unwrap().len() == 1);
        assert!(written["created_at"].is_string());
        assert!(written["mime_type"].is_string());
        assert!(written["rms_dbfs"].as_f64().unwrap() < peak);
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_uploads_fail_clearly_duplicates_conflict_and_owners_are_private() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);

    // Not audio at all.
    let r = svc
        .upload(
            &alice,
            "notes.mp3",
            b"this is a text file, not an mp3".repeat(20),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = svc
        .wait_for(&alice, &id, |v| file_status(v) == "failed")
        .await;
    assert_eq!(st["file"]["error"]["code"], "unknown_format", "{st:#}");

    // A WAV cut off inside its header.
    let mut wav = fixture("sine.wav");
    wav.truncate(30);
    let r = svc.upload(&alice, "cut.wav", wav).await;
    let id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = svc
        .wait_for(&alice, &id, |v| file_status(v) == "failed")
        .await;
    assert!(
        st["file"]["error"]["message"].as_str().unwrap().len() > 5,
        "{st:#}"
    );

    // The same content twice from one user: 409 with the existing id; another user may upload it.
    let r = svc.upload(&alice, "a.flac", fixture("sine.flac")).await;
    assert_eq!(r.status(), 201);
    let first = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_for(&alice, &first, |v| file_status(v) == "ready")
        .await;
    let r = svc
        .upload(&alice, "renamed.flac", fixture("sine.flac"))
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Song already exists");
    assert_eq!(body["file_id"], first.as_str());
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let r = svc.upload(&bob, "a.flac", fixture("sine.flac")).await;
    assert_eq!(r.status(), 201);

    // Bob cannot see Alice's file; nobody without a token can.
    assert_eq!(svc.status(&bob, &first).await.status(), 404);
    let r = reqwest::get(format!("{}/status/{first}", svc.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(svc.status(&alice, "f../../etc/passwd").await.status(), 404);
    let admin = svc.token("root", &["admin"]);
    assert_eq!(svc.status(&admin, &first).await.status(), 200);

    // Empty upload and a body without a file field.
    assert_eq!(
        svc.upload(&alice, "empty.wav", Vec::new()).await.status(),
        400
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_goes_to_the_dlq_and_the_partition_keeps_flowing() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);

    // Garbage on the files topic, keyed so it lands where real events go.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", infra.broker.bootstrap())
        .create()
        .unwrap();
    for key in ["k0", "k1", "k2", "k3"] {
        producer
            .send(
                FutureRecord::to(roar_schemas::topics::FILES)
                    .key(key)
                    .payload("not avro"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // Real work after it still flows through the probe and the projector.
    let r = svc.upload(&alice, "sine.ogg", fixture("sine.ogg")).await;
    let id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_for(&alice, &id, |v| file_status(v) == "ready")
        .await;

    // Both consumers of the files topic dead-lettered each garbage message with its origin.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", infra.broker.bootstrap())
        .set("group.id", "test-dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[roar_schemas::topics::DLQ]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < 8 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dlq message")
            .unwrap();
        let d: DeadLetter = roar_schemas::decode(rdkafka::Message::payload(&m).unwrap()).unwrap();
        letters.push(d);
    }
    for group in ["roar-probe", "roar-projector"] {
        let mine: Vec<_> = letters
            .iter()
            .filter(|d| d.consumer_group == group)
            .collect();
        assert_eq!(mine.len(), 4, "{group}: {letters:#?}");
        for d in mine {
            assert_eq!(d.source_topic, roar_schemas::topics::FILES);
            assert_eq!(d.error_kind, "undecodable");
            assert_eq!(d.payload.as_deref(), Some(&b"not avro"[..]));
            assert!(d.source_offset >= 0);
        }
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_survives_a_restart_of_every_service() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let r = svc.upload(&alice, "sine.wav", fixture("sine.wav")).await;
    let id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = svc
        .wait_for(&alice, &id, |v| file_status(v) == "ready")
        .await;
    svc.stop().await;

    // Same broker and database: the projector resumes from its stored offsets and applies
    // nothing twice; the history holds exactly two events for the file.
    let svc = Services::start(infra.config()).await;
    let after = svc
        .wait_for(&alice, &id, |v| file_status(v) == "ready")
        .await;
    assert_eq!(before["file"], after["file"]);
    let r = svc.upload(&alice, "sine.mp3", fixture("sine.mp3")).await;
    let id2 = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_for(&alice, &id2, |v| file_status(v) == "ready")
        .await;
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE file_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "FileUploaded and FileProbed, once each");
    svc.stop().await;
}
