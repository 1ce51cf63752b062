//! Music generation end to end: upload → `POST /process` musicgen → the `roar-musicgen` worker
//! → `generated.wav` and `generation.json` in the object store → `/status` with download links.
//! The model is roar-musicgen's tiny random-init fixture (generated from the reference,
//! processors/musicgen/tests/fixtures/tiny), installed as `musicgen/small` in a models
//! directory of its own, so only the musicgen worker starts; its fidelity to the reference is
//! proven in roar-musicgen's own tests.

use roar_processors::audio::decode;
use serde_json::{json, Value};

use crate::support::{self, Infra, Services};

/// A models directory holding only the tiny fixture as the `small` variation.
fn musicgen_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let variation = dir.path().join("musicgen/small");
    std::fs::create_dir_all(&variation).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/musicgen/tests/fixtures/tiny"
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(format!("{fixture}/{f}"), variation.join(f)).unwrap();
    }
    dir
}

async fn start() -> (Infra, Services, tempfile::TempDir) {
    let infra = Infra::start().await;
    let models = musicgen_models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    (infra, svc, models)
}

fn name(output: &Value) -> &str {
    output["path"].as_str().unwrap().rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_is_continued_from_its_end() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    // 1.5 s of stereo at 44.1 kHz: the worker mixes it down and resamples it to 32 kHz.
    let song = support::melody_wav(&[(220.0, 1.0), (330.0, 0.5)], 44_100, 2);
    let file = svc.ready_file(&alice, "song.wav", song).await;
    let params = json!({"prompt": "a calm piano", "duration": 1.0, "prompt_seconds": 0.5,
                        "format": "float32"});
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "params": params}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    let job = body["job_id"].as_str().unwrap().to_string();
    let j = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;
    assert_eq!(j["progress"], 100.0);
    let outputs = j["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs.iter().map(name).collect();
    assert_eq!(names, ["generated.wav", "generation.json"], "{j:#}");
    assert_eq!(outputs[0]["kind"], "audio");

    // The continued 0.5 s (25 frames of 640 samples) and 1 s of new music (50 frames).
    let audio = decode(svc.download(&alice, &outputs[0]).await, Some("wav"), 60.0).unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (32_000, 1));
    assert_eq!(audio.frames(), 75 * 640);
    assert!(audio.samples.iter().all(|v| v.is_finite()));
    assert!(audio.samples.iter().any(|v| *v != 0.0), "not silent");

    let about: Value = serde_json::from_slice(&svc.download(&alice, &outputs[1]).await).unwrap();
    assert_eq!(about["prompt"], "a calm piano");
    assert_eq!(about["prompt_seconds"], 0.5);
    assert_eq!(about["frames"], 75);
    assert!(about["seed"].is_u64(), "{about:#}");
    // The catalogue's defaults reached the generator.
    assert_eq!(about["sampling"]["top_k"], 250);
    assert_eq!(about["sampling"]["guidance_scale"], 3.0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_generation_params_are_refused_naming_them_and_nothing_is_queued() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    let song = support::melody_wav(&[(220.0, 0.5)], 32_000, 1);
    let file = svc.ready_file(&alice, "song.wav", song).await;
    for (extra, hint) in [
        (json!({"params": {"duration": 31}}), "duration"),
        (json!({"params": {"duration": 0}}), "duration"),
        (json!({"params": {"prompt_seconds": 20}}), "prompt_seconds"),
        (json!({"params": {"top_k": -1}}), "top_k"),
        (json!({"params": {"top_p": 0}}), "top_p"),
        (json!({"params": {"guidance_scale": 0.5}}), "guidance_scale"),
        (json!({"params": {"temperature": "hot"}}), "temperature"),
        (json!({"params": {"prompt": "x".repeat(2001)}}), "prompt"),
        (json!({"params": {"steps": 10}}), "steps"),
        (json!({"variation": "xl"}), "small, medium, large, melody"),
    ] {
        let mut body = json!({"file_id": file, "model": "musicgen"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (code, v) = svc.post_json(&alice, "/process", &body).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(hint), "{hint}: {v}");
    }
    let topic = roar_schemas::topics::jobs_topic("musicgen");
    assert_eq!(support::topic_len(&svc.cfg.kafka.brokers, &topic), 0);
    svc.stop().await;
}

/// A models directory with the tiny melody fixture as `musicgen/melody` and the small demucs
/// fixture as `demucs/htdemucs`: the stems a melody can follow, and the model that follows it.
fn melody_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let melody = dir.path().join("musicgen/melody");
    std::fs::create_dir_all(&melody).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/musicgen/tests/fixtures/tiny-melody"
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        std::fs::copy(format!("{fixture}/{f}"), melody.join(f)).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_melody_variation_follows_a_stem_through_a_pipeline_input() {
    let infra = Infra::start().await;
    let models = melody_models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let song = support::melody_wav(&[(220.0, 0.6), (330.0, 0.6)], 44_100, 2);
    let file = svc.ready_file(&alice, "song.wav", song).await;
    // A fixed seed: the same prompt, params and melody generate the same music on any file.
    let params = json!({"prompt": "a calm piano", "duration": 1.0, "seed": 11});

    // The melody of the vocals stem: demucs first, then musicgen on its `vocals` (one request,
    // a two-step pipeline).
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "variation": "melody",
                    "params": params, "input": {"model": "demucs", "output": "vocals"}}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    assert!(body["pipeline_id"].is_string(), "{body:#}");
    assert_eq!(
        (
            body["input"]["model"].as_str(),
            body["input"]["output"].as_str()
        ),
        (Some("demucs"), Some("vocals"))
    );
    let job = body["job_id"].as_str().unwrap().to_string();
    let sep = body["input"]["job_id"].as_str().unwrap().to_string();
    let st = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;
    let on_stem = st["outputs"].as_array().unwrap();
    assert_eq!(name(&on_stem[0]), "generated.wav", "{st:#}");
    let on_stem = svc.download(&alice, &on_stem[0]).await;
    let audio = decode(on_stem.clone(), Some("wav"), 60.0).unwrap();
    assert_eq!((audio.sample_rate, audio.frames()), (32_000, 50 * 640));

    // The same request on an upload of that very stem generates the same music: what the
    // pipeline's step followed was the stem.
    let sep = svc
        .wait_job(&alice, &file, &sep, |j| j["status"] == "completed")
        .await;
    let vocals = sep["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| name(o) == "vocals.wav")
        .unwrap_or_else(|| panic!("no vocals.wav in {sep:#}"));
    let vocals = svc.download(&alice, vocals).await;
    let stem_file = svc.ready_file(&alice, "vocals.wav", vocals).await;
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": stem_file, "model": "musicgen", "variation": "melody",
                    "params": params}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    let direct = svc
        .wait_job(&alice, &stem_file, body["job_id"].as_str().unwrap(), |j| {
            j["status"] == "completed"
        })
        .await;
    let direct = svc.download(&alice, &direct["outputs"][0]).await;
    assert!(
        direct == on_stem,
        "the stem's melody generates the same music"
    );
    svc.stop().await;
}
