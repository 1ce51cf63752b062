//! Lyrics end to end: upload → `POST /process` gemma3n → the `roar-gemma3n` worker (Whisper
//! hears and times the words; Gemma writes the lines) → `lyrics.txt`, `.json`, `.lrc`, `.srt`,
//! `.vtt` linked from `/status`. `gemma3-270m` is the real Gemma 3 270M the test command
//! fetches; `e2b` is roar-gemma's tiny random Gemma 3n fixture (its fidelity to the reference
//! is proven there), which here only has to run: the user's own lyrics are timed without it.
//! The models directory holds only these and Whisper, so no other model worker starts.

use std::time::Duration;

use roar_common::catalog;
use roar_common::storage::job_output_dir;
use roar_processors::audio::decode;
use roar_processors::runtime::Manifest;
use roar_schemas::ids::JobIdentity;
use roar_schemas::topics::jobs_topic;
use roar_schemas::{EventMeta, JobInput, Output};
use serde_json::{json, Value};
use sha2::Digest;

use crate::support::{self, models_dir, produce, Infra, Services};

const SUNG: &str = "carry me home carry me slow over the river where the willows grow";

/// `text` spoken by espeak-ng (22.05 kHz mono WAV).
fn speech_wav(text: &str) -> Vec<u8> {
    support::espeak_wav(text, 140)
}

/// A models dir: Gemma 3 270M and Whisper from the repository's, the tiny Gemma 3n as `e2b`.
fn lyrics_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let gemma = dir.path().join("gemma");
    let e2b = gemma.join("e2b");
    std::fs::create_dir_all(&e2b).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/gemma/tests/fixtures/gemma3n_tiny"
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(format!("{fixture}/{f}"), e2b.join(f)).unwrap();
    }
    let repo = models_dir();
    std::os::unix::fs::symlink(repo.join("gemma/gemma3-270m"), gemma.join("gemma3-270m")).unwrap();
    std::os::unix::fs::symlink(repo.join("whisper"), dir.path().join("whisper")).unwrap();
    dir
}

async fn start() -> (Infra, Services, tempfile::TempDir) {
    let infra = Infra::start().await;
    let models = lyrics_models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    (infra, svc, models)
}

fn name(output: &Value) -> &str {
    output["path"].as_str().unwrap().rsplit('/').next().unwrap()
}

fn output<'a>(job: &'a Value, file: &str) -> &'a Value {
    job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| name(o) == file)
        .unwrap_or_else(|| panic!("no {file} in {job:#}"))
}

async fn process(svc: &Services, token: &str, body: Value) -> String {
    let (code, v) = svc.post_json(token, "/process", &body).await;
    assert_eq!(code, 202, "{body}: {v:#}");
    v["job_id"].as_str().unwrap().to_string()
}

/// Every word of `lyrics.json` as (text, start, end).
fn words(json: &Value) -> Vec<(String, f64, f64)> {
    json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["lines"].as_array().unwrap())
        .flat_map(|l| l["words"].as_array().unwrap())
        .map(|w| {
            (
                w["text"].as_str().unwrap().to_string(),
                w["start"].as_f64().unwrap(),
                w["end"].as_f64().unwrap(),
            )
        })
        .collect()
}

const MODEL_SECONDS: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_text_model_writes_timed_lyrics_of_an_upload() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    let song = speech_wav(SUNG);
    let seconds = decode(song.clone(), Some("wav"), 60.0).unwrap().frames() as f64 / 22_050.0;
    let file = svc.ready_file(&alice, "song.wav", song).await;
    let job = process(
        &svc,
        &alice,
        json!({"file_id": file, "model": "gemma3n", "params": {"whisper": "tiny.en"}}),
    )
    .await;
    let j = svc
        .wait_for_within(&alice, &file, MODEL_SECONDS, |v| {
            support::find_job(v, &job)
                .is_some_and(|j| j["status"] != "queued" && j["status"] != "running")
        })
        .await;
    let j = support::find_job(&j, &job).unwrap().clone();
    assert_eq!(j["status"], "completed", "{j:#}");
    assert_eq!(j["variation"], "gemma3-270m", "the catalogue's default");
    let names: Vec<&str> = j["outputs"].as_array().unwrap().iter().map(name).collect();
    assert_eq!(
        names,
        [
            "lyrics.txt",
            "lyrics.json",
            "lyrics.lrc",
            "lyrics.srt",
            "lyrics.vtt"
        ]
    );
    let text = String::from_utf8(svc.download(&alice, output(&j, "lyrics.txt")).await).unwrap();
    let lower = text.to_lowercase();
    let heard = ["carry", "home", "river", "willows", "grow"]
        .iter()
        .filter(|w| lower.contains(*w))
        .count();
    assert!(heard >= 3, "lyrics: {text:?}");
    let json: Value =
        serde_json::from_slice(&svc.download(&alice, output(&j, "lyrics.json")).await).unwrap();
    let w = words(&json);
    // The text file and the JSON hold the same words; times are ordered and inside the audio.
    assert_eq!(
        w.iter().map(|(t, ..)| t.as_str()).collect::<Vec<_>>(),
        text.split_whitespace()
            .filter(|t| t.chars().any(char::is_alphanumeric))
            .collect::<Vec<_>>()
    );
    assert!(w.windows(2).all(|p| p[0].1 <= p[1].1), "{json:#}");
    assert!(
        w.iter()
            .all(|(_, s, e)| 0.0 <= *s && s <= e && *e <= seconds + 0.01),
        "{seconds} s: {json:#}"
    );
    let lrc = String::from_utf8(svc.download(&alice, output(&j, "lyrics.lrc")).await).unwrap();
    assert!(
        lrc.lines()
            .any(|l| l.starts_with("[00:") && l.contains("<00:")),
        "{lrc}"
    );
    let srt = String::from_utf8(svc.download(&alice, output(&j, "lyrics.srt")).await).unwrap();
    assert!(srt.starts_with("1\n") && srt.contains(" --> "), "{srt}");
    let vtt = String::from_utf8(svc.download(&alice, output(&j, "lyrics.vtt")).await).unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    svc.stop().await;
}

/// Writes a finished demucs job whose `vocals.wav` is `vocals`; returns its job id.
fn finished_separation(infra: &Infra, file_id: &str, vocals: &[u8]) -> String {
    let up = JobIdentity::new(file_id, "demucs", "htdemucs", &json!({}), "test-1");
    let job_id = up.job_id().to_string();
    let dir = job_output_dir(file_id, "demucs", "htdemucs", &job_id);
    let path = format!("{dir}vocals.wav");
    let root = infra.store_dir();
    std::fs::create_dir_all(root.join(&dir)).unwrap();
    std::fs::write(root.join(&path), vocals).unwrap();
    let manifest = Manifest {
        job_id: job_id.clone(),
        file_id: file_id.into(),
        model: "demucs".into(),
        variation: "htdemucs".into(),
        model_version: "test-1".into(),
        params: json!({}),
        created_at: chrono::Utc::now(),
        duration_seconds: 1.0,
        outputs: vec![Output {
            path,
            kind: "stem".into(),
            content_type: "audio/wav".into(),
            size: vocals.len() as i64,
            sha256: hex::encode(sha2::Sha256::digest(vocals)),
        }],
    };
    std::fs::write(
        root.join(format!("{dir}manifest.json")),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    job_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_users_lyrics_are_timed_on_the_vocals_stem_a_pipeline_hands_over() {
    let (infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    // The upload is a tone; the words are only in the (hand-made) separated vocals.
    let file = svc
        .ready_file(
            &alice,
            "mix.wav",
            support::melody_wav(&[(220.0, 2.0)], 16_000, 1),
        )
        .await;
    let upstream = finished_separation(&infra, &file, &speech_wav(SUNG));
    let upstream_id = upstream.clone();
    let lyrics =
        "[Verse]\nCarry me home, carry me slow\n\n[Chorus]\nOver the river\nwhere the willows grow";
    let params = json!({"lyrics": lyrics, "whisper": "tiny.en"});
    let r = catalog::resolve("gemma3n", Some("e2b"), Some(&params)).unwrap();
    let id =
        JobIdentity::new(&file, "gemma3n", "e2b", &r.params, &r.model_version).reading(JobInput {
            job_id: upstream,
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: "vocals".into(),
        });
    let job = id.job_id().to_string();
    let req = id.request(
        EventMeta::new("req-lyrics", "user:alice"),
        "alice".into(),
        1,
    );
    produce(&infra, &jobs_topic("gemma3n"), &file, &req).await;
    let j = svc
        .wait_for_within(&alice, &file, MODEL_SECONDS, |v| {
            support::find_job(v, &job)
                .is_some_and(|j| j["status"] != "queued" && j["status"] != "running")
        })
        .await;
    let j = support::find_job(&j, &job).unwrap().clone();
    assert_eq!(j["status"], "completed", "{j:#}");
    let text = String::from_utf8(svc.download(&alice, output(&j, "lyrics.txt")).await).unwrap();
    assert_eq!(
        text,
        "Carry me home, carry me slow\n\nOver the river\nwhere the willows grow\n"
    );
    let json: Value =
        serde_json::from_slice(&svc.download(&alice, output(&j, "lyrics.json")).await).unwrap();
    assert_eq!(json["sections"][1]["label"], "Chorus");
    let w = words(&json);
    assert_eq!(w.len(), 13);
    // Timed from the speech in the stem: "river" comes after "slow", by the time the speaker
    // needs for the words between; the upload (a tone) has no words to time them by.
    let at = |word: &str| {
        w.iter()
            .find(|(t, ..)| t.to_lowercase().starts_with(word))
            .unwrap()
            .1
    };
    assert!(at("river") - at("slow") > 0.3, "{json:#}");
    assert!(at("grow") > at("river"), "{json:#}");

    // Without lyrics, the tiny Gemma 3n listens to the stem in clips of under 2 s (its words
    // are random: only that they come out timed in the five files is checked here).
    let params = json!({"whisper": "tiny.en"});
    let r = catalog::resolve("gemma3n", Some("e2b"), Some(&params)).unwrap();
    let id =
        JobIdentity::new(&file, "gemma3n", "e2b", &r.params, &r.model_version).reading(JobInput {
            job_id: upstream_id,
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: "vocals".into(),
        });
    let job = id.job_id().to_string();
    let req = id.request(
        EventMeta::new("req-listen", "user:alice"),
        "alice".into(),
        1,
    );
    produce(&infra, &jobs_topic("gemma3n"), &file, &req).await;
    let j = svc
        .wait_for_within(&alice, &file, MODEL_SECONDS, |v| {
            support::find_job(v, &job)
                .is_some_and(|j| j["status"] != "queued" && j["status"] != "running")
        })
        .await;
    let j = support::find_job(&j, &job).unwrap().clone();
    assert_eq!(j["status"], "completed", "{j:#}");
    assert_eq!(j["outputs"].as_array().unwrap().len(), 5, "{j:#}");
    let text = String::from_utf8(svc.download(&alice, output(&j, "lyrics.txt")).await).unwrap();
    let json: Value =
        serde_json::from_slice(&svc.download(&alice, output(&j, "lyrics.json")).await).unwrap();
    assert_eq!(
        words(&json).len(),
        text.split_whitespace()
            .filter(|t| t.chars().any(char::is_alphanumeric))
            .count(),
        "{text:?} {json:#}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_lyrics_params_are_refused_naming_them_and_a_running_job_cancels() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    // Half a minute of words: Whisper, then Gemma 3 270M over a few chunks, take long enough
    // to cancel while they run.
    let file = svc
        .ready_file(&alice, "long.wav", speech_wav(&[SUNG; 6].join(" ")))
        .await;
    for (extra, hint) in [
        (
            json!({"params": {"lyrics": "la ".repeat(30_000)}}),
            "lyrics",
        ),
        (json!({"params": {"lyrics": 7}}), "lyrics"),
        (json!({"params": {"whisper": "large"}}), "whisper"),
        (json!({"params": {"language": "english-uk"}}), "language"),
        (json!({"params": {"task": "align"}}), "task"),
        (json!({"variation": "e9b"}), "gemma3-270m, e2b, e4b"),
    ] {
        let mut body = json!({"file_id": file, "model": "gemma3n"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (code, v) = svc.post_json(&alice, "/process", &body).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(hint), "{hint}: {v}");
    }
    let topic = jobs_topic("gemma3n");
    assert_eq!(support::topic_len(&svc.cfg.kafka.brokers, &topic), 0);

    let job = process(
        &svc,
        &alice,
        json!({"file_id": file, "model": "gemma3n", "params": {"whisper": "tiny.en"}}),
    )
    .await;
    svc.wait_for_within(&alice, &file, MODEL_SECONDS, |v| {
        support::find_job(v, &job).is_some_and(|j| j["progress"].as_f64().unwrap_or(0.0) > 1.0)
    })
    .await;
    let (code, body) = svc
        .post_json(&alice, &format!("/jobs/{job}/cancel"), &json!({}))
        .await;
    assert!(code == 200 || code == 202, "{code} {body:#}");
    let j = svc
        .wait_for_within(&alice, &file, MODEL_SECONDS, |v| {
            support::find_job(v, &job).is_some_and(|j| j["status"] == "canceled")
        })
        .await;
    let j = support::find_job(&j, &job).unwrap();
    assert!(j["progress"].as_f64().unwrap() < 100.0, "{j:#}");
    assert_eq!(j["outputs"], json!([]));
    svc.stop().await;
}
