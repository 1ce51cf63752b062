//! The released configurations (`htdemucs`, `htdemucs_6s`; `htdemucs_ft` members share
//! `htdemucs`' shapes) load a random state dict with exactly the reference's tensor names and
//! shapes (`tests/fixtures/shapes.json`, from the reference) and separate a segment. The loader
//! must use every tensor and ask for no other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use roar_demucs::{HTDemucs, HTDemucsConfig};
use serde_json::Value;

/// Random tensors of the reference's shapes, remembering which ones were asked for.
struct Recording {
    tensors: HashMap<String, Tensor>,
    used: Arc<Mutex<HashSet<String>>>,
}

impl SimpleBackend for Recording {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            })?;
        if t.shape() != &s {
            candle_core::bail!("{name}: reference shape {:?}, asked for {:?}", t.shape(), s);
        }
        self.used.lock().unwrap().insert(name.to_string());
        t.to_dtype(dtype)?.to_device(dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.tensors[name].to_dtype(dtype)?.to_device(dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

fn run(variation: &str, cfg: HTDemucsConfig) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/shapes.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let spec = &all[variation]["tensors"];
    let dev = Device::Cpu;
    let tensors: HashMap<String, Tensor> = spec
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let shape: Vec<usize> = serde_json::from_value(v.clone()).unwrap();
            (
                k.clone(),
                (Tensor::randn(0f32, 1.0, shape, &dev).unwrap() * 0.05).unwrap(),
            )
        })
        .collect();
    let used = Arc::new(Mutex::new(HashSet::new()));
    let backend = Recording {
        tensors: tensors.clone(),
        used: used.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, dev.clone());
    let model = HTDemucs::load(vb, &cfg).unwrap();
    let unused: Vec<_> = tensors
        .keys()
        .filter(|k| !used.lock().unwrap().contains(*k))
        .collect();
    assert!(
        unused.is_empty(),
        "{variation}: the loader ignored {unused:?}"
    );
    // A short input exercises the pad-to-segment path at full size.
    let mix = Tensor::randn(0f32, 0.1, (1, 2, 44_100), &dev).unwrap();
    let out = model.forward(&mix).unwrap();
    assert_eq!(out.dims(), &[1, cfg.sources.len(), 2, 44_100]);
    let values = roar_testkit::tensor::values(variation, &out);
    roar_testkit::assert_finite(variation, &values);
}

#[test]
fn htdemucs_full_size_loads_reference_shapes_and_runs() {
    run("htdemucs", HTDemucsConfig::htdemucs());
}

#[test]
fn htdemucs_6s_full_size_loads_reference_shapes_and_runs() {
    run("htdemucs_6s", HTDemucsConfig::htdemucs_6s());
}
