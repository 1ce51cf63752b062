//! `roar models fetch musicgen`'s download, against a local directory and a local HTTP server
//! that answers as the hub does (a redirect to storage announcing the sha256 of large files).
#![cfg(feature = "hub")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use candle_core::Device;
use common::fixture;
use roar_musicgen::hub;
use roar_musicgen::{MusicGen, MusicgenError};
use sha2::{Digest, Sha256};

const FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "generation_config.json",
    "model.safetensors",
];

/// `root/facebook/musicgen-small/<file>` for each tiny-model file.
fn local_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("facebook/musicgen-small");
    std::fs::create_dir_all(&repo).unwrap();
    for f in FILES {
        std::fs::copy(fixture("tiny").join(f), repo.join(f)).unwrap();
    }
    root
}

fn same_files(a: &Path, b: &Path) {
    for f in FILES {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

fn no_parts(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".part"))
        })
        .unwrap_or(true)
}

#[test]
fn fetches_from_a_local_directory_and_the_model_loads() {
    let root = local_root();
    let models = tempfile::tempdir().unwrap();
    let mut steps = Vec::new();
    let dest = hub::fetch_with(
        models.path(),
        "small",
        root.path().to_str().unwrap(),
        false,
        &mut |s| steps.push(s.to_string()),
    )
    .unwrap();
    assert_eq!(dest, models.path().join("small"));
    same_files(&dest, &fixture("tiny"));
    assert!(no_parts(&dest));
    assert!(steps.iter().any(|s| s.contains("checking")));
    MusicGen::load(&dest, "small", &Device::Cpu).unwrap();
    // Present already: nothing is read from the (now empty) source.
    std::fs::remove_dir_all(root.path().join("facebook")).unwrap();
    let mut again = Vec::new();
    hub::fetch_with(
        models.path(),
        "small",
        root.path().to_str().unwrap(),
        false,
        &mut |s| again.push(s.to_string()),
    )
    .unwrap();
    assert!(again[0].contains("already there"), "{again:?}");
}

#[test]
fn weights_that_do_not_fit_the_config_are_not_kept() {
    let root = local_root();
    let repo = root.path().join("facebook/musicgen-small");
    let text = std::fs::read_to_string(repo.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["decoder"]["ffn_dim"] = 50.into();
    std::fs::write(repo.join("config.json"), v.to_string()).unwrap();
    let models = tempfile::tempdir().unwrap();
    let e = hub::fetch_with(
        models.path(),
        "small",
        root.path().to_str().unwrap(),
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("fc1"), "{e}");
    let dest = models.path().join("small");
    assert!(!dest.join("config.json").exists());
    assert!(!dest.join("model.safetensors").exists());
    assert!(no_parts(&dest));
}

#[test]
fn unknown_variation_and_missing_files_are_errors() {
    let models = tempfile::tempdir().unwrap();
    let e = hub::fetch_with(models.path(), "stereo", "/nowhere", false, &mut |_| {}).unwrap_err();
    assert!(matches!(e, MusicgenError::InvalidParams(_)));
    let empty = tempfile::tempdir().unwrap();
    let e = hub::fetch_with(
        models.path(),
        "small",
        empty.path().to_str().unwrap(),
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, MusicgenError::Download { .. }), "{e}");
    assert!(e.is_retryable());
}

struct Route {
    body: Vec<u8>,
    /// Answer with a redirect to `/storage<path>` announcing this sha256.
    redirect_sha: Option<String>,
}

/// Serves the hub's URL scheme over HTTP/1.1 on a free port; returns the root URL.
fn serve(routes: HashMap<String, Route>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (head, body) = if let Some(stored) = path.strip_prefix("/storage") {
                match routes.get(stored) {
                    Some(r) => ("HTTP/1.1 200 OK\r\n".to_string(), r.body.clone()),
                    None => ("HTTP/1.1 404 Not Found\r\n".to_string(), Vec::new()),
                }
            } else {
                match routes.get(&path) {
                    Some(Route { redirect_sha: Some(sha), .. }) => (
                        format!("HTTP/1.1 302 Found\r\nLocation: /storage{path}\r\nX-Linked-Etag: \"{sha}\"\r\n"),
                        Vec::new(),
                    ),
                    Some(r) => ("HTTP/1.1 200 OK\r\nETag: \"0123456789abcdef0123456789abcdef01234567\"\r\n".to_string(), r.body.clone()),
                    None => ("HTTP/1.1 404 Not Found\r\n".to_string(), b"Entry not found".to_vec()),
                }
            };
            let _ = stream.write_all(
                format!(
                    "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn hub_routes(sha_of_weights: Option<String>) -> HashMap<String, Route> {
    FILES
        .iter()
        .map(|f| {
            let body = std::fs::read(fixture("tiny").join(f)).unwrap();
            let redirect_sha = (*f == "model.safetensors").then(|| {
                sha_of_weights
                    .clone()
                    .unwrap_or_else(|| hex(&Sha256::digest(&body)))
            });
            (
                format!("/facebook/musicgen-small/resolve/main/{f}"),
                Route { body, redirect_sha },
            )
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn fetches_over_http_following_the_redirect_and_checking_the_sha256() {
    let root = serve(hub_routes(None));
    let models = tempfile::tempdir().unwrap();
    let dest = hub::fetch_with(models.path(), "small", &root, false, &mut |_| {}).unwrap();
    same_files(&dest, &fixture("tiny"));
    // `--force` downloads again over what is there.
    hub::fetch_with(models.path(), "small", &root, true, &mut |_| {}).unwrap();
    same_files(&dest, &fixture("tiny"));
}

#[test]
fn a_sha256_mismatch_fails_and_keeps_nothing() {
    let root = serve(hub_routes(Some("b".repeat(64))));
    let models = tempfile::tempdir().unwrap();
    let e = hub::fetch_with(models.path(), "small", &root, false, &mut |_| {}).unwrap_err();
    assert!(matches!(e, MusicgenError::Download { .. }), "{e}");
    assert!(e.to_string().contains("sha256"), "{e}");
    let dest: PathBuf = models.path().join("small");
    assert!(!dest.join("config.json").exists());
    assert!(!dest.join("model.safetensors").exists());
    assert!(no_parts(&dest));
}
