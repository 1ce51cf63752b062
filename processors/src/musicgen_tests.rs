//! The runtime side of musicgen with the tiny random-init model of roar-musicgen's fixtures
//! (the model itself is proven against the reference there): what a job's params and upload
//! become in the generator's request, the outputs, reproducibility and cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::audio::{decode, Decoded};

/// A models dir holding the tiny fixtures as `musicgen/small` and `musicgen/melody`.
fn models_dir() -> tempfile::TempDir {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("musicgen/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    for (fixture, variation) in [("tiny", "small"), ("tiny-melody", "melody")] {
        let dest = dir.path().join("musicgen").join(variation);
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(fixtures.join(fixture)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dest.join(f.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// A stereo upload at 44.1 kHz: two tones, so a mix-down and a resample are needed.
fn input(job_id: &str, params: Value) -> Input {
    let rate = 44_100;
    let samples = (0..rate)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            [
                0.5 * (2.0 * std::f32::consts::PI * 220.0 * t).sin(),
                0.3 * (2.0 * std::f32::consts::PI * 330.0 * t).sin(),
            ]
        })
        .collect();
    Input {
        job_id: job_id.into(),
        file_id: "file-1".into(),
        variation: "small".into(),
        params,
        audio: Decoded {
            codec: "pcm".into(),
            sample_rate: rate as u32,
            channels: 2,
            samples,
        },
    }
}

fn ctx(stop_after: Option<usize>) -> (RunContext, Arc<Mutex<Vec<f32>>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (flag, log) = (stop.clone(), seen.clone());
    let progress = Box::new(move |pct: f32, _: &str| {
        let mut log = log.lock().unwrap();
        log.push(pct);
        if stop_after.is_some_and(|n| log.len() >= n) {
            flag.store(true, Ordering::Relaxed);
        }
    });
    (RunContext::new(stop, progress), seen)
}

fn samples(file: &OutputFile) -> Vec<f32> {
    let d = decode(file.bytes.clone(), Some("wav"), 60.0).unwrap();
    assert_eq!((d.sample_rate, d.channels), (32_000, 1));
    d.samples
}

/// What the worker writes of generated audio: clip-protected as demucs' stems are.
fn clipped(audio: Vec<f32>) -> Vec<f32> {
    let mut a = vec![audio];
    Clip::default().apply(&mut a);
    a.pop().unwrap()
}

const PARAMS: fn() -> Value = || {
    json!({"prompt": "warm synth pads", "duration": 0.4, "prompt_seconds": 0.5,
           "format": "float32", "temperature": 1.0, "top_k": 20, "guidance_scale": 3.0})
};

#[test]
fn a_continuation_is_the_generator_run_on_the_uploads_mono_tail_at_its_rate() {
    let models = models_dir();
    let worker = Musicgen::new(models.path()).unwrap();
    assert_eq!(worker.variations(), ["small", "melody"]);
    let job = input("job-1", PARAMS());
    let (mut c, seen) = ctx(None);
    let out = worker.run(&job, &mut c).unwrap();
    let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["generated.wav", "generation.json"]);

    // The same request built by hand: mono mix-down, 32 kHz, the last 0.5 s, the job's seed.
    let model = worker.model("small").unwrap();
    let song = roar_crepe::resample::resample(&job.audio.mono(), 44_100, 32_000).unwrap();
    let seed = fnv1a(b"job-1");
    let req = Request {
        prompt: Some("warm synth pads".into()),
        duration_seconds: 0.4,
        continuation: Some(song[song.len() - 16_000..].to_vec()),
        sampling: Sampling {
            top_k: 20,
            seed,
            ..Sampling::default()
        },
        ..Request::default()
    };
    let want = model.generate(&req, &mut |_| true).unwrap();
    assert_eq!(want.prompt_frames, 25);
    assert_eq!(samples(&out[0]), clipped(want.audio));

    let about: Value = serde_json::from_slice(&out[1].bytes).unwrap();
    assert_eq!(about["seed"], seed);
    assert_eq!(about["prompt"], "warm synth pads");
    assert_eq!(about["prompt_seconds"], 0.5);
    assert_eq!(about["frames"], 25 + 20);
    assert_eq!(about["sampling"]["top_k"], 20);
    // Progress rises to the end of rendering.
    let seen = seen.lock().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(*seen.last().unwrap() >= 98.0, "{seen:?}");
}

#[test]
fn the_seed_comes_from_the_job_unless_given() {
    let models = models_dir();
    let worker = Musicgen::new(models.path()).unwrap();
    let run = |job: &str, params: Value| {
        let (mut c, _) = ctx(None);
        samples(&worker.run(&input(job, params), &mut c).unwrap()[0])
    };
    let a = run("job-a", PARAMS());
    assert_eq!(
        a,
        run("job-a", PARAMS()),
        "a retried job generates the same"
    );
    assert_ne!(a, run("job-b", PARAMS()), "another job samples otherwise");
    let mut seeded = PARAMS();
    seeded["seed"] = json!(7);
    assert_eq!(run("job-a", seeded.clone()), run("job-b", seeded));
}

#[test]
fn without_prompt_seconds_the_upload_is_not_continued() {
    let models = models_dir();
    let worker = Musicgen::new(models.path()).unwrap();
    let mut p = PARAMS();
    p.as_object_mut().unwrap().remove("prompt_seconds");
    let (mut c, _) = ctx(None);
    let out = worker.run(&input("job-1", p), &mut c).unwrap();
    // 0.4 s of new audio only: 20 frames of 640 samples.
    assert_eq!(samples(&out[0]).len(), 20 * 640);
    let about: Value = serde_json::from_slice(&out[1].bytes).unwrap();
    assert_eq!(about["prompt_seconds"], 0.0);
}

#[test]
fn cancel_stops_between_steps() {
    let models = models_dir();
    let worker = Musicgen::new(models.path()).unwrap();
    let (mut c, seen) = ctx(Some(4));
    let err = worker.run(&input("job-1", PARAMS()), &mut c).unwrap_err();
    assert_eq!(err, ModelError::Canceled);
    assert!(seen.lock().unwrap().len() < 10);
}

#[test]
fn missing_weights_unknown_variations_and_bad_params_are_permanent() {
    let empty = tempfile::tempdir().unwrap();
    let e = Musicgen::new(empty.path()).err().unwrap();
    assert!(e.to_string().contains("musicgen/small/config.json"), "{e}");

    let models = models_dir();
    let worker = Musicgen::new(models.path()).unwrap();
    let mut job = input("job-1", PARAMS());
    job.variation = "large".into();
    let (mut c, _) = ctx(None);
    match worker.run(&job, &mut c).unwrap_err() {
        ModelError::Failed {
            code, retryable, ..
        } => assert_eq!((code.as_str(), retryable), ("unknown_variation", false)),
        e => panic!("{e:?}"),
    }
    let mut p = PARAMS();
    p["top_p"] = json!(0.0);
    let (mut c, _) = ctx(None);
    match worker.run(&input("job-1", p), &mut c).unwrap_err() {
        ModelError::Failed {
            code,
            message,
            retryable,
        } => {
            assert_eq!((code.as_str(), retryable), ("invalid_params", false));
            assert!(message.contains("top_p"), "{message}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn the_melody_variation_follows_the_uploads_melody() {
    let models = models_dir();
    let worker = Musicgen::new(models.path()).unwrap();
    let mut job = input("job-1", PARAMS());
    job.variation = "melody".into();
    job.params.as_object_mut().unwrap().remove("prompt_seconds");
    let (mut c, _) = ctx(None);
    let out = worker.run(&job, &mut c).unwrap();

    let model = worker.model("melody").unwrap();
    let song = roar_crepe::resample::resample(&job.audio.mono(), 44_100, 32_000).unwrap();
    let req = |melody: Vec<f32>| Request {
        prompt: Some("warm synth pads".into()),
        duration_seconds: 0.4,
        melody: Some(melody),
        sampling: Sampling {
            top_k: 20,
            seed: fnv1a(b"job-1"),
            ..Sampling::default()
        },
        ..Request::default()
    };
    let want = model.generate(&req(song.clone()), &mut |_| true).unwrap();
    assert_eq!(samples(&out[0]), clipped(want.audio.clone()));
    // The melody matters: a D instead of the upload's A (its strongest pitch class) conditions
    // another piece.
    let d: Vec<f32> = (0..song.len())
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 293.66 * i as f32 / 32_000.0).sin())
        .collect();
    let other = model.generate(&req(d), &mut |_| true).unwrap();
    assert_ne!(other.audio, want.audio);
}
