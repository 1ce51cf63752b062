//! `roar.pipelines.v1`: a pipeline is a small DAG of jobs on one file, where a step may read
//! another step's output instead of the upload. The orchestrator records the request; the
//! `roar pipeline` process manager requests each step's job once its upstream step is done.

use std::sync::LazyLock;

use apache_avro::types::Value;
use serde::Serialize;

use crate::avro::{opt_string, record, string, union_names, Fields};
use crate::events::{Event, EventMeta};
use crate::schema_set::{DecodeError, SchemaSet};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineEvent {
    pub meta: EventMeta,
    /// `p` + 32 hex digits: [`crate::ids::pipeline_id`] of the owner, file and steps.
    pub pipeline_id: String,
    pub file_id: String,
    pub owner: String,
    pub body: PipelineBody,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PipelineBody {
    Requested {
        /// The catalogue preset the steps were expanded from, if any.
        preset: Option<String>,
        /// Upstream steps come before the steps that read them.
        steps: Vec<PipelineStep>,
    },
    CancelRequested {
        reason: Option<String>,
    },
}

/// One job of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineStep {
    /// Unique in the pipeline (`separate`, `transcribe`, `pitch`).
    pub name: String,
    /// The id [`crate::ids::JobIdentity`] gives this step's job, its input included, so the
    /// `JobRequested` emitted for it later names exactly this job.
    pub job_id: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    /// Canonical JSON object.
    pub params_json: String,
    /// `None`: the step reads the uploaded file.
    pub input: Option<PipelineStepInput>,
}

/// One output of an upstream step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineStepInput {
    /// The upstream step's name.
    pub step: String,
    /// The upstream output's name (`vocals`).
    pub output: String,
}

static PIPELINE_BODY: LazyLock<Vec<String>> =
    LazyLock::new(|| union_names(&PipelineEvent::schemas().current, "body"));

impl PipelineStep {
    fn to_value(&self) -> Value {
        let input = match &self.input {
            Some(i) => Value::Union(
                1,
                Box::new(record(vec![
                    ("step", string(&i.step)),
                    ("output", string(&i.output)),
                ])),
            ),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        record(vec![
            ("name", string(&self.name)),
            ("job_id", string(&self.job_id)),
            ("model", string(&self.model)),
            ("variation", string(&self.variation)),
            ("model_version", string(&self.model_version)),
            ("params_json", string(&self.params_json)),
            ("input", input),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("PipelineStep", v)?;
        Ok(Self {
            name: f.string("name")?,
            job_id: f.string("job_id")?,
            model: f.string("model")?,
            variation: f.string("variation")?,
            model_version: f.string("model_version")?,
            params_json: f.string("params_json")?,
            input: f
                .opt_record("input", "PipelineStepInput")?
                .map(|mut i| {
                    Ok::<_, DecodeError>(PipelineStepInput {
                        step: i.string("step")?,
                        output: i.string("output")?,
                    })
                })
                .transpose()?,
        })
    }
}

impl Event for PipelineEvent {
    const NAME: &'static str = "pipeline_event";

    fn schemas() -> &'static SchemaSet {
        static S: LazyLock<SchemaSet> = LazyLock::new(|| {
            SchemaSet::new(
                include_str!("../avro/pipeline_event.avsc"),
                &[include_str!("../avro/history/pipeline_event.v1.avsc")],
            )
        });
        &S
    }

    fn to_value(&self) -> Value {
        let body = match &self.body {
            PipelineBody::Requested { preset, steps } => Value::Union(
                0,
                Box::new(record(vec![
                    ("preset", opt_string(preset)),
                    (
                        "steps",
                        Value::Array(steps.iter().map(PipelineStep::to_value).collect()),
                    ),
                ])),
            ),
            PipelineBody::CancelRequested { reason } => {
                Value::Union(1, Box::new(record(vec![("reason", opt_string(reason))])))
            }
        };
        record(vec![
            ("meta", self.meta.to_value()),
            ("pipeline_id", string(&self.pipeline_id)),
            ("file_id", string(&self.file_id)),
            ("owner", string(&self.owner)),
            ("body", body),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("PipelineEvent", v)?;
        let meta = EventMeta::from_fields(f.record("meta", "EventMeta")?)?;
        let pipeline_id = f.string("pipeline_id")?;
        let file_id = f.string("file_id")?;
        let owner = f.string("owner")?;
        let (name, v) = f.variant("body", &PIPELINE_BODY)?;
        let mut b = Fields::new("PipelineEvent.body", v)?;
        let body = match name.as_str() {
            "PipelineRequested" => PipelineBody::Requested {
                preset: b.opt_string("preset")?,
                steps: b
                    .array("steps")?
                    .into_iter()
                    .map(PipelineStep::from_value)
                    .collect::<Result<_, _>>()?,
            },
            "PipelineCancelRequested" => PipelineBody::CancelRequested {
                reason: b.opt_string("reason")?,
            },
            other => return Err(DecodeError::UnknownVariant(other.to_string())),
        };
        Ok(Self {
            meta,
            pipeline_id,
            file_id,
            owner,
            body,
        })
    }

    fn meta(&self) -> &EventMeta {
        &self.meta
    }
}
