//! candle's f32 matmul rate on the model's gemm shapes: how close the heavy layers can get to
//! the machine's peak (docs/benchmarks-demucs.md compares it with PyTorch's).
//!
//!   RAYON_NUM_THREADS=2 cargo run --release -p roar-demucs --example matmul
use std::time::Instant;

use candle_core::{Device, Tensor};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    // (batch, m, k, n, what)
    let shapes = [
        (1, 2048, 2048, 2048, "square"),
        (1, 2688, 512, 512, "transformer projection"),
        (1, 2688, 512, 2048, "feed-forward in"),
        (1, 2688, 2048, 512, "feed-forward out"),
        (8, 64, 64, 2688, "attention scores, one block"),
        (8, 64, 2688, 64, "scores @ values, one block"),
        (1, 96, 384, 43008, "frequency conv (encoder 1)"),
        (1, 768, 1152, 2688, "decoder rewrite, one tap row"),
    ];
    for (b, m, k, n, what) in shapes {
        let a = Tensor::randn(0f32, 1., (b, m, k), &dev)?;
        let x = Tensor::randn(0f32, 1., (b, k, n), &dev)?;
        a.matmul(&x)?;
        let reps = 5;
        let start = Instant::now();
        for _ in 0..reps {
            a.matmul(&x)?;
        }
        let gflops = 2.0 * (b * m * k * n * reps) as f64 / start.elapsed().as_secs_f64() / 1e9;
        println!("{what:>30} {b}x{m}x{k}x{n}: {gflops:6.1} GFLOP/s");
    }
    Ok(())
}
