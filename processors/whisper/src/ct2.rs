//! Reader for CTranslate2's `model.bin` (binary version 3 to 6) holding a `WhisperSpec`.
//!
//! The file is a flat list of named variables followed by aliases:
//! `u32 version, str spec, u32 revision, u32 n, n × (str name, u8 rank, rank × u32 dim,
//! u8 dtype, u32 nbytes, bytes), u32 m, m × (str alias, str target)`, little endian,
//! strings as `u16 len` (counting a trailing NUL) then the bytes.
//! Quantised weights come with a `<name>_scale` companion; they are dequantised to f32
//! here so the model runs on plain f32 tensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Result, WhisperError};

/// CTranslate2's `DataType` enum, in its declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ct2Type {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Type {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Ct2Type::F32,
            1 => Ct2Type::I8,
            2 => Ct2Type::I16,
            3 => Ct2Type::I32,
            4 => Ct2Type::F16,
            5 => Ct2Type::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Ct2Type::I8 => 1,
            Ct2Type::I16 | Ct2Type::F16 | Ct2Type::Bf16 => 2,
            Ct2Type::F32 | Ct2Type::I32 => 4,
        }
    }
}

/// One variable as stored, before any conversion.
#[derive(Debug, Clone)]
pub(crate) struct RawVar {
    shape: Vec<usize>,
    dtype: Ct2Type,
    data: Vec<u8>,
}

impl RawVar {
    /// The values widened to f32 (integers keep their integer value, unscaled).
    fn to_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            Ct2Type::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Ct2Type::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Ct2Type::Bf16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Ct2Type::I8 => d.iter().map(|&b| b as i8 as f32).collect(),
            Ct2Type::I16 => d
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
                .collect(),
            Ct2Type::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
        }
    }

    /// A scalar variable as an integer (head counts and flags).
    pub(crate) fn scalar_i64(&self) -> Option<i64> {
        (self.shape.iter().product::<usize>() == 1).then(|| self.to_f32()[0] as i64)
    }
}

/// A parsed `model.bin`: its variables with aliases resolved.
#[derive(Debug)]
pub(crate) struct Ct2Model {
    pub(crate) spec: String,
    pub(crate) vars: HashMap<String, RawVar>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(WhisperError::invalid(
                self.path,
                format!("truncated at byte {} (wanted {n} more)", self.pos),
            ));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec())
            .map_err(|_| WhisperError::invalid(self.path, "a variable name is not UTF-8"))
    }
}

/// Parses a CTranslate2 model file already read into memory.
pub(crate) fn parse(buf: &[u8], path: &Path) -> Result<Ct2Model> {
    let mut r = Reader { buf, pos: 0, path };
    let version = r.u32()?;
    // Version 4 introduced the dtype id + byte count that this reader relies on.
    if !(4..=6).contains(&version) {
        return Err(WhisperError::invalid(
            path,
            format!("unsupported CTranslate2 binary version {version} (supported: 4 to 6)"),
        ));
    }
    let spec = r.string()?;
    let _revision = r.u32()?;
    let n = r.u32()? as usize;
    let mut vars = HashMap::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let shape = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>>>()?;
        let type_id = r.u8()?;
        let dtype = Ct2Type::from_id(type_id).ok_or_else(|| {
            WhisperError::invalid(path, format!("variable {name}: unknown dtype id {type_id}"))
        })?;
        let nbytes = r.u32()? as usize;
        let want = shape.iter().product::<usize>() * dtype.size();
        if nbytes != want {
            return Err(WhisperError::invalid(
                path,
                format!("variable {name}: {nbytes} bytes for shape {shape:?} ({want} expected)"),
            ));
        }
        let data = r.take(nbytes)?.to_vec();
        vars.insert(name, RawVar { shape, dtype, data });
    }
    let aliases = r.u32()? as usize;
    for _ in 0..aliases {
        let alias = r.string()?;
        let target = r.string()?;
        let var = vars.get(&target).cloned().ok_or_else(|| {
            WhisperError::invalid(path, format!("alias {alias} points at missing {target}"))
        })?;
        // A quantised target's scale travels with it.
        if let Some(scale) = vars.get(&format!("{target}_scale")).cloned() {
            vars.insert(format!("{alias}_scale"), scale);
        }
        vars.insert(alias, var);
    }
    Ok(Ct2Model { spec, vars })
}

impl Ct2Model {
    fn raw(&self, name: &str, path: &Path) -> Result<&RawVar> {
        self.vars
            .get(name)
            .ok_or_else(|| WhisperError::invalid(path, format!("missing variable {name}")))
    }

    /// The variable as an f32 tensor, dequantised with its `_scale` companion if any:
    /// CTranslate2 stores `round(w * scale)` with one scale per output row (int8) or one
    /// for the whole tensor (int16).
    pub(crate) fn tensor(&self, name: &str, path: &Path) -> Result<Tensor> {
        let v = self.raw(name, path)?;
        let mut values = v.to_f32();
        if matches!(v.dtype, Ct2Type::I8 | Ct2Type::I16) {
            let scale = self.raw(&format!("{name}_scale"), path)?.to_f32();
            let rows = v.shape.first().copied().unwrap_or(1).max(1);
            let per_row = values.len() / rows;
            for (i, x) in values.iter_mut().enumerate() {
                let s = if scale.len() == rows {
                    scale[i / per_row]
                } else {
                    scale[0]
                };
                *x /= s;
            }
        }
        Ok(Tensor::from_vec(values, v.shape.as_slice(), &Device::Cpu)?)
    }

    pub(crate) fn scalar(&self, name: &str, path: &Path) -> Result<i64> {
        self.raw(name, path)?
            .scalar_i64()
            .ok_or_else(|| WhisperError::invalid(path, format!("{name} is not a scalar")))
    }

    pub(crate) fn shape(&self, name: &str, path: &Path) -> Result<Vec<usize>> {
        Ok(self.raw(name, path)?.shape.clone())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn var(out: &mut Vec<u8>, name: &str, shape: &[u32], dtype: u8, data: &[u8]) {
        string(out, name);
        out.push(shape.len() as u8);
        for d in shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.push(dtype);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }

    #[test]
    fn parses_int8_with_scales_and_aliases() {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        var(&mut b, "w", &[2, 2], 1, &[10u8, 246, 127, 0]); // 10, -10, 127, 0
        let scales: Vec<u8> = [2.0f32, 127.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        var(&mut b, "w_scale", &[2], 0, &scales);
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "alias");
        string(&mut b, "w");
        let p = Path::new("mem");
        let m = parse(&b, p).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        let w: Vec<f32> = m
            .tensor("alias", p)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(w, vec![5.0, -5.0, 1.0, 0.0]);
    }

    #[test]
    fn rejects_truncated_and_bad_sizes() {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        var(&mut b, "w", &[3], 4, &[0, 0, 0, 0]); // f16 × 3 needs 6 bytes
        let err = parse(&b, Path::new("mem")).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        let err = parse(&b[..7], Path::new("mem")).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(!err.is_retryable());
    }
}
