//! Production tokens: RS256 and ES256 checked against the identity provider's JWKS, which the
//! orchestrator fetches from its configured URL (served here by a tiny local HTTP server).
//! The keys in tests/fixtures/jwt are test-only (see make_jwks.py there).

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

/// Serves `body` as JSON to every request; returns the URL.
async fn serve_jwks(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
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
    format!("http://{addr}/.well-known/jwks.json")
}

fn claims(sub: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "iss": "roar", "aud": "roar", "exp": now + exp_in, "nbf": now - 10, "iat": now - 10})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, c: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, c, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rs256_and_es256_tokens_verify_against_the_configured_jwks_and_nothing_else_does() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.auth.jwks_url = serve_jwks(fixture("jwks.json")).await;
    let svc = Services::start(cfg).await;

    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap();
    let oct = EncodingKey::from_secret(b"jwks-oct-secret-never-trusted");
    let ok = claims("idp-user", 600);
    let rsa_pub_pem = {
        // The RSA public key as an attacker would find it, used as an HMAC secret.
        let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
        jwks["keys"][0]["n"].as_str().unwrap().to_string()
    };
    let mut tampered = sign(Algorithm::RS256, Some("rsa-1"), &rsa, &ok);
    tampered.insert(tampered.len() - 5, 'A');
    tampered.truncate(tampered.len() - 1);

    let cases = [
        (
            "RS256 with kid",
            sign(Algorithm::RS256, Some("rsa-1"), &rsa, &ok),
            200,
        ),
        (
            "RS256 without kid",
            sign(Algorithm::RS256, None, &rsa, &ok),
            200,
        ),
        (
            "ES256 with kid",
            sign(Algorithm::ES256, Some("ec-1"), &ec, &ok),
            200,
        ),
        (
            "RS256 naming the EC key",
            sign(Algorithm::RS256, Some("ec-1"), &rsa, &ok),
            401,
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("rsa-9"), &rsa, &ok),
            401,
        ),
        (
            "expired RS256",
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa,
                &claims("idp-user", -3600),
            ),
            401,
        ),
        ("tampered RS256", tampered, 401),
        (
            "RS384 is not pinned",
            sign(Algorithm::RS384, Some("rsa-1"), &rsa, &ok),
            401,
        ),
        (
            "HS256 with the JWKS's symmetric key",
            sign(Algorithm::HS256, Some("oct-1"), &oct, &ok),
            401,
        ),
        (
            "HS256 keyed with the RSA public key",
            sign(
                Algorithm::HS256,
                Some("rsa-1"),
                &EncodingKey::from_secret(rsa_pub_pem.as_bytes()),
                &ok,
            ),
            401,
        ),
        // The development secret still works alongside.
        ("HS256 dev token", svc.token("dev-user", &[]), 200),
    ];
    for (what, token, want) in cases {
        let (code, body) = svc.get_json(&token, "/songs").await;
        assert_eq!(code, want, "{what}: {body}");
    }
    svc.stop().await;
}
