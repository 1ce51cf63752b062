//! Source separation end to end: upload → `POST /process` demucs → the `roar-demucs` worker
//! (HTDemucs on candle) → stems in the object store → `/status` with download links, plus
//! two_stems and an owner's cancel. The network is the small 4-source fixture model generated
//! from the reference (processors/demucs/tests/fixtures/small.safetensors, 1 s segments),
//! installed as `demucs/htdemucs` in a models directory of its own, so only the demucs worker
//! starts; its fidelity to the reference is proven in roar-demucs' own tests.

use roar_processors::audio::{decode, Decoded};
use serde_json::{json, Value};

use crate::support::{self, Infra, Services};

const SOURCES: [&str; 4] = ["drums", "bass", "other", "vocals"];

/// A models directory holding only the fixture as the `htdemucs` variation.
fn demucs_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let variation = dir.path().join("demucs/htdemucs");
    std::fs::create_dir_all(&variation).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/demucs/tests/fixtures/small.safetensors"
    );
    std::fs::copy(fixture, variation.join("model.safetensors")).unwrap();
    dir
}

async fn start() -> (Infra, Services, tempfile::TempDir) {
    let infra = Infra::start().await;
    let models = demucs_models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    (infra, svc, models)
}

async fn process(svc: &Services, token: &str, file: &str, params: Value) -> String {
    let (code, body) = svc
        .post_json(
            token,
            "/process",
            &json!({"file_id": file, "model": "demucs", "params": params}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    body["job_id"].as_str().unwrap().to_string()
}

fn names(job: &Value) -> Vec<String> {
    job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every output of `job`, downloaded and decoded, by file name.
async fn stems(svc: &Services, token: &str, job: &Value) -> Vec<(String, Decoded)> {
    let mut out = Vec::new();
    for o in job["outputs"].as_array().unwrap() {
        let name = o["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let ext = name.rsplit('.').next().unwrap();
        let bytes = svc.download(token, o).await;
        let d = decode(bytes, Some(ext), 600.0).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name.to_string(), d));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_song_is_separated_into_stems_and_two_stems_sum_the_rest() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    // 2.5 s stereo at 22.05 kHz (the worker resamples to the model's 44.1 kHz), quiet enough
    // that no stem needs clip protection, so stems add up exactly.
    let song = quiet_song(22_050, 2.5, 0.02);
    let file = svc.ready_file(&alice, "song.wav", song).await;
    let frames = (2.5 * 44_100.0) as i64;

    // Unshifted runs are deterministic, so the two_stems job can be checked against this one.
    let all = process(
        &svc,
        &alice,
        &file,
        json!({"shifts": 0, "format": "float32"}),
    )
    .await;
    let j = svc
        .wait_job(&alice, &file, &all, |j| j["status"] == "completed")
        .await;
    assert_eq!(j["progress"], 100.0);
    let want: Vec<String> = SOURCES.iter().map(|s| format!("{s}.wav")).collect();
    assert_eq!(names(&j), want);
    for o in j["outputs"].as_array().unwrap() {
        assert_eq!(o["kind"], "stem", "{o:#}");
    }
    let full = stems(&svc, &alice, &j).await;
    for (name, d) in &full {
        assert_eq!((d.sample_rate, d.channels), (44_100, 2), "{name}");
        assert!(
            (d.frames() as i64 - frames).abs() <= 2,
            "{name}: {}",
            d.frames()
        );
        assert!(d.samples.iter().all(|v| v.is_finite()), "{name}");
        assert!(d.rms_dbfs() > -80.0, "{name} is not silent");
    }

    let two = process(
        &svc,
        &alice,
        &file,
        json!({"shifts": 0, "format": "float32", "two_stems": "vocals"}),
    )
    .await;
    let j = svc
        .wait_job(&alice, &file, &two, |j| j["status"] == "completed")
        .await;
    assert_eq!(names(&j), ["vocals.wav", "no_vocals.wav"]);
    let pair = stems(&svc, &alice, &j).await;
    let rest: Vec<f32> = (0..full[0].1.samples.len())
        .map(|i| full[..3].iter().map(|(_, d)| d.samples[i]).sum())
        .collect();
    assert_same(&pair[0].1.samples, &full[3].1.samples, "vocals");
    assert_same(&pair[1].1.samples, &rest, "no_vocals");

    // Compressed formats come out decodable too.
    let flac = process(
        &svc,
        &alice,
        &file,
        json!({"stems": ["bass"], "format": "flac", "shifts": 1}),
    )
    .await;
    let j = svc
        .wait_job(&alice, &file, &flac, |j| j["status"] == "completed")
        .await;
    assert_eq!(names(&j), ["bass.flac"]);
    let (_, d) = &stems(&svc, &alice, &j).await[0];
    assert_eq!((d.sample_rate, d.channels), (44_100, 2));
    svc.stop().await;
}

/// Two chords with a left/right difference, as 16-bit stereo WAV at `amp` peak.
fn quiet_song(rate: u32, secs: f32, amp: f32) -> Vec<u8> {
    let n = (rate as f32 * secs) as usize;
    let tone = |f: f32, i: usize| (2.0 * std::f32::consts::PI * f * i as f32 / rate as f32).sin();
    let samples: Vec<f32> = (0..n)
        .flat_map(|i| {
            let f = if i < n / 2 { 220.0 } else { 330.0 };
            let left = amp * 0.5 * (tone(f, i) + tone(2.0 * f, i));
            let right = amp * 0.5 * (tone(f, i) + tone(1.5 * f, i));
            [left, right]
        })
        .collect();
    roar_processors::audio::wav_pcm16(&samples, rate, 2)
}

fn assert_same(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let peak = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        peak < 0.98,
        "{what}: peak {peak} would be rescaled; make the input quieter"
    );
    let err = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        err < 1e-5 * peak.max(1e-3) * 10.0,
        "{what}: max difference {err}, peak {peak}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_cancels_a_running_separation() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    // A minute cut every 0.1 s (overlap 0.9), ten times over: thousands of segments, far
    // longer than the test waits.
    let long = support::melody_wav(&[(196.0, 60.0)], 44_100, 1);
    let file = svc.ready_file(&alice, "long.wav", long).await;
    let job = process(&svc, &alice, &file, json!({"shifts": 10, "overlap": 0.9})).await;
    svc.wait_job(&alice, &file, &job, |j| {
        j["progress"].as_f64().unwrap_or(0.0) > 2.0
    })
    .await;
    let (code, body) = svc
        .post_json(&alice, &format!("/jobs/{job}/cancel"), &json!({}))
        .await;
    assert!(code == 200 || code == 202, "{code} {body:#}");
    let j = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "canceled")
        .await;
    assert!(j["progress"].as_f64().unwrap() < 100.0, "{j:#}");
    assert_eq!(j["outputs"], json!([]));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stem_the_variation_lacks_fails_the_job_permanently() {
    let (_infra, svc, _models) = start().await;
    let alice = svc.token("alice", &[]);
    let song = support::melody_wav(&[(440.0, 1.0)], 44_100, 2);
    let file = svc.ready_file(&alice, "a4.wav", song).await;
    // guitar is in the catalogue (htdemucs_6s) but not in the 4-source htdemucs.
    let job = process(&svc, &alice, &file, json!({"two_stems": "guitar"})).await;
    let j = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "failed")
        .await;
    assert_eq!(j["error"]["code"], "invalid_params", "{j:#}");
    assert_eq!(j["error"]["retryable"], false, "{j:#}");
    let message = j["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("guitar") && message.contains("vocals"),
        "{message}"
    );
    svc.stop().await;
}
