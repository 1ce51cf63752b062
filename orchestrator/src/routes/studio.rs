//! `/studio`: the web page of the studio (upload, models, live progress, playback). Its three
//! files are built by the TypeScript SDK's `npm run build:studio` into `orchestrator/studio/`
//! and committed, so the Rust build never needs Node; they are compiled into the binary, or read
//! from `http.studio_dir` when a deployer serves a page of their own.
//!
//! Every answer carries a Content-Security-Policy that allows scripts and styles from this
//! origin only (the page has no inline script), and network and media access only to this
//! origin, the public URL that signed links use, and the S3 endpoint of presigned links.

use std::path::Path;
use std::sync::LazyLock;

use axum::extract::{Path as UrlPath, State};
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, LOCATION, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use roar_common::Config;
use sha2::{Digest, Sha256};

use crate::AppState;

/// The page's files: name under `/studio/`, content type, the built copy.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../studio/index.html"),
    ),
    (
        "studio.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../studio/studio.js"),
    ),
    (
        "studio.css",
        "text/css; charset=utf-8",
        include_bytes!("../../studio/studio.css"),
    ),
];

/// The built-in files gzipped once (they are the same for the life of the process).
static GZIPPED: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| ASSETS.iter().map(|(_, _, body)| gzip(body)).collect());

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// `GET /studio`: the page's files are relative to `/studio/`.
pub async fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(LOCATION, HeaderValue::from_static("/studio/"))],
    )
        .into_response()
}

/// `GET /studio/`: the page.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve(&state.cfg, "index.html", &headers).await
}

/// `GET /studio/{name}`: its script and style sheet.
pub async fn asset(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    serve(&state.cfg, &name, &headers).await
}

async fn serve(cfg: &Config, name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such studio file").into_response();
    };
    let (_, content_type, built_in) = ASSETS[i];
    let built = cfg.http.studio_dir.is_empty();
    let body = if built {
        built_in.to_vec()
    } else {
        match tokio::fs::read(Path::new(&cfg.http.studio_dir).join(name)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, name, "studio file missing from http.studio_dir");
                return (StatusCode::NOT_FOUND, "no such studio file").into_response();
            }
        }
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let mut resp = if headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        let gz = if built {
            GZIPPED[i].clone()
        } else {
            gzip(&body)
        };
        ([(CONTENT_ENCODING, HeaderValue::from_static("gzip"))], gz).into_response()
    } else {
        body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    // Revalidated on every load (the ETag makes that cheap), so a new roar serves its page.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(cfg)) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    resp
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The page talks to this origin; signed links use `http.public_url` (which may be another
/// origin behind a proxy) and presigned links the S3 endpoint.
pub fn content_security_policy(cfg: &Config) -> String {
    let mut remote = vec!["'self'".to_string()];
    if let Some(o) = origin(&cfg.http.public_url) {
        remote.push(o);
    }
    if cfg.storage.url.starts_with("s3://") {
        match origin(&cfg.storage.s3_endpoint) {
            Some(o) => remote.push(o),
            // AWS itself: the bucket's virtual host or the regional endpoint.
            None => remote.push("https://*.amazonaws.com".into()),
        }
    }
    remote.dedup();
    let remote = remote.join(" ");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {remote}; media-src {remote} blob:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// `scheme://host[:port]` of a URL, if it is an http(s) URL with only safe characters (so
/// that it cannot add a directive to the policy).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?;
    let safe = |b: u8| b.is_ascii_alphanumeric() || b".-:[]".contains(&b);
    (!host.is_empty() && host.bytes().all(safe)).then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority_only() {
        assert_eq!(
            origin("https://roar.example.org/api?x=1").as_deref(),
            Some("https://roar.example.org")
        );
        assert_eq!(
            origin("http://user:pw@127.0.0.1:9000").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(origin(""), None);
        assert_eq!(origin("file:///tmp"), None);
        assert_eq!(origin("https://evil; script-src *"), None);
    }

    #[test]
    fn the_policy_names_the_public_url_and_the_s3_endpoint() {
        let mut cfg = Config::default();
        cfg.http.public_url = "https://roar.example.org".into();
        cfg.storage.url = "s3://bucket/prefix".into();
        cfg.storage.s3_endpoint = "http://127.0.0.1:9000".into();
        let csp = content_security_policy(&cfg);
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(
            csp.contains("connect-src 'self' https://roar.example.org http://127.0.0.1:9000;"),
            "{csp}"
        );
        cfg.storage.s3_endpoint.clear();
        assert!(content_security_policy(&cfg).contains("https://*.amazonaws.com"));
        cfg.storage.url = "file:///tmp/store".into();
        assert!(!content_security_policy(&cfg).contains("amazonaws"));
    }

    #[test]
    fn gzip_is_sent_unless_refused() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_built_in_files_are_the_page() {
        let (_, _, html) = ASSETS[0];
        let html = std::str::from_utf8(html).unwrap();
        assert!(html.contains("studio.js") && html.contains("studio.css"));
        // No inline script: the policy would block it.
        assert!(!html.contains("<script>"));
        for (i, (_, _, body)) in ASSETS.iter().enumerate() {
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&GZIPPED[i][..]),
                &mut out,
            )
            .unwrap();
            assert_eq!(&out[..], *body);
        }
    }
}
