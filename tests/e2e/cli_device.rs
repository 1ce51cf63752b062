//! `processor.device` reaches every model worker: `roar models` builds each worker the way
//! `roar processor <model>` does, so a device this build lacks shows up as the reason each
//! model is unavailable, and `cpu` serves them (no broker needed: weights load lazily, and a
//! placeholder file is enough for a worker to say it serves a variation).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `roar models --json` with `models_dir` and `processor.device = device`, by model name.
fn models(models_dir: &Path, device: &str) -> Vec<(String, Value)> {
    let out = Command::new(env!("CARGO_BIN_EXE_roar"))
        .args(["models", "--json"])
        .env("ROAR_PROCESSOR__MODELS_DIR", models_dir)
        .env("ROAR_PROCESSOR__DEVICE", device)
        .env_remove("ROAR_MODELS_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m.clone()))
        .collect()
}

/// Files each worker looks for before it says it serves a variation.
fn placeholder_weights(dir: &Path) {
    for f in [
        "crepe/tiny.pth",
        "whisper/tiny.en/tokenizer.json",
        "demucs/htdemucs/model.safetensors",
        "musicgen/small/config.json",
        "gemma/gemma3-270m/model.gguf",
    ] {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"placeholder").unwrap();
    }
}

#[test]
fn every_worker_takes_the_configured_device_or_says_the_build_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    placeholder_weights(dir.path());
    let names = ["pitch", "whisper", "demucs", "musicgen", "gemma3n"];

    let cpu = models(dir.path(), "cpu");
    for name in names {
        let (_, m) = cpu.iter().find(|(n, _)| n == name).expect(name);
        assert!(
            m["served_variations"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{name} on the cpu: {m:#}"
        );
    }

    // Without CUDA in the build (CI has no toolkit) every worker refuses cuda:1 by name; none
    // silently runs on the CPU.
    if cfg!(feature = "cuda") {
        return;
    }
    let cuda = models(dir.path(), "cuda:1");
    for name in names {
        let (_, m) = cuda.iter().find(|(n, _)| n == name).expect(name);
        let reason = m["unavailable_reason"].as_str().unwrap_or_default();
        assert!(
            m["served_variations"].is_null()
                && reason.contains("processor.device is cuda:1")
                && reason.contains("--features cuda"),
            "{name} on cuda:1: {m:#}"
        );
    }
}

#[test]
fn a_device_that_is_no_device_stops_the_command_with_the_valid_forms() {
    let out = Command::new(env!("CARGO_BIN_EXE_roar"))
        .args(["models", "--json"])
        .env("ROAR_PROCESSOR__DEVICE", "gpu0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"gpu0\"") && stderr.contains("cuda:N"),
        "{stderr}"
    );
}
