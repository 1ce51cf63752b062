//! Helpers shared by the integration tests: finding the weights and reading
//! the `.npy` fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use roar_crepe::{Capacity, Crepe, Device};

/// `$ROAR_MODELS_DIR/crepe`, else `<repo>/.roar/models/crepe`.
pub fn weights_dir() -> PathBuf {
    roar_crepe::weights::weights_dir_from_env().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(".roar/models/crepe")
    })
}

/// Loads a model for a test. Panics with the fetch command when the weights are missing:
/// a test that cannot load its model fails rather than passing on nothing.
pub fn load(capacity: Capacity) -> Crepe {
    let dir = weights_dir();
    let file = dir.join(capacity.file_name());
    assert!(
        file.is_file(),
        "CREPE weights missing: expected {}.\n\
         Fetch them with `scripts/crepe/fetch-weights.sh {}` (or set ROAR_MODELS_DIR)",
        file.display(),
        dir.display()
    );
    Crepe::load(&file, capacity, &Device::Cpu).expect("loading CREPE weights")
}

/// A little-endian f32 array read from a `.npy` file.
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reads a C-ordered `<f4` `.npy` fixture.
pub fn read_npy(name: &str) -> Npy {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}: not a .npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'"),
        "{name}: want <f4, got {header}"
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{name}: {header}"
    );
    let shape_src = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("{name}: no shape in {header}"));
    let shape: Vec<usize> = shape_src
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}: size");
    Npy { shape, data }
}
