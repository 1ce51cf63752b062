//! The schema of `input: {model, variation?, params?, output}`: one output of that model's job
//! on the upload. Which outputs a job writes depends on its variation and params, and the
//! handler refuses an output the named job does not write, so each branch here pairs the
//! variations and params of one output set with exactly its output names: a request the
//! document calls valid is one the handler accepts, and the reverse.

use roar_common::catalog::{self, ModelSpec, ParamKind};
use serde_json::{json, Value};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::{closed, model_fields, null, nullable, param_schema, reference};
use crate::views::schema as s;

/// The component that names `model`'s input form.
pub(super) fn component_name(m: &ModelSpec) -> String {
    format!("ModelOutputInput_{}", m.name)
}

/// The components of `m`'s input form (the last one is [`component_name`]'s), or none when no
/// job of `m` writes audio another job can read.
pub(super) fn components(m: &ModelSpec) -> Vec<(String, RefOr<Schema>)> {
    if m.name == "demucs" {
        return separation(m);
    }
    let names = catalog::audio_output_names(m);
    if names.is_empty() {
        return Vec::new();
    }
    let schema = model_fields(m)
        .property("output", outputs(names.iter().map(String::as_str)))
        .required("output")
        .description(Some(describe(m, "")))
        .build();
    vec![(component_name(m), schema.into())]
}

fn describe(m: &ModelSpec, which: &str) -> String {
    format!(
        "one output of the {} job on the upload with these variation and params{which}; it runs \
         first, in a pipeline, when it has not completed",
        m.name
    )
}

fn outputs<'a>(names: impl IntoIterator<Item = &'a str>) -> Object {
    let mut o = s::words(names);
    o.description = Some("an output's name: its file name without the extension".into());
    o
}

/// The values a demucs parameter takes (`two_stems`: one source, `stems`: several).
fn choices(m: &ModelSpec, param: &str) -> &'static [&'static str] {
    match m.params.iter().find(|p| p.name == param).map(|p| &p.kind) {
        Some(ParamKind::Enum { values } | ParamKind::Subset { values }) => values,
        _ => &[],
    }
}

/// The sources a demucs variation writes when neither `two_stems` nor `stems` narrows them.
fn sources(variation: &str) -> Vec<String> {
    catalog::resolve("demucs", Some(variation), None)
        .map(|r| catalog::outputs(&r).into_iter().map(|o| o.name).collect())
        .unwrap_or_default()
}

/// demucs' params with `two_stems` and `stems` as given and the rest as the catalogue says;
/// `nullable`: the params may be absent altogether.
fn separation_params(
    m: &ModelSpec,
    two_stems: RefOr<Schema>,
    stems: RefOr<Schema>,
    required: &[&str],
    nullable_params: bool,
) -> Object {
    let types = if nullable_params {
        nullable(&[Type::Object])
    } else {
        Type::Object.into()
    };
    let mut b = ObjectBuilder::new()
        .schema_type(types)
        .additional_properties(Some(closed()));
    for p in &m.params {
        b = match p.name {
            "two_stems" => b.property(p.name, two_stems.clone()),
            "stems" => b.property(p.name, stems.clone()),
            _ => b.property(p.name, param_schema(&p.kind, p.description)),
        };
    }
    for r in required {
        b = b.required(*r);
    }
    b.build()
}

fn variations(names: &[&str], default_too: bool) -> Object {
    let values = names
        .iter()
        .map(|v| Value::from(*v))
        .chain(default_too.then_some(Value::Null));
    let types = if default_too {
        nullable(&[Type::String])
    } else {
        Type::String.into()
    };
    ObjectBuilder::new()
        .schema_type(types)
        .enum_values(Some(values))
        .build()
}

/// demucs: `two_stems: X` writes `X` and `no_X` (whatever the variation); `stems` writes the
/// chosen sources the variation has; neither writes every source of the variation.
fn separation(m: &ModelSpec) -> Vec<(String, RefOr<Schema>)> {
    let base = component_name(m);
    let all_variations: Vec<&str> = m.variations.iter().map(|v| v.name).collect();
    let mut out = Vec::new();
    for stem in choices(m, "two_stems") {
        let params = separation_params(
            m,
            s::one_word(stem).into(),
            param_of(m, "stems"),
            &["two_stems"],
            false,
        );
        let schema = model_fields(m)
            .property("variation", variations(&all_variations, true))
            .property("params", params)
            .required("params")
            .property("output", outputs([*stem, format!("no_{stem}").as_str()]))
            .required("output")
            .description(Some(describe(m, &format!(" (`two_stems: {stem}`)"))))
            .build();
        out.push((format!("{base}_two_stems_{stem}"), schema.into()));
    }
    for stem in choices(m, "stems") {
        // The variations that have this source; the default variation may go unnamed.
        let having: Vec<&str> = all_variations
            .iter()
            .copied()
            .filter(|v| sources(v).iter().any(|s| s == stem))
            .collect();
        if having.is_empty() {
            continue;
        }
        let with_default = having.contains(&m.default_variation);
        let chosen = ArrayBuilder::new()
            .schema_type(Type::Array)
            .min_items(Some(1))
            .unique_items(true)
            .items(s::words(choices(m, "stems").iter().copied()))
            // `contains` (JSON Schema 2020-12), which utoipa has no builder for.
            .extensions(Some(Extensions::from_iter([(
                "contains",
                json!({"type": "string", "enum": [stem]}),
            )])))
            .description(Some("stems to write; they include the output read"))
            .build();
        let params = separation_params(
            m,
            null().into(),
            Schema::Array(chosen).into(),
            &["stems"],
            false,
        );
        let mut schema = model_fields(m)
            .property("variation", variations(&having, with_default))
            .property("params", params)
            .required("params")
            .property("output", outputs([*stem]))
            .required("output")
            .description(Some(describe(m, &format!(" (`stems` with {stem})"))));
        if !with_default {
            schema = schema.required("variation");
        }
        out.push((format!("{base}_stems_{stem}"), schema.build().into()));
    }
    for v in &m.variations {
        let is_default = v.name == m.default_variation;
        let params = separation_params(m, null().into(), null().into(), &[], true);
        let written = sources(v.name);
        let mut schema = model_fields(m)
            .property("variation", variations(&[v.name], is_default))
            .property("params", params)
            .property("output", outputs(written.iter().map(String::as_str)))
            .required("output")
            .description(Some(describe(
                m,
                &format!(" (`{}`, every source it separates)", v.name),
            )));
        if !is_default {
            schema = schema.required("variation");
        }
        out.push((format!("{base}_{}", v.name), schema.build().into()));
    }
    let mut any = OneOfBuilder::new().description(Some(
        "one output of the demucs job on the upload with these variation and params: \
         `two_stems: X` writes `X` and `no_X`, `stems` the chosen sources the variation \
         has, neither every source of the variation",
    ));
    for (name, _) in &out {
        any = any.item(reference(name));
    }
    out.push((base, any.into()));
    out
}

fn param_of(m: &ModelSpec, name: &str) -> RefOr<Schema> {
    let p = m.params.iter().find(|p| p.name == name);
    match p {
        Some(p) => param_schema(&p.kind, p.description).into(),
        None => null().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every branch's output names, by component.
    fn branches() -> Vec<(String, Value)> {
        let demucs = catalog::model("demucs").unwrap();
        components(demucs)
            .into_iter()
            .map(|(n, s)| (n, serde_json::to_value(s).unwrap()))
            .collect()
    }

    #[test]
    fn each_demucs_output_set_is_one_branch_naming_exactly_its_outputs() {
        let all = branches();
        let get = |n: &str| &all.iter().find(|(name, _)| name == n).unwrap().1;
        let two = get("ModelOutputInput_demucs_two_stems_vocals");
        assert_eq!(
            two["properties"]["output"]["enum"],
            json!(["vocals", "no_vocals"])
        );
        assert_eq!(
            two["properties"]["params"]["properties"]["two_stems"]["enum"],
            json!(["vocals"])
        );
        let six = get("ModelOutputInput_demucs_htdemucs_6s");
        assert_eq!(
            six["properties"]["output"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
        assert_eq!(six["required"], json!(["model", "output", "variation"]));
        let four = get("ModelOutputInput_demucs_htdemucs");
        assert_eq!(
            four["properties"]["output"]["enum"],
            json!(["drums", "bass", "other", "vocals"])
        );
        assert!(four["properties"]["variation"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::Null));
        let piano = get("ModelOutputInput_demucs_stems_piano");
        assert_eq!(
            piano["properties"]["variation"]["enum"],
            json!(["htdemucs_6s"])
        );
        assert_eq!(
            piano["properties"]["params"]["properties"]["stems"]["contains"]["enum"],
            json!(["piano"])
        );
        // The last component is the one the input form names: every branch, once.
        let (name, any) = all.last().unwrap();
        assert_eq!(name, "ModelOutputInput_demucs");
        assert_eq!(any["oneOf"].as_array().unwrap().len(), all.len() - 1);
        // Every output a branch names is one the handler's check accepts for some request.
        for (n, b) in &all[..all.len() - 1] {
            for o in b["properties"]["output"]["enum"].as_array().unwrap() {
                let o = o.as_str().unwrap();
                let params = if let Some(st) = n.strip_prefix("ModelOutputInput_demucs_two_stems_")
                {
                    json!({"two_stems": st})
                } else if n.contains("_stems_") {
                    json!({"stems": [o]})
                } else {
                    json!({})
                };
                let variation = b["properties"]["variation"]["enum"][0].as_str();
                let r = catalog::resolve("demucs", variation, Some(&params)).unwrap();
                assert!(catalog::check_output(&r, o).is_ok(), "{n}: {o}");
            }
        }
    }
}
