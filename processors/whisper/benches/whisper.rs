//! Real-time factor of roar-whisper against faster-whisper (CTranslate2) on the same CT2
//! weights, the same audio and the same thread count, side by side in one run.
//!
//! ```sh
//! scripts/whisper/fetch-weights.sh .roar/models/whisper tiny.en
//! python3 -m venv .venv-fw && .venv-fw/bin/pip install faster-whisper==1.2.1
//! FW_PYTHON=.venv-fw/bin/python RAYON_NUM_THREADS=2 cargo bench -p roar-whisper --bench whisper
//! ```
//!
//! Environment: `WHISPER_BENCH_THREADS` (default 2, also applied to candle through
//! `RAYON_NUM_THREADS` if unset), `WHISPER_BENCH_RUNS` (default 3), `FW_PYTHON` (skip
//! faster-whisper when unset), `WHISPER_BENCH_VARIATION` (default `tiny.en`),
//! `WHISPER_BENCH_PRECISIONS` (default `f32,int8`: roar's float32 and Q8_0 int8 weights, to
//! set beside faster-whisper's float32 and int8).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use roar_whisper::{Precision, TranscribeOptions, Whisper};

const PASSAGE: &[&str] = &[
    "The weather today is sunny and warm.",
    "I would like a cup of coffee, please.",
    "We are going to the park on Saturday morning.",
    "My brother plays the guitar every evening.",
    "The children are reading books in the library.",
    "Thank you very much for your help.",
    "The train leaves the station at half past nine.",
    "She opened the window and listened to the birds.",
];

/// Word error rate of `hyp` against `reference` (lower-cased words, punctuation dropped).
fn wer(reference: &str, hyp: &str) -> f32 {
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (r, h) = (words(reference), words(hyp));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f32 / r.len().max(1) as f32
}

fn speak(text: &str, dir: &std::path::Path) -> Vec<f32> {
    let wav = dir.join("s.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status();
    assert!(
        ok.map(|s| s.success()).unwrap_or(false),
        "espeak-ng is needed"
    );
    // espeak-ng writes 22.05 kHz; resample with roar-crepe's resampler.
    let b = std::fs::read(&wav).unwrap();
    let data = b.windows(4).position(|w| w == b"data").expect("data chunk") + 8;
    let s: Vec<f32> = b[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
        .collect();
    roar_crepe::resample::resample(&s, 22_050, 16_000).unwrap()
}

fn main() {
    let threads: usize = std::env::var("WHISPER_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Must be set before candle starts its thread pool.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    let runs: usize = std::env::var("WHISPER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let variation = std::env::var("WHISPER_BENCH_VARIATION").unwrap_or_else(|_| "tiny.en".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = std::env::var_os("ROAR_MODELS_DIR")
        .map(|d| PathBuf::from(d).join("whisper"))
        .unwrap_or_else(|| root.join(".roar/models/whisper"));
    let tmp = tempfile::tempdir().unwrap();
    let mut audio = Vec::new();
    let reference: Vec<&str> = PASSAGE
        .iter()
        .copied()
        .cycle()
        .take(PASSAGE.len() * 4)
        .collect();
    let reference = reference.join(" ");
    for s in PASSAGE.iter().cycle().take(PASSAGE.len() * 4) {
        audio.extend(speak(s, tmp.path()));
        audio.extend(std::iter::repeat_n(0.0, 6400));
    }
    let seconds = audio.len() as f32 / 16_000.0;
    let raw = tmp.path().join("audio.f32");
    std::fs::write(
        &raw,
        audio
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    println!("audio: {seconds:.1} s of espeak-ng speech, {threads} threads, median of {runs} runs after a warm-up");
    println!("| engine | beam | seconds | real-time factor | WER |");
    println!("| --- | ---: | ---: | ---: | ---: |");

    let precisions =
        std::env::var("WHISPER_BENCH_PRECISIONS").unwrap_or_else(|_| "f32,int8".into());
    for name in precisions.split(',').map(str::trim) {
        let precision = match name {
            "f32" => Precision::F32,
            "int8" => Precision::Int8,
            other => panic!("WHISPER_BENCH_PRECISIONS: {other:?} is neither f32 nor int8"),
        };
        let dev = candle_core::Device::Cpu;
        let w = Whisper::load_with(&models, &variation, &dev, precision).expect("weights fetched");
        for beam in [1usize, 5] {
            for words in [false, true] {
                let opts = TranscribeOptions {
                    beam_size: Some(beam),
                    word_timestamps: words,
                    ..Default::default()
                };
                let text = w.transcribe(&audio, &opts, &mut |_| true).unwrap().text;
                let mut times: Vec<f32> = (0..runs)
                    .map(|_| {
                        let t0 = Instant::now();
                        let _ = w.transcribe(&audio, &opts, &mut |_| true).unwrap();
                        t0.elapsed().as_secs_f32()
                    })
                    .collect();
                times.sort_by(f32::total_cmp);
                let med = times[times.len() / 2];
                let label = format!("roar-whisper {name}{}", if words { " + words" } else { "" });
                let e = wer(&reference, &text);
                println!(
                    "| {label} | {beam} | {med:.2} | {:.3} | {e:.3} |",
                    med / seconds
                );
            }
        }
    }
    let Some(py) = std::env::var_os("FW_PYTHON") else {
        println!("(FW_PYTHON unset: faster-whisper skipped)");
        return;
    };
    for words in [false, true] {
        let mut cmd = Command::new(py.clone());
        cmd.arg(root.join("scripts/whisper/bench_faster_whisper.py"))
            .arg(models.join(&variation))
            .arg(&raw)
            .args([
                "--threads",
                &threads.to_string(),
                "--runs",
                &runs.to_string(),
            ]);
        if words {
            // float32 CTranslate2 is slow on CPU; time word alignment on its usual int8.
            cmd.args(["--word-timestamps", "--compute-type", "int8"]);
        }
        let out = cmd.output().expect("faster-whisper bench runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let label = format!(
                "{}{}",
                v["engine"].as_str().unwrap(),
                if words { " + words" } else { "" }
            );
            let e = wer(&reference, v["text"].as_str().unwrap_or(""));
            println!(
                "| {label} | {} | {:.2} | {:.3} | {e:.3} |",
                v["beam"],
                v["seconds"].as_f64().unwrap(),
                v["rtf"].as_f64().unwrap()
            );
        }
    }
}
