//! The frontend's path through the real models, HTTP in and files out: upload → `POST /process`
//! → the model's worker (pitch: CREPE tiny; whisper: tiny.en on the CTranslate2 weights) →
//! `/status` with outputs and download links; `GET /models` shows the live workers; an owner's
//! cancel stops a running job.

use serde_json::{json, Value};

use crate::support::{self, Infra, Services};

/// `text` spoken by espeak-ng as a WAV file (22.05 kHz mono, 16-bit).
fn speech_wav(text: &str) -> Vec<u8> {
    support::espeak_wav(text, 150)
}

fn output<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no {name} in {job:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pitch_and_whisper_run_from_http_and_their_outputs_download() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);

    // Both workers announce themselves.
    let mut live = Vec::new();
    for _ in 0..100 {
        let (code, models) = svc.get_json(&alice, "/models").await;
        assert_eq!(code, 200);
        live = models
            .to_string()
            .matches("\"live\":true")
            .map(str::to_string)
            .collect();
        if live.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(live.len() >= 2, "pitch and whisper live");

    let sentence = "the quick brown fox jumps over the lazy dog";
    let speech = svc
        .ready_file(&alice, "fox.wav", speech_wav(sentence))
        .await;
    let melody = support::melody_wav(&[(440.0, 0.5), (0.0, 0.2), (587.33, 0.5)], 44_100, 2);
    let song = svc.ready_file(&alice, "melody.wav", melody).await;

    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": speech, "model": "whisper"}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    assert_eq!(body["status"], "queued");
    let whisper_job = body["job_id"].as_str().unwrap().to_string();
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": song, "model": "pitch", "params": {"hop_ms": 5}}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    let pitch_job = body["job_id"].as_str().unwrap().to_string();

    let j = svc
        .wait_job(&alice, &song, &pitch_job, |j| j["status"] == "completed")
        .await;
    let notes: Value =
        serde_json::from_slice(&svc.download(&alice, output(&j, "notes.json")).await).unwrap();
    let midi: Vec<u64> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["midi"].as_u64().unwrap())
        .collect();
    assert_eq!(midi, [69, 74], "{notes:#}");

    let j = svc
        .wait_job(&alice, &speech, &whisper_job, |j| {
            j["status"] == "completed"
        })
        .await;
    assert_eq!(j["outputs"].as_array().unwrap().len(), 5, "{j:#}");
    let text =
        String::from_utf8(svc.download(&alice, output(&j, "transcription.txt")).await).unwrap();
    let text = text.to_lowercase();
    // Accuracy (WER on espeak-ng speech) is proven in roar-whisper's own tests; here the words
    // only have to come through the pipeline recognisably.
    let heard = ["quick", "brown", "fox", "lazy", "dog"]
        .iter()
        .filter(|w| text.contains(*w))
        .count();
    assert!(heard >= 3, "transcript: {text:?}");
    let srt = String::from_utf8(svc.download(&alice, output(&j, "transcript.srt")).await).unwrap();
    assert!(srt.starts_with("1\n") && srt.contains(" --> "), "{srt}");
    let vtt = String::from_utf8(svc.download(&alice, output(&j, "transcript.vtt")).await).unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    let segments: Value =
        serde_json::from_slice(&svc.download(&alice, output(&j, "segments.json")).await).unwrap();
    assert_eq!(segments["language"], "en");
    let words: Vec<&Value> = segments["segments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["words"].as_array().unwrap())
        .collect();
    assert!(words.len() >= 7, "{segments:#}");
    let mut last = 0.0;
    for w in &words {
        let (s, e) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
        assert!(
            s >= last - 1e-3 && e >= s,
            "word times run forward: {words:?}"
        );
        last = s;
    }

    // Asking again is answered from the finished job.
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": speech, "model": "whisper"}),
        )
        .await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("skipped")),
        "{body:#}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_cancels_a_running_pitch_job_over_http() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let long = support::melody_wav(&[(330.0, 120.0)], 16_000, 1);
    let file = svc.ready_file(&alice, "long.wav", long).await;
    let (code, body) = svc
        .post_json(&alice, "/process", &json!({"file_id": file, "model": "pitch", "variation": "tiny", "params": {"hop_ms": 1}}))
        .await;
    assert_eq!(code, 202, "{body:#}");
    let job = body["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &job, |j| {
        j["progress"].as_f64().unwrap_or(0.0) > 2.0
    })
    .await;
    // Someone else's job is not there for them.
    let (code, _) = svc
        .post_json(&bob, &format!("/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 404);
    let (code, body) = svc
        .post_json(&alice, &format!("/jobs/{job}/cancel"), &json!({}))
        .await;
    assert!(code == 200 || code == 202, "{code} {body:#}");
    let j = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "canceled")
        .await;
    assert!(j["progress"].as_f64().unwrap() < 100.0);
    svc.stop().await;
}
