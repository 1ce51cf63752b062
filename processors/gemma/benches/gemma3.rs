//! Tokens per second of Gemma 3 270M: roar-gemma (quantised and dequantised paths) against
//! transformers on the same GGUF (dequantised to float32), the same prompt, the same threads,
//! side by side in one run. Not a test: take figures only on a quiet machine.
//!
//! ```sh
//! scripts/gemma/fetch-weights.sh .roar/models/gemma gemma3-270m
//! GEMMA_BENCH_PYTHON=/path/to/python-with-torch-transformers-gguf \
//!   GEMMA_BENCH_THREADS=2 cargo bench -p roar-gemma --bench gemma3
//! ```
//!
//! Environment: `GEMMA_BENCH_THREADS` (default 2; also candle's, through `RAYON_NUM_THREADS`
//! when that is unset), `GEMMA_BENCH_RUNS` (default 3, the median is reported),
//! `GEMMA_BENCH_TOKENS` (new tokens, default 64), `GEMMA_BENCH_PYTHON` (the reference is skipped
//! when unset), `ROAR_MODELS_DIR` (default `<repo>/.roar/models`).
//!
//! Prefill: the lyric-cleaning prompt in one forward pass. Decode: one token per forward pass
//! through the KV cache, greedy. Each line also says whether the greedy tokens equal the
//! reference's (the dequantised path should; the quantised one may drift).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use candle_core::Device;
use roar_gemma::gemma3::{Gemma3, Precision};
use roar_gemma::lyrics::clean;

mod common;
use common::{env_usize, median, threads, time_greedy};

const TRANSCRIPT: &str = "i been walking down this empty road tonight with the city lights \
    behind me and the radio low oh i keep on running running till the morning comes \
    and i wont look back no i wont look back";

struct Figures {
    prefill_tok_s: f64,
    decode_tok_s: f64,
    tokens: Vec<u32>,
}

fn roar(path: &Path, precision: Precision, prompt: &[u32], new: usize, runs: usize) -> Figures {
    let (model, _) = Gemma3::load(path, precision, &Device::Cpu).expect("load the model");
    let (times, tokens) = time_greedy(
        prompt,
        new,
        runs,
        || model.new_cache(),
        |ids, cache| model.forward(ids, cache, 1).expect("forward"),
    );
    Figures {
        prefill_tok_s: median(
            times
                .iter()
                .map(|t| prompt.len() as f64 / t.prefill_s)
                .collect(),
        ),
        decode_tok_s: median(times.iter().map(|t| new as f64 / t.decode_s).collect()),
        tokens,
    }
}

fn reference(
    python: &str,
    path: &Path,
    threads: usize,
    prompt: &[u32],
    new: usize,
    runs: usize,
) -> Figures {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_gemma3_reference.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(path)
        .args([threads, new, runs].map(|n| n.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the reference");
    let ids = serde_json::to_vec(prompt).expect("prompt as JSON");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&ids)
        .expect("send the prompt");
    let out = child.wait_with_output().expect("run the reference");
    assert!(out.status.success(), "the reference failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the reference's JSON");
    Figures {
        prefill_tok_s: v["prefill_tok_s"].as_f64().expect("prefill_tok_s"),
        decode_tok_s: v["decode_tok_s"].as_f64().expect("decode_tok_s"),
        tokens: serde_json::from_value(v["tokens"].clone()).expect("tokens"),
    }
}

fn main() {
    let threads = threads();
    let runs = env_usize("GEMMA_BENCH_RUNS", 3).max(1);
    let new = env_usize("GEMMA_BENCH_TOKENS", 64).max(1);
    let models: PathBuf = std::env::var_os("ROAR_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.roar/models"));
    let path = models.join("gemma/gemma3-270m/model.gguf");
    let (_, tok) = Gemma3::load(&path, Precision::Quantized, &Device::Cpu)
        .expect("load the model (scripts/gemma/fetch-weights.sh .roar/models/gemma)");
    let prompt = tok.encode(&clean::prompt(TRANSCRIPT), true);

    println!(
        "Gemma 3 270M Q4_K_M, {} prompt tokens, {new} new tokens, {threads} threads, median of {runs}",
        prompt.len()
    );
    let want = std::env::var("GEMMA_BENCH_PYTHON").ok().map(|py| {
        let f = reference(&py, &path, threads, &prompt, new, runs);
        println!(
            "{:<34} prefill {:>8.1} tok/s   decode {:>7.2} tok/s",
            "transformers (float32)", f.prefill_tok_s, f.decode_tok_s
        );
        f.tokens
    });
    for (name, p) in [
        ("roar-gemma dequantised (float32)", Precision::Dequantized),
        ("roar-gemma quantised (GGML)", Precision::Quantized),
    ] {
        let f = roar(&path, p, &prompt, new, runs);
        let same = match &want {
            Some(w) => format!("same tokens as the reference: {}", *w == f.tokens),
            None => String::new(),
        };
        println!(
            "{name:<34} prefill {:>8.1} tok/s   decode {:>7.2} tok/s   {same}",
            f.prefill_tok_s, f.decode_tok_s
        );
    }
}
