//! The `/studio` page: how the orchestrator serves it (redirect, compression, ETag, the
//! Content-Security-Policy, unknown files), and the page itself in headless Chromium
//! (sdk/typescript/studio/test/browser.test.mjs, playwright-core driving Debian's chromium)
//! against this stack with the pitch worker (CREPE tiny) and the demucs worker (the small
//! fixture network). scripts/test.sh installs chromium and the SDK's packages.

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

/// A models directory with the CREPE weights the test command fetches and the demucs fixture
/// as `demucs/htdemucs`: the pitch and demucs workers start, nothing else.
fn studio_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let crepe = support::models_dir().join("crepe");
    assert!(
        crepe.exists(),
        "{}: CREPE weights missing; scripts/test.sh fetches them",
        crepe.display()
    );
    std::os::unix::fs::symlink(&crepe, dir.path().join("crepe")).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_studio_page_works_in_a_real_browser() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/typescript");
    assert!(
        sdk.join("node_modules/playwright-core").exists(),
        "{}: packages not installed; scripts/test.sh runs `npm ci` there",
        sdk.display()
    );
    let browser = chromium();
    let infra = Infra::start().await;
    let models = studio_models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    let token = svc.token("studio-user", &[]);
    // Kept where CI keeps artifacts: target/ survives the run.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/studio-screenshots");

    let run = tokio::process::Command::new("node")
        .args(["--test", "studio/test/browser.test.mjs"])
        .current_dir(&sdk)
        .env("ROAR_STUDIO_URL", &svc.base)
        .env("ROAR_STUDIO_TOKEN", &token)
        .env("ROAR_STUDIO_SCREENSHOTS", &shots)
        .env("ROAR_STUDIO_CHROMIUM", &browser)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(280), run)
        .await
        .expect("the browser test finishes within 280 s")
        .expect("node runs (Node 20 must be installed)");
    assert!(
        status.success(),
        "the studio's browser test failed (output above; screenshots in {})",
        shots.display()
    );
    svc.stop().await;
}
