//! Runs each model worker on one device through the same `Model::run` a `roar processor
//! <model>` runs, and prints one JSON line per model: the device it ran on, the first run's
//! seconds (weights load + run), the second run's seconds, the audio's length and what it
//! wrote. `scripts/gpu-check.sh` runs it on a GPU machine; it runs on the CPU as well. Not a
//! test: take figures only on a quiet machine.
//!
//! ```sh
//! cargo run --release --features cuda -p roar-processors --example gpu_check -- \
//!     --device cuda:0 --models-dir .roar/models \
//!     --audio processors/whisper/tests/fixtures/whisper/english.flac
//! ```
//!
//! Options: `--device` (a `processor.device` value, default `auto`), `--models-dir` (default
//! `.roar/models`), `--audio` (any file the workers decode; default 30 s of two tones),
//! `--models` (comma-separated, default every model whose weights are there),
//! `--musicgen-seconds` (generated length, default 5). Exits non-zero when a model present
//! fails or the device does not open.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use roar_common::device::DeviceSpec;
use roar_processors::audio::{self, Decoded};
use roar_processors::runtime::{Input, Model, RunContext};
use roar_processors::{demucs, device, gemma3n, musicgen, pitch, whisper};
use serde_json::{json, Value};

struct Options {
    device: DeviceSpec,
    models_dir: PathBuf,
    audio: Option<PathBuf>,
    models: Vec<String>,
    musicgen_seconds: f64,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        device: DeviceSpec::Auto,
        models_dir: PathBuf::from(".roar/models"),
        audio: None,
        models: ["pitch", "whisper", "demucs", "musicgen", "gemma3n"]
            .map(String::from)
            .to_vec(),
        musicgen_seconds: 5.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--device" => o.device = value.parse().map_err(|e| format!("{e}"))?,
            "--models-dir" => o.models_dir = value.into(),
            "--audio" => o.audio = Some(value.into()),
            "--models" => o.models = value.split(',').map(str::to_string).collect(),
            "--musicgen-seconds" => {
                o.musicgen_seconds = value.parse().map_err(|_| format!("bad {flag} {value}"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

/// Two tones, stereo, 44.1 kHz: enough for every model to run (Whisper hears nothing).
fn tones(seconds: f64) -> Decoded {
    let rate = 44_100u32;
    let samples = (0..(seconds * rate as f64) as usize)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            [
                0.4 * (std::f32::consts::TAU * 220.0 * t).sin(),
                0.3 * (std::f32::consts::TAU * 330.0 * t).sin(),
            ]
        })
        .collect();
    Decoded {
        codec: "pcm".into(),
        sample_rate: rate,
        channels: 2,
        samples,
    }
}

/// The worker for `name` on `device`, or why it is not here (weights missing).
fn worker(name: &str, o: &Options, dev: &candle_core::Device) -> Result<Box<dyn Model>, String> {
    let dir = &o.models_dir;
    let d = dev.clone();
    Ok(match name {
        "pitch" => Box::new(pitch::Pitch::new(dir).map_err(|e| e.to_string())?.on(d)),
        "whisper" => Box::new(
            whisper::WhisperModel::new(dir)
                .map_err(|e| e.to_string())?
                .on(d),
        ),
        "demucs" => Box::new(demucs::Demucs::new(dir).map_err(|e| e.to_string())?.on(d)),
        "musicgen" => Box::new(
            musicgen::Musicgen::new(dir)
                .map_err(|e| e.to_string())?
                .on(d),
        ),
        "gemma3n" => Box::new(gemma3n::Lyrics::new(dir).map_err(|e| e.to_string())?.on(d)),
        other => return Err(format!("unknown model {other:?}")),
    })
}

fn params(name: &str, o: &Options) -> Value {
    match name {
        "musicgen" => json!({"prompt": "upbeat drums and bass", "duration": o.musicgen_seconds}),
        _ => json!({}),
    }
}

/// Runs `model` once on `audio`; seconds taken and the outputs' names and sizes.
fn run_once(model: &dyn Model, input: &Input) -> Result<(f64, Value), String> {
    let mut ctx = RunContext::new(Arc::new(AtomicBool::new(false)), Box::new(|_, _| {}));
    let t = Instant::now();
    let out = model.run(input, &mut ctx).map_err(|e| e.to_string())?;
    let files: Vec<Value> = out
        .iter()
        .map(|f| json!({"name": f.name, "bytes": f.bytes.len()}))
        .collect();
    Ok((t.elapsed().as_secs_f64(), Value::Array(files)))
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            return ExitCode::from(2);
        }
    };
    let dev = match device::select(o.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            return ExitCode::FAILURE;
        }
    };
    let audio = match &o.audio {
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| audio::decode(b, None, 3600.0).map_err(|e| e.to_string()))
        {
            Ok(a) => a,
            Err(e) => {
                eprintln!("gpu_check: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => tones(30.0),
    };
    let seconds = audio.duration_seconds();
    let mut failed = false;
    for name in &o.models {
        let model = match worker(name, &o, &dev) {
            Ok(m) => m,
            Err(reason) => {
                println!("{}", json!({"model": name, "skipped": reason}));
                continue;
            }
        };
        let variation = model.variations().first().cloned().unwrap_or_default();
        let input = Input {
            job_id: format!("gpu-check-{name}"),
            file_id: "gpu-check".into(),
            variation: variation.clone(),
            params: params(name, &o),
            audio: audio.clone(),
        };
        let line = run_once(&*model, &input).and_then(|(first, _)| {
            let (second, files) = run_once(&*model, &input)?;
            Ok(json!({
                "model": name, "variation": variation, "device": model.device(),
                "audio_seconds": seconds, "first_run_seconds": first,
                "second_run_seconds": second, "outputs": files,
            }))
        });
        match line {
            Ok(l) => println!("{l}"),
            Err(e) => {
                failed = true;
                println!(
                    "{}",
                    json!({"model": name, "variation": variation, "error": e})
                );
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
