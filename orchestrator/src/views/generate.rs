//! `POST /generate`: a song made from a text prompt (no upload), and the generated song's facts
//! as `/status` and `/songs` show them. The body's schema is built from the musicgen catalogue
//! entry (the one the handler validates against), less what the body names at its top level.

use std::borrow::Cow;

use roar_common::catalog;
use roar_common::config::MusicgenConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::jobs::JobRequestView;
use super::process::param_schema;
use super::schema as s;

/// The model that generates songs.
pub const GENERATOR: &str = "musicgen";
/// Parameters the body gives at its top level (`prompt`, `duration_seconds`), or that need a
/// song to work on (`prompt_seconds`: continue one with `POST /process`).
pub const NOT_IN_PARAMS: [&str; 3] = ["prompt", "duration", "prompt_seconds"];
/// Variations that need a song (`melody` follows one): `POST /process` runs them.
pub const NEEDS_A_SONG: [&str; 1] = ["melody"];

/// The body of `POST /generate`. `null` is the same as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub prompt: String,
    pub duration_seconds: Option<f64>,
    pub variation: Option<String>,
    pub params: Option<Value>,
}

/// Its schema (the type above reads the body; this says what it may hold).
pub struct GenerateBody;

fn nullable(t: Type) -> utoipa::openapi::schema::SchemaType {
    [t, Type::Null].into_iter().collect()
}

impl PartialSchema for GenerateBody {
    fn schema() -> RefOr<Schema> {
        let spec = catalog::models()
            .iter()
            .find(|m| m.name == GENERATOR)
            .expect("musicgen is in the catalogue");
        let mut params = ObjectBuilder::new()
            .schema_type(nullable(Type::Object))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "musicgen's sampling and output parameters; absent ones take their defaults \
                 (see `GET /models`)",
            ));
        for p in spec
            .params
            .iter()
            .filter(|p| !NOT_IN_PARAMS.contains(&p.name))
        {
            params = params.property(p.name, param_schema(&p.kind, p.description));
        }
        let variations = spec
            .variations
            .iter()
            .map(|v| v.name)
            .filter(|v| !NEEDS_A_SONG.contains(v))
            .map(Value::from)
            .chain([Value::Null]);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "a song to generate; asking again with the same body names the same song and job",
            ))
            .property(
                "prompt",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(MusicgenConfig::PROMPT_CEILING))
                    .pattern(Some(s::text_pattern()))
                    .description(Some(
                        "what to generate (empty: music without a text condition); at most \
                         `musicgen.max_prompt_chars` characters (2000 by default)",
                    )),
            )
            .required("prompt")
            .property(
                "duration_seconds",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Number))
                    .minimum(Some(1.0))
                    .maximum(Some(MusicgenConfig::DURATION_CEILING))
                    .description(Some(
                        "seconds of music (default 10); at most `musicgen.max_duration_seconds` \
                         (30 by default)",
                    )),
            )
            .property(
                "variation",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .enum_values(Some(variations))
                    .description(Some(format!(
                        "default: {}; `melody` follows a song: use `POST /process` on it",
                        spec.default_variation
                    ))),
            )
            .property("params", params)
            .into()
    }
}

impl ToSchema for GenerateBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("GenerateBody")
    }
}

/// `POST /generate`'s answer: the song's file and the job generating it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerateAccepted {
    /// The song: `/status/{file_id}` follows it (`generating`, then `uploaded` and `ready`),
    /// `/songs` lists it, and once `ready` `POST /process` works on it like on an upload.
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    pub filename: String,
    /// The token of the song's `FileGenerationRequested`, when this request emitted one: pass
    /// it to `GET /status/{file_id}?after=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
    /// The generating job, as `POST /process` shows a job it requested or found.
    pub job: JobRequestView,
}

/// What a generated song was made from (null for uploads).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GenerationView {
    pub prompt: String,
    /// The job that generates it (its outputs hold `generation.json` with the seed).
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    pub model: String,
    pub variation: String,
    pub duration_seconds: f64,
}

/// The file name a generated song gets: its prompt's words (letters, digits, spaces and
/// `-_,'`), at most 60 characters, and the extension of its format.
pub fn song_filename(prompt: &str, extension: &str) -> String {
    let kept: String = prompt
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| c.is_alphanumeric() || " -_,'".contains(*c))
        .collect();
    let words: Vec<&str> = kept.split_whitespace().collect();
    let mut name = String::new();
    for w in words {
        let sep = usize::from(!name.is_empty());
        if name.chars().count() + sep + w.chars().count() > 60 {
            break;
        }
        if sep == 1 {
            name.push(' ');
        }
        name.push_str(w);
    }
    if name.is_empty() {
        // A first word longer than the limit is cut rather than lost.
        name = kept.trim().chars().take(60).collect();
    }
    let name = name.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let name = if name.is_empty() { "untitled" } else { name };
    format!("{name}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_song_is_named_after_its_prompt() {
        assert_eq!(song_filename("a calm piano", "wav"), "a calm piano.wav");
        assert_eq!(
            song_filename("  ../../etc/passwd\n\u{0}lo-fi, rain ", "mp3"),
            "etcpasswd lo-fi, rain.mp3"
        );
        assert_eq!(song_filename("", "wav"), "untitled.wav");
        assert_eq!(song_filename("!!!", "flac"), "untitled.flac");
        let long = "word ".repeat(40);
        let n = song_filename(&long, "wav");
        assert!(n.len() <= 64 && n.ends_with("word.wav"), "{n}");
        assert_eq!(song_filename(&"x".repeat(100), "wav").len(), 64);
    }
}
