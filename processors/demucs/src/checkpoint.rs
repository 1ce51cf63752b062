//! Converting an official Demucs v4 checkpoint (`.th`) into roar's safetensors layout in Rust.
//!
//! A release is a `torch.save`d dict `{'klass', 'args', 'kwargs', 'state', 'training_args'}`
//! (see the reference's `demucs/states.py`): a zip whose `data.pkl` pickles the dict and whose
//! `data/<n>` entries hold the (half-precision) tensor storages. candle's pickle reader gives
//! both the tensors of `state` and the pickled objects, so the model's constructor kwargs
//! become its [`HTDemucsConfig`] directly. The pair is checked by building the model from it
//! (every tensor the model needs, with its shape) before anything is written.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, PthTensors, Stack};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::HTDemucsConfig;
use crate::model::HTDemucs;
use crate::{DemucsError, Result};

/// The state dict and inference config of one checkpoint.
pub struct Checkpoint {
    pub config: HTDemucsConfig,
    /// Tensors in float32, named as in the PyTorch state dict.
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Reads a `.th` package: checks it is an HTDemucs, takes its config from the kwargs and
    /// its tensors from `state`, and checks that the two describe one model.
    pub fn read(path: &Path) -> Result<Self> {
        let package = read_package(path)?;
        let klass = field(&package, "klass").ok_or_else(|| invalid(path, "no `klass` entry"))?;
        match klass {
            Object::Class { class_name, .. } if class_name == "HTDemucs" => {}
            Object::Class {
                module_name,
                class_name,
            } => {
                return Err(invalid(
                    path,
                    format!("{module_name}.{class_name} is not HTDemucs (Demucs v4)"),
                ))
            }
            _ => return Err(invalid(path, "`klass` is not a class")),
        }
        match field(&package, "state") {
            Some(Object::Dict(state)) => {
                if state
                    .iter()
                    .any(|(k, _)| *k == Object::Unicode("__quantized".into()))
                {
                    return Err(invalid(
                        path,
                        "quantized (diffq) checkpoints are not supported; use the float ones",
                    ));
                }
            }
            _ => return Err(invalid(path, "no `state` dict")),
        }
        let config = config_of(path, &package)?;
        let pth = PthTensors::new(path, Some("state")).map_err(|e| invalid(path, e))?;
        let mut tensors = HashMap::new();
        for name in pth.tensor_infos().keys() {
            let t = pth
                .get(name)
                .map_err(|e| invalid(path, format!("tensor {name}: {e}")))?
                .ok_or_else(|| invalid(path, format!("tensor {name} vanished")))?;
            tensors.insert(name.clone(), t.to_dtype(DType::F32)?);
        }
        let ckpt = Self { config, tensors };
        ckpt.validate().map_err(|e| invalid(path, e))?;
        Ok(ckpt)
    }

    /// Builds the model from the tensors: fails, naming the tensor, when the config and the
    /// state dict disagree (a missing tensor or a wrong shape).
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.config.validate()?;
        let vb = VarBuilder::from_tensors(self.tensors.clone(), DType::F32, &Device::Cpu);
        HTDemucs::load(vb, &self.config)
            .map(|_| ())
            .map_err(|e| format!("the state dict does not fit the config: {e}"))
    }

    /// Writes the tensors and the config (JSON in the `config` metadata entry) as
    /// `separator::load_model` reads them; through a temporary file, so a failure leaves no
    /// half-written model behind.
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let config = serde_json::to_string(&self.config)
            .map_err(|e| DemucsError::InvalidInput(e.to_string()))?;
        let metadata = HashMap::from([("config".to_string(), config)]);
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let views = names
            .iter()
            .map(|n| (n.as_str(), &self.tensors[*n]))
            .collect::<Vec<_>>();
        let tmp = part_path(path);
        safetensors::tensor::serialize_to_file(views, Some(metadata), &tmp)
            .map_err(|e| invalid(path, e))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// `<path>.part`: where a file is written before it is complete.
pub fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Checks the reference's naming rule: in `<sig>-<hex>.th`, `<hex>` starts the file's sha256.
pub fn verify_sha_prefix(path: &Path, prefix: &str) -> Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    check_digest(path, &hasher.finalize(), prefix)
}

/// Compares a computed sha256 against the expected hex prefix.
pub fn check_digest(path: &Path, digest: &[u8], prefix: &str) -> Result<()> {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if prefix.is_empty() || !hex.starts_with(&prefix.to_ascii_lowercase()) {
        return Err(invalid(
            path,
            format!("checksum mismatch: sha256 {hex} does not start with {prefix:?} (corrupt or wrong download)"),
        ));
    }
    Ok(())
}

/// The unpickled top-level dict of the package.
fn read_package(path: &Path) -> Result<Vec<(Object, Object)>> {
    let file = std::fs::File::open(path)?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        invalid(
            path,
            format!(
                "not a torch.save zip archive ({e}); a legacy-format file converts with \
             scripts/convert_demucs.py"
            ),
        )
    })?;
    let name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .ok_or_else(|| invalid(path, "no data.pkl in the archive"))?;
    let entry = zip.by_name(&name).map_err(|e| invalid(path, e))?;
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut BufReader::new(entry))
        .map_err(|e| invalid(path, format!("unpickling {name}: {e}")))?;
    match stack.finalize().map_err(|e| invalid(path, e))? {
        Object::Dict(d) => Ok(d),
        _ => Err(invalid(
            path,
            "the pickle is not a dict (not a demucs package)",
        )),
    }
}

fn field<'a>(dict: &'a [(Object, Object)], key: &str) -> Option<&'a Object> {
    dict.iter()
        .find(|(k, _)| matches!(k, Object::Unicode(s) if s == key))
        .map(|(_, v)| v)
}

/// The kwargs (plus the positional `sources`) as an [`HTDemucsConfig`]. Values that do not map
/// to JSON are dropped when the config does not know the argument (training-only ones) and
/// are an error when it does.
fn config_of(path: &Path, package: &[(Object, Object)]) -> Result<HTDemucsConfig> {
    let known = match serde_json::to_value(HTDemucsConfig::default()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let Some(Object::Dict(kwargs)) = field(package, "kwargs") else {
        return Err(invalid(path, "no `kwargs` dict"));
    };
    let mut out = Map::new();
    for (k, v) in kwargs {
        let Object::Unicode(k) = k else { continue };
        match to_json(v) {
            Some(v) => {
                out.insert(k.clone(), v);
            }
            None if known.contains_key(k) => {
                return Err(invalid(path, format!("kwarg {k} has an unreadable value")))
            }
            None => {}
        }
    }
    if let Some(Object::Tuple(args) | Object::List(args)) = field(package, "args") {
        if let Some(sources) = args.first().and_then(to_json) {
            out.entry("sources").or_insert(sources);
        }
    }
    serde_json::from_value(Value::Object(out)).map_err(|e| invalid(path, format!("kwargs: {e}")))
}

/// Plain pickled values as JSON; `fractions.Fraction` (the releases' segment) as its float.
fn to_json(o: &Object) -> Option<Value> {
    Some(match o {
        Object::Int(i) => Value::from(*i),
        Object::Long(i) => Value::from(*i),
        Object::Float(f) => Value::from(*f),
        Object::Bool(b) => Value::from(*b),
        Object::Unicode(s) => Value::from(s.as_str()),
        Object::None => Value::Null,
        Object::List(v) | Object::Tuple(v) => {
            Value::Array(v.iter().map(to_json).collect::<Option<_>>()?)
        }
        Object::Dict(kv) => {
            let mut m = Map::new();
            for (k, v) in kv {
                let Object::Unicode(k) = k else { return None };
                m.insert(k.clone(), to_json(v)?);
            }
            Value::Object(m)
        }
        Object::Reduce { callable, args } => match (callable.as_ref(), args.as_ref()) {
            (Object::Class { class_name, .. }, Object::Tuple(a)) if class_name == "Fraction" => {
                Value::from(fraction(a)?)
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// `Fraction.__reduce__` gives `("39/5",)`; older Pythons gave `(39, 5)`.
fn fraction(args: &[Object]) -> Option<f64> {
    let num = |o: &Object| match o {
        Object::Int(i) => Some(f64::from(*i)),
        Object::Long(i) => Some(*i as f64),
        _ => None,
    };
    match args {
        [Object::Unicode(s)] => match s.split_once('/') {
            Some((n, d)) => Some(n.trim().parse::<f64>().ok()? / d.trim().parse::<f64>().ok()?),
            None => s.trim().parse().ok(),
        },
        [n, d] => Some(num(n)? / num(d)?),
        _ => None,
    }
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> DemucsError {
    DemucsError::InvalidWeights {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
