//! Issue 21, hole 9 (JWKS): when the identity provider rotates to a new key, tokens signed with
//! it work at once (a token with an unknown `kid` makes the orchestrator fetch the JWKS again,
//! rate-limited, instead of failing until the next scheduled refresh); a flood of made-up
//! `kid`s costs the provider at most one request per interval; a JWKS that comes back empty
//! never replaces the keys that work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Infra, Services};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A JWKS endpoint whose document the test changes, counting the fetches.
struct Idp {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(body: Vec<u8>) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (b, f) = (body.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let body = b.lock().unwrap().clone();
                f.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                });
            }
        });
        Idp {
            url: format!("http://{addr}/jwks.json"),
            body,
            fetches,
        }
    }

    fn serve(&self, jwks: &Value) {
        *self.body.lock().unwrap() = serde_json::to_vec(jwks).unwrap();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let now = chrono::Utc::now().timestamp();
    let c = json!({"sub": "idp-user", "iss": "roar", "aud": "roar", "exp": now + 600, "nbf": now - 10, "iat": now - 10});
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    encode(&h, &c, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_key_works_at_once_a_kid_flood_is_rate_limited_and_an_empty_jwks_changes_nothing()
{
    let full: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let only = |kid: &str| {
        let keys: Vec<Value> = full["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kid"] == kid)
            .cloned()
            .collect();
        json!({ "keys": keys })
    };
    // Before the rotation the provider publishes the RSA key only.
    let idp = Idp::start(serde_json::to_vec(&only("rsa-1")).unwrap()).await;
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.auth.jwks_url = idp.url.clone();
    // The scheduled refresh never comes during the test: only unknown kids fetch again.
    cfg.auth.jwks_refresh_seconds = 3600;
    cfg.auth.jwks_min_refetch_seconds = 2;
    let svc = Services::start(cfg).await;
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap();
    let rsa_token = token(Algorithm::RS256, "rsa-1", &rsa);
    let ec_token = token(Algorithm::ES256, "ec-1", &ec);

    let (code, body) = svc.get_json(&rsa_token, "/songs").await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = svc.get_json(&ec_token, "/songs").await;
    assert_eq!(code, 401, "ec-1 is not published yet");

    // The provider rotates: the EC key appears. After the rate-limit window, the first token
    // signed with it makes the API fetch the new set, and it passes.
    idp.serve(&full);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, body) = svc.get_json(&ec_token, "/songs").await;
    assert_eq!(
        code, 200,
        "the rotated key must verify without waiting: {body}"
    );

    // 40 tokens with made-up kids inside one window: 401 each, at most one extra fetch.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = idp.fetches();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let t = token(Algorithm::RS256, &format!("forged-{i}"), &rsa);
        let svc_base = svc.base.clone();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{svc_base}/songs"))
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let extra = idp.fetches() - before;
    assert_eq!(
        extra, 1,
        "40 unknown kids cost the provider {extra} fetches"
    );

    // The provider's bad minute: an empty set. An unknown kid fetches it, and the working keys
    // stay.
    idp.serve(&json!({ "keys": [] }));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = idp.fetches();
    let (code, _) = svc
        .get_json(&token(Algorithm::RS256, "rsa-2", &rsa), "/songs")
        .await;
    assert_eq!(code, 401);
    assert_eq!(
        idp.fetches(),
        before + 1,
        "the unknown kid fetched the JWKS"
    );
    for (what, t) in [("RS256", &rsa_token), ("ES256", &ec_token)] {
        let (code, body) = svc.get_json(t, "/songs").await;
        assert_eq!(code, 200, "{what} after an empty JWKS: {body}");
    }
    svc.stop().await;
}
