//! Downloading and converting official-style checkpoints, end to end over a local HTTP server.
//! The `.th` fixture is the small fidelity model packed as the releases are
//! (`scripts/gen_hub_fixture.py`: half-precision state, kwargs, `save_with_checksum` name).
#![cfg(feature = "hub")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use roar_demucs::checkpoint::Checkpoint;
use roar_demucs::hub::{self, Release};
use roar_demucs::separator::read_config;
use roar_demucs::{DemucsError, HTDemucs, Separator};
use roar_testkit::tensor::assert_tensor_close;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The committed `.th` (its name carries its own checksum, so it is looked up).
fn th_fixture() -> (PathBuf, String) {
    let dir = fixtures().join("hub");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "th"))
        .expect("tests/fixtures/hub/*.th (scripts/gen_hub_fixture.py)");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (path, name)
}

/// Serves `routes` (URL path → file) over HTTP/1.1 on a free port; anything else is a 404.
/// Returns the root URL.
fn serve(routes: HashMap<String, PathBuf>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match routes.get(&path) {
                Some(file) => ("200 OK", std::fs::read(file).unwrap()),
                None => ("404 Not Found", b"no such file".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}/mirror/")
}

fn single(variation: &str, file: &str) -> Release {
    Release {
        variation: variation.into(),
        files: vec![format!("hybrid_transformer/{file}")],
        weights: None,
    }
}

/// `small.safetensors` as the releases store it: every tensor rounded to float16.
fn small_in_half() -> (HTDemucs, HashMap<String, Tensor>) {
    let path = fixtures().join("small.safetensors");
    let cfg = read_config(&path).unwrap();
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let h = t
                .to_dtype(DType::F16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            (k, h)
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    (HTDemucs::load(vb, &cfg).unwrap(), tensors)
}

#[test]
fn a_downloaded_checkpoint_converts_into_the_same_model() {
    let (th, name) = th_fixture();
    let root = serve(HashMap::from([(
        format!("/mirror/hybrid_transformer/{name}"),
        th,
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let demucs_dir = tmp.path().join("demucs");
    let mut steps = Vec::new();
    let dest = hub::fetch_release_with(
        &demucs_dir,
        &single("tiny", &name),
        &root,
        false,
        &mut |s| steps.push(s.to_string()),
    )
    .unwrap();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(
        steps[0].starts_with("downloading http://") && steps[0].ends_with(&name),
        "{steps:?}"
    );
    assert!(steps[2].ends_with("model.safetensors"), "{steps:?}");
    assert_eq!(dest, demucs_dir.join("tiny"));
    // Only the converted model remains: no `.th`, no `.part`.
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["model.safetensors"]);

    // The config comes from the kwargs (the Fraction segment included) and equals the one the
    // Python converter wrote for the same model.
    let small_cfg = read_config(&fixtures().join("small.safetensors")).unwrap();
    assert_eq!(
        read_config(&dest.join("model.safetensors")).unwrap(),
        small_cfg
    );

    let sep = Separator::load(&demucs_dir, "tiny", &Device::Cpu).unwrap();
    assert_eq!(sep.models.len(), 1);
    let (want_model, want_tensors) = small_in_half();
    let got = candle_core::safetensors::load(dest.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(got.len(), want_tensors.len());
    for (k, t) in &want_tensors {
        assert_tensor_close(k, &got[k], t, 0.0);
    }
    let len = small_cfg.segment_samples();
    let mix = Tensor::randn(0f32, 1.0, (1, 2, len), &Device::Cpu).unwrap();
    let out = sep.models[0].forward(&mix).unwrap();
    assert_eq!(out.dims(), [1, 4, 2, len]);
    assert_tensor_close("output", &out, &want_model.forward(&mix).unwrap(), 0.0);

    // A second fetch keeps what is there (nothing is served any more for another name).
    let again = hub::fetch_release(
        &demucs_dir,
        &single("tiny", &name),
        "http://127.0.0.1:9/",
        false,
    );
    assert_eq!(again.unwrap(), dest);
}

#[test]
fn a_local_directory_serves_as_root_offline() {
    let (_, name) = th_fixture();
    let tmp = tempfile::tempdir().unwrap();
    let release = Release {
        variation: "tiny".into(),
        files: vec![name],
        weights: None,
    };
    let root = fixtures().join("hub");
    hub::fetch_release(tmp.path(), &release, root.to_str().unwrap(), false).unwrap();
    let sep = Separator::load(tmp.path(), "tiny", &Device::Cpu).unwrap();
    assert_eq!(sep.samplerate(), 44_100);
    // The committed fixture itself is left where it was.
    assert!(th_fixture().0.is_file());
    let err = hub::fetch_release(
        tmp.path(),
        &single("other", "0cafe000-1.th"),
        "/nonexistent",
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/hybrid_transformer/0cafe000-1.th"),
        "{err}"
    );
}

#[test]
fn a_bag_is_written_with_its_members_and_weights() {
    let (th, name) = th_fixture();
    // Same content under two signatures: the checksum part of the name still holds.
    let sha = name.split_once('-').unwrap().1.to_string();
    let files = [format!("0000000a-{sha}"), format!("0000000b-{sha}")];
    let root = serve(
        files
            .iter()
            .map(|f| (format!("/mirror/hybrid_transformer/{f}"), th.clone()))
            .collect(),
    );
    let weights = vec![vec![1.0, 0.0, 1.0, 0.0], vec![0.0, 1.0, 0.0, 1.0]];
    let release = Release {
        variation: "tiny_bag".into(),
        files: files
            .iter()
            .map(|f| format!("hybrid_transformer/{f}"))
            .collect(),
        weights: Some(weights.clone()),
    };
    let tmp = tempfile::tempdir().unwrap();
    let dest = hub::fetch_release(tmp.path(), &release, &root, false).unwrap();
    let bag: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("bag.json")).unwrap()).unwrap();
    assert_eq!(
        bag["models"],
        serde_json::json!(["0000000a.safetensors", "0000000b.safetensors"])
    );
    let sep = Separator::load(tmp.path(), "tiny_bag", &Device::Cpu).unwrap();
    assert_eq!(sep.models.len(), 2);
    assert_eq!(sep.weights, weights);
    assert_eq!(sep.sources(), ["drums", "bass", "other", "vocals"]);
}

#[test]
fn a_wrong_checksum_is_refused_and_leaves_nothing() {
    let (th, _) = th_fixture();
    let name = "0cafe000-00000000.th";
    let root = serve(HashMap::from([(
        format!("/mirror/hybrid_transformer/{name}"),
        th,
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let err = hub::fetch_release(tmp.path(), &single("tiny", name), &root, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DemucsError::InvalidWeights { .. }), "{err:?}");
    assert!(
        msg.contains("checksum mismatch") && msg.contains("\"00000000\""),
        "{msg}"
    );
    let left = std::fs::read_dir(tmp.path().join("tiny")).unwrap().count();
    assert_eq!(left, 0, "a refused download must not stay on disk");
    assert!(Separator::load(tmp.path(), "tiny", &Device::Cpu).is_err());
}

#[test]
fn a_missing_file_on_the_server_names_the_url() {
    let root = serve(HashMap::new());
    let tmp = tempfile::tempdir().unwrap();
    let err = hub::fetch_release(
        tmp.path(),
        &single("tiny", "0cafe000-12345678.th"),
        &root,
        false,
    )
    .unwrap_err();
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("/mirror/hybrid_transformer/0cafe000-12345678.th") && msg.contains("404"),
        "{msg}"
    );
}

#[test]
fn unknown_variations_and_bad_names_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = hub::fetch(tmp.path(), "htdemucs_xl", "http://127.0.0.1:9/", false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DemucsError::InvalidInput(_)));
    assert!(
        msg.contains("htdemucs_xl") && msg.contains("htdemucs_ft"),
        "{msg}"
    );
    let err = hub::fetch_release(
        tmp.path(),
        &single("tiny", "weights.th"),
        "http://127.0.0.1:9/",
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("<sig>-<sha256 prefix>.th"),
        "{err}"
    );
    let err = hub::fetch_release(
        tmp.path(),
        &single("../up", "a-b.th"),
        "http://127.0.0.1:9/",
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid variation"), "{err}");
}

#[test]
fn the_official_releases_are_listed_like_the_reference() {
    let ft = hub::release("htdemucs_ft").unwrap();
    assert_eq!(ft.files.len(), 4);
    assert_eq!(ft.files[0], "hybrid_transformer/f7e0c4bc-ba3fe64a.th");
    let w = ft.weights.unwrap();
    for (i, row) in w.iter().enumerate() {
        assert_eq!(row.iter().sum::<f32>(), 1.0);
        assert_eq!(row[i], 1.0);
    }
    let one = hub::release("htdemucs").unwrap();
    assert_eq!(one.files, ["hybrid_transformer/955717e8-8726e21a.th"]);
    assert!(one.weights.is_none());
    assert_eq!(
        hub::release("htdemucs_6s").unwrap().files,
        ["hybrid_transformer/5c90dfd2-34c22ccb.th"]
    );
    assert_eq!(hub::resolve_root(Some("http://x/")), "http://x/");
}

#[test]
fn a_checkpoint_whose_config_does_not_fit_its_tensors_is_refused() {
    let (th, _) = th_fixture();
    let mut ckpt = Checkpoint::read(&th).unwrap();
    ckpt.validate().unwrap();
    ckpt.config.channels = 16;
    let err = ckpt.validate().unwrap_err();
    assert!(err.contains("does not fit"), "{err}");
    // The released preset is not the small model either.
    ckpt.config = roar_demucs::HTDemucsConfig::htdemucs();
    assert!(ckpt.validate().is_err());
    // Not a torch.save archive at all.
    let err = Checkpoint::read(&fixtures().join("small.safetensors"))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not a torch.save zip archive"),
        "{err}"
    );
}
