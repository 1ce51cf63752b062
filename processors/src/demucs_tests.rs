//! The runtime side of demucs with a closed-form separator (each source a fixed gain of the
//! input), so every written stem is known exactly; the network itself is tested in roar-demucs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use candle_core::Tensor;
use serde_json::json;

use super::*;
use crate::audio::{decode, Decoded};

const SOURCES: [&str; 4] = ["drums", "bass", "other", "vocals"];
const GAINS: [f32; 4] = [0.1, 0.2, 0.3, 0.4];
const RATE: u32 = 8000;

struct Gains;

impl SegmentModel for Gains {
    fn sources(&self) -> &[String] {
        static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| SOURCES.iter().map(|s| s.to_string()).collect())
    }
    fn audio_channels(&self) -> usize {
        2
    }
    fn samplerate(&self) -> u32 {
        RATE
    }
    fn segment_samples(&self) -> usize {
        RATE as usize
    }
    fn forward(&self, mix: &Tensor) -> roar_demucs::Result<Tensor> {
        let parts = GAINS
            .iter()
            .map(|g| (mix * f64::from(*g))?.unsqueeze(1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

fn input(params: serde_json::Value, channels: usize, rate: u32, secs: f32) -> Input {
    let frames = (rate as f32 * secs) as usize;
    let samples = (0..frames)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            (0..channels).map(move |c| {
                0.5 * (2.0 * std::f32::consts::PI * (220.0 + 110.0 * c as f32) * t).sin()
            })
        })
        .collect();
    Input {
        job_id: "job-1".into(),
        file_id: "file-1".into(),
        variation: "htdemucs".into(),
        params,
        audio: Decoded {
            codec: "pcm".into(),
            sample_rate: rate,
            channels,
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

fn run(input: &Input) -> Result<Vec<OutputFile>, ModelError> {
    let (mut c, _) = ctx(None);
    separate(&[&Gains], &[vec![1.0; 4]], input, &mut c)
}

/// `[channel][sample]` of a written stem.
fn read(file: &OutputFile) -> Vec<Vec<f32>> {
    let d = decode(file.bytes.clone(), Some("wav"), 60.0).unwrap();
    assert_eq!(d.sample_rate, RATE);
    (0..d.channels)
        .map(|c| {
            d.samples
                .iter()
                .skip(c)
                .step_by(d.channels)
                .cloned()
                .collect()
        })
        .collect()
}

/// What a gain-`g` source must be: `g * (x - mean) + mean`, the mean of the channel average
/// being restored after separation.
fn expected(x: &[Vec<f32>], g: f32) -> Vec<Vec<f32>> {
    let n = x[0].len();
    let mean = (0..n)
        .map(|i| x.iter().map(|c| c[i]).sum::<f32>() / x.len() as f32)
        .sum::<f32>()
        / n as f32;
    x.iter()
        .map(|c| c.iter().map(|v| g * (v - mean) + mean).collect())
        .collect()
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len(), "channels");
    for (c, (x, y)) in a.iter().zip(b).enumerate() {
        roar_testkit::assert_close(&format!("channel {c}"), x, y, 1e-4);
    }
}

#[test]
fn every_stem_is_written_and_exact() {
    let job = input(json!({"format": "float32", "shifts": 2}), 2, RATE, 2.5);
    let out = run(&job).unwrap();
    let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["drums.wav", "bass.wav", "other.wav", "vocals.wav"]);
    let x = to_channels(&job.audio.samples, 2, 2).unwrap();
    for (f, g) in out.iter().zip(GAINS) {
        assert_eq!(
            (f.kind.as_str(), f.content_type.as_str()),
            ("stem", "audio/wav")
        );
        assert_close(&read(f), &expected(&x, g));
    }
}

#[test]
fn two_stems_writes_the_stem_and_the_sum_of_the_rest() {
    let job = input(
        json!({"two_stems": "vocals", "format": "float32"}),
        2,
        RATE,
        1.5,
    );
    let out = run(&job).unwrap();
    let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["vocals.wav", "no_vocals.wav"]);
    let x = to_channels(&job.audio.samples, 2, 2).unwrap();
    assert_close(&read(&out[0]), &expected(&x, 0.4));
    let others: Vec<Vec<Vec<f32>>> = GAINS[..3].iter().map(|g| expected(&x, *g)).collect();
    let rest: Vec<Vec<f32>> = (0..2)
        .map(|c| {
            (0..x[0].len())
                .map(|i| others.iter().map(|o| o[c][i]).sum())
                .collect()
        })
        .collect();
    assert_close(&read(&out[1]), &rest);
}

#[test]
fn mono_uploads_are_resampled_and_doubled() {
    // 16 kHz mono → the model's 8 kHz stereo; both channels identical.
    let job = input(
        json!({"stems": ["bass"], "format": "flac"}),
        1,
        2 * RATE,
        1.0,
    );
    let out = run(&job).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "bass.flac");
    let d = decode(out[0].bytes.clone(), Some("flac"), 60.0).unwrap();
    assert_eq!((d.sample_rate, d.channels), (RATE, 2));
    assert!(
        (d.frames() as i64 - RATE as i64).abs() <= 1,
        "{}",
        d.frames()
    );
    assert!(d.samples.chunks(2).all(|f| f[0] == f[1]));
    let peak = d.samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!((peak - 0.2 * 0.5).abs() < 0.01, "peak {peak}");
}

#[test]
fn channels_follow_the_reference_conversion() {
    let three = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    assert_eq!(
        to_channels(&three, 3, 2).unwrap(),
        vec![vec![1.0, 4.0], vec![2.0, 5.0]]
    );
    assert_eq!(
        to_channels(&[1.0, 2.0], 1, 2).unwrap(),
        vec![vec![1.0, 2.0]; 2]
    );
    assert_eq!(to_channels(&[1.0, 3.0], 2, 1).unwrap(), vec![vec![2.0]]);
    assert!(to_channels(&[1.0, 2.0], 2, 3).is_err());
}

#[test]
fn progress_climbs_and_cancel_stops_between_segments() {
    let job = input(json!({"shifts": 0, "overlap": 0.5}), 2, RATE, 5.0);
    let (mut c, seen) = ctx(None);
    separate(&[&Gains], &[vec![1.0; 4]], &job, &mut c).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    // 5 s in 1 s segments with stride 0.5 s: ten segments between 2 % and 95 %.
    let separating = seen.iter().filter(|p| (2.0..=95.0).contains(*p)).count();
    assert!(separating >= 10, "{seen:?}");

    let (mut c, seen) = ctx(Some(4));
    let err = separate(&[&Gains], &[vec![1.0; 4]], &job, &mut c);
    assert_eq!(err.unwrap_err(), ModelError::Canceled);
    assert!(seen.lock().unwrap().len() < 8);
}

#[test]
fn params_resolve_against_the_variation() {
    let names: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
    let p = params(&json!({}), &names, "a").unwrap();
    assert_eq!(p.stems, vec![0, 1, 2, 3]);
    assert_eq!(
        (p.format, p.clip, p.two_stems),
        (Format::Wav16, Clip::Rescale, None)
    );
    assert_eq!(
        (p.apply.shifts, p.apply.overlap, p.apply.segment),
        (1, 0.25, None)
    );
    assert_eq!(
        p.apply.seed,
        params(&json!({}), &names, "a").unwrap().apply.seed
    );
    assert_ne!(
        p.apply.seed,
        params(&json!({}), &names, "b").unwrap().apply.seed
    );

    let p = params(
        &json!({"stems": ["vocals", "drums"], "format": "mp3", "mp3_bitrate": 128,
                "shifts": 3, "overlap": 0.5, "segment": 4.5, "clip": "clamp"}),
        &names,
        "a",
    )
    .unwrap();
    assert_eq!(p.stems, vec![0, 3]);
    assert_eq!(p.format, Format::Mp3 { kbps: 128 });
    assert_eq!(
        (p.apply.shifts, p.apply.overlap, p.apply.segment),
        (3, 0.5, Some(4.5))
    );
    assert_eq!(p.clip, Clip::Clamp);

    for bad in [
        json!({"stems": ["guitar"]}),
        json!({"two_stems": "piano"}),
        json!({"two_stems": "vocals", "stems": ["bass"]}),
        json!({"format": "ogg"}),
        json!({"clip": "tanh"}),
    ] {
        match params(&bad, &names, "a") {
            Err(ModelError::Failed {
                code,
                retryable,
                message,
            }) => {
                assert_eq!(
                    (code.as_str(), retryable),
                    ("invalid_params", false),
                    "{message}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let Err(ModelError::Failed { message, .. }) =
        params(&json!({"stems": ["guitar"]}), &names, "a")
    else {
        unreachable!()
    };
    assert!(message.contains("drums, bass, other, vocals"), "{message}");
}

#[test]
fn variations_come_from_the_weights_present() {
    let dir = tempfile::tempdir().unwrap();
    let e = Demucs::new(dir.path()).err().unwrap().to_string();
    assert!(e.contains("demucs/htdemucs/model.safetensors"), "{e}");

    std::fs::create_dir_all(dir.path().join("demucs/htdemucs_ft")).unwrap();
    std::fs::write(dir.path().join("demucs/htdemucs_ft/bag.json"), "{}").unwrap();
    let m = Demucs::new(dir.path()).unwrap();
    assert_eq!(m.variations(), vec!["htdemucs_ft".to_string()]);
    match m.separator("htdemucs") {
        Err(ModelError::Failed { code, .. }) => assert_eq!(code, "unknown_variation"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("htdemucs has no weights here"),
    }
}
