//! The deployment files (Dockerfile, compose/, k8s/) against the code they deploy: every YAML
//! document parses; every `ROAR_*` variable a container gets is a key the typed config accepts
//! and lands on (so a typo fails here, not at 3 a.m. in a crash loop); every role a container
//! runs is a real `roar` subcommand; every Deployment has resource requests and probes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::process::Command;
use std::sync::Mutex;

use serde_norway::Value;

use crate::support::deploy::{
    compose_containers, documents, repo, str_of, strings, yaml_files, Container, Env, K8s,
};

/// `Config::load` reads the process environment: one load at a time, with only `vars` set.
static ENV_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn load_config(vars: &Env) -> Result<roar_common::Config, String> {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ambient: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("ROAR_"))
        .collect();
    for (k, _) in &ambient {
        std::env::remove_var(k);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let r = roar_common::Config::load(None).map_err(|e| e.to_string());
    for k in vars.keys() {
        std::env::remove_var(k);
    }
    for (k, v) in ambient {
        std::env::set_var(k, v);
    }
    r
}

/// Loads `c`'s environment and checks every variable landed on the key its name says.
fn check_env(c: &Container) {
    let cfg = load_config(&c.env).unwrap_or_else(|e| panic!("{}: {e}", c.origin));
    let json = serde_json::to_value(&cfg).expect("config serializes");
    for (k, v) in &c.env {
        let path = k.strip_prefix("ROAR_").unwrap_or_else(|| {
            panic!(
                "{}: {k} is not a roar setting (ROAR_<SECTION>__<KEY>)",
                c.origin
            )
        });
        let mut got = &json;
        for part in path.split("__") {
            got = &got[part.to_lowercase()];
        }
        let same = match got {
            serde_json::Value::String(s) => s == v,
            serde_json::Value::Bool(b) => b.to_string() == *v,
            serde_json::Value::Number(n) => n.as_f64() == v.parse::<f64>().ok(),
            other => panic!("{}: {k} is {other:?}, not a scalar key", c.origin),
        };
        assert!(same, "{}: {k}={v:?} loaded as {got}", c.origin);
    }
}

pub(crate) fn all_containers() -> Vec<Container> {
    let mut all = compose_containers();
    all.extend(K8s::load().containers());
    all
}

#[test]
fn every_yaml_document_parses() {
    let mut files = yaml_files("compose");
    files.extend(yaml_files("k8s"));
    for f in &files {
        documents(f);
    }
    let prom = documents(&repo().join("compose/prometheus.yml"));
    let targets: Vec<String> = prom[0]["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|j| strings(&j["static_configs"][0]["targets"]))
        .collect();
    assert!(
        targets.contains(&"orchestrator:9180".to_string()),
        "Prometheus must scrape the orchestrator: {targets:?}"
    );
}

#[test]
fn every_roar_variable_is_a_config_key_roar_accepts() {
    let all = all_containers();
    assert!(all.len() >= 10, "found only {} roar containers", all.len());
    for c in &all {
        check_env(c);
    }
}

#[test]
fn a_misspelt_variable_is_refused() {
    // The same check as above must catch a typo, in a section or in a key.
    let mut env = compose_containers()
        .into_iter()
        .find(|c| c.args == ["orchestrator"])
        .expect("compose orchestrator")
        .env;
    assert!(load_config(&env).is_ok());
    for typo in [
        "ROAR_KAFKA__BROKER",
        "ROAR_KAFK__BROKERS",
        "ROAR_KAFKA_BROKERS",
    ] {
        env.insert(typo.into(), "kafka:9092".into());
        let e = load_config(&env).expect_err(typo);
        assert!(e.contains("unknown field"), "{typo}: {e}");
        env.remove(typo);
    }
}

#[test]
fn every_role_is_a_real_subcommand() {
    let roles: BTreeSet<Vec<String>> = all_containers().into_iter().map(|c| c.args).collect();
    for required in [
        &["orchestrator"][..],
        &["projector"],
        &["projector", "migrate"],
        &["pipeline"],
        &["webhooks"],
        &["topics"],
        &["processor", "probe"],
        &["processor", "pitch"],
        &["processor", "whisper"],
        &["processor", "demucs"],
    ] {
        let required: Vec<String> = required.iter().map(|s| s.to_string()).collect();
        assert!(roles.contains(&required), "no container runs {required:?}");
    }
    for args in &roles {
        // clap accepts any word as <model>, so the model is checked against the catalogue.
        if args.first().map(String::as_str) == Some("processor") {
            let model = args.get(1).expect("processor needs a model");
            assert!(
                model == "probe" || roar_schemas::topics::MODELS.contains(&model.as_str()),
                "unknown model {model}"
            );
        }
        let out = Command::new(env!("CARGO_BIN_EXE_roar"))
            .args(args)
            .arg("--help")
            .output()
            .expect("run roar");
        assert!(
            out.status.success(),
            "roar {args:?} is not a subcommand: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bogus = Command::new(env!("CARGO_BIN_EXE_roar"))
        .args(["projector", "migrat", "--help"])
        .output()
        .expect("run roar");
    assert!(
        !bogus.status.success(),
        "the --help check must catch a typo"
    );
}

fn requests(c: &Value) -> bool {
    let r = &c["resources"]["requests"];
    r["cpu"].is_string() && r["memory"].is_string()
}

#[test]
fn deployments_have_requests_probes_and_valid_references() {
    let k = K8s::load();
    let deployments: BTreeSet<String> = k
        .of_kind("Deployment")
        .map(|(_, d)| str_of(&d["metadata"]["name"]))
        .collect();
    assert!(deployments.len() >= 5, "{deployments:?}");
    for (file, d) in k.of_kind("Deployment").chain(k.of_kind("Job")) {
        let name = str_of(&d["metadata"]["name"]);
        let pod = &d["spec"]["template"];
        if d["kind"] == "Deployment" {
            let sel = &d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"];
            assert_eq!(
                &pod["metadata"]["labels"]["app.kubernetes.io/name"], sel,
                "{file}: {name}'s selector must match its pod labels"
            );
        }
        for c in pod["spec"]["containers"].as_sequence().expect("containers") {
            assert!(requests(c), "{file}: {name} has no cpu/memory requests");
            if d["kind"] != "Deployment" {
                continue;
            }
            let ports: Vec<i64> = c["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| p["containerPort"].as_i64())
                .collect();
            if ports.is_empty() {
                // No listener to probe: the manifest must say how failures are handled.
                let why = d["metadata"]["annotations"]["roar.dev/no-http-probes"].as_str();
                assert!(
                    why.is_some_and(|w| w.len() > 20),
                    "{file}: {name} has no probes and no roar.dev/no-http-probes reason"
                );
                continue;
            }
            let ready = &c["readinessProbe"]["httpGet"]["path"];
            let live = &c["livenessProbe"]["httpGet"]["path"];
            assert_eq!(ready.as_str(), Some("/ready"), "{file}: {name} readiness");
            assert_eq!(live.as_str(), Some("/health"), "{file}: {name} liveness");
            let ann = &pod["metadata"]["annotations"];
            assert_eq!(
                ann["prometheus.io/scrape"].as_str(),
                Some("true"),
                "{file}: {name}"
            );
            assert_eq!(
                ann["prometheus.io/path"].as_str(),
                Some("/metrics"),
                "{file}: {name}"
            );
            let port: i64 = str_of(&ann["prometheus.io/port"]).parse().expect("port");
            assert!(ports.contains(&port), "{file}: {name} scrapes port {port}");
        }
        let gpu = pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"].as_i64();
        if gpu.is_some() {
            assert!(pod["spec"]["tolerations"].is_sequence(), "{file}: {name}");
            assert!(pod["spec"]["nodeSelector"].is_mapping(), "{file}: {name}");
        }
    }
    for (file, h) in k.of_kind("HorizontalPodAutoscaler") {
        let target = str_of(&h["spec"]["scaleTargetRef"]["name"]);
        assert!(
            deployments.contains(&target),
            "{file}: HPA of unknown {target}"
        );
    }
    let listed: BTreeSet<String> = documents(&repo().join("k8s/kustomization.yaml"))[0]
        ["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(str_of)
        .collect();
    for f in yaml_files("k8s") {
        let f = f.file_name().unwrap().to_string_lossy().to_string();
        let template = f.ends_with(".example.yaml") || f == "kustomization.yaml";
        assert_eq!(listed.contains(&f), !template, "kustomization.yaml and {f}");
    }
}

#[test]
fn autoscalers_follow_the_group_the_workers_join() {
    // A model's workers join a group per (variation, version) they serve: a trigger on any
    // other name would watch a group nobody consumes as, and never scale.
    let k = K8s::load();
    let mut seen = BTreeSet::new();
    for (file, so) in k.of_kind("ScaledObject") {
        for t in so["spec"]["triggers"].as_sequence().expect("triggers") {
            let topic = str_of(&t["metadata"]["topic"]);
            let group = str_of(&t["metadata"]["consumerGroup"]);
            let expected = match roar_schemas::topics::MODELS
                .iter()
                .find(|m| roar_schemas::topics::jobs_topic(m) == topic)
            {
                Some(m) => {
                    let spec = roar_common::catalog::model(m).expect("catalogue model");
                    let v = spec.variation(spec.default_variation).expect("default");
                    roar_schemas::topics::version_group(m, v.name, v.model_version)
                }
                None => roar_schemas::topics::consumer_group("probe"),
            };
            assert_eq!(group, expected, "{file}: trigger on {topic}");
            seen.insert(topic);
        }
    }
    assert!(seen.contains("roar.jobs.pitch.v1"), "{seen:?}");
}
