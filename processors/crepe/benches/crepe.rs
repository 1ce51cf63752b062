//! Throughput of roar-crepe on the CPU: frames per second through framing +
//! network (`track_activations`) for the tiny and full models at a few batch
//! sizes, and the whole `track` (with decoding) at the default batch size.
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

use roar_crepe::{Capacity, Crepe, Device, TrackOptions};

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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let dir = roar_crepe::weights::weights_dir_from_env().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(".roar/models/crepe")
    });
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
