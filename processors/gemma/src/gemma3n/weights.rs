//! Named tensors from the Hugging Face safetensors shards, converted to float32 on use (the
//! large embedding tables can stay in their stored type; rows are converted when gathered).

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{GemmaError, Result};

pub struct Weights {
    st: MmapedSafetensors,
    device: Device,
}

impl Weights {
    /// Maps `model.safetensors`, or every shard `model.safetensors.index.json` names.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let paths = shard_paths(dir)?;
        // Safety: the files are mapped read-only; like every mmap user we rely on nobody
        // truncating them while the model is loaded.
        let st = unsafe { MmapedSafetensors::multi(&paths) }
            .map_err(|e| GemmaError::InvalidModel(format!("{}: {e}", dir.display())))?;
        Ok(Self {
            st,
            device: device.clone(),
        })
    }

    /// `name` as stored (dtype unchanged), on the device.
    pub fn raw(&self, name: &str) -> Result<Tensor> {
        self.st
            .load(name, &self.device)
            .map_err(|e| GemmaError::InvalidModel(format!("tensor {name}: {e}")))
    }

    /// `name` as float32.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        Ok(self.raw(name)?.to_dtype(DType::F32)?)
    }

    /// `name` as float32, checked to have `shape`.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.dims() != shape {
            return Err(GemmaError::InvalidModel(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                t.dims()
            )));
        }
        Ok(t)
    }

    pub fn has(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }
}

/// The safetensors files of a model directory.
pub fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| GemmaError::WeightsMissing {
        path: single.clone(),
        hint: "a Hugging Face model directory with model.safetensors or its index".into(),
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| GemmaError::InvalidModel(format!("{}: {e}", index.display())))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            GemmaError::InvalidModel(format!("{} has no weight_map", index.display()))
        })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            if f.contains(['/', '\\']) || f.starts_with('.') {
                return Err(GemmaError::InvalidModel(format!("shard name {f:?}")));
            }
            let p = dir.join(&f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(GemmaError::WeightsMissing {
                    path: p,
                    hint: "a shard named in model.safetensors.index.json".into(),
                })
            }
        })
        .collect()
}
