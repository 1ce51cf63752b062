//! The catalogue as `GET /models` lists it, and the operational answers.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use roar_common::catalog::{ModelSpec, ParamKind, ParamSpec, VariationSpec};
use roar_common::kafka::LiveWorker;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsView {
    pub models: Vec<ModelView>,
    /// False until the control topic has been read to its end: `live: false` may then only
    /// mean "not seen yet".
    pub workers_known: bool,
    /// The presets `POST /process {file_id, preset}` accepts (also `GET /presets`).
    pub presets: Vec<super::pipelines::PresetView>,
}

/// A model family of the catalogue and the workers serving it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    pub description: String,
    pub default_variation: String,
    pub variations: Vec<VariationView>,
    pub params: Vec<ParamView>,
    /// Whether some worker announced itself recently.
    pub live: bool,
    pub workers: Vec<WorkerView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VariationView {
    pub name: String,
    /// Part of every job id: a new version is a new job.
    pub model_version: String,
    pub description: String,
    /// The versions live workers serve this variation at (sorted): a job at any other version
    /// waits until a worker serving it starts. A worker too old to announce its versions is
    /// not counted here (it runs its variations at any version; see `workers`).
    pub live_versions: Vec<String>,
}

/// A parameter a `/process` request may give in `params`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamView {
    pub name: String,
    #[serde(flatten)]
    pub kind: ParamKindView,
    /// Filled in when absent; null: optional without a default.
    pub default: Option<Value>,
    pub description: String,
}

/// What a parameter accepts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamKindView {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Enum {
        values: Vec<String>,
    },
    /// A string of at most `max_len` characters.
    Text {
        max_len: usize,
    },
    /// A non-empty list of distinct values from `values`.
    Subset {
        values: Vec<String>,
    },
}

/// A worker that announced itself on the control topic and has not gone quiet.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub worker: String,
    pub model: String,
    pub model_version: String,
    pub variations: Vec<String>,
    /// Each variation with the version this worker serves it at; empty from a worker that
    /// predates served versions.
    pub serves: Vec<ServedView>,
    pub device: String,
    pub last_seen: DateTime<Utc>,
    /// When it promised to announce itself again by.
    pub expires_at: DateTime<Utc>,
}

/// A (variation, version) pair a live worker runs jobs of.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServedView {
    pub variation: String,
    pub model_version: String,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// The conversions destructure every field: a field added to the catalogue or the worker
// announcement fails to compile here until the API says whether to show it.

impl From<&ParamKind> for ParamKindView {
    fn from(k: &ParamKind) -> Self {
        match *k {
            ParamKind::Bool => ParamKindView::Bool,
            ParamKind::Int { min, max } => ParamKindView::Int { min, max },
            ParamKind::Float { min, max } => ParamKindView::Float { min, max },
            ParamKind::Enum { values } => ParamKindView::Enum {
                values: strings(values),
            },
            ParamKind::Text { max_len } => ParamKindView::Text { max_len },
            ParamKind::Subset { values } => ParamKindView::Subset {
                values: strings(values),
            },
        }
    }
}

impl From<&ParamSpec> for ParamView {
    fn from(p: &ParamSpec) -> Self {
        let ParamSpec {
            name,
            kind,
            default,
            description,
        } = p;
        ParamView {
            name: name.to_string(),
            kind: kind.into(),
            default: default.clone(),
            description: description.to_string(),
        }
    }
}

impl VariationView {
    /// A catalogue variation of `model` with the versions `live` workers serve it at.
    fn new(model: &str, v: &VariationSpec, live: &[LiveWorker]) -> Self {
        let VariationSpec {
            name,
            model_version,
            description,
        } = v;
        let served: BTreeSet<&str> = live
            .iter()
            .filter(|w| w.model == model)
            .flat_map(|w| w.variations.iter().zip(&w.versions))
            .filter(|(var, _)| var.as_str() == *name)
            .map(|(_, version)| version.as_str())
            .collect();
        VariationView {
            name: name.to_string(),
            model_version: model_version.to_string(),
            description: description.to_string(),
            live_versions: served.into_iter().map(str::to_string).collect(),
        }
    }
}

impl From<&LiveWorker> for WorkerView {
    fn from(w: &LiveWorker) -> Self {
        let LiveWorker {
            worker,
            model,
            model_version,
            variations,
            versions,
            device,
            last_seen,
            expires_at,
        } = w;
        WorkerView {
            worker: worker.clone(),
            model: model.clone(),
            model_version: model_version.clone(),
            variations: variations.clone(),
            serves: variations
                .iter()
                .zip(versions)
                .map(|(variation, version)| ServedView {
                    variation: variation.clone(),
                    model_version: version.clone(),
                })
                .collect(),
            device: device.clone(),
            last_seen: *last_seen,
            expires_at: *expires_at,
        }
    }
}

impl ModelView {
    /// A catalogue entry with the live workers among `live` that serve it.
    pub fn new(m: &ModelSpec, live: &[LiveWorker]) -> Self {
        let ModelSpec {
            name,
            description,
            default_variation,
            variations,
            params,
        } = m;
        let workers: Vec<WorkerView> = live
            .iter()
            .filter(|w| w.model == *name)
            .map(WorkerView::from)
            .collect();
        ModelView {
            name: name.to_string(),
            description: description.to_string(),
            default_variation: default_variation.to_string(),
            variations: variations
                .iter()
                .map(|v| VariationView::new(name, v, live))
                .collect(),
            params: params.iter().map(ParamView::from).collect(),
            live: !workers.is_empty(),
            workers,
        }
    }
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// Always `ok`.
    pub status: &'static str,
    pub version: &'static str,
}

/// `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    /// `ok` or `degraded`.
    pub status: &'static str,
    pub database: bool,
    pub storage: bool,
}
