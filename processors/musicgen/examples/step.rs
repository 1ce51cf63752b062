//! Times decoder steps at the musicgen-small shape with random weights (two guided rows,
//! cross-attention over 12 text states) and the effective rate at which the step reads its
//! weights, against one plain pass over the same bytes. A development aid for the kernels;
//! the benchmark to quote is `scripts/bench.sh`.
//!
//!     cargo run --release -p roar-musicgen --example step -- [steps]

use std::time::Instant;

use roar_musicgen::decoder::CrossStates;
use roar_musicgen::{Device, MusicGen, MusicgenConfig};

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let cfg = MusicgenConfig::small();
    let m = MusicGen::random(&cfg, &Device::Cpu, 0).expect("model");
    let d = cfg.decoder.hidden_size;
    let dec = m.decoder();
    let cross = CrossStates {
        states: vec![0.1; 12 * d],
        len: 12,
        rows: vec![true, false],
    };
    let mut s = dec.start(2, steps + 1, Some(&cross)).expect("session");
    let tokens = vec![5u32; 2 * cfg.decoder.num_codebooks];
    let x = dec.embed(&tokens, 2, 1).unwrap();
    dec.forward(&mut s, &x, 1, false).unwrap();
    let start = Instant::now();
    for _ in 0..steps {
        dec.forward(&mut s, &x, 1, false).unwrap();
    }
    let per = start.elapsed().as_secs_f64() / steps as f64;
    let layer = 4 * d * d + 2 * d * d + 2 * d * cfg.decoder.ffn_dim;
    let bytes = 4.0 * (cfg.decoder.num_hidden_layers * layer + 4 * 2048 * d) as f64;
    let probe = vec![1.0f32; (bytes / 4.0) as usize];
    let t = Instant::now();
    let sum: f32 = probe.iter().sum();
    let stream = t.elapsed().as_secs_f64();
    println!(
        "step {:.1} ms, weights {:.2} GB -> {:.1} GB/s; one serial pass over the same bytes {:.1} GB/s ({sum})",
        per * 1e3,
        bytes / 1e9,
        bytes / per / 1e9,
        bytes / stream / 1e9
    );
}
