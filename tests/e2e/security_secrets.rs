//! Issue 21, hole 2: every pod held every secret. Each role now holds only what it uses: the
//! `roar` binary refuses to start a worker or the projector that holds the API's keys, and an
//! API whose keys are still a template's placeholders; the deployment files give each role
//! only its own Secrets, and compose's token key is generated per checkout.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roar_common::roles::Role;

use crate::deploy_config::{all_containers, load_config};
use crate::support::deploy::{documents, repo, str_of, Env, K8s};

/// A random-looking key that is no placeholder: what an operator would set.
const REAL_KEY: &str = "9e1b7c3a5f0d2846b1c3e5a7d9f02468ac";

/// Runs `roar <args>` with exactly `env` and waits up to `within` for it to exit: `Some(stderr)`
/// if it exited with an error, `None` if it kept running (it is then killed) or succeeded.
fn start_error(args: &[&str], env: &Env, within: Duration) -> Option<String> {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_roar"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Nothing listens here: a role that passed its checks would wait on the broker.
        .env("ROAR_KAFKA__BROKERS", "127.0.0.1:1")
        .env("ROAR_TELEMETRY__LOG_LEVEL", "error")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("roar binary starts");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    status.filter(|s| !s.success()).map(|_| err)
}

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn workers_and_the_projector_refuse_to_hold_the_api_keys() {
    for args in [
        &["processor", "pitch"][..],
        &["processor", "probe"],
        &["projector"],
        &["projector", "migrate"],
        &["webhooks"],
    ] {
        for var in ["ROAR_AUTH__JWT_SECRET", "ROAR_AUTH__LINK_SECRET"] {
            let e = start_error(args, &env(&[(var, REAL_KEY)]), Duration::from_secs(30))
                .unwrap_or_else(|| panic!("roar {args:?} started holding {var}"));
            assert!(e.contains(var) && e.contains("docs/security.md"), "{e}");
            assert!(!e.contains(REAL_KEY), "the key leaked into the error: {e}");
        }
    }
}

#[test]
fn the_api_refuses_the_shipped_example_keys() {
    // k8s/secret.example.yaml's roar-api Secret, as an operator who forgot to fill it in has it.
    let example = K8s::load().data("Secret", "roar-api");
    let placeholder = example["ROAR_AUTH__JWT_SECRET"].clone();
    let e = start_error(&["orchestrator"], &example, Duration::from_secs(30))
        .expect("the orchestrator started with the example token key");
    assert!(
        e.contains("ROAR_AUTH__JWT_SECRET") && e.contains("placeholder"),
        "{e}"
    );
    assert!(!e.contains(&placeholder), "{e}");
    // The same check sees the same refusal for a compose-era development key.
    let dev = env(&[("ROAR_AUTH__JWT_SECRET", "dev-only-jwt-secret-change-me")]);
    let e = start_error(&["orchestrator"], &dev, Duration::from_secs(30))
        .expect("the orchestrator started with a development token key");
    assert!(e.contains("placeholder"), "{e}");
    // Real API keys but no webhook sealing key: refused at start, not answered 503 later;
    // with webhooks turned off it needs none (then it passes its checks and waits on the
    // broker, which nothing serves here).
    let no_sealing = env(&[("ROAR_AUTH__JWT_SECRET", REAL_KEY)]);
    let e = start_error(&["orchestrator"], &no_sealing, Duration::from_secs(30))
        .expect("the orchestrator started without a webhook sealing key");
    assert!(
        e.contains("ROAR_WEBHOOKS__SECRET_KEY") && e.contains("webhooks.enabled"),
        "{e}"
    );
    let off = env(&[
        ("ROAR_AUTH__JWT_SECRET", REAL_KEY),
        ("ROAR_WEBHOOKS__ENABLED", "false"),
    ]);
    if let Some(e) = start_error(&["orchestrator"], &off, Duration::from_secs(3)) {
        assert!(!e.contains("ROAR_WEBHOOKS__SECRET_KEY"), "{e}");
    }
}

fn role_of(args: &[String]) -> Option<Role> {
    match args.first().map(String::as_str) {
        Some("orchestrator") => Some(Role::Orchestrator),
        // The pipelines' process manager, like the projector, holds the database only.
        Some("projector" | "pipeline") => Some(Role::Projector),
        Some("processor") => Some(Role::Processor),
        Some("webhooks") => Some(Role::Webhooks),
        _ => None,
    }
}

#[test]
fn each_deployed_role_gets_only_the_secrets_it_uses() {
    let containers = all_containers();
    let mut seen = 0;
    for c in &containers {
        let has = |k: &str| c.env.contains_key(k);
        let api_keys = has("ROAR_AUTH__JWT_SECRET") || has("ROAR_AUTH__LINK_SECRET");
        match role_of(&c.args) {
            Some(Role::Orchestrator) => continue,
            Some(Role::Processor) => {
                assert!(!api_keys, "{}: a worker holds an API key", c.origin);
                assert!(
                    !has("ROAR_DATABASE__URL"),
                    "{}: a worker holds the database URL",
                    c.origin
                );
            }
            Some(Role::Projector | Role::Webhooks) => {
                assert!(!api_keys, "{}: {:?} holds an API key", c.origin, c.args);
                assert!(
                    !has("ROAR_STORAGE__S3_SECRET_ACCESS_KEY"),
                    "{}: {:?} holds the store's key",
                    c.origin,
                    c.args
                );
                if role_of(&c.args) == Some(Role::Webhooks) {
                    // Its sealing key is the template's placeholder (k8s) or comes from the
                    // env_file make-secrets.sh writes (compose, checked below): the start-up
                    // check would refuse either here, as it should.
                    continue;
                }
            }
            None => {
                let secrets: Vec<&String> = c
                    .env
                    .keys()
                    .filter(|k| k.contains("SECRET") || k.as_str() == "ROAR_DATABASE__URL")
                    .collect();
                assert!(secrets.is_empty(), "{}: holds {secrets:?}", c.origin);
            }
        }
        let role = role_of(&c.args).unwrap_or(Role::Processor);
        let cfg = load_config(&c.env).unwrap_or_else(|e| panic!("{}: {e}", c.origin));
        cfg.check_role_secrets(role)
            .unwrap_or_else(|e| panic!("{}: {e}", c.origin));
        seen += 1;
    }
    assert!(seen >= 10, "checked only {seen} containers");
}

#[test]
fn compose_generates_the_token_key_and_gives_it_to_the_api_alone() {
    let docs = documents(&repo().join("compose/docker-compose.yml"));
    let services = docs[0]["services"].as_mapping().expect("services");
    for (name, svc) in services {
        let name = str_of(name);
        let env_file = &svc["env_file"];
        if name == "orchestrator" {
            assert_eq!(str_of(env_file), "secrets.env");
        } else if name == "webhooks" {
            assert_eq!(str_of(env_file), "webhooks.env");
        } else {
            assert!(env_file.is_null(), "{name} reads an env_file");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("secrets.env");
    let run = Command::new(repo().join("compose/make-secrets.sh"))
        .arg(&out)
        .output()
        .expect("run make-secrets.sh");
    assert!(run.status.success(), "{run:?}");
    let read = |p: &std::path::Path| -> Env {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let written = read(&out);
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        ["ROAR_AUTH__JWT_SECRET", "ROAR_WEBHOOKS__SECRET_KEY"]
    );
    let cfg = load_config(&written).expect("generated key loads");
    cfg.check_role_secrets(Role::Orchestrator)
        .expect("the API accepts the generated key");
    // The dispatcher gets the sealing key alone, the same one.
    let hooks = read(&dir.path().join("webhooks.env"));
    assert_eq!(
        hooks.keys().collect::<Vec<_>>(),
        ["ROAR_WEBHOOKS__SECRET_KEY"]
    );
    assert_eq!(
        hooks["ROAR_WEBHOOKS__SECRET_KEY"],
        written["ROAR_WEBHOOKS__SECRET_KEY"]
    );
    load_config(&hooks)
        .expect("generated sealing key loads")
        .check_role_secrets(Role::Webhooks)
        .expect("the dispatcher accepts the generated key");
    // A second run keeps the key (tokens minted with it stay valid).
    let before = std::fs::read_to_string(&out).unwrap();
    let again = Command::new(repo().join("compose/make-secrets.sh"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), before);
}
