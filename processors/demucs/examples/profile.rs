//! Times one full-size htdemucs forward pass with random weights, stage by stage.
use std::time::Instant;

use candle_core::{Device, Tensor};
use roar_demucs::{HTDemucs, HTDemucsConfig};

fn main() {
    // As the worker runs it; ROAR_DEMUCS_DEFAULT_ALLOC=1 keeps glibc's defaults for comparison.
    if std::env::var_os("ROAR_DEMUCS_DEFAULT_ALLOC").is_none() {
        roar_testkit::bench::with_worker_allocator();
    }
    let cfg = HTDemucsConfig::htdemucs();
    let model = HTDemucs::random(&cfg, &Device::Cpu).unwrap();
    let mix = (Tensor::randn(0f32, 1.0, (1, 2, cfg.segment_samples()), &Device::Cpu).unwrap()
        * 0.1)
        .unwrap();
    model.forward(&mix).unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    model
        .forward_traced(&mix, &mut |name, _| {
            eprintln!("{name:>16} {:>8.1} ms", last.elapsed().as_secs_f64() * 1e3);
            last = Instant::now();
        })
        .unwrap();
    eprintln!(
        "{:>16} {:>8.1} ms",
        "rest",
        last.elapsed().as_secs_f64() * 1e3
    );
    eprintln!("total {:.3} s", start.elapsed().as_secs_f64());
}
