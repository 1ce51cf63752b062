//! Every route the orchestrator serves is an operation of its OpenAPI document, method by
//! method, and the document has no operation the router does not serve. The router's routes
//! are read from its source (axum does not list them), so a route added there without a
//! `#[utoipa::path]` in `openapi.rs` fails here, before any fuzzer could miss it.

use std::collections::BTreeSet;

use serde_json::Value;

/// The router's source: every route is one `.route("<path>", <method>(..).<method>(..))` call.
const ROUTES: &str = include_str!("../../orchestrator/src/routes/mod.rs");

/// The studio's pages are a browser app served beside the API, not part of it.
const NOT_API: [&str; 3] = ["/studio", "/studio/", "/studio/{name}"];

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// (METHOD, path) of every route in `src`.
fn routed(src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    // Each piece starts with a route's path literal and runs to the next `.route(`.
    for piece in src.split(".route(").skip(1) {
        let piece = piece.trim_start();
        let path = piece
            .strip_prefix('"')
            .and_then(|p| p.split('"').next())
            .expect("a route's first argument is its path literal");
        let call = piece.split(".layer(").next().unwrap_or(piece);
        let mut methods = 0;
        for m in METHODS {
            // `post(` as a call, not as the tail of another word (`repost(`).
            let mut rest = call;
            while let Some(i) = rest.find(&format!("{m}(")) {
                let before = rest[..i].chars().last();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.insert((m.to_uppercase(), path.to_string()));
                    methods += 1;
                }
                rest = &rest[i + m.len() + 1..];
            }
        }
        assert!(methods > 0, "no method found for route {path}");
    }
    out
}

/// (METHOD, path) of every operation of the document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(&roar_orchestrator::openapi::json()).unwrap();
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_an_operation_of_the_document_and_back() {
    let routes: BTreeSet<_> = routed(ROUTES)
        .into_iter()
        .filter(|(_, p)| !NOT_API.contains(&p.as_str()))
        .collect();
    let doc = documented();
    let undocumented: Vec<_> = routes.difference(&doc).collect();
    let unrouted: Vec<_> = doc.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an operation in the OpenAPI document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations the router does not serve: {unrouted:?}"
    );
    // The reader sees what it was written for: the webhooks' chained methods count twice.
    assert!(routes.contains(&("POST".into(), "/webhooks".into())));
    assert!(routes.contains(&("GET".into(), "/webhooks".into())));
    assert!(routes.len() >= 25, "{routes:?}");
    assert!(roar_orchestrator::openapi::yaml().starts_with("openapi: 3."));
}

#[test]
fn the_route_reader_sees_chained_methods_and_skips_layers() {
    let src = r#"Router::new()
        .route("/a", get(x::a).post(x::b))
        .route(
            "/b/{id}",
            delete(x::c),
        )
        .layer(axum::middleware::from_fn_with_state(t, crate::timeouts::request))"#;
    let got: Vec<_> = routed(src).into_iter().collect();
    let want: Vec<(String, String)> = [("DELETE", "/b/{id}"), ("GET", "/a"), ("POST", "/a")]
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}
