//! The orchestrator refuses to start when it would sign links with a missing or weak key: with
//! JWKS tokens and no HS256 key it used to sign them with an empty HMAC key, so anyone could
//! forge GET and PUT links.

use std::sync::Arc;
use std::time::Duration;

use roar_common::config::Secret;
use roar_common::Config;
use tokio_util::sync::CancellationToken;

/// What `roar orchestrator` says when started with `link_secret`; `None` if it kept running.
async fn start_error(link_secret: &str) -> Option<String> {
    let mut cfg = Config::default();
    cfg.storage.url = format!("file://{}", std::env::temp_dir().display());
    cfg.auth.jwks_url = "http://127.0.0.1:9/jwks.json".into();
    cfg.auth.link_secret = Secret::new(link_secret);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cancel = CancellationToken::new();
    let run = roar::services::orchestrator(Arc::new(cfg), listener, cancel.clone());
    // The check comes before any connection: an error must arrive at once, and one that is
    // not about the link key (no database here) means the check did not run.
    let r = tokio::time::timeout(Duration::from_secs(20), run).await;
    cancel.cancel();
    match r {
        Ok(Err(e)) => Some(format!("{e:#}")),
        _ => None,
    }
}

#[tokio::test]
async fn orchestrator_refuses_a_missing_short_or_placeholder_link_key() {
    for (key, why) in [
        ("", "is not set"),
        ("0123456789abcdef", "at least 32"),
        ("REPLACE-ME-with-a-long-random-link-key", "placeholder"),
    ] {
        let e = start_error(key).await.unwrap_or_default();
        assert!(
            e.contains("ROAR_AUTH__LINK_SECRET") && e.contains(why),
            "{key:?}: {e}"
        );
    }
}
