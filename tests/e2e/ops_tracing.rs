//! One trace from the HTTP request to the worker: a `POST /process` carrying a W3C
//! `traceparent` puts that trace id on the job request (envelope and Kafka header), the pitch
//! worker's span continues it, the job's events name the worker's span in the same trace, and
//! the spans exported over OTLP/HTTP (to a collector stand-in here) carry the trace id. The
//! projector's batch spans, roots of their own, link to the request's and the worker's spans.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use roar_schemas::topics::{jobs_topic, JOB_EVENTS};
use roar_schemas::{JobBody, JobEvent, JobRequested};
use serde_json::{json, Value};

use crate::support::{melody_wav, read_topic, Infra, Services};

/// (trace id, span id) of a `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Reads one protobuf varint off the front of `b`.
fn varint(b: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&x, rest) = b.split_first().expect("a truncated varint");
        *b = rest;
        v |= u64::from(x & 0x7f) << shift;
        if x < 0x80 {
            return v;
        }
    }
    panic!("a varint longer than 10 bytes")
}

/// The length-delimited fields numbered `n` of one protobuf message (every OTLP field this test
/// reads: messages, strings, ids), in order; other fields are skipped.
fn field(mut msg: &[u8], n: u64) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = varint(&mut msg);
        let len = match key & 7 {
            0 => {
                varint(&mut msg);
                continue;
            }
            1 => 8,
            2 => varint(&mut msg) as usize,
            5 => 4,
            wire => panic!("protobuf wire type {wire}"),
        };
        let (value, rest) = msg.split_at(len);
        if key >> 3 == n && key & 7 == 2 {
            out.push(value);
        }
        msg = rest;
    }
    out
}

/// An exported span: its name, trace id, and the (trace id, span id) of each of its links.
type ExportedSpan = (String, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Every span in OTLP `ExportTraceServiceRequest` bodies (resource_spans = 1 → scope_spans = 2
/// → spans = 2; a span's trace_id = 1, name = 5, links = 13; a link's trace_id = 1, span_id = 2).
fn exported_spans(bodies: &[Bytes]) -> Vec<ExportedSpan> {
    let one = |msg: &[u8], n| {
        field(msg, n)
            .first()
            .map(|v| v.to_vec())
            .unwrap_or_default()
    };
    let mut spans = Vec::new();
    for body in bodies {
        for rs in field(body, 1) {
            for ss in field(rs, 2) {
                for span in field(ss, 2) {
                    let links = field(span, 13)
                        .into_iter()
                        .map(|l| (one(l, 1), one(l, 2)))
                        .collect();
                    let name = String::from_utf8(one(span, 5)).expect("a UTF-8 span name");
                    spans.push((name, one(span, 1), links));
                }
            }
        }
    }
    spans
}

/// An OTLP/HTTP collector stand-in: keeps every body posted to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_links_the_request_the_job_events_and_the_worker_span() {
    let infra = Infra::start().await;
    let (otlp, exported) = collector().await;
    let mut cfg = infra.config();
    cfg.telemetry.otlp_endpoint = otlp;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "tone.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;

    // The caller's trace: a fresh trace id, so nothing else in the run can carry it.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";
    let r = reqwest::Client::new()
        .post(svc.url("/process"))
        .bearer_auth(&alice)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"file_id": file, "model": "pitch", "variation": "tiny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;

    let brokers = svc.cfg.kafka.brokers.clone();
    let (requests, events) = tokio::task::spawn_blocking(move || {
        (
            read_topic(&brokers, &jobs_topic("pitch")),
            read_topic(&brokers, JOB_EVENTS),
        )
    })
    .await
    .unwrap();

    // The request: the orchestrator's span, a child of the caller's, in the caller's trace.
    let (req, req_header) = requests
        .iter()
        .find_map(|d| {
            let r: JobRequested = d.decode().ok()?;
            (r.job_id == job).then(|| (r, d.traceparent.clone()))
        })
        .expect("the JobRequested on the model's topic");
    let req_tp = req
        .meta
        .traceparent
        .clone()
        .expect("the request carries a traceparent");
    assert_eq!(
        req_header.as_deref(),
        Some(req_tp.as_str()),
        "envelope and header agree"
    );
    let (req_trace, req_span) = ids(&req_tp);
    assert_eq!(req_trace, trace_id);
    assert_ne!(
        req_span, caller_span,
        "the orchestrator's own span, not the caller's"
    );

    // The worker's events: the same trace, the worker's span (not the request's).
    let job_events: Vec<(JobEvent, Option<String>)> = events
        .iter()
        .filter_map(|d| {
            let e: JobEvent = d.decode().ok()?;
            (e.job_id == job).then(|| (e, d.traceparent.clone()))
        })
        .collect();
    let worker_span = |body: fn(&JobBody) -> bool| {
        let (e, header) = job_events
            .iter()
            .find(|(e, _)| body(&e.body))
            .expect("the worker's event");
        let tp = e
            .meta
            .traceparent
            .clone()
            .expect("the event carries a traceparent");
        assert_eq!(
            header.as_deref(),
            Some(tp.as_str()),
            "envelope and header agree"
        );
        let (trace, span) = ids(&tp);
        assert_eq!(trace, trace_id, "{:?}", e.body);
        span
    };
    let started = worker_span(|b| matches!(b, JobBody::Started { .. }));
    let completed = worker_span(|b| matches!(b, JobBody::Completed { .. }));
    assert_ne!(
        started, req_span,
        "the worker's span continues the request's trace"
    );
    assert_eq!(started, completed, "one worker span runs the job");

    // The exported spans carry the trace id (protobuf bytes: the raw 16-byte id) and the
    // worker's span id.
    tokio::task::spawn_blocking(roar_common::telemetry::flush_traces)
        .await
        .unwrap();
    let bodies: Vec<Bytes> = exported.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "no spans exported");
    let contains = |needle: &[u8]| {
        bodies
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        contains(&hex_bytes(&trace_id)),
        "the trace id was not exported"
    );
    assert!(
        contains(&hex_bytes(&started)),
        "the worker's span was not exported"
    );
    assert!(
        contains(&hex_bytes(&req_span)),
        "the request's span was not exported"
    );

    // The projector's batches: roots of their own traces (a batch has many parents) that link
    // to the span of each event they applied, the request's and the worker's.
    let spans = exported_spans(&bodies);
    let batches: Vec<_> = spans
        .iter()
        .filter(|(name, _, _)| name == "projector.batch")
        .collect();
    assert!(!batches.is_empty(), "no projector.batch span exported");
    let trace = hex_bytes(&trace_id);
    let linked = |span: &str| {
        let want = (trace.clone(), hex_bytes(span));
        batches.iter().any(|(_, _, links)| links.contains(&want))
    };
    assert!(linked(&req_span), "no batch links to the request's span");
    assert!(linked(&started), "no batch links to the worker's span");
    assert!(
        batches.iter().all(|(_, t, _)| *t != trace),
        "a batch span joined the request's trace instead of linking to it"
    );
    assert!(
        spans
            .iter()
            .any(|(name, t, _)| name != "projector.batch" && *t == trace),
        "the parser found none of the request's own spans"
    );
    svc.stop().await;
}
