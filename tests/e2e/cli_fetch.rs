//! `roar models fetch demucs|musicgen|gemma3n <variation>`: the command reaches the downloader with the
//! configured models dir and root, and refuses what it must (no network needed: a local
//! directory stands in for the download root).

use std::path::Path;
use std::process::{Command, Output};

fn roar(models_dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roar"));
    cmd.args(["models", "fetch"])
        .args(args)
        .env("ROAR_PROCESSOR__MODELS_DIR", models_dir)
        .env_remove("ROAR_MODELS_DIR")
        .env_remove("ROAR_DEMUCS_URL_ROOT")
        .env_remove("ROAR_MUSICGEN_URL_ROOT")
        .env_remove("ROAR_GEMMA_URL_ROOT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unknown_models_and_variations_are_refused_by_name() {
    let models = tempfile::tempdir().unwrap();
    let out = roar(models.path(), &["demucs", "htdemucs_xl"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown demucs variation \"htdemucs_xl\""),
        "{}",
        stderr(&out)
    );
    let out = roar(models.path(), &["musicgen", "huge"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown musicgen variation \"huge\""),
        "{}",
        stderr(&out)
    );
    let out = roar(models.path(), &["gemma3n", "e9b"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown gemma3n variation \"e9b\"")
            && stderr(&out).contains("e2b, e4b"),
        "{}",
        stderr(&out)
    );
    let out = roar(models.path(), &["whisper", "small"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("demucs, musicgen and gemma3n weights only, not \"whisper\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_checkpoint_that_fails_its_checksum_is_not_installed() {
    // The small fixture under the official htdemucs name: its sha256 does not match the name.
    let fixture = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("processors/demucs/tests/fixtures/hub"),
    )
    .unwrap()
    .map(|e| e.unwrap().path())
    .find(|p| p.extension().is_some_and(|e| e == "th"))
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("hybrid_transformer")).unwrap();
    std::fs::copy(
        &fixture,
        root.path().join("hybrid_transformer/955717e8-8726e21a.th"),
    )
    .unwrap();
    let models = tempfile::tempdir().unwrap();
    // Through the environment variable (which the typed config must not reject) and the flag.
    let by_env = roar(
        models.path(),
        &["demucs", "htdemucs"],
        &[("ROAR_DEMUCS_URL_ROOT", root.path())],
    );
    let root_arg = root.path().to_str().unwrap();
    let by_flag = roar(
        models.path(),
        &["demucs", "htdemucs", "--url-root", root_arg],
        &[],
    );
    for out in [by_env, by_flag] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("checksum mismatch") && err.contains("8726e21a"),
            "{err}"
        );
    }
    let dir = models.path().join("demucs/htdemucs");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing is left in {}",
        dir.display()
    );
}

/// A local directory laid out as `<root>/<repo>/<file>` holding the tiny random-init MusicGen.
fn musicgen_root() -> tempfile::TempDir {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("processors/musicgen/tests/fixtures/tiny");
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("facebook/musicgen-small");
    std::fs::create_dir_all(&repo).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture.join(f), repo.join(f)).unwrap();
    }
    root
}

#[test]
fn musicgen_is_fetched_into_the_models_dir_and_a_second_fetch_keeps_it() {
    let root = musicgen_root();
    let models = tempfile::tempdir().unwrap();
    let out = roar(
        models.path(),
        &["musicgen", "small"],
        &[("ROAR_MUSICGEN_URL_ROOT", root.path())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dest = models.path().join("musicgen/small");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dest.to_str().unwrap()
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(dest.join(f)).unwrap(),
            std::fs::read(root.path().join("facebook/musicgen-small").join(f)).unwrap(),
            "{f}"
        );
    }
    // Complete already: nothing is downloaded again without --force.
    let root_arg = root.path().to_str().unwrap();
    let again = roar(
        models.path(),
        &["musicgen", "small", "--url-root", root_arg],
        &[],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already there") && !stderr(&again).contains("downloading"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_musicgen_download_missing_a_tensor_leaves_nothing_complete() {
    let root = musicgen_root();
    // A config that needs more decoder layers than the weights hold.
    let config = root.path().join("facebook/musicgen-small/config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let layers = json["decoder"]["num_hidden_layers"].as_u64().unwrap();
    json["decoder"]["num_hidden_layers"] = (layers + 1).into();
    std::fs::write(&config, json.to_string()).unwrap();
    let models = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let out = roar(
        models.path(),
        &["musicgen", "small", "--url-root", root_arg],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("decoder.model.decoder.layers.{layers}.")),
        "{}",
        stderr(&out)
    );
    assert!(!models.path().join("musicgen/small/config.json").exists());
}

#[test]
fn gemma3n_is_fetched_where_the_lyrics_worker_reads_it() {
    // The tiny random Gemma 3n laid out as the hub's `google/gemma-3n-E2B-it`.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("processors/gemma/tests/fixtures/gemma3n_tiny");
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("google/gemma-3n-E2B-it");
    std::fs::create_dir_all(&repo).unwrap();
    let files = ["config.json", "model.safetensors", "tokenizer.json"];
    for f in files {
        std::fs::copy(fixture.join(f), repo.join(f)).unwrap();
    }
    let models = tempfile::tempdir().unwrap();
    let out = roar(
        models.path(),
        &["gemma3n", "e2b"],
        &[("ROAR_GEMMA_URL_ROOT", root.path())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dest = models.path().join("gemma/e2b");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dest.to_str().unwrap()
    );
    for f in files {
        assert_eq!(
            std::fs::read(dest.join(f)).unwrap(),
            std::fs::read(repo.join(f)).unwrap(),
            "{f}"
        );
    }
    // The worker finds it (with a Whisper beside it to time the words).
    std::fs::create_dir_all(models.path().join("whisper/base")).unwrap();
    std::fs::write(models.path().join("whisper/base/tokenizer.json"), "{}").unwrap();
    let m = roar_processors::gemma3n::Lyrics::new(models.path()).unwrap();
    use roar_processors::runtime::Model;
    assert_eq!(m.variations(), ["e2b"]);
    // A second fetch keeps what is there; a truncated shard is refused and not installed.
    let again = roar(
        models.path(),
        &[
            "gemma3n",
            "e2b",
            "--url-root",
            root.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already there"),
        "{}",
        stderr(&again)
    );
    let weights = std::fs::read(repo.join("model.safetensors")).unwrap();
    std::fs::write(
        repo.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let bad = roar(
        other.path(),
        &["gemma3n", "e2b"],
        &[("ROAR_GEMMA_URL_ROOT", root.path())],
    );
    assert!(!bad.status.success());
    assert!(!other.path().join("gemma/e2b/config.json").exists());
}
