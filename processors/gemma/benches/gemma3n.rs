//! Gemma 3n's text decoder at the E2B widths (hidden 2048, MLP 8192, 8 heads of 256, 2 KV heads,
//! 262k vocabulary, per-layer embeddings, AltUp, LAuReL; random init, fewer layers than E2B's 30
//! so that it fits in memory): milliseconds per decode step of roar-gemma against transformers
//! on the same weights, the same prompt, the same threads, side by side in one run. Not a test:
//! take figures only on a quiet machine.
//!
//! ```sh
//! GEMMA_BENCH_PYTHON=/path/to/python-with-torch-transformers GEMMA_BENCH_THREADS=2 \
//!   GEMMA3N_BENCH_LAYERS=4 cargo bench -p roar-gemma --bench gemma3n
//! ```
//!
//! The reference (`scripts/bench_gemma3n_reference.py`) writes the random model into
//! `GEMMA3N_BENCH_DIR` (default: a temporary directory; about 1.5 GB at 4 layers) and times
//! itself; roar then loads that directory. Without `GEMMA_BENCH_PYTHON`, `GEMMA3N_BENCH_DIR`
//! must already hold such a model (timed by roar alone). Environment: `GEMMA_BENCH_THREADS`
//! (default 2; also candle's, through `RAYON_NUM_THREADS` when that is unset),
//! `GEMMA_BENCH_RUNS` (default 3, the median is reported), `GEMMA3N_BENCH_LAYERS` (default 4),
//! `GEMMA3N_BENCH_PROMPT` (prompt tokens, default 128), `GEMMA3N_BENCH_STEPS` (decode steps,
//! default 32). Memory: transformers holds the model in float32 (about 4.5 GB at 4 layers,
//! 0.3 GB more per layer), roar likewise while both run one after the other.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use roar_gemma::gemma3n::Gemma3n;

mod common;
use common::{env_usize, median, threads, time_greedy};

/// Median prefill and per-step milliseconds, and the greedy tokens of the last run.
struct Figures {
    prefill_ms: f64,
    step_ms: f64,
    tokens: Vec<u32>,
}

/// `prompt`: the reference's, or (`None`) ids spread below the model's vision and audio ranges.
fn roar(dir: &Path, prompt: Option<Vec<u32>>, len: usize, steps: usize, runs: usize) -> Figures {
    let model = Gemma3n::load(dir, &Device::Cpu).expect("load the bench model");
    let text_ids = model.config.vision_vocab_offset.saturating_sub(3).max(1) as u32;
    let prompt =
        prompt.unwrap_or_else(|| (0..len as u32).map(|i| 3 + i * 1999 % text_ids).collect());
    let (times, tokens) = time_greedy(
        &prompt,
        steps,
        runs,
        || model.text.new_cache(),
        |ids, cache| model.forward(ids, None, cache, 1).expect("forward"),
    );
    Figures {
        prefill_ms: median(times.iter().map(|t| t.prefill_s * 1e3).collect()),
        step_ms: median(
            times
                .iter()
                .map(|t| t.decode_s * 1e3 / steps as f64)
                .collect(),
        ),
        tokens,
    }
}

/// Runs the reference, which also writes the model into `dir`; returns its figures and the
/// prompt it used.
fn reference(python: &str, dir: &Path, args: [usize; 5]) -> (Figures, Vec<u32>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_gemma3n_reference.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir)
        .args(args.map(|n| n.to_string()))
        .output()
        .expect("start the reference");
    assert!(
        out.status.success(),
        "the reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = out.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty());
    let v: serde_json::Value =
        serde_json::from_slice(line.unwrap_or_default()).expect("the reference's JSON line");
    let f = Figures {
        prefill_ms: v["prefill_ms"].as_f64().expect("prefill_ms"),
        step_ms: v["step_ms"].as_f64().expect("step_ms"),
        tokens: serde_json::from_value(v["tokens"].clone()).expect("tokens"),
    };
    let prompt = serde_json::from_value(v["prompt"].clone()).expect("prompt");
    (f, prompt)
}

fn main() {
    let threads = threads();
    let runs = env_usize("GEMMA_BENCH_RUNS", 3).max(1);
    let layers = env_usize("GEMMA3N_BENCH_LAYERS", 4).max(1);
    let prompt_len = env_usize("GEMMA3N_BENCH_PROMPT", 128).max(1);
    let steps = env_usize("GEMMA3N_BENCH_STEPS", 32).max(1);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir: PathBuf = std::env::var_os("GEMMA3N_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    println!(
        "Gemma 3n text decoder, E2B widths, {layers} layers (random init), {prompt_len} prompt \
         tokens, {steps} decode steps, {threads} threads, median of {runs}"
    );
    let (want, prompt) = match std::env::var("GEMMA_BENCH_PYTHON") {
        Ok(py) => {
            let (f, prompt) = reference(&py, &dir, [layers, threads, prompt_len, steps, runs]);
            println!(
                "{:<26} prefill {:>9.1} ms   decode step {:>8.2} ms",
                "transformers (float32)", f.prefill_ms, f.step_ms
            );
            (Some(f.tokens), Some(prompt))
        }
        Err(_) => (None, None),
    };
    let f = roar(&dir, prompt, prompt_len, steps, runs);
    let same = match &want {
        Some(w) => format!("same greedy tokens as the reference: {}", *w == f.tokens),
        None => String::new(),
    };
    println!(
        "{:<26} prefill {:>9.1} ms   decode step {:>8.2} ms   {same}",
        "roar-gemma (float32)", f.prefill_ms, f.step_ms
    );
}
