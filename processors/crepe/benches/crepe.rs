//! Throughput of roar-crepe on the CPU: frames per second through framing +
//! network (`track_activations`) for the tiny and full models at a few batch
//! sizes, and the whole `track` (with decoding) at the default batch size.
//! First, the time of each `analysis` function on 60 s of synthetic music
//! (no weights needed; `CREPE_BENCH_ANALYSIS_ONLY=1` stops after it).
//!
//! cargo bench -p roar-crepe --bench crepe
//!
//! Weights come from `$ROAR_MODELS_DIR/crepe` or `<repo>/.roar/models/crepe`.
//! Threads: `RAYON_NUM_THREADS` (default: all cores). Frames per run:
//! `CREPE_BENCH_FRAMES_TINY` / `CREPE_BENCH_FRAMES_FULL` (1000 / 200).
//! The input is the same as scripts/crepe/bench_torchcrepe.py uses: a
//! 220 -> 880 Hz exponential glide at 16 kHz, hop 160.

use std::path::Path;
use std::time::Instant;

use roar_crepe::analysis::{
    estimate_key, estimate_tempo, f0_csv, f0_json, midi_file, segment_notes, NoteOptions,
};
use roar_crepe::{Capacity, Crepe, Device, PitchTrack, TrackOptions};

const REPS: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Audio giving exactly `frames` frames at hop 160 with padding.
fn glide(frames: usize) -> Vec<f32> {
    let n = (frames - 1) * 160;
    let secs = n as f64 / 16_000.0;
    let (f0, f1) = (220.0f64, 880.0f64);
    let k = (f1 / f0).ln() / secs;
    (0..n)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            let phase = 2.0 * std::f64::consts::PI * f0 * ((k * t).exp() - 1.0) / k;
            (0.5 * phase.sin()) as f32
        })
        .collect()
}

/// Median seconds of `REPS` timed runs after one warm-up.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..REPS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[REPS / 2]
}

fn bench(capacity: Capacity, frames: usize, batches: &[usize], dir: &Path) {
    let crepe = match Crepe::load(dir, capacity, &Device::Cpu) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{capacity}: {e}");
            std::process::exit(1);
        }
    };
    let audio = glide(frames);
    // One pass at the largest batch first: glibc raises its mmap threshold
    // once large blocks are freed, after which big buffers are reused rather
    // than mapped afresh (page faults). Every figure below is taken in that
    // steady state, as a long-running service would see it.
    let largest = TrackOptions {
        batch_size: batches.iter().copied().max(),
        ..TrackOptions::default()
    };
    crepe
        .track_activations(&audio, &largest, &mut |_| true)
        .unwrap();
    for &batch in batches {
        let opts = TrackOptions {
            batch_size: Some(batch),
            ..TrackOptions::default()
        };
        let s = time(|| {
            let a = crepe
                .track_activations(&audio, &opts, &mut |_| true)
                .unwrap();
            assert_eq!(a.len(), frames * 360);
        });
        println!(
            "{capacity:<5} activations  batch {batch:>4}: {frames} frames in {s:.3} s = {:.1} frames/s",
            frames as f64 / s
        );
    }
    let opts = TrackOptions::default();
    let s = time(|| {
        let t = crepe.track(&audio, &opts, &mut |_| true).unwrap();
        assert_eq!(t.len(), frames);
    });
    println!(
        "{capacity:<5} track (NormalizedViterbi, batch {}): {frames} frames in {s:.3} s = {:.1} frames/s, {:.1}x real time",
        crepe.default_batch_size(),
        frames as f64 / s,
        (frames as f64 * 0.01) / s
    );
}

/// 60 s of music at 16 kHz and a matching pitch track: a melody of harmonic
/// tones (0.25-0.5 s notes, vibrato) over clicks on the beat at 100 BPM.
fn music() -> (Vec<f32>, PitchTrack) {
    const SR: f64 = 16_000.0;
    let seconds = 60.0;
    let n = (seconds * SR) as usize;
    let scale = [60.0, 62.0, 64.0, 65.0, 67.0, 69.0, 71.0, 72.0];
    let note_at = |t: f64| {
        let i = (t / 0.3) as usize;
        scale[(i * 5 + i / 3) % scale.len()] + 0.3 * (2.0 * std::f64::consts::PI * 5.5 * t).sin()
    };
    let mut phase = 0.0f64;
    let mut audio: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / SR;
            phase += 2.0 * std::f64::consts::PI * 440.0 * ((note_at(t) - 69.0) / 12.0).exp2() / SR;
            let v: f64 = (1..=5).map(|k| (k as f64 * phase).sin() / k as f64).sum();
            (0.2 * v) as f32
        })
        .collect();
    let beat = 0.6;
    for b in 0..(seconds / beat) as usize {
        let s0 = (b as f64 * beat * SR) as usize;
        for i in 0..320.min(n - s0) {
            let x = i as f64 / SR;
            audio[s0 + i] +=
                (0.5 * (-x / 0.005).exp() * (2.0 * std::f64::consts::PI * 2000.0 * x).sin()) as f32;
        }
    }
    let frames = (seconds * 100.0) as usize;
    let times: Vec<f64> = (0..frames).map(|i| i as f64 * 0.01).collect();
    let track = PitchTrack {
        sample_rate: 16_000,
        hop_length: 160,
        f0_hz: times
            .iter()
            .map(|&t| (440.0 * ((note_at(t) - 69.0) / 12.0).exp2()) as f32)
            .collect(),
        confidence: vec![0.9; frames],
        voiced: times.iter().map(|t| t % 0.3 > 0.02).collect(),
        times,
    };
    (audio, track)
}

fn bench_analysis() {
    let (audio, track) = music();
    let opts = NoteOptions::default();
    let notes = segment_notes(&track, Some(&audio), &opts);
    let row = |what: &str, s: f64| {
        println!(
            "analysis {what:<28} on 60 s: {:>8.3} ms ({:.0}x real time)",
            s * 1e3,
            60.0 / s
        )
    };
    row(
        "segment_notes (with audio)",
        time(|| assert!(!segment_notes(&track, Some(&audio), &opts).is_empty())),
    );
    row(
        "segment_notes (track only)",
        time(|| assert!(!segment_notes(&track, None, &opts).is_empty())),
    );
    row(
        "midi_file",
        time(|| assert!(midi_file(&notes, 100.0).len() > 22)),
    );
    row(
        "estimate_key",
        time(|| assert!(estimate_key(&audio).is_some())),
    );
    row(
        "estimate_tempo",
        time(|| assert!(estimate_tempo(&audio).is_some())),
    );
    row("f0_csv", time(|| assert!(f0_csv(&track).len() > 100)));
    row(
        "f0_json",
        time(|| assert!(f0_json(&track)["frames"].is_array())),
    );
    println!(
        "analysis result: {} notes, key {:?}, tempo {:?} BPM",
        notes.len(),
        estimate_key(&audio).map(|k| k.name),
        estimate_tempo(&audio).map(|t| (t.bpm * 10.0).round() / 10.0)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let dir = roar_crepe::weights::weights_dir_from_env().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(".roar/models/crepe")
    });
    bench_analysis();
    if std::env::var("CREPE_BENCH_ANALYSIS_ONLY").as_deref() == Ok("1") {
        return;
    }
    println!(
        "roar-crepe CPU bench: {} threads, weights in {}",
        candle_core::utils::get_num_threads(),
        dir.display()
    );
    bench(
        Capacity::Tiny,
        env_usize("CREPE_BENCH_FRAMES_TINY", 1000),
        &[16, 64, 256],
        &dir,
    );
    bench(
        Capacity::Full,
        env_usize("CREPE_BENCH_FRAMES_FULL", 200),
        &[8, 32, 64],
        &dir,
    );
}
