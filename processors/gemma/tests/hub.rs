//! `hub::fetch` from a local directory laid out as the hub is (`<root>/<repo>/<file>`), with
//! the tiny Gemma 3n test model as the checkpoint: what arrives loads; a truncated or unsafe
//! checkpoint is refused and leaves nothing half-written.

use std::path::Path;

use roar_gemma::gemma3n::Gemma3n;
use roar_gemma::hub::{fetch, repository};
use roar_gemma::GemmaError;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gemma3n_tiny");

fn fixture_weights() -> Vec<u8> {
    std::fs::read(Path::new(FIXTURE).join("model.safetensors")).unwrap()
}

/// A local source holding the e2b repository with the given files (name, bytes).
fn source(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join(repository("e2b").unwrap());
    std::fs::create_dir_all(&repo).unwrap();
    let config = std::fs::read(Path::new(FIXTURE).join("config.json")).unwrap();
    std::fs::write(repo.join("config.json"), config).unwrap();
    std::fs::write(repo.join("tokenizer.json"), "{}").unwrap();
    for (name, bytes) in files {
        std::fs::write(repo.join(name), bytes).unwrap();
    }
    root
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn fetches_a_single_file_checkpoint_and_it_loads() {
    let src = source(&[("model.safetensors", fixture_weights())]);
    let root = src.path().to_str().unwrap().to_string();
    let models = tempfile::tempdir().unwrap();
    let mut steps = Vec::new();
    let dest = fetch(models.path(), "e2b", &root, false, &mut |s| {
        steps.push(s.to_string())
    })
    .unwrap();
    assert_eq!(dest, models.path().join("e2b"));
    assert_eq!(
        files_in(&dest),
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
    assert_eq!(
        std::fs::read(dest.join("model.safetensors")).unwrap(),
        fixture_weights()
    );
    assert!(steps.iter().any(|s| s.contains("model.safetensors")));
    Gemma3n::load(&dest, &candle_core::Device::Cpu).unwrap();

    // Complete already: left alone without reading the source (which is gone now); with
    // force the missing source is an error.
    drop(src);
    assert!(!Path::new(&root).exists());
    assert_eq!(
        fetch(models.path(), "e2b", &root, false, &mut |_| {}).unwrap(),
        dest
    );
    assert!(fetch(models.path(), "e2b", &root, true, &mut |_| {}).is_err());
}

#[test]
fn fetches_every_shard_an_index_names() {
    let weights = fixture_weights();
    let index = r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-1.safetensors"}}"#;
    let src = source(&[
        ("model.safetensors.index.json", index.as_bytes().to_vec()),
        ("model-1.safetensors", weights.clone()),
    ]);
    let models = tempfile::tempdir().unwrap();
    let dest = fetch(
        models.path(),
        "e4b",
        src.path().to_str().unwrap(),
        false,
        &mut |_| {},
    );
    // e4b is another repository: this source does not hold it.
    assert!(matches!(dest, Err(GemmaError::NotFound { .. })), "{dest:?}");

    let dest = fetch(
        models.path(),
        "e2b",
        src.path().to_str().unwrap(),
        false,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        files_in(&dest),
        [
            "config.json",
            "model-1.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
    assert_eq!(
        std::fs::read(dest.join("model-1.safetensors")).unwrap(),
        weights
    );
}

#[test]
fn a_truncated_shard_is_refused_and_nothing_is_left_half_written() {
    let whole = fixture_weights();
    let src = source(&[("model.safetensors", whole[..whole.len() - 100].to_vec())]);
    let models = tempfile::tempdir().unwrap();
    let err = fetch(
        models.path(),
        "e2b",
        src.path().to_str().unwrap(),
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, GemmaError::Download { .. }), "{err}");
    assert!(files_in(&models.path().join("e2b")).is_empty());
}

#[test]
fn unknown_variations_and_unsafe_shard_names_are_refused() {
    let models = tempfile::tempdir().unwrap();
    let err = fetch(models.path(), "e9b", "/nonexistent", false, &mut |_| {}).unwrap_err();
    assert!(matches!(err, GemmaError::InvalidInput(_)), "{err}");

    for bad in ["../x.safetensors", "sub/x.safetensors", ".hidden", ""] {
        let index = format!("{{\"weight_map\": {{\"a\": {bad:?}}}}}");
        let src = source(&[("model.safetensors.index.json", index.into_bytes())]);
        let err = fetch(
            models.path(),
            "e2b",
            src.path().to_str().unwrap(),
            true,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, GemmaError::InvalidModel(_)), "{bad:?}: {err}");
    }
}
