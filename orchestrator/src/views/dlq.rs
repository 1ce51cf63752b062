//! `/admin/dlq`: dead letters and their re-drive.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

/// What a letter id looks like: `dlq-<source topic>-<partition>-<offset>`.
pub const LETTER_ID_PATTERN: &str = "^dlq-[A-Za-z0-9._-]{1,249}-[0-9]{1,10}-[0-9]{1,19}$";

/// Whether `id` can be a letter id (anything else is 404 without reading the topic).
pub fn is_letter_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("dlq-") else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '-');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    digits(offset, 19)
        && digits(partition, 10)
        && (1..=249).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn letter_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(LETTER_ID_PATTERN))
        .description(Some(
            "a dead letter's id: `dlq-<source topic>-<partition>-<offset>`",
        ))
        .build()
}

/// Routes on one dead letter: `{letter_id}` in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LetterPath {
    #[param(schema_with = letter_id, required = true)]
    pub letter_id: String,
}

/// One message that a consumer gave up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    #[schema(schema_with = letter_id)]
    pub letter_id: String,
    /// Where the message was read.
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// The consumer group that gave up on it.
    pub consumer_group: String,
    /// undecodable | invalid | wrong_model | failed | job_failed | panicked
    pub kind: String,
    /// Why, in words.
    pub error: String,
    /// The message key (a file id or job id), as text.
    pub key: Option<String>,
    pub dead_lettered_at: DateTime<Utc>,
    /// Set once an operator sent it back to its source topic.
    pub redrive: Option<RedriveView>,
}

/// Where and when a letter was sent back.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveView {
    pub redriven_at: DateTime<Utc>,
    /// Who asked (`user:<sub>` or `cli`).
    pub actor: String,
    /// The topic, partition and offset the message was written to again.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// `GET /admin/dlq`: the newest letters first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersPage {
    pub letters: Vec<DeadLetterView>,
    /// How many letters the topic holds (one per source message).
    pub total: usize,
}

/// `POST /admin/dlq/{letter_id}/redrive`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveAccepted {
    #[schema(schema_with = letter_id)]
    pub letter_id: String,
    pub redrive: RedriveView,
    /// `false` when the letter had been re-driven before: nothing was sent again.
    pub sent_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_ids_are_what_the_consumer_loop_writes() {
        assert!(is_letter_id("dlq-roar.jobs.pitch.v1-0-17"));
        assert!(is_letter_id("dlq-roar.test.consumer-loop.v1-1-0"));
        for bad in [
            "",
            "dlq-",
            "dlq--0-1",
            "dlq-roar.files.v1-0",
            "dlq-roar.files.v1-x-1",
            "dlq-roar files-0-1",
            "jdeadbeef",
            "dlq-roar.files.v1-0-12345678901234567890",
        ] {
            assert!(!is_letter_id(bad), "{bad}");
        }
        let re = regex::Regex::new(LETTER_ID_PATTERN).unwrap();
        assert!(re.is_match("dlq-roar.jobs.pitch.v1-0-17"));
        assert!(!re.is_match("dlq-roar files-0-1"));
    }
}
