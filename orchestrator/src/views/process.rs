//! `POST /process` bodies. The handler reads them with these types; their schema is built from
//! the model catalogue (the same one the handler validates against), so every model, variation
//! and parameter range the handler accepts is in the document, and nothing else is.

use std::borrow::Cow;

use roar_common::catalog::{self, ModelSpec, ParamKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Ref, Schema,
    SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::jobs::JobRequestView;
use super::pipelines::PipelineRequestView;
use super::schema as s;

mod inputs;

/// Most jobs one request may ask for (entries of `models`, or of a list body).
pub const MAX_JOBS_PER_REQUEST: usize = 20;

/// One request: `model` (with `variation` and `params`) or `models`. `null` is the same as
/// absent everywhere but in the `callback_*` members (see [`with_callback`]), which the handler
/// takes out before it reads the rest with this type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    pub file_id: String,
    pub model: Option<String>,
    /// Model names or [`ModelChoice`] objects (kept as JSON so that a mistake in one entry is
    /// reported with its index).
    pub models: Option<Vec<Value>>,
    pub variation: Option<String>,
    pub params: Option<Value>,
    /// With one `model`: what the job reads instead of the upload ([`JobOutputRef`] or
    /// [`ModelOutputRef`], told apart by `job_id`).
    pub input: Option<Value>,
    /// A catalogue preset: its steps run as one pipeline (nothing else but `file_id`).
    pub preset: Option<String>,
}

/// `input: {job_id, output}`: one output of a job of the caller's on the same file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOutputRef {
    pub job_id: String,
    pub output: String,
}

/// `input: {model, variation, params, output}`: one output of that job on the upload, which is
/// requested first when it has not completed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOutputRef {
    pub model: String,
    pub variation: Option<String>,
    pub params: Option<Value>,
    pub output: String,
}

/// An object entry of `models`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChoice {
    pub model: String,
    pub variation: Option<String>,
    pub params: Option<Value>,
}

/// The body of `POST /process`: one [`ProcessRequest`] or a list of single-model ones. Only its
/// schema is used; the handler reads the body as JSON and each request with the types above.
pub struct ProcessBody;

fn nullable(types: &[Type]) -> SchemaType {
    types.iter().cloned().chain([Type::Null]).collect()
}

/// `additionalProperties: false`: the handler refuses unknown keys.
fn closed() -> AdditionalProperties<Schema> {
    AdditionalProperties::FreeForm(false)
}

fn null() -> Object {
    ObjectBuilder::new().schema_type(Type::Null).build()
}

/// The schema of one parameter's value; `null` means "absent" to the handler.
pub(super) fn param_schema(kind: &ParamKind, description: &str) -> Schema {
    let b = ObjectBuilder::new().description(Some(description));
    let b = match kind {
        ParamKind::Bool => b.schema_type(nullable(&[Type::Boolean])),
        ParamKind::Int { min, max } => b
            .schema_type(nullable(&[Type::Integer]))
            .minimum(Some(*min))
            .maximum(Some(*max)),
        ParamKind::Float { min, max } => b
            .schema_type(nullable(&[Type::Number]))
            .minimum(Some(*min))
            .maximum(Some(*max)),
        ParamKind::Enum { values } => b.schema_type(nullable(&[Type::String])).enum_values(Some(
            values.iter().map(|v| Value::from(*v)).chain([Value::Null]),
        )),
        ParamKind::Text { max_len } => b
            .schema_type(nullable(&[Type::String]))
            .max_length(Some(*max_len))
            .pattern(Some(s::text_pattern())),
        ParamKind::Subset { values } => {
            return ArrayBuilder::new()
                .schema_type(nullable(&[Type::Array]))
                .min_items(Some(1))
                .unique_items(true)
                .items(s::words(values.iter().copied()))
                .description(Some(description))
                .build()
                .into();
        }
    };
    b.build().into()
}

/// `model`, `variation` and `params` of `m`, as an object builder to add more to.
fn model_fields(m: &ModelSpec) -> ObjectBuilder {
    let mut params = ObjectBuilder::new()
        .schema_type(nullable(&[Type::Object]))
        .additional_properties(Some(closed()))
        .description(Some(format!(
            "{}'s parameters; absent ones take their defaults (see `GET /models`)",
            m.name
        )));
    for p in &m.params {
        params = params.property(p.name, param_schema(&p.kind, p.description));
    }
    let variations = m
        .variations
        .iter()
        .map(|v| Value::from(v.name))
        .chain([Value::Null]);
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(closed()))
        .property("model", s::one_word(m.name))
        .required("model")
        .property(
            "variation",
            ObjectBuilder::new()
                .schema_type(nullable(&[Type::String]))
                .enum_values(Some(variations))
                .description(Some(format!("default: {}", m.default_variation))),
        )
        .property("params", params)
}

/// `callback_url` with `callback_events` and `callback_secret`: a webhook for this request's
/// jobs only, on a request object (not on a list's entries); on a preset or a chained job, for
/// every job of the pipeline it starts and the pipeline's end. Unlike the other members, none
/// of the three may be `null`, and the last two need `callback_url` (`dependentRequired`), as
/// the handler enforces.
fn with_callback(o: ObjectBuilder) -> ObjectBuilder {
    let needs_url = serde_json::json!({
        "callback_events": ["callback_url"],
        "callback_secret": ["callback_url"],
    });
    o.property("callback_url", super::url_schema())
        .property("callback_events", super::events_schema(false))
        .property("callback_secret", super::secret_schema(false))
        .extensions(Some(Extensions::from_iter([(
            "dependentRequired",
            needs_url,
        )])))
}

fn choice_name(m: &ModelSpec) -> String {
    format!("ModelChoice_{}", m.name)
}

fn single_name(m: &ModelSpec) -> String {
    format!("ProcessOne_{}", m.name)
}

/// An entry of a list body: one job, no callback.
fn item_name(m: &ModelSpec) -> String {
    format!("ProcessItem_{}", m.name)
}

/// One `m` job on one file, the members every form of it shares.
fn one_job(m: &ModelSpec) -> ObjectBuilder {
    model_fields(m)
        .property("file_id", s::file_id())
        .required("file_id")
        .property("models", null())
        .property("input", null())
        .property("preset", null())
}

fn reference(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

/// Every schema the body's schema refers to, by name.
fn components() -> Vec<(String, RefOr<Schema>)> {
    let models = catalog::models();
    let mut out = Vec::new();
    for m in models {
        out.push((
            choice_name(m),
            model_fields(m)
                .description(Some(format!("{}: {}", m.name, m.description)))
                .build()
                .into(),
        ));
        out.push((
            single_name(m),
            with_callback(one_job(m))
                .description(Some(format!(
                    "one {} job on one file: {}",
                    m.name, m.description
                )))
                .build()
                .into(),
        ));
        out.push((
            item_name(m),
            one_job(m)
                .description(Some(format!("one {} job on one file, in a list", m.name)))
                .build()
                .into(),
        ));
    }
    let mut by_name = s::words(models.iter().map(|m| m.name));
    by_name.description = Some("a model with its defaults".into());
    let mut entry = OneOfBuilder::new().item(by_name);
    for m in models {
        entry = entry.item(reference(&choice_name(m)));
    }
    out.push((
        "ProcessMany".into(),
        with_callback(ObjectBuilder::new())
            .schema_type(Type::Object)
            .additional_properties(Some(closed()))
            .description(Some(
                "several models on one file; variation and params per model",
            ))
            .property("file_id", s::file_id())
            .required("file_id")
            .property(
                "models",
                ArrayBuilder::new()
                    .items(entry)
                    .min_items(Some(1))
                    .max_items(Some(MAX_JOBS_PER_REQUEST)),
            )
            .required("models")
            .property("model", null())
            .property("variation", null())
            .property("params", null())
            .property("input", null())
            .property("preset", null())
            .build()
            .into(),
    ));
    out.extend(chained_components(models));
    let mut one = OneOfBuilder::new();
    for m in models {
        one = one.item(reference(&single_name(m)));
    }
    out.push(("ProcessRequest".into(), one.into()));
    out
}

fn with_input_name(m: &ModelSpec) -> String {
    format!("ProcessWithInput_{}", m.name)
}

/// `ProcessPreset`, `ProcessWithInput_<model>`, and the inputs they take: `JobOutputInput`
/// and `ModelOutputInput_<model>` (`JobInputRef` is either).
fn chained_components(models: &[ModelSpec]) -> Vec<(String, RefOr<Schema>)> {
    let job_output = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(closed()))
        .description(Some(
            "one output of a job of the caller's on the same file; a job that has not \
             completed runs first, in a pipeline (see docs/api.md)",
        ))
        .property("job_id", s::job_id())
        .required("job_id")
        .property(
            "output",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64))
                .description(Some(
                    "an output's name: its file name without the extension (`vocals`)",
                )),
        )
        .required("output");
    let mut out = vec![("JobOutputInput".to_string(), job_output.build().into())];
    // `{model, variation?, params?, output}`: a form per model that writes audio.
    let mut input = OneOfBuilder::new().item(reference("JobOutputInput"));
    for m in models {
        let forms = inputs::components(m);
        if !forms.is_empty() {
            input = input.item(reference(&inputs::component_name(m)));
        }
        out.extend(forms);
    }
    out.push(("JobInputRef".to_string(), input.into()));
    for m in models {
        out.push((
            with_input_name(m),
            with_callback(model_fields(m))
                .property("file_id", s::file_id())
                .required("file_id")
                .property("input", reference("JobInputRef"))
                .required("input")
                .property("models", null())
                .property("preset", null())
                .description(Some(format!(
                    "one {} job on one output of another job (on the same file) instead of the upload",
                    m.name
                )))
                .build()
                .into(),
        ));
    }
    let preset = with_callback(ObjectBuilder::new())
        .schema_type(Type::Object)
        .additional_properties(Some(closed()))
        .description(Some(
            "a preset's steps on one file, as one pipeline (see `GET /presets`)",
        ))
        .property("file_id", s::file_id())
        .required("file_id")
        .property(
            "preset",
            s::words(catalog::presets().iter().map(|p| p.name)),
        )
        .required("preset")
        .property("model", null())
        .property("models", null())
        .property("variation", null())
        .property("params", null())
        .property("input", null());
    out.push(("ProcessPreset".into(), preset.build().into()));
    out
}

impl PartialSchema for ProcessBody {
    fn schema() -> RefOr<Schema> {
        let mut single = OneOfBuilder::new();
        for m in catalog::models() {
            single = single.item(reference(&item_name(m)));
        }
        let mut body = OneOfBuilder::new()
            .item(reference("ProcessRequest"))
            .item(reference("ProcessMany"));
        for m in catalog::models() {
            body = body.item(reference(&with_input_name(m)));
        }
        body.item(reference("ProcessPreset"))
            .item(
                ArrayBuilder::new()
                    .items(single)
                    .min_items(Some(1))
                    .max_items(Some(MAX_JOBS_PER_REQUEST))
                    .description(Some("several requests, one model each")),
            )
            .description(Some(
                "one model on one file, several models on one file, one model on another job's \
                 output (`input`), a preset's pipeline (`preset`), or a list of single-model \
                 requests; at most 20 jobs per request",
            ))
            .into()
    }
}

impl ToSchema for ProcessBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProcessBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend(components());
    }
}

/// `POST /process` with `models` or a list: one entry per job, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestedJobs {
    pub jobs: Vec<JobRequestView>,
}

/// `POST /process` answers one job for one `model`, a list for `models` or a list body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProcessResponse {
    One(JobRequestView),
    Many(RequestedJobs),
    /// A `preset`: the pipeline of its steps.
    Pipeline(PipelineRequestView),
}
