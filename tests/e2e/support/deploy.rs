//! Reading the deployment files for `deploy_config`: YAML documents (merge keys
//! applied), the Dockerfile's ENV, and the roar containers of compose and k8s with the
//! environment each one gets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

pub type Env = BTreeMap<String, String>;

/// A container of the roar image, from compose or k8s.
#[derive(Debug)]
pub struct Container {
    pub origin: String,
    pub args: Vec<String>,
    pub env: Env,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every YAML document of a file, with `<<` merge keys applied (compose uses them).
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_str(&text) {
        let mut v = Value::deserialize(de)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        v.apply_merge()
            .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
        if !v.is_null() {
            docs.push(v);
        }
    }
    assert!(!docs.is_empty(), "{} has no document", path.display());
    docs
}

pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {dir}");
    files
}

pub fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(str_of).collect())
        .unwrap_or_default()
}

/// `ENV K=V ...` lines of the Dockerfile: the base environment of every roar container.
pub fn dockerfile_env() -> Env {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let mut env = Env::new();
    for line in joined.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("Dockerfile ENV needs K=V, got {pair:?}"));
                env.insert(k.into(), v.into());
            }
        }
    }
    assert!(!env.is_empty(), "the Dockerfile sets no ENV");
    env
}

pub fn is_roar_image(image: &str) -> bool {
    let name = image.rsplit('/').next().unwrap_or(image);
    name.starts_with("roar:") || name.starts_with("roar-cuda:")
}

pub fn compose_containers() -> Vec<Container> {
    let base = dockerfile_env();
    let docs = documents(&repo().join("compose/docker-compose.yml"));
    let services = docs[0]["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().map(str_of).collect();
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = str_of(name);
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (dep, cond) in deps {
                assert!(
                    names.contains(&str_of(dep)),
                    "{name} depends on unknown {dep:?}"
                );
                let c = str_of(&cond["condition"]);
                assert!(
                    [
                        "service_healthy",
                        "service_completed_successfully",
                        "service_started"
                    ]
                    .contains(&c.as_str()),
                    "{name}: bad condition {c}"
                );
                if c == "service_healthy" {
                    assert!(
                        !services[dep]["healthcheck"].is_null(),
                        "{name} waits for {dep:?} to be healthy, which has no healthcheck"
                    );
                }
            }
        }
        let image = svc["image"].as_str().unwrap_or_default();
        if !is_roar_image(image) {
            continue;
        }
        let mut env = base.clone();
        match &svc["environment"] {
            Value::Mapping(m) => env.extend(m.iter().map(|(k, v)| (str_of(k), str_of(v)))),
            Value::Sequence(s) => env.extend(s.iter().map(|kv| {
                let kv = str_of(kv);
                let (k, v) = kv.split_once('=').expect("K=V");
                (k.to_string(), v.to_string())
            })),
            _ => {}
        }
        out.push(Container {
            origin: format!("compose service {name}"),
            args: strings(&svc["command"]),
            env,
        });
    }
    out
}

pub struct K8s {
    pub docs: Vec<(String, Value)>,
}

impl K8s {
    pub fn load() -> Self {
        let mut docs = Vec::new();
        for f in yaml_files("k8s") {
            let file = f.file_name().unwrap().to_string_lossy().to_string();
            for d in documents(&f) {
                assert!(
                    d["kind"].is_string(),
                    "{file}: a document without kind: {d:?}"
                );
                docs.push((file.clone(), d));
            }
        }
        Self { docs }
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.docs
            .iter()
            .filter(move |(_, d)| d["kind"] == kind)
            .map(|(f, d)| (f.as_str(), d))
    }

    pub fn data(&self, kind: &str, name: &str) -> Env {
        let (_, d) = self
            .of_kind(kind)
            .find(|(_, d)| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name} in k8s/"));
        let data = if kind == "Secret" {
            &d["stringData"]
        } else {
            &d["data"]
        };
        data.as_mapping()
            .expect("data")
            .iter()
            .map(|(k, v)| (str_of(k), str_of(v)))
            .collect()
    }

    /// The roar containers of Deployments and Jobs, with envFrom resolved.
    pub fn containers(&self) -> Vec<Container> {
        let base = dockerfile_env();
        let mut out = Vec::new();
        for kind in ["Deployment", "Job"] {
            for (file, d) in self.of_kind(kind) {
                for c in d["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .expect("containers")
                {
                    if !is_roar_image(c["image"].as_str().unwrap_or_default()) {
                        continue;
                    }
                    let origin = format!("{file}: {kind} {}", str_of(&d["metadata"]["name"]));
                    assert!(
                        c["command"].is_null(),
                        "{origin}: keep the image's entrypoint (roar); set args"
                    );
                    let mut env = base.clone();
                    for from in c["envFrom"].as_sequence().into_iter().flatten() {
                        if let Some(n) = from["configMapRef"]["name"].as_str() {
                            env.extend(self.data("ConfigMap", n));
                        }
                        if let Some(n) = from["secretRef"]["name"].as_str() {
                            env.extend(self.data("Secret", n));
                        }
                    }
                    for e in c["env"].as_sequence().into_iter().flatten() {
                        let v = e["value"].as_str().unwrap_or_else(|| {
                            panic!("{origin}: env {:?} needs a literal value", e["name"])
                        });
                        env.insert(str_of(&e["name"]), v.to_string());
                    }
                    out.push(Container {
                        origin,
                        args: strings(&c["args"]),
                        env,
                    });
                }
            }
        }
        out
    }
}
