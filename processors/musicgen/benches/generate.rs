//! roar-musicgen's side of the PyTorch comparison (`scripts/bench.sh` runs both): MusicGen at
//! the `musicgen-small` shape with random weights, the same fixed prompt ids as the reference
//! side, sampling with the released defaults (top-k 250, guidance 3), from the prompt ids to
//! 32 kHz audio (T5, every decoder step, EnCodec). Prints one JSON line with the wall time,
//! seconds per second of audio and the process's peak RSS.
//!
//!     cargo bench -p roar-musicgen --bench generate -- --seconds 10 --threads 2

use std::time::Instant;

use roar_musicgen::{Device, MusicGen, MusicgenConfig, Request, Sampling};

/// The prompt ids both sides condition on (any ids of t5-base's vocabulary will do).
const PROMPT_IDS: [u32; 12] = [3, 9, 3480, 7, 53, 3, 15, 9, 2491, 63, 2201, 1];

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// Peak resident set size of this process, from the kernel's high-water mark.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f32 = arg(&args, "--seconds", "10").parse().expect("--seconds");
    let threads: usize = arg(&args, "--threads", "2").parse().expect("--threads");
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");
    let model = MusicGen::random(&MusicgenConfig::small(), &Device::Cpu, 0).expect("model");
    let req = Request {
        duration_seconds: seconds,
        sampling: Sampling {
            seed: 0,
            ..Sampling::default()
        },
        ..Request::default()
    };
    let start = Instant::now();
    let out = model
        .generate_ids(Some(&PROMPT_IDS), &req, &mut |_| true)
        .expect("generate");
    let wall = start.elapsed().as_secs_f64();
    let audio_s = out.audio.len() as f64 / f64::from(out.sample_rate);
    println!(
        "{{\"impl\": \"roar-musicgen (candle 0.11)\", \"audio_s\": {audio_s:.2}, \"threads\": {threads}, \"wall_s\": {wall:.3}, \"s_per_audio_s\": {:.3}, \"peak_rss_mib\": {:.1}}}",
        wall / audio_s,
        peak_rss_mib()
    );
}
