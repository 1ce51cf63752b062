//! Issue 21, hole 9 (leaks): `/metrics` answered on the public API port without a token,
//! telling anyone the routes, error rates and job volumes. The orchestrator now serves it on
//! `http.metrics_addr` only (a port the network policy opens to Prometheus alone).

use roar::stack::free_port;

use crate::support::{Infra, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_not_on_the_public_port() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    let port = free_port().unwrap();
    cfg.http.metrics_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    // Some traffic, so there is something to leak.
    assert_eq!(svc.get_json(&alice, "/songs").await.0, 200);

    for token in [None, Some(alice.as_str())] {
        let mut req = reqwest::Client::new().get(svc.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(
            code,
            404,
            "public /metrics (token: {}): {body}",
            token.is_some()
        );
        assert!(!body.contains("roar_"), "{body}");
    }
    let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("roar_http_requests_total{route=\"/songs\""),
        "{page}"
    );
    svc.stop().await;
}
