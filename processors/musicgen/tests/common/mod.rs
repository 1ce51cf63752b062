//! Shared by the integration tests: the committed fixtures and small conversions.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use roar_musicgen::model::Conditioning;
use roar_musicgen::MusicGen;

/// The prompt `scripts/gen_fixtures.py` used.
pub const PROMPT: &str = "lofi hip hop beat with mellow piano chords and vinyl crackle";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn reference() -> &'static HashMap<String, Tensor> {
    static R: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    R.get_or_init(|| {
        candle_core::safetensors::load(fixture("reference.safetensors"), &Device::Cpu)
            .expect("tests/fixtures/reference.safetensors (scripts/gen_fixtures.py)")
    })
}

pub fn load(name: &str) -> MusicGen {
    MusicGen::load(&fixture(name), name, &Device::Cpu).unwrap()
}

pub fn load_portable(name: &str) -> MusicGen {
    MusicGen::load_portable(&fixture(name), name, &Device::Cpu).unwrap()
}

pub fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

pub fn ints(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// The melody model's guided prefix (conditional row, then null row) and its length.
pub fn melody_prefix(m: &MusicGen, ids: &[u32], chroma: &[f32]) -> (Vec<f32>, usize) {
    match m.conditioning(Some(ids), Some(chroma), 2).unwrap() {
        Conditioning::Prefix { embeds, len } => (embeds, len),
        Conditioning::Cross(_) => panic!("a melody model is conditioned by a prefix"),
    }
}
