//! The TypeScript SDK (`sdk/typescript`) against the real stack: this test starts a broker,
//! PostgreSQL, the object store and the roar services with the pitch worker, then runs the
//! SDK's own tests (`npm test`: the generated types are current, the SDK compiles, and its
//! node:test suite drives upload, duplicate, process, watch with a dropped stream, token
//! refresh, typed errors and a preset's pipeline through this server, and imports the Yaak
//! workspace into the real Yaak CLI, which sends its requests here). scripts/test.sh installs
//! its packages (`npm ci` in sdk/typescript and dev/yaak).

use std::path::Path;
use std::time::Duration;

use crate::support::{Infra, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_typescript_sdk_passes_its_tests_against_the_real_stack() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/typescript");
    assert!(
        sdk.join("node_modules/typescript").exists(),
        "{}: packages not installed; scripts/test.sh runs `npm ci` there",
        sdk.display()
    );
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    // Two different valid tokens of one user: the SDK's refresh test alternates them.
    let token = svc.token("sdk-user", &[]);
    let refreshed = svc.token("sdk-user", &["service"]);
    assert_ne!(token, refreshed);

    let run = tokio::process::Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&sdk)
        .env("ROAR_SDK_BASE_URL", &svc.base)
        .env("ROAR_SDK_TOKEN", &token)
        .env("ROAR_SDK_TOKEN_REFRESHED", &refreshed)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(280), run)
        .await
        .expect("the SDK's tests finish within 280 s")
        .expect("npm runs (Node 20 and npm must be installed)");
    assert!(status.success(), "the SDK's tests failed (output above)");
    svc.stop().await;
}
