//! Issue 21, webhooks: registration refuses targets the SSRF guard forbids (422, nothing
//! stored); the guard's classifier and resolver checks, driven directly with a resolver the
//! test controls; and one stack run with `roar webhooks` in it: a signed delivery to a
//! loopback receiver this test runs (opened by the development allow-list) that answers 500
//! first and is retried, a job's `callback_url`, a name that resolves to a private address
//! (refused before any connection), and a redirect to a loopback address outside the
//! allow-list (never followed); the signing secrets sealed at rest (no row or topic holds them
//! readable) and a rotated key reported on the delivery. No traffic leaves loopback.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use roar_common::config::{Cidr, Secret, WebhooksConfig};
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS};
use roar_webhooks::deliver::backoff;
use roar_webhooks::dispatch::{check_filters, default_events, matches};
use roar_webhooks::guard::{classify, Forbidden, Guard, GuardError, Lookup};
use roar_webhooks::sign;
use roar_webhooks::status::{DeliveryStatus, UnknownStatus};
use serde_json::{json, Value};

use crate::support::{melody_wav, read_topic, Infra, Services, WEBHOOK_KEY};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn delivery_statuses_keep_their_stored_text() {
    // These texts are in existing `webhook_deliveries` rows: a change needs a migration.
    let words: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(words, ["pending", "delivered", "failed", "refused"]);
    for s in DeliveryStatus::ALL {
        assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(s));
        assert_eq!(DeliveryStatus::try_from(s.to_string()), Ok(s));
        assert_eq!(s.is_final(), s != DeliveryStatus::Pending);
    }
    assert_eq!(
        "Delivered".parse::<DeliveryStatus>(),
        Err(UnknownStatus("Delivered".into()))
    );
    // The metric's outcome label: an attempt that leaves a delivery pending is a retry.
    let labels: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.outcome()).collect();
    assert_eq!(labels, ["retry", "delivered", "failed", "refused"]);
}

#[test]
fn the_classifier_names_every_internal_range_and_passes_public_ones() {
    use Forbidden::*;
    let table = [
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(Unspecified)),
        ("10.0.0.1", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("100.64.0.1", Some(SharedAddressSpace)),
        ("100.127.255.254", Some(SharedAddressSpace)),
        ("100.128.0.1", None),
        ("127.0.0.1", Some(Loopback)),
        ("127.45.6.7", Some(Loopback)),
        ("169.254.169.254", Some(Metadata)),
        ("169.254.1.1", Some(LinkLocal)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.32.0.1", None),
        ("192.0.0.8", Some(Reserved)),
        ("192.0.2.10", Some(Documentation)),
        ("192.168.1.1", Some(Private)),
        ("198.18.0.1", Some(Reserved)),
        ("198.51.100.7", Some(Documentation)),
        ("203.0.113.9", Some(Documentation)),
        ("224.0.0.251", Some(Multicast)),
        ("239.255.255.250", Some(Multicast)),
        ("240.0.0.1", Some(Reserved)),
        ("255.255.255.255", Some(Broadcast)),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("::127.0.0.1", Some(Reserved)),
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:10.1.2.3", Some(Private)),
        ("::ffff:169.254.169.254", Some(Metadata)),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::a9fe:a9fe", Some(Metadata)),
        ("64:ff9b::c0a8:101", Some(Private)),
        ("64:ff9b::808:808", None),
        ("64:ff9b:1::1", Some(Private)),
        ("2002:7f00:1::1", Some(Loopback)),
        ("2002:0808:0808::1", None),
        ("2001::1", Some(Reserved)),
        ("2001:db8::1", Some(Documentation)),
        ("3fff::1", Some(Documentation)),
        ("100::1", Some(Reserved)),
        ("fc00::1", Some(UniqueLocal)),
        ("fd12:3456::1", Some(UniqueLocal)),
        ("fd00:ec2::254", Some(Metadata)),
        ("fe80::1", Some(LinkLocal)),
        ("febf::1", Some(LinkLocal)),
        ("fec0::1", Some(UniqueLocal)),
        ("ff02::1", Some(Multicast)),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001::200e", None),
        ("2001:200:dff:fff1::1", None),
        // SIIT's translated form carries an IPv4 address too.
        ("::ffff:0:7f00:1", Some(Loopback)),
        ("::ffff:0:808:808", None),
        // The IETF protocol block (benchmarking, ORCHID), SRv6, and whatever lies outside
        // global unicast (2000::/3).
        ("2001:2::1", Some(Reserved)),
        ("2001:20::1", Some(Reserved)),
        ("5f00::1", Some(Reserved)),
        ("1::1", Some(Reserved)),
        ("4000::1", Some(Reserved)),
        ("e000::1", Some(Reserved)),
    ];
    for (addr, want) in table {
        assert_eq!(classify(ip(addr)), want, "{addr}");
    }
}

/// A resolver the test controls: fixed answers, NXDOMAIN for the rest.
struct Fixed(HashMap<&'static str, Vec<IpAddr>>);

#[async_trait::async_trait]
impl Lookup for Fixed {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "NXDOMAIN"))
    }
}

fn guard(allow: &[&str]) -> Guard {
    let names = HashMap::from([
        ("public.test", vec![ip("93.184.216.34")]),
        ("internal.test", vec![ip("10.0.0.5")]),
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("mixed.test", vec![ip("93.184.216.34"), ip("192.168.0.2")]),
        ("v6-loopback.test", vec![ip("::ffff:127.0.0.1")]),
        ("empty.test", vec![]),
    ]);
    let allow = allow.iter().map(|c| Cidr::parse(c).unwrap()).collect();
    Guard::with_lookup(allow, Arc::new(Fixed(names)), 2048)
}

#[tokio::test]
async fn names_are_judged_by_every_address_they_resolve_to() {
    let g = guard(&[]);
    assert_eq!(
        g.resolve_vetted("public.test").await,
        Ok(vec![ip("93.184.216.34")])
    );
    for (name, class) in [
        ("internal.test", Forbidden::Private),
        ("metadata.test", Forbidden::Metadata),
        ("mixed.test", Forbidden::Private),
        ("v6-loopback.test", Forbidden::Loopback),
    ] {
        match g.resolve_vetted(name).await {
            Err(GuardError::Forbidden { class: c, host, .. }) => {
                assert_eq!((c, host.as_str()), (class, name))
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    for name in ["nowhere.test", "empty.test"] {
        let e = g.resolve_vetted(name).await.unwrap_err();
        assert!(e.retryable(), "{name}: {e}");
    }
    // A literal is judged as given, without a lookup.
    assert!(matches!(
        g.resolve_vetted("127.0.0.1").await,
        Err(GuardError::Forbidden { .. })
    ));
    assert!(matches!(
        g.resolve_vetted("[::1]").await,
        Err(GuardError::Forbidden { .. })
    ));

    // The allow-list opens its networks and nothing else.
    let g = guard(&["127.0.0.1/32", "10.0.0.0/24"]);
    assert!(g.resolve_vetted("internal.test").await.is_ok());
    assert!(
        g.resolve_vetted("v6-loopback.test").await.is_ok(),
        "mapped form"
    );
    assert!(g.resolve_vetted("127.0.0.1").await.is_ok());
    assert!(g.resolve_vetted("127.0.0.2").await.is_err());
    assert!(g.resolve_vetted("metadata.test").await.is_err());
    assert!(g.check_url("http://127.0.0.1:8080/hook").is_ok());
    assert!(g.check_url("http://localhost:8080/hook").is_ok());
}

#[test]
fn urls_that_cannot_be_delivered_safely_are_refused() {
    let g = guard(&[]);
    for ok in [
        "https://hooks.example.com/roar",
        "http://93.184.216.34:8080/x?y=1",
        "https://internal.test/",
    ] {
        assert!(g.check_url(ok).is_ok(), "{ok}");
    }
    let refused = [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/", "only http and https"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("not a url", "not a URL"),
        ("http://127.0.0.1/", "loopback"),
        ("http://localhost:9000/", "loopback"),
        ("http://api.localhost/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://100.100.100.200/", "CGNAT"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
    ];
    for (url, why) in refused {
        let e = g.check_url(url).unwrap_err();
        assert!(!e.retryable(), "{url}");
        assert!(e.to_string().contains(why), "{url}: {e}");
    }
    let long = format!("https://example.com/{}", "a".repeat(2048));
    assert!(g
        .check_url(&long)
        .unwrap_err()
        .to_string()
        .contains("longer"));
}

/// The OpenAPI document's URL and secret patterns admit only what registration accepts: every
/// URL of the pattern passes the guard's URL checks (with every network open, as the spec
/// fuzzer runs), and a secret matches the pattern exactly when `sign::key` takes it.
#[test]
fn the_documented_url_and_secret_forms_are_what_registration_accepts() {
    use roar_orchestrator::views::{is_webhook_secret, is_webhook_url};
    let open = guard(&["0.0.0.0/0", "::/0"]);
    // 2048 bytes, `webhooks.max_url_len`'s default; one more is too long.
    let long_path = format!("http://a.b/{}", "x".repeat(2037));
    let too_long = format!("{long_path}y");
    assert_eq!(long_path.len(), 2048);
    for url in [
        "http://a",
        "https://hooks.example.com/roar?k=1&b=%2F",
        "http://0a.1.b9:65535/",
        "http://255.255.255.255:1/a/b/../c",
        "http://1.2.3.4",
        "http://localhost:8080/x",
        "http://x-y.z-0.w/%7E",
        "https://a.b:10000/?",
        "http://[::1]/",
        "http://[::]/",
        "http://[2001:db8::1]/hook",
        "https://[2606:4700:4700::1111]:8443/x?y=1",
        "http://[1:2:3:4:5:6:7:8]/",
        "http://[1::]/",
        "http://[1:2:3:4:5:6:7::]/",
        "http://[fe80::1:2:3:4:5:6]/",
        "http://[::ffff:8.8.8.8]/",
        "http://[1:2:3:4:5:6:1.2.3.4]/",
        "http://[ABCD:ef01::2]/",
        long_path.as_str(),
    ] {
        assert!(is_webhook_url(url), "{url} is of the pattern");
        assert!(
            open.check_url(url).is_ok(),
            "{url}: {:?}",
            open.check_url(url)
        );
    }
    for url in [
        "http://a.1",
        "http://a.0x",
        "http://1.2.3.256",
        "http://01.2.3.4",
        "http://1.2.3",
        "http://a:0",
        "http://a:65536",
        "http://xn--a.b",
        "http://-a.b",
        "http://[1:2:3:4:5:6:7:8:9]/",
        "http://[1:2:3:4:5:6:7]/",
        "http://[:::1]/",
        "http://[1::2::3]/",
        "http://[12345::1]/",
        "http://[::1%25eth0]/",
        "http://[::1.2.3]/",
        "http://[::01.2.3.4]/",
        "http://[]/",
        "http://::1/",
        "http://a/b c",
        "http://a/#f",
        "ftp://a",
        "http://u@a",
        too_long.as_str(),
    ] {
        assert!(!is_webhook_url(url), "{url} is not of the pattern");
    }

    let b64 = |n: usize, fill: u8| {
        use base64::engine::general_purpose::STANDARD;
        format!("whsec_{}", STANDARD.encode(vec![fill; n]))
    };
    let mut samples: Vec<String> = (0..=70)
        .flat_map(|n| [b64(n, 0xA5), b64(n, 0xFF)])
        .collect();
    let canonical = b64(25, 7);
    samples.extend([
        // Unpadded, a non-zero unused bit, padding in the middle, another alphabet, no prefix.
        canonical.trim_end_matches('=').to_string(),
        canonical.replace("Bw==", "Bx=="),
        format!("{}={}", &canonical[..20], &canonical[20..]),
        b64(30, 0xFB).replace('+', "-").replace('/', "_"),
        b64(30, 0xFB).replace("whsec_", ""),
        format!("{} ", b64(30, 1)),
        sign::new_secret(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
    ]);
    let mut accepted = 0;
    for s in &samples {
        let takes = sign::key(s).is_ok();
        assert_eq!(
            is_webhook_secret(s),
            takes,
            "{s}: sign::key takes it: {takes}"
        );
        accepted += usize::from(takes);
    }
    // 24 to 64 bytes in two fills, the new secret and the published example.
    assert_eq!(accepted, 2 * 41 + 2);
}

#[test]
fn networks_lists_filters_secrets_and_backoff_parse_as_documented() {
    let n = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(n.contains(ip("10.255.0.1")));
    assert!(!n.contains(ip("11.0.0.1")));
    assert!(!n.contains(ip("::ffff:10.0.0.1")));
    let v6 = Cidr::parse("fd00::/8").unwrap();
    assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
    assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    for bad in ["10.0.0.0/33", "host/8", "::1/129", ""] {
        assert_eq!(Cidr::parse(bad), None, "{bad}");
    }
    let c = WebhooksConfig {
        allow_networks: "127.0.0.1/32, ::1".into(),
        resolve: "Receiver.test=127.0.0.1".into(),
        ..WebhooksConfig::default()
    };
    assert_eq!(c.allowed_networks().unwrap().len(), 2);
    assert_eq!(
        c.static_names().unwrap(),
        vec![("receiver.test".to_string(), ip("127.0.0.1"))]
    );
    let mut cfg = roar_common::Config::default();
    cfg.webhooks.resolve = "receiver.test=nowhere".into();
    assert!(cfg.validate().unwrap_err().to_string().contains("nowhere"));
    cfg.webhooks.resolve = String::new();
    cfg.webhooks.allow_networks = "10.0.0.0/40".into();
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("10.0.0.0/40"));

    let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&f(&["job.completed"]), "job.completed"));
    assert!(!matches(&f(&["job.completed"]), "job.failed"));
    assert!(matches(&f(&["job.*"]), "job.progress"));
    assert!(matches(&f(&["*"]), "job.started"));
    assert_eq!(
        default_events(),
        f(&["job.completed", "job.failed", "job.canceled", "job.skipped"])
    );
    assert!(check_filters(&default_events()).is_ok());
    assert!(check_filters(&f(&["job.retry_scheduled", "job.progress", "job.*", "*"])).is_ok());
    for bad in ["job.queued", "file.*", "job.", "completed", ""] {
        assert!(check_filters(&f(&[bad])).is_err(), "{bad}");
    }

    let s = sign::new_secret();
    assert_eq!(sign::key(&s).unwrap().len(), 32);
    assert_ne!(s, sign::new_secret());
    for bad in [
        "",
        "whsec_",
        "whsec_!!!",
        "whsec_c2hvcnQ=",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert!(sign::key(bad).is_err(), "{bad}");
    }
    // The Standard Webhooks specification's published example (recomputed with Python's
    // hmac module), so receivers using its reference libraries accept roar's signatures.
    let k = sign::key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(
        sign::signature(
            &k,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );

    let cfg = WebhooksConfig {
        backoff_initial_ms: 1000,
        backoff_max_ms: 5000,
        ..WebhooksConfig::default()
    };
    let secs: Vec<i64> = (1..=5).map(|a| backoff(&cfg, a).num_seconds()).collect();
    assert_eq!(secs, [1, 2, 4, 5, 5]);
    assert_eq!(backoff(&cfg, 1000).num_seconds(), 5);
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    redirect_to: Arc<Mutex<String>>,
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut got = r.got.lock().unwrap();
        got.push(Received {
            path: path.clone(),
            headers,
            body,
        });
        got.iter().filter(|g| g.path == path).count()
    };
    match path.as_str() {
        // The first attempt fails: the dispatcher must try again.
        "hook" if n == 1 => (StatusCode::INTERNAL_SERVER_ERROR, "busy").into_response(),
        "redirect" => {
            let to = r.redirect_to.lock().unwrap().clone();
            (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

fn header(r: &Received, k: &str) -> String {
    r.headers.get(k).unwrap().to_str().unwrap().to_string()
}

/// The signature a receiver expects of `r` with `secret`, computed with HMAC from its crate.
fn expected_signature(secret: &str, r: &Received) -> String {
    let (id, ts) = (header(r, "webhook-id"), header(r, "webhook-timestamp"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

/// Verifies a delivery the way a receiver would; returns its body.
fn verify(secret: &str, r: &Received) -> Value {
    let sig = header(r, "webhook-signature");
    assert_eq!(
        sig,
        expected_signature(secret, r),
        "signature of {}",
        r.path
    );
    let ts = header(r, "webhook-timestamp");
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "timestamp {ts}");
    serde_json::from_slice(&r.body).unwrap()
}

async fn deliveries_until(
    svc: &Services,
    token: &str,
    webhook: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = svc
            .get_json(token, &format!("/webhooks/{webhook}/deliveries"))
            .await;
        assert_eq!(code, 200, "{v}");
        if v["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && done(&d[0]))
        {
            return v["deliveries"][0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{webhook}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A receiver on 127.0.0.1 (the tests' allow-listed address), serving until the test ends.
async fn serve_receiver() -> (Receiver, u16) {
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_are_signed_retried_recorded_and_kept_off_internal_addresses() {
    // The receiver on 127.0.0.1 (allow-listed); the redirect's target on 127.0.0.2 (loopback,
    // not allow-listed) only counts connections.
    let (receiver, port) = serve_receiver().await;
    let trap = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let trapped = Arc::new(Mutex::new(0usize));
    let count = trapped.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = trap.accept().await {
            *count.lock().unwrap() += 1;
        }
    });
    *receiver.redirect_to.lock().unwrap() = format!("http://127.0.0.2:{trap_port}/trap");

    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.webhooks.allow_networks = "127.0.0.1/32".into();
    cfg.webhooks.resolve = "receiver.test=127.0.0.1,internal.test=10.0.0.7".into();
    cfg.webhooks.backoff_initial_ms = 200;
    cfg.webhooks.backoff_max_ms = 400;
    cfg.webhooks.max_attempts = 3;
    cfg.webhooks.poll_interval_ms = 50;
    cfg.webhooks.timeout_seconds = 5;
    cfg.webhooks.connect_timeout_seconds = 2;
    cfg.validate().unwrap();
    let svc = Services::start_with(
        cfg,
        roar::services::Roles {
            pipeline: false,
            webhooks: true,
        },
    )
    .await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);

    // Forbidden targets: 422 with the reason, nothing stored.
    for (url, why) in [
        ("http://10.1.2.3/hook".to_string(), "private"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "metadata",
        ),
        (format!("http://[::1]:{port}/hook"), "loopback"),
        (format!("http://127.0.0.2:{port}/hook"), "loopback"),
        (format!("http://[::ffff:10.0.0.1]:{port}/"), "private"),
        ("http://[2001:db8::1]/hook".into(), "documentation"),
        ("http://[fd00::1]/hook".into(), "unique local"),
        ("http://[fe80::1]/hook".into(), "link-local"),
        ("http://[64:ff9b::a00:1]/hook".into(), "private"),
        ("http://[5f00::1]/hook".into(), "reserved"),
        ("ftp://receiver.test/hook".into(), "only http and https"),
        (
            format!("http://u:p@receiver.test:{port}/hook"),
            "credentials",
        ),
    ] {
        let (code, body) = svc
            .post_json(&alice, "/webhooks", &json!({"url": url}))
            .await;
        assert_eq!(code, 422, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{url}: {body}"
        );
    }
    let (code, body) = svc
        .post_json(
            &alice,
            "/webhooks",
            &json!({"url": format!("http://receiver.test:{port}/hook"), "events": ["job.queued"]}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // Past the guard, forms the document's pattern does not admit are refused all the same.
    for url in [
        format!("http://receiver.test:{port}/hook#part"),
        format!("HTTP://receiver.test:{port}/hook"),
    ] {
        let (code, body) = svc
            .post_json(&alice, "/webhooks", &json!({"url": url}))
            .await;
        assert_eq!(code, 422, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("OpenAPI pattern"),
            "{url}: {body}"
        );
    }
    let (_, listed) = svc.get_json(&alice, "/webhooks").await;
    assert_eq!(listed["webhooks"], json!([]), "{listed}");
    // A bracketed IPv6 literal is a URL like any other: a public one is registered (and
    // deleted at once: nothing may be sent there), and the allow-list's IPv4 network opens
    // its mapped form too.
    for (url, stored) in [
        (
            "http://[2606:4700:4700::1111]/hook".to_string(),
            "http://[2606:4700:4700::1111]/hook".to_string(),
        ),
        (
            format!("http://[::FFFF:127.0.0.1]:{port}/mapped"),
            format!("http://[::ffff:7f00:1]:{port}/mapped"),
        ),
    ] {
        let (code, body) = svc
            .post_json(&alice, "/webhooks", &json!({"url": url}))
            .await;
        assert_eq!(code, 201, "{url}: {body}");
        assert_eq!(body["url"], stored.as_str(), "{body}");
        let r = reqwest::Client::new()
            .delete(svc.url(&format!(
                "/webhooks/{}",
                body["webhook_id"].as_str().unwrap()
            )))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    let register = |url: String| {
        let (svc, alice) = (&svc, &alice);
        async move {
            let (code, body) = svc
                .post_json(
                    alice,
                    "/webhooks",
                    &json!({"url": url, "events": ["job.completed"]}),
                )
                .await;
            assert_eq!(code, 201, "{url}: {body}");
            (
                body["webhook_id"].as_str().unwrap().to_string(),
                body["secret"].as_str().unwrap().to_string(),
            )
        }
    };
    let (hook, hook_secret) = register(format!("http://receiver.test:{port}/hook")).await;
    let (internal, _) = register(format!("http://internal.test:{port}/internal")).await;
    let (redirect, _) = register(format!("http://127.0.0.1:{port}/redirect")).await;

    // Another tenant sees none of it.
    let (_, theirs) = svc.get_json(&bob, "/webhooks").await;
    assert_eq!(theirs["webhooks"], json!([]));
    assert_eq!(
        svc.get_json(&bob, &format!("/webhooks/{hook}/deliveries"))
            .await
            .0,
        404
    );
    let r = reqwest::Client::new()
        .delete(svc.url(&format!("/webhooks/{hook}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A job with its own callback, and the user's webhooks, on one completion.
    let file = svc
        .ready_file(&alice, "tone.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;
    // A callback's members are never null, and its events and secret need its URL.
    let cb = format!("http://receiver.test:{port}/cb");
    for (extra, why) in [
        (json!({"callback_url": null}), "may not be null"),
        (
            json!({"callback_url": cb, "callback_secret": null}),
            "may not be null",
        ),
        (
            json!({"callback_events": ["job.*"]}),
            "go with callback_url",
        ),
        (
            json!({"callback_url": cb, "callback_events": []}),
            "1 to 16",
        ),
    ] {
        let mut req = json!({"file_id": file, "model": "pitch", "variation": "tiny"});
        req.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (code, body) = svc.post_json(&alice, "/process", &req).await;
        assert_eq!(code, 422, "{req}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{req}: {body}"
        );
    }
    let r = reqwest::Client::new()
        .post(svc.url("/process"))
        .bearer_auth(&alice)
        .json(
            &json!({"file_id": file, "model": "pitch", "variation": "tiny",
                      "callback_url": format!("http://receiver.test:{port}/cb")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The user's three webhooks are listed, without secrets; the job's callback is not.
    let (_, listed) = svc.get_json(&alice, "/webhooks").await;
    let ids: Vec<&str> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{listed}");
    assert!(
        [&hook, &internal, &redirect]
            .iter()
            .all(|h| ids.contains(&h.as_str())),
        "{listed}"
    );
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    let answered = |k: &str| r.headers().get(k).unwrap().to_str().unwrap().to_string();
    let (callback, callback_secret) = (
        answered("callback-webhook-ids"),
        answered("callback-secret"),
    );
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;

    let done = deliveries_until(&svc, &alice, &hook, |d| d["status"] == "delivered").await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["last_status_code"], 204, "{done}");
    let cb = deliveries_until(&svc, &alice, &callback, |d| d["status"] == "delivered").await;
    assert_eq!(cb["attempts"], 1, "{cb}");
    let refused = deliveries_until(&svc, &alice, &internal, |d| d["status"] == "refused").await;
    let e = refused["last_error"].as_str().unwrap();
    assert!(e.contains("10.0.0.7") && e.contains("private"), "{refused}");
    let failed = deliveries_until(&svc, &alice, &redirect, |d| d["status"] == "failed").await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("not followed"),
        "{failed}"
    );
    assert_eq!(*trapped.lock().unwrap(), 0, "the redirect was followed");

    // What the receiver got: signed, the same id on the retry, the job's event.
    let got = receiver.got.lock().unwrap().clone();
    let of = |p: &str| got.iter().filter(|g| g.path == p).collect::<Vec<_>>();
    assert!(
        of("internal").is_empty(),
        "the guard let a private name through"
    );
    let hooks = of("hook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[0].headers["webhook-id"],
        hooks[1].headers["webhook-id"]
    );
    for h in &hooks {
        let v = verify(&hook_secret, h);
        assert_eq!(v["type"], "job.completed", "{v}");
        assert_eq!(v["data"]["job_id"], job.as_str(), "{v}");
        assert_eq!(v["data"]["file_id"], file.as_str(), "{v}");
        assert_eq!(
            h.headers["webhook-id"].to_str().unwrap(),
            v["data"]["event_id"].as_str().unwrap()
        );
    }
    let cbs = of("cb");
    assert_eq!(cbs.len(), 1);
    assert_eq!(
        verify(&callback_secret, cbs[0])["data"]["job_id"],
        job.as_str()
    );
    // The wrong key does not verify.
    assert_ne!(
        header(cbs[0], "webhook-signature"),
        expected_signature(&sign::new_secret(), cbs[0])
    );

    // The secrets that signed those deliveries are readable nowhere: every registration row is
    // sealed under the configured key (its id beside it), and no topic carries them.
    let pool = sqlx::PgPool::connect(svc.cfg.database.url.expose())
        .await
        .unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT row_to_json(r)::text, r.secret, r.secret_key_id FROM webhook_registrations r",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4, "three webhooks and one callback");
    let brokers = svc.cfg.kafka.brokers.clone();
    for secret in [&hook_secret, &callback_secret] {
        let key_part = secret.strip_prefix("whsec_").unwrap();
        for (row, clear, key_id) in &rows {
            assert!(!row.contains(key_part), "a secret in a row: {row}");
            assert_eq!((clear, key_id.as_deref()), (&None, Some("1")), "{row}");
        }
        for topic in [
            FILES.to_string(),
            JOB_EVENTS.to_string(),
            jobs_topic("pitch"),
        ] {
            let carried = read_topic(&brokers, &topic).iter().any(|d| {
                d.payload
                    .as_deref()
                    .is_some_and(|p| p.windows(key_part.len()).any(|w| w == key_part.as_bytes()))
            });
            assert!(!carried, "{topic} carries a signing secret");
        }
    }

    // Records past webhooks.retention_days go: finished deliveries, then job callbacks with
    // nothing left; a user's webhook and fresh records stay.
    for (table, column, id) in [
        ("webhook_deliveries", "finished_at", &hook),
        ("webhook_deliveries", "finished_at", &callback),
        ("webhook_registrations", "created_at", &callback),
    ] {
        sqlx::query(&format!(
            "UPDATE {table} SET {column} = now() - interval '31 days' WHERE webhook_id = $1"
        ))
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    let days = svc.cfg.webhooks.retention_days;
    assert_eq!(
        roar_webhooks::store::sweep(&pool, days).await.unwrap(),
        (2, 1)
    );
    let (_, left) = svc
        .get_json(&alice, &format!("/webhooks/{hook}/deliveries"))
        .await;
    assert_eq!(left["deliveries"], json!([]), "{left}");
    assert_eq!(
        svc.get_json(&alice, &format!("/webhooks/{callback}/deliveries"))
            .await
            .0,
        404
    );
    deliveries_until(&svc, &alice, &redirect, |d| d["status"] == "failed").await;

    // Key rotation: re-sealed under a new key (id 2, the old one kept as previous), the rows
    // open with the new configuration only. The running dispatcher holds key 1 alone, so its
    // next attempt on that webhook fails with the reason, naming the key id it lacks.
    let rotated = roar_webhooks::seal::SealKeys::from_config(&WebhooksConfig {
        secret_key: Secret::new("e2e-rotated-webhook-key-8d1f3a5c7e9b0246"),
        secret_key_id: "2".into(),
        previous_secret_keys: Secret::new(format!("1:{WEBHOOK_KEY}")),
        ..WebhooksConfig::default()
    })
    .unwrap();
    let (resealed, unreadable) = roar_webhooks::store::reseal(&pool, &rotated).await.unwrap();
    assert_eq!((resealed, unreadable), (3, 0), "the three webhooks left");
    assert_eq!(
        roar_webhooks::store::reseal(&pool, &rotated).await.unwrap(),
        (0, 0)
    );
    let mut tx = pool.begin().await.unwrap();
    roar_webhooks::store::record(
        &mut tx,
        std::slice::from_ref(&hook),
        "evt-after-rotation",
        "job.completed",
        "{}",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let start = Instant::now();
    let stuck = loop {
        let (_, v) = svc
            .get_json(&alice, &format!("/webhooks/{hook}/deliveries"))
            .await;
        let d = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["event_id"] == "evt-after-rotation" && d["status"] == "failed")
            .cloned();
        if let Some(d) = d {
            break d;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let e = stuck["last_error"].as_str().unwrap();
    assert!(
        e.contains("signing secret") && e.contains("\"2\"") && !e.contains(WEBHOOK_KEY),
        "{stuck}"
    );
    assert_eq!(
        of("hook").len(),
        receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == "hook")
            .count(),
        "a delivery went out without its secret"
    );

    // Deleting a webhook removes it and its record.
    let r = reqwest::Client::new()
        .delete(svc.url(&format!("/webhooks/{internal}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        svc.get_json(&alice, &format!("/webhooks/{internal}/deliveries"))
            .await
            .0,
        404
    );
    svc.stop().await;
}

/// Posts `body` to `/process`; the answer, the callback's webhook ids and its secret.
async fn process_with_callback(
    svc: &Services,
    token: &str,
    body: &Value,
) -> (u16, Value, Vec<String>, String) {
    let r = reqwest::Client::new()
        .post(svc.url("/process"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let header = |k: &str| {
        r.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let ids = header("callback-webhook-ids")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let secret = header("callback-secret");
    (code, r.json().await.unwrap(), ids, secret)
}

/// Waits until the broker holds a request on `model`'s job topic (the process manager asked).
async fn requested(svc: &Services, model: &str) {
    let start = Instant::now();
    while crate::support::topic_len(&svc.cfg.kafka.brokers, &jobs_topic(model)) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {model} job requested"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A preset's `callback_url` is one registration that hears every step's job and the
/// pipeline's end, and so does the user's own webhook that takes `pipeline.*`; a chained job on
/// a completed one gets its own. No model worker runs: the
/// test reports each job done as its worker would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_follows_every_job_of_a_preset_and_the_pipelines_end() {
    let (receiver, port) = serve_receiver().await;

    let infra = Infra::start().await;
    let mut cfg = crate::api_pipelines::no_workers(&infra);
    cfg.webhooks.allow_networks = "127.0.0.1/32".into();
    cfg.webhooks.resolve = "receiver.test=127.0.0.1".into();
    cfg.webhooks.poll_interval_ms = 50;
    let svc = Services::start_with(
        cfg,
        roar::services::Roles {
            pipeline: true,
            webhooks: true,
        },
    )
    .await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "tone.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;
    // Alice's own webhook for her pipelines' ends: the same filters, signature and end.
    let (code, user) = svc
        .post_json(
            &alice,
            "/webhooks",
            &json!({"url": format!("http://receiver.test:{port}/user"), "events": ["pipeline.*"]}),
        )
        .await;
    assert_eq!(code, 201, "{user}");
    let (user_hook, user_secret) = (
        user["webhook_id"].as_str().unwrap().to_string(),
        user["secret"].as_str().unwrap().to_string(),
    );

    let (code, p, ids, secret) = process_with_callback(
        &svc,
        &alice,
        &json!({"file_id": file, "preset": "transcribe-vocals",
                "callback_url": format!("http://receiver.test:{port}/preset")}),
    )
    .await;
    assert_eq!(code, 202, "{p:#}");
    assert_eq!(ids.len(), 1, "one registration for the whole preset");
    let hook = &ids[0];
    let pipeline = p["pipeline_id"].as_str().unwrap();
    let job = |i: usize| {
        let st = &p["steps"][i];
        json!({"file_id": file, "job_id": st["job_id"], "model": st["model"],
               "variation": st["variation"]})
    };
    let (separate, transcribe) = (job(0), job(1));
    requested(&svc, "demucs").await;
    crate::api_pipelines::complete(&svc, &separate, &["vocals", "no_vocals"]).await;
    requested(&svc, "whisper").await;
    crate::api_pipelines::complete(&svc, &transcribe, &["words"]).await;

    let start = Instant::now();
    loop {
        let (_, v) = svc
            .get_json(&alice, &format!("/webhooks/{hook}/deliveries"))
            .await;
        let d = v["deliveries"].as_array().unwrap();
        if d.len() == 3 && d.iter().all(|d| d["status"] == "delivered") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got: Vec<Value> = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.path == "preset")
        .map(|g| verify(&secret, g))
        .collect();
    // The last job's event and the pipeline's end are sent at once: compare as sets.
    let mut kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|v| {
            let id = v["data"]["job_id"].as_str().unwrap_or("");
            (v["type"].as_str().unwrap(), id)
        })
        .collect();
    kinds.sort();
    let sep_id = separate["job_id"].as_str().unwrap();
    let tr_id = transcribe["job_id"].as_str().unwrap();
    let mut want = vec![
        ("job.completed", sep_id),
        ("job.completed", tr_id),
        ("pipeline.completed", ""),
    ];
    want.sort();
    assert_eq!(kinds, want, "{got:#?}");
    let end = &got
        .iter()
        .find(|v| v["type"] == "pipeline.completed")
        .unwrap()["data"];
    assert_eq!(end["pipeline_id"], pipeline, "{end}");
    assert_eq!(
        end["jobs"],
        json!([{"job_id": sep_id, "ended": "completed"}, {"job_id": tr_id, "ended": "completed"}])
    );
    let to_user = deliveries_until(&svc, &alice, &user_hook, |d| d["status"] == "delivered").await;
    assert_eq!(to_user["event_type"], "pipeline.completed", "{to_user}");
    let user_got: Vec<Value> = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.path == "user")
        .map(|g| verify(&user_secret, g))
        .collect();
    assert_eq!(user_got.len(), 1, "{user_got:#?}");
    assert_eq!(
        user_got[0]["data"],
        got.iter()
            .find(|v| v["type"] == "pipeline.completed")
            .unwrap()["data"]
    );

    // A job chained on the completed separation is one job: its callback hears it alone.
    let (code, j, ids, secret) = process_with_callback(
        &svc,
        &alice,
        &json!({"file_id": file, "model": "pitch", "input": {"job_id": sep_id, "output": "vocals"},
                "callback_url": format!("http://receiver.test:{port}/chained"),
                "callback_events": ["job.completed"]}),
    )
    .await;
    assert_eq!(code, 202, "{j:#}");
    assert_eq!(ids.len(), 1);
    crate::api_pipelines::complete(&svc, &j, &["pitch"]).await;
    let done = deliveries_until(&svc, &alice, &ids[0], |d| d["status"] == "delivered").await;
    assert_eq!(done["event_type"], "job.completed", "{done}");
    let chained: Vec<Value> = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.path == "chained")
        .map(|g| verify(&secret, g))
        .collect();
    assert_eq!(chained.len(), 1);
    assert_eq!(chained[0]["data"]["job_id"], j["job_id"]);
    // One job is no pipeline: the user's webhook heard the preset's end alone.
    let (_, v) = svc
        .get_json(&alice, &format!("/webhooks/{user_hook}/deliveries"))
        .await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v:#}");
    svc.stop().await;
}
