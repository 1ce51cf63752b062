//! `roar models fetch demucs <variation>`: the command reaches the downloader with the
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
        .env_remove("ROAR_DEMUCS_URL_ROOT");
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
    let out = roar(models.path(), &["whisper", "small"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("demucs weights only"),
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
