//! Text → music with no upload, end to end: `POST /generate` → the song is a `generating` file
//! of the caller's → the `roar-musicgen` worker (the tiny random-init fixture) writes it →
//! `FileUploaded` → the probe makes it `ready` → `/songs` lists it with its prompt → the `stems`
//! preset (a pipeline: demucs, the small fixture network as `htdemucs`) separates it like any
//! upload. And a generation canceled mid-run ends `canceled` with no song.

use std::time::Duration;

use roar_processors::audio::decode;
use serde_json::{json, Value};

use crate::support::{self, Infra, Services};

/// The tiny musicgen fixture as `musicgen/small`, and the small demucs fixture as
/// `demucs/htdemucs` (the `stems` preset's separation).
fn models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("musicgen/small");
    std::fs::create_dir_all(&small).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/musicgen/tests/fixtures/tiny"
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(format!("{fixture}/{f}"), small.join(f)).unwrap();
    }
    let demucs = dir.path().join("demucs/htdemucs");
    std::fs::create_dir_all(&demucs).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/processors/demucs/tests/fixtures/small.safetensors"
        ),
        demucs.join("model.safetensors"),
    )
    .unwrap();
    dir
}

async fn start(max_duration: f64) -> (Infra, Services, tempfile::TempDir) {
    let infra = Infra::start().await;
    let models = models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    cfg.musicgen.max_duration_seconds = max_duration;
    let svc = Services::start(cfg).await;
    (infra, svc, models)
}

fn name(output: &Value) -> &str {
    output["path"].as_str().unwrap().rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prompt_becomes_a_song_of_the_caller_that_other_models_process() {
    let (_infra, svc, _models) = start(30.0).await;
    let alice = svc.token("alice", &[]);
    let brokers = svc.cfg.kafka.brokers.clone();
    let jobs_topic = roar_schemas::topics::jobs_topic("musicgen");

    // Mistakes are refused naming what is wrong, and nothing is emitted.
    for (body, hint) in [
        (
            json!({"prompt": "x", "duration_seconds": 31}),
            "max_duration_seconds",
        ),
        (
            json!({"prompt": "x", "variation": "melody"}),
            "POST /process",
        ),
        (
            json!({"prompt": "x", "params": {"prompt_seconds": 1}}),
            "POST /process",
        ),
        (
            json!({"prompt": "x", "params": {"generates_song": true}}),
            "generates_song",
        ),
        (json!({"prompt": "x", "params": {"top_k": -1}}), "top_k"),
        (json!({"duration_seconds": 2}), "prompt"),
    ] {
        let (code, v) = svc.post_json(&alice, "/generate", &body).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(hint), "{hint}: {v}");
    }
    assert_eq!(support::topic_len(&brokers, &jobs_topic), 0);
    assert_eq!(support::topic_len(&brokers, roar_schemas::topics::FILES), 0);

    let body = json!({"prompt": "a calm piano", "duration_seconds": 1.0, "params": {"seed": 5}});
    let (code, g) = svc.post_json(&alice, "/generate", &body).await;
    assert_eq!(code, 202, "{g:#}");
    assert_eq!(g["filename"], "a calm piano.wav");
    assert_eq!(g["job"]["status"], "queued");
    let file = g["file_id"].as_str().unwrap().to_string();
    let job = g["job"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(g["job"]["file_id"], file.as_str());

    let j = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;
    let outputs = j["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs.iter().map(name).collect();
    assert_eq!(names, ["generated.wav", "generation.json"], "{j:#}");
    let about: Value = serde_json::from_slice(&svc.download(&alice, &outputs[1]).await).unwrap();
    assert_eq!(
        (about["prompt"].as_str(), about["seed"].as_u64()),
        (Some("a calm piano"), Some(5))
    );

    // The song is the job's audio, probed like an upload.
    let st = svc
        .wait_for(&alice, &file, |v| v["file"]["status"] == "ready")
        .await;
    let f = &st["file"];
    assert_eq!(f["filename"], "a calm piano.wav");
    assert_eq!(f["generation"]["prompt"], "a calm piano");
    assert_eq!(f["generation"]["job_id"], job.as_str());
    assert_eq!(f["metadata"]["sample_rate"], 32_000);
    assert_eq!(
        f["metadata"]["frames"],
        50 * 640,
        "1 s: 50 frames of 640 samples"
    );
    let song = svc.download(&alice, &outputs[0]).await;
    assert_eq!(f["sha256"], support::sha256_hex(&song).as_str());
    let audio = decode(song, Some("wav"), 60.0).unwrap();
    assert!(audio.samples.iter().any(|v| *v != 0.0), "not silent");

    // Alice's songs list it; Bob's do not, and Bob cannot see it.
    let (code, songs) = svc.get_json(&alice, "/songs").await;
    assert_eq!(code, 200);
    let listed = songs["songs"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s["file_id"] == file.as_str() && s["generation"]["prompt"] == "a calm piano"),
        "{songs:#}"
    );
    let bob = svc.token("bob", &[]);
    let (_, bobs) = svc.get_json(&bob, "/songs").await;
    assert!(bobs["songs"].as_array().unwrap().is_empty(), "{bobs:#}");
    assert_eq!(svc.status(&bob, &file).await.status(), 404);

    // Asking again names the same song and job: nothing new.
    let (code, again) = svc.post_json(&alice, "/generate", &body).await;
    assert_eq!(code, 200, "{again:#}");
    assert_eq!(
        (again["file_id"].as_str(), again["job"]["job_id"].as_str()),
        (Some(file.as_str()), Some(job.as_str()))
    );
    assert_eq!(again["job"]["status"], "skipped");
    assert_eq!(support::topic_len(&brokers, &jobs_topic), 1);

    // A pipeline separates the song like an upload: the `stems` preset's demucs step writes
    // the four stems, each as long as the song.
    let (code, p) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "preset": "stems"}),
        )
        .await;
    assert_eq!(code, 202, "{p:#}");
    let pid = p["pipeline_id"].as_str().unwrap().to_string();
    let sep = p["steps"][0]["job_id"].as_str().unwrap().to_string();
    let done = svc
        .wait_job(&alice, &file, &sep, |j| j["status"] == "completed")
        .await;
    let stems = done["outputs"].as_array().unwrap();
    let mut names: Vec<&str> = stems.iter().map(name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["bass.wav", "drums.wav", "other.wav", "vocals.wav"],
        "{done:#}"
    );
    let vocals = stems.iter().find(|o| name(o) == "vocals.wav").unwrap();
    let vocals = decode(svc.download(&alice, vocals).await, Some("wav"), 60.0).unwrap();
    let seconds = |d: &roar_processors::audio::Decoded| {
        d.samples.len() as f64 / d.channels as f64 / f64::from(d.sample_rate)
    };
    assert!(
        (seconds(&vocals) - seconds(&audio)).abs() < 0.01,
        "a stem is as long as the song: {} s vs {} s",
        seconds(&vocals),
        seconds(&audio)
    );
    let st = svc
        .wait_for(&alice, &file, |v| {
            v["pipelines"][0]["status"] == "completed"
        })
        .await;
    assert_eq!(st["pipelines"][0]["pipeline_id"], pid.as_str());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generation_canceled_mid_run_ends_canceled_with_no_song() {
    // The longest song the catalogue allows, so the tiny model is still sampling when the
    // cancel arrives.
    let (infra, svc, _models) = start(300.0).await;
    let alice = svc.token("alice", &[]);
    let (code, g) = svc
        .post_json(
            &alice,
            "/generate",
            &json!({"prompt": "endless drone", "duration_seconds": 300}),
        )
        .await;
    assert_eq!(code, 202, "{g:#}");
    let file = g["file_id"].as_str().unwrap().to_string();
    let job = g["job"]["job_id"].as_str().unwrap().to_string();
    let st = svc
        .wait_for(&alice, &file, |v| v["file"]["status"] == "generating")
        .await;
    assert_eq!(st["file"]["generation"]["duration_seconds"], 300.0);
    // Cancel as soon as a worker runs it: 300 s of the tiny model's steps leave seconds to
    // spare, and the worker checks between steps.
    let running = svc
        .wait_job(&alice, &file, &job, |j| j["status"] != "queued")
        .await;
    assert_eq!(
        running["status"], "running",
        "still generating: {running:#}"
    );

    let (code, c) = svc
        .post_json(&alice, &format!("/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{c:#}");
    let st = svc
        .wait_for_within(&alice, &file, Duration::from_secs(60), |v| {
            v["file"]["status"] == "failed"
        })
        .await;
    assert_eq!(st["file"]["error"]["code"], "generation_canceled", "{st:#}");
    let j = support::find_job(&st, &job).unwrap();
    assert_eq!(j["status"], "canceled");
    assert!(j["outputs"].as_array().unwrap().is_empty(), "{j:#}");
    // Nothing was written: no song, no outputs (only the prompt the API put aside, which
    // goes with the song).
    let store = infra.store_dir();
    let uploads = store.join("uploads").join(&file);
    assert!(!uploads.join("original").exists());
    assert!(uploads.join("prompts").join(&job).exists());
    assert!(!store.join("outputs").join(&file).exists());
    // A canceled song is not processable.
    let (code, _) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch"}),
        )
        .await;
    assert_eq!(code, 409);
    svc.stop().await;
}
