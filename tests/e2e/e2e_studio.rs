//! The `/studio` page: how the orchestrator serves it (redirect, compression, ETag, the
//! Content-Security-Policy, unknown files), and the page itself in headless Chromium
//! (sdk/typescript/studio/test/*.test.mjs, playwright-core driving Debian's chromium): the
//! user's way through it against a stack with the pitch (CREPE tiny), demucs (the small fixture
//! network), whisper (tiny.en), gemma3n (lyrics) and musicgen (the tiny fixture) workers, and
//! the refused and interrupted paths (413, 422, 429, cancel, retry, a pipeline or a generation
//! canceled, a refused token) against a stack with no model worker, a 1 MiB upload cap and a
//! low rate limit. scripts/test.sh installs chromium and the SDK's
//! packages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, ETAG, IF_NONE_MATCH, LOCATION,
};
use reqwest::redirect::Policy;

use crate::support::{self, Infra, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_studio_is_served_compressed_with_a_content_security_policy() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();

    let r = http.get(svc.url("/studio")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()[LOCATION], "/studio/");

    let plain = http.get(svc.url("/studio/")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = plain.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let etag = plain.headers()[ETAG].clone();
    let html = plain.text().await.unwrap();
    assert!(html.contains("src=\"studio.js\""), "{html}");

    for name in ["studio.js", "studio.css"] {
        let url = svc.url(&format!("/studio/{name}"));
        let raw = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        let gz = http
            .get(&url)
            .header(ACCEPT_ENCODING, "br, gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(gz.status(), 200);
        assert_eq!(gz.headers()[CONTENT_ENCODING], "gzip");
        let body = gz.bytes().await.unwrap();
        assert_eq!(&body[..2], &[0x1f, 0x8b], "{name}: a gzip stream");
        assert!(body.len() < raw.len(), "{name}: compressed is smaller");
    }

    let again = http
        .get(svc.url("/studio/"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    for missing in [
        "/studio/nope.js",
        "/studio/..%2Fstudio.js",
        "/studio/index.htm",
    ] {
        let r = http.get(svc.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    svc.stop().await;
}

/// A models directory with the CREPE, whisper and Gemma 3 270M weights the test command
/// fetches, the demucs fixture as `demucs/htdemucs` and the tiny musicgen fixture as
/// `musicgen/small`: the pitch, whisper, gemma3n (lyrics), demucs and musicgen workers start.
/// The gemma3n worker loads nothing before a job needs it, and the page's lyrics job gives its
/// own lyrics (timed by Whisper's forced alignment, no Gemma run), so it costs one tiny.en pass.
fn studio_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for model in ["crepe", "whisper"] {
        let weights = support::models_dir().join(model);
        assert!(
            weights.exists(),
            "{}: weights missing; scripts/test.sh fetches them",
            weights.display()
        );
        std::os::unix::fs::symlink(&weights, dir.path().join(model)).unwrap();
    }
    let gemma = dir.path().join("gemma");
    std::fs::create_dir_all(&gemma).unwrap();
    let gguf = support::models_dir().join("gemma/gemma3-270m");
    assert!(
        gguf.join("model.gguf").exists(),
        "{}: weights missing; scripts/test.sh fetches them",
        gguf.display()
    );
    std::os::unix::fs::symlink(&gguf, gemma.join("gemma3-270m")).unwrap();
    let musicgen = dir.path().join("musicgen/small");
    std::fs::create_dir_all(&musicgen).unwrap();
    let tiny = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/musicgen/tests/fixtures/tiny"
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(format!("{tiny}/{f}"), musicgen.join(f)).unwrap();
    }
    let variation = dir.path().join("demucs/htdemucs");
    std::fs::create_dir_all(&variation).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/demucs/tests/fixtures/small.safetensors"
    );
    std::fs::copy(fixture, variation.join("model.safetensors")).unwrap();
    dir
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{}: chromium missing; scripts/test.sh installs Debian's chromium",
        path.display()
    );
    path
}

/// Runs one of the studio's browser test files against `svc` as `user`.
async fn browser_test(svc: &Services, user: &str, file: &str, limit: Duration) {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/typescript");
    assert!(
        sdk.join("node_modules/playwright-core").exists(),
        "{}: packages not installed; scripts/test.sh runs `npm ci` there",
        sdk.display()
    );
    let browser = chromium();
    let token = svc.token(user, &[]);
    // Kept where CI keeps artifacts: target/ survives the run.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/studio-screenshots");
    let run = tokio::process::Command::new("node")
        .args(["--test", file])
        .current_dir(&sdk)
        .env("ROAR_STUDIO_URL", &svc.base)
        .env("ROAR_STUDIO_TOKEN", &token)
        .env("ROAR_STUDIO_SCREENSHOTS", &shots)
        .env("ROAR_STUDIO_CHROMIUM", &browser)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{file} finishes within {limit:?}"))
        .expect("node runs (Node 20 must be installed)");
    assert!(
        status.success(),
        "the studio's browser test {file} failed (output above; screenshots in {})",
        shots.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_studio_page_works_in_a_real_browser() {
    let infra = Infra::start().await;
    let models = studio_models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    browser_test(
        &svc,
        "studio-user",
        "studio/test/browser.test.mjs",
        Duration::from_secs(450),
    )
    .await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_studio_shows_refused_and_interrupted_paths_in_a_real_browser() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No model worker: every job stays queued until it is canceled, so cancel is not a race.
    let none = infra.dir.path().join("no-models");
    std::fs::create_dir_all(&none).unwrap();
    cfg.processor.models_dir = none;
    // A 1 MiB upload cap for the 413, and a rate limit the page's own use stays under (100
    // requests, then 10 a second) while a burst of 300 goes over it for the 429.
    cfg.http.max_upload_bytes = 1 << 20;
    cfg.http.rate_limit_per_second = 10.0;
    cfg.http.rate_limit_burst = 100;
    let svc = Services::start(cfg).await;
    browser_test(
        &svc,
        "studio-paths",
        "studio/test/paths.test.mjs",
        Duration::from_secs(280),
    )
    .await;
    svc.stop().await;
}
