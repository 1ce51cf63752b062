//! Hand-built schemas for what a derive cannot say: ids and tokens as the handlers check them,
//! and the status words, listed from the enums that spell them (so a new variant shows up in
//! the document by itself).

use roar_schemas::{FileStatus, JobStatus};
use utoipa::openapi::schema::{AdditionalProperties, Object, ObjectBuilder, Type};

/// What `roar_schemas::ids::is_valid_id('f', ..)` accepts.
pub const FILE_ID_PATTERN: &str = "^f[0-9a-f]{32}$";
/// What `roar_schemas::ids::is_valid_id('j', ..)` accepts.
pub const JOB_ID_PATTERN: &str = "^j[0-9a-f]{32}$";
/// What `roar_schemas::ids::is_valid_id('p', ..)` accepts.
pub const PIPELINE_ID_PATTERN: &str = "^p[0-9a-f]{32}$";

fn string(pattern: &str, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

/// A string schema that allows exactly these words.
pub fn words<'a>(words: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(words))
        .build()
}

/// A JSON object of any members (a map), so that generated clients type it as one rather
/// than as an empty object.
fn json_map(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(description))
        .build()
}

pub fn history_body() -> Object {
    json_map(
        "The event's body as the history stores it, by `kind`. File events carry their members \
         at the top (`file_probed`: `duration_seconds`, `sample_rate`, `channels`, ...); job \
         events are the job event, with `file_id`, `job_id` and the kind's own members under \
         `body` (`progress`: `body.percent` 0-100 and `body.message`; `completed`: \
         `body.outputs`; `failed`: `body.code`, `body.message`, `body.retryable`).",
    )
}

pub fn job_params() -> Object {
    json_map("The normalised params (defaults filled in): equal params name the same job.")
}

pub fn one_word(word: &str) -> Object {
    words([word])
}

pub fn file_id() -> Object {
    string(
        FILE_ID_PATTERN,
        "a file id: `f` and 32 lowercase hex digits",
    )
}

pub fn pipeline_id() -> Object {
    string(
        PIPELINE_ID_PATTERN,
        "a pipeline id: `p` and 32 lowercase hex digits",
    )
}

pub fn file_id_or_null() -> Object {
    let mut o = file_id();
    o.schema_type = [Type::String, Type::Null].into_iter().collect();
    o
}

/// What `is_output_path` accepts.
pub const OUTPUT_PATH_PATTERN: &str = "^outputs/f[0-9a-f]{32}(/[^/]*[^/.][^/]*)+$";

/// A key under some file's output folder whose segments are not empty, `.` or `..` (nor any
/// other all-dots name).
pub fn is_output_path(path: &str) -> bool {
    let mut parts = path.split('/');
    parts.next() == Some("outputs")
        && parts
            .next()
            .is_some_and(|f| roar_schemas::ids::is_valid_id('f', f))
        && {
            let rest: Vec<&str> = parts.collect();
            !rest.is_empty() && rest.iter().all(|s| s.bytes().any(|b| b != b'.'))
        }
}

pub fn output_path() -> Object {
    string(
        OUTPUT_PATH_PATTERN,
        "a storage key under `outputs/{file_id}/`",
    )
}

pub fn job_id() -> Object {
    string(JOB_ID_PATTERN, "a job id: `j` and 32 lowercase hex digits")
}

/// A SHA-256 as roar reports it.
pub fn sha256_hex() -> Object {
    string("^[0-9a-f]{64}$", "hex SHA-256, lowercase")
}

/// A file's SHA-256: empty while a generated song has no content yet (`generating`).
pub fn file_sha256() -> Object {
    string(
        "^([0-9a-f]{64})?$",
        "hex SHA-256, lowercase; empty while a generated song is generating",
    )
}

/// A SHA-256 as a client may give it.
pub fn sha256_any_case() -> Object {
    string("^[0-9a-fA-F]{64}$", "hex SHA-256 (either case)")
}

/// `topic:partition:offset` of an event roar acknowledged, on one of roar's own topics.
pub fn consistency_token() -> Object {
    let topics: Vec<String> = roar_schemas::topics::all(1)
        .into_iter()
        .map(|t| t.name.replace('.', "\\."))
        .collect();
    string(
        &format!("^({}):[0-9]{{1,9}}:[0-9]{{1,18}}$", topics.join("|")),
        "a consistency token from a command's answer",
    )
}

/// A page cursor: `<unix micros>.<id>` of the last item of the previous page.
pub fn cursor(id_letter: char) -> Object {
    string(
        &format!("^[0-9]{{1,16}}\\.{id_letter}[0-9a-f]{{32}}$"),
        "`next_cursor` of the previous page",
    )
}

pub fn file_status() -> Object {
    words(FileStatus::ALL.iter().map(|s| s.as_str()))
}

pub fn job_status() -> Object {
    words(JobStatus::ALL.iter().map(|s| s.as_str()))
}

/// What the catalogue accepts in a free-text parameter: no control character but tab and
/// newlines, no Unicode noncharacter. The noncharacters beyond the first plane are written as
/// themselves, because the regex dialects that read this document spell their escapes
/// differently.
pub fn text_pattern() -> String {
    let mut p = String::from(r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\uFDD0-\uFDEF\uFFFE\uFFFF");
    for plane in 1..=16u32 {
        for low in [0xFFFE, 0xFFFF] {
            p.extend(char::from_u32(plane << 16 | low));
        }
    }
    p.push_str("]*$");
    p
}

/// The `pattern` of a hand-built schema as a regex (JSON Schema patterns are unanchored
/// ECMA-262 regexes; ours anchor themselves and use only what `regex` reads the same way).
#[cfg(test)]
pub fn pattern_of(o: &Object) -> regex::Regex {
    regex::Regex::new(o.pattern.as_deref().expect("a pattern")).expect("the pattern compiles")
}

#[cfg(test)]
mod tests {
    use super::*;
    use roar_schemas::ids::is_valid_id;

    #[test]
    fn output_paths_are_keys_under_an_output_folder() {
        let f = "f0123456789abcdef0123456789abcdef";
        let pattern = pattern_of(&output_path());
        let good = ["a.json", "x/y.wav", "...a", "a..b/c", ".hidden"];
        let bad = ["", "/", "./a", "../g/a", "a//b", "...", "a/", "a/.."];
        for (rest, ok) in good
            .iter()
            .map(|r| (r, true))
            .chain(bad.iter().map(|r| (r, false)))
        {
            let path = format!("outputs/{f}/{rest}");
            assert_eq!(is_output_path(&path), ok, "{path}");
            assert_eq!(pattern.is_match(&path), ok, "{path}");
        }
        for other in [
            format!("outputs/{f}"),
            "outputs/F0123456789abcdef0123456789abcdef/a".to_string(),
            format!("uploads/{f}/a"),
            format!("x/outputs/{f}/a"),
            "outputs/x/a".to_string(),
        ] {
            assert!(!is_output_path(&other), "{other}");
            assert!(!pattern.is_match(&other), "{other}");
        }
    }

    #[test]
    fn the_text_pattern_says_what_the_catalogue_accepts() {
        let pattern = regex::Regex::new(&text_pattern()).unwrap();
        let astral =
            (1..=16u32).flat_map(|p| [p << 16 | 0xFFFD, p << 16 | 0xFFFE, p << 16 | 0xFFFF]);
        let chars = (0..0x3100).chain(0xFDC0..0x10000).chain(astral);
        for c in chars.filter_map(char::from_u32) {
            let text = format!("a{c}b");
            let params = serde_json::json!({ "initial_prompt": text });
            let accepted = roar_common::catalog::resolve("whisper", None, Some(&params)).is_ok();
            assert_eq!(pattern.is_match(&text), accepted, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn the_id_patterns_say_what_the_handlers_accept() {
        let (file, job) = (pattern_of(&file_id()), pattern_of(&job_id()));
        let cases = [
            "f0123456789abcdef0123456789abcdef",
            "j0123456789abcdef0123456789abcdef",
            "f0123456789ABCDEF0123456789abcdef",
            "f0123456789abcdef0123456789abcde",
            "f0123456789abcdef0123456789abcdef0",
            "xf0123456789abcdef0123456789abcdef",
            "g0123456789abcdef0123456789abcdef",
            "f0123456789abcdef0123456789abcdeg",
            "",
        ];
        for s in cases {
            assert_eq!(file.is_match(s), is_valid_id('f', s), "{s}");
            assert_eq!(job.is_match(s), is_valid_id('j', s), "{s}");
        }
    }
}
