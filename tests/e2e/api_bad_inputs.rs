//! Bad input through HTTP against the real stack: each mistake gets its exact status and the
//! `{error, code, request_id}` body, and nothing answers 5xx.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::support::{fixture, Infra, Services, SECRET};

fn token_with(claims: Value, alg: Algorithm, key: &[u8]) -> String {
    encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
}

fn claims(sub: &str, exp_in: i64, aud: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "iss": "roar", "aud": aud, "exp": now + exp_in, "nbf": now - 10, "iat": now - 10})
}

/// A request described by a table row.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    auth: Option<String>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    expect: u16,
}

fn case(
    what: &'static str,
    method: &'static str,
    path: impl Into<String>,
    auth: Option<&str>,
    expect: u16,
) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        auth: auth.map(str::to_string),
        content_type: None,
        body: None,
        expect,
    }
}

fn with_json(mut c: Case, body: &str) -> Case {
    c.content_type = Some("application/json");
    c.body = Some(body.as_bytes().to_vec());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_get_their_exact_status_and_never_a_5xx() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.max_body_bytes = 4096;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;

    let expired = token_with(
        claims("alice", -3600, "roar"),
        Algorithm::HS256,
        SECRET.as_bytes(),
    );
    let forged = token_with(
        claims("alice", 3600, "roar"),
        Algorithm::HS256,
        b"not-the-server-secret-at-all",
    );
    let wrong_aud = token_with(
        claims("alice", 3600, "other"),
        Algorithm::HS256,
        SECRET.as_bytes(),
    );
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let payload = b64(claims("alice", 3600, "roar").to_string().as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    // HS/RS confusion: claims RS256 but is an HMAC made with a key an attacker might know.
    let rs_header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let confused = {
        use hmac_free::sign;
        sign(&rs_header, &payload)
    };
    let status = format!("/status/{file}");
    let process_ok = json!({"file_id": file, "model": "pitch"}).to_string();
    let big = json!({"file_id": file, "model": "musicgen", "params": {"prompt": "x".repeat(8000)}})
        .to_string();

    let cases = vec![
        case("no token", "GET", &status, None, 401),
        case(
            "not a bearer token",
            "GET",
            &status,
            Some("Basic YWxpY2U6cHc="),
            401,
        ),
        case(
            "garbage token",
            "GET",
            &status,
            Some("Bearer abc.def.ghi"),
            401,
        ),
        case(
            "expired token",
            "GET",
            &status,
            Some(&format!("Bearer {expired}")),
            401,
        ),
        case(
            "forged token",
            "GET",
            &status,
            Some(&format!("Bearer {forged}")),
            401,
        ),
        case(
            "alg none",
            "GET",
            &status,
            Some(&format!("Bearer {alg_none}")),
            401,
        ),
        case(
            "alg confusion",
            "GET",
            &status,
            Some(&format!("Bearer {confused}")),
            401,
        ),
        case(
            "wrong audience",
            "GET",
            &status,
            Some(&format!("Bearer {wrong_aud}")),
            401,
        ),
        case(
            "another user's file",
            "GET",
            &status,
            Some(&format!("Bearer {bob}")),
            404,
        ),
        case(
            "another user's events",
            "GET",
            format!("{status}/events"),
            Some(&format!("Bearer {bob}")),
            404,
        ),
        with_json(
            case(
                "another user's file to process",
                "POST",
                "/process",
                Some(&format!("Bearer {bob}")),
                404,
            ),
            &process_ok,
        ),
        case(
            "path traversal in file id",
            "GET",
            "/status/..%2F..%2Fetc%2Fpasswd",
            Some(&format!("Bearer {alice}")),
            404,
        ),
        case(
            "dot segments",
            "GET",
            "/status/f0123456789abcdef0123456789abcde.",
            Some(&format!("Bearer {alice}")),
            404,
        ),
        case(
            "unknown file",
            "GET",
            "/status/f0123456789abcdef0123456789abcdef",
            Some(&format!("Bearer {alice}")),
            404,
        ),
        case(
            "bad consistency token",
            "GET",
            format!("{status}?after=../../x"),
            Some(&format!("Bearer {alice}")),
            400,
        ),
        case(
            "unknown topic in token",
            "GET",
            format!("{status}?after=other.topic:0:1"),
            Some(&format!("Bearer {alice}")),
            400,
        ),
        case(
            "unknown query key",
            "GET",
            format!("{status}?as_of=x&evil=1"),
            Some(&format!("Bearer {alice}")),
            400,
        ),
        with_json(
            case(
                "malformed json",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                400,
            ),
            r#"{"file_id":"#,
        ),
        with_json(
            case(
                "wrong types",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                422,
            ),
            r#"{"file_id":5,"model":"pitch"}"#,
        ),
        with_json(
            case(
                "params not an object",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                422,
            ),
            &json!({"file_id": file, "model": "pitch", "params": [1]}).to_string(),
        ),
        with_json(
            case(
                "NUL in a free-text param",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                422,
            ),
            &json!({"file_id": file, "model": "whisper", "params": {"initial_prompt": "la\u{0}la"}})
                .to_string(),
        ),
        with_json(
            case(
                "empty list",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                422,
            ),
            "[]",
        ),
        with_json(
            case(
                "json scalar",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                422,
            ),
            "42",
        ),
        with_json(
            case(
                "oversized body",
                "POST",
                "/process",
                Some(&format!("Bearer {alice}")),
                413,
            ),
            &big,
        ),
        Case {
            content_type: Some("text/plain"),
            ..with_json(
                case(
                    "not json",
                    "POST",
                    "/process",
                    Some(&format!("Bearer {alice}")),
                    415,
                ),
                &process_ok,
            )
        },
        case(
            "unknown job",
            "POST",
            "/jobs/j0123456789abcdef0123456789abcdef/cancel",
            Some(&format!("Bearer {alice}")),
            404,
        ),
        case(
            "job id with path tricks",
            "POST",
            "/jobs/..%2Fj1/cancel",
            Some(&format!("Bearer {alice}")),
            404,
        ),
        case(
            "admin endpoint as a user",
            "GET",
            "/admin/jobs",
            Some(&format!("Bearer {alice}")),
            403,
        ),
        case(
            "forged download link",
            "GET",
            "/files/x.json?t=e30&sig=00",
            None,
            403,
        ),
        case("download without a link", "GET", "/files/x.json", None, 400),
        case(
            "unknown route",
            "GET",
            "/etc/passwd",
            Some(&format!("Bearer {alice}")),
            404,
        ),
    ];
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for c in cases {
        let mut req = client.request(c.method.parse().unwrap(), svc.url(&c.path));
        if let Some(a) = &c.auth {
            req = req.header("authorization", a);
        }
        if let Some(t) = c.content_type {
            req = req.header("content-type", t);
        }
        if let Some(b) = c.body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let shaped = code == 404 && c.path == "/etc/passwd"
            || (body["error"].is_string()
                && body["code"].is_string()
                && body["request_id"].is_string());
        if code != c.expect || !shaped {
            failures.push(format!("{}: got {code} (want {}) {body}", c.what, c.expect));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // A filename with path tricks is reduced to its last segment.
    let r = svc
        .upload(&alice, "../../etc/evil.flac", fixture("sine.flac"))
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = svc
        .wait_for(&alice, &id, |v| v["file"]["status"] == "ready")
        .await;
    assert_eq!(st["file"]["filename"], "evil.flac");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_over_the_rate_limit_gets_429_with_retry_after() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // One token per 1000 s: no refill can happen while the test runs, however slow the
    // machine, so exactly the burst is served.
    cfg.http.rate_limit_per_second = 0.001;
    cfg.http.rate_limit_burst = 5;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let first = std::time::Instant::now();
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(svc.get_json(&alice, "/songs").await.0);
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);
    let r = reqwest::Client::new()
        .get(svc.url("/songs"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A whole token takes 1000 s; what accrued since the first request is already off.
    let elapsed = first.elapsed().as_secs();
    assert!(
        wait <= 1000 && wait + elapsed + 1 >= 1000,
        "retry-after {wait} s, {elapsed} s after the first request"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    // Another user is not affected.
    assert_eq!(svc.get_json(&bob, "/songs").await.0, 200);
    svc.stop().await;
}

/// An HMAC-SHA256 JWT signature over `header.payload` with the server's own HS secret, so the
/// only thing wrong with the token is its `alg`.
mod hmac_free {
    use super::*;
    use jsonwebtoken::crypto;

    pub fn sign(header: &str, payload: &str) -> String {
        let msg = format!("{header}.{payload}");
        let sig = crypto::sign(
            msg.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{msg}.{sig}")
    }
}
