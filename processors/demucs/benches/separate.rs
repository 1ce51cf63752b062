//! roar-demucs' side of the PyTorch comparison (see `scripts/bench.sh`, which runs both and
//! writes the table in docs/benchmarks.md): full-size HTDemucs with random weights, one
//! training segment (`--mode segment`) or a whole track through the apply loop with the
//! reference CLI's defaults (`--mode track --seconds N`: shifts 1, overlap 0.25). Prints one
//! JSON line with the wall time and the process's peak RSS.
//!
//!     cargo bench -p roar-demucs --bench separate -- --mode track --seconds 60 --threads 2
//!         [--allocator tuned|default]

use std::time::Instant;

use candle_core::{Device, Tensor};
use roar_demucs::apply::{separate, ApplyOptions};
use roar_demucs::{HTDemucs, HTDemucsConfig, SegmentModel};

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
    let mode = arg(&args, "--mode", "track");
    let seconds: f64 = arg(&args, "--seconds", "60").parse().expect("--seconds");
    let threads: usize = arg(&args, "--threads", "2").parse().expect("--threads");
    let variation = arg(&args, "--variation", "htdemucs");
    // What the demucs worker does at start-up; `--allocator default` measures glibc's defaults.
    let allocator = arg(&args, "--allocator", "tuned");
    if allocator == "tuned" {
        roar_testkit::bench::with_worker_allocator();
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");
    let cfg = match variation.as_str() {
        "htdemucs_6s" => HTDemucsConfig::htdemucs_6s(),
        _ => HTDemucsConfig::htdemucs(),
    };
    let model = HTDemucs::random(&cfg, &Device::Cpu).expect("model");
    let rate = f64::from(cfg.samplerate);
    let length = if mode == "segment" {
        cfg.segment_samples()
    } else {
        (seconds * rate) as usize
    };
    let mix = (Tensor::randn(0f32, 1.0, (2, length), &Device::Cpu).unwrap() * 0.1).unwrap();
    let start = Instant::now();
    if mode == "segment" {
        model.forward(&mix.unsqueeze(0).unwrap()).expect("forward");
    } else {
        let mix: Vec<Vec<f32>> = mix.to_vec2().unwrap();
        let models: [&dyn SegmentModel; 1] = [&model];
        let weights = vec![vec![1.0; cfg.sources.len()]];
        separate(
            &models,
            &weights,
            &mix,
            &ApplyOptions::default(),
            &mut |_, _| true,
        )
        .expect("separate");
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{{\"impl\": \"roar-demucs (candle 0.11, {allocator} allocator)\", \"mode\": \"{mode}\", \"audio_s\": {:.2}, \"threads\": {threads}, \"wall_s\": {wall:.3}, \"peak_rss_mib\": {:.1}}}",
        length as f64 / rate,
        peak_rss_mib()
    );
}
