//! Fuzzing token verification, the first thing every request meets: garbage, mutated valid
//! tokens, and tokens built from generated headers (`alg` from the confusion list, `kid`, `jku`)
//! and generated claims (wrong types, wrong issuer or audience, expired, not yet valid), signed
//! with the key, another key or not at all. A token is accepted only when it is HS256, signed
//! with the configured secret and its claims pass every check; nothing panics.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use proptest::prelude::*;
use roar_testkit::fuzz::{fuzz, mutated};
use serde_json::{json, Value};

use roar_common::auth::{AuthError, Authenticator, Claims};
use roar_common::config::{AuthConfig, Secret};

const SECRET: &str = "fuzz-secret-0123456789abcdef-0123";

/// HS256 with the secret, and RS256/ES256 through a JWKS that holds no key yet: every branch of
/// `verify` is reachable.
fn authenticator() -> Authenticator {
    Authenticator::new(&AuthConfig {
        jwt_secret: Secret::new(SECRET),
        jwks_url: "http://127.0.0.1:9/jwks.json".into(),
        jwks_algorithms: vec!["RS256".into(), "ES256".into()],
        ..Default::default()
    })
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A claim value: the right type or not.
fn claim_value(good: Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(Some(good)),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => any::<i64>().prop_map(|n| Some(json!(n))),
        1 => "[a-z]{0,6}".prop_map(|s| Some(json!(s))),
        1 => Just(Some(json!(["roar"]))),
    ]
}

/// How a generated token is signed.
#[derive(Debug, Clone, Copy)]
enum Signing {
    Secret,
    OtherSecret,
    Empty,
    Garbage,
}

/// A token from generated parts: (token, whether its header says HS256, how it was signed).
fn built_token() -> impl Strategy<Value = (String, Value, Signing)> {
    let now = chrono::Utc::now().timestamp();
    let alg = prop::sample::select(vec![
        json!("HS256"),
        json!("none"),
        json!("None"),
        json!("RS256"),
        json!("ES256"),
        json!("HS384"),
        json!("hs256"),
        json!(""),
        json!(256),
    ]);
    let header = (
        alg,
        prop::option::of("[a-z0-9]{0,8}"),
        prop::option::of(Just("http://attacker.example/jwks.json")),
    )
        .prop_map(|(alg, kid, jku)| {
            let mut h = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                h["kid"] = json!(kid);
            }
            if let Some(jku) = jku {
                h["jku"] = json!(jku);
            }
            h
        });
    let time = move || {
        prop_oneof![
            4 => Just(now),
            1 => Just(now - 3600),
            1 => Just(now + 3600),
            1 => any::<i64>(),
        ]
    };
    let claims = (
        claim_value(json!("alice")),
        prop_oneof![5 => claim_value(json!("roar")), 1 => Just(Some(json!("evil")))],
        prop_oneof![5 => claim_value(json!("roar")), 1 => Just(Some(json!("other")))],
        (time(), 1i64..7200).prop_map(|(t, ttl)| t.saturating_add(ttl)),
        time().prop_map(|t| t.saturating_sub(1)),
        prop::option::of(prop::sample::select(vec![
            json!(["admin"]),
            json!("admin"),
            json!([1]),
        ])),
    )
        .prop_map(|(sub, iss, aud, exp, nbf, roles)| {
            let mut c = json!({"exp": exp, "nbf": nbf, "iat": nbf});
            for (k, v) in [("sub", sub), ("iss", iss), ("aud", aud), ("roles", roles)] {
                if let Some(v) = v {
                    c[k] = v;
                }
            }
            c
        });
    let signing = prop::sample::select(vec![
        Signing::Secret,
        Signing::OtherSecret,
        Signing::Empty,
        Signing::Garbage,
    ]);
    (header, claims, signing).prop_map(|(h, c, signing)| {
        let message = format!("{}.{}", b64(&h), b64(&c));
        let sig = match signing {
            Signing::Secret => sign(&message, SECRET),
            Signing::OtherSecret => sign(&message, "another-secret-0123456789abcdef"),
            Signing::Empty => String::new(),
            Signing::Garbage => URL_SAFE_NO_PAD.encode([7u8; 32]),
        };
        (
            format!("{message}.{sig}"),
            json!({"header": h, "claims": c}),
            signing,
        )
    })
}

fn sign(message: &str, secret: &str) -> String {
    crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .expect("HS256 signs anything")
}

/// Claims roar accepts: the configured issuer and audience, a string subject, a time window
/// that included the moment of the check (5 s leeway; `before` and `after` bracket the call, so
/// a second ticking over during it does not make the check wrong).
fn acceptable(parts: &Value, got: &Claims, before: i64, after: i64) -> Result<(), String> {
    let c = &parts["claims"];
    let ok = parts["header"]["alg"] == "HS256"
        && c["sub"] == got.sub
        && c["iss"] == "roar"
        && c["aud"] == "roar"
        && c["exp"] == got.exp
        && c["nbf"] == got.nbf
        && got.exp >= before - 5
        && got.nbf <= after + 5;
    ok.then_some(())
        .ok_or_else(|| format!("accepted {parts} as {got:?}"))
}

/// A refusal is one of the errors a client's token may cause; anything else (not configured,
/// a JWKS fetch) would mean the token reached a path it must not.
fn refused(e: &AuthError) -> bool {
    matches!(
        e,
        AuthError::Invalid(_) | AuthError::Expired | AuthError::UnknownKey
    )
}

#[test]
fn only_well_signed_valid_tokens_are_accepted() {
    let auth = authenticator();
    fuzz(
        "jwt built",
        10_000,
        built_token(),
        |(token, parts, signing)| {
            let before = chrono::Utc::now().timestamp();
            let verdict = auth.verify(&token);
            let after = chrono::Utc::now().timestamp();
            match verdict {
                Ok(claims) if matches!(signing, Signing::Secret) => {
                    acceptable(&parts, &claims, before, after)
                }
                Ok(claims) => Err(format!("{signing:?} token accepted: {parts} as {claims:?}")),
                Err(e) if refused(&e) => Ok(()),
                Err(e) => Err(format!("{e:?} for {parts}")),
            }
        },
    );
}

#[test]
fn garbage_and_mutated_tokens_are_refused() {
    let auth = authenticator();
    let valid = auth.mint("alice", &["admin"], Some(3600)).unwrap();
    let original = auth.verify(&valid).unwrap();
    let inputs = prop_oneof![
        3 => mutated(vec![valid.into_bytes()]).prop_map(|(_, b)| String::from_utf8_lossy(&b).into_owned()),
        1 => "[A-Za-z0-9_.=-]{0,200}",
        1 => any::<String>(),
    ];
    fuzz("jwt mutated", 10_000, inputs, |token| {
        match auth.verify(&token) {
            // Only the untouched claims pass (a mutation that still verifies changed nothing that
            // is signed).
            Ok(c) if c == original => Ok(()),
            Ok(c) => Err(format!("{token:?} accepted as {c:?}")),
            Err(e) if refused(&e) => Ok(()),
            Err(e) => Err(format!("{e:?} for {token:?}")),
        }
    });
}
