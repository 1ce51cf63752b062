//! The words roar stores as text: a job's status and a file's status in the read model, and the
//! kind of a dead letter on `roar.dlq.v1`. Each is an enum whose spelling lives in one place
//! ([`as_str`](JobStatus::as_str)); serde, `FromStr`, `Display` and the database all go through
//! it, so the text on disk and on the wire is what it always was and a misspelling cannot compile.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A text that is none of an enum's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}; valid: {valid}")]
pub struct UnknownWord {
    /// Which vocabulary, e.g. `job status`.
    pub what: &'static str,
    pub got: String,
    /// Every valid word, comma-separated.
    pub valid: String,
}

/// An enum stored as text: one spelling per variant, every conversion derived from it.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and sent) text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// Every valid text, comma-separated (for error messages and docs).
            pub fn valid() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownWord {
                        what: $what,
                        got: s.to_string(),
                        valid: Self::valid(),
                    })
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownWord;

            fn try_from(s: String) -> Result<Self, UnknownWord> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum! {
    /// Where a job stands in the read model (`jobs.status`). A skipped job is `Completed` with
    /// `skipped` set: its outputs existed already.
    JobStatus ("job status") {
        /// Requested (or re-requested, or a retry is scheduled); no worker runs it.
        Queued = "queued",
        /// A worker started it.
        Running = "running",
        /// Its outputs exist. Final.
        Completed = "completed",
        /// It ended without outputs; an admin may retry it.
        Failed = "failed",
        /// Canceled before or while it ran; it may be asked for again.
        Canceled = "canceled",
    }
}

impl JobStatus {
    /// Whether the job has ended (nothing will move it but a new request).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Whether it ended without outputs (failed or canceled): a newer request runs it again.
    pub fn is_closed(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled)
    }
}

text_enum! {
    /// Where an uploaded file stands in the read model (`files.status`).
    FileStatus ("file status") {
        /// Registered for a direct upload that has not completed.
        PendingUpload = "pending_upload",
        /// A song a model is generating (`POST /generate`); `uploaded` once its job wrote it.
        Generating = "generating",
        /// Its bytes are stored; the probe has not decoded them yet.
        Uploaded = "uploaded",
        /// The probe decoded it: jobs may run on it.
        Ready = "ready",
        /// The probe could not decode it.
        Failed = "failed",
        /// Deleted; hidden from its owner.
        Deleted = "deleted",
    }
}

impl FileStatus {
    /// Whether the probe (or a delete) has decided the file's fate: a late upload event no
    /// longer changes the status.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            FileStatus::Ready | FileStatus::Failed | FileStatus::Deleted
        )
    }
}

text_enum! {
    /// What a job event says happened (`JobBody::kind`): the `events.kind` column, SSE event
    /// types, and webhook filters (`job.<kind>`).
    JobEventKind ("job event kind") {
        /// The request as the projector records it (never on the job-events topic).
        Queued = "queued",
        Started = "started",
        Progress = "progress",
        Completed = "completed",
        Failed = "failed",
        RetryScheduled = "retry_scheduled",
        Canceled = "canceled",
        Skipped = "skipped",
    }
}

text_enum! {
    /// Why a message went to `roar.dlq.v1` (`DeadLetter::error_kind`).
    DeadLetterKind ("dead-letter kind") {
        /// The bytes are not a roar event (or not the event the topic carries).
        Undecodable = "undecodable",
        /// It decodes but breaks a rule (ids, ownership, ranges, a database constraint).
        Invalid = "invalid",
        /// A job request on another model's topic.
        WrongModel = "wrong_model",
        /// The handler kept failing with retryable errors until it gave up.
        Failed = "failed",
        /// The job failed for good (permanent error or last attempt); the request is kept for
        /// inspection and manual replay.
        JobFailed = "job_failed",
        /// The handler panicked on it (a bug in roar, not necessarily in the message): kept
        /// for a re-drive once the fix is deployed.
        Panicked = "panicked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + fmt::Debug + FromStr + Serialize + for<'de> Deserialize<'de>,
        T: fmt::Display,
        <T as FromStr>::Err: fmt::Debug,
    {
        for v in all {
            let text = v.to_string();
            assert_eq!(text.parse::<T>().unwrap(), *v);
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
        }
    }

    #[test]
    fn every_word_round_trips_through_text_and_json() {
        round_trips(JobStatus::ALL);
        round_trips(FileStatus::ALL);
        round_trips(DeadLetterKind::ALL);
        round_trips(JobEventKind::ALL);
    }

    #[test]
    fn the_stored_text_is_unchanged() {
        // These texts are in existing databases and on the DLQ topic: changing one needs a
        // migration, not an edit here.
        assert_eq!(
            JobStatus::valid(),
            "queued, running, completed, failed, canceled"
        );
        assert_eq!(
            FileStatus::valid(),
            "pending_upload, generating, uploaded, ready, failed, deleted"
        );
        assert_eq!(
            JobEventKind::valid(),
            "queued, started, progress, completed, failed, retry_scheduled, canceled, skipped"
        );
        assert_eq!(
            DeadLetterKind::valid(),
            "undecodable, invalid, wrong_model, failed, job_failed, panicked"
        );
    }

    #[test]
    fn unknown_text_is_a_clear_error() {
        let e = "cancelled".parse::<JobStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown job status \"cancelled\"; valid: queued, running, completed, failed, canceled"
        );
        assert!(serde_json::from_str::<FileStatus>("\"READY\"").is_err());
    }

    #[test]
    fn the_dead_letter_schema_documents_every_kind_that_is_sent() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../avro/dead_letter.avsc")).unwrap();
        let field = schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "error_kind")
            .unwrap();
        let kinds: Vec<_> = DeadLetterKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(field["doc"], kinds.join(" | "));
    }

    #[test]
    fn terminal_and_closed_statuses() {
        let terminal: Vec<_> = JobStatus::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                &JobStatus::Completed,
                &JobStatus::Failed,
                &JobStatus::Canceled
            ]
        );
        let closed: Vec<_> = JobStatus::ALL.iter().filter(|s| s.is_closed()).collect();
        assert_eq!(closed, [&JobStatus::Failed, &JobStatus::Canceled]);
        let settled: Vec<_> = FileStatus::ALL.iter().filter(|s| s.is_settled()).collect();
        assert_eq!(
            settled,
            [
                &FileStatus::Ready,
                &FileStatus::Failed,
                &FileStatus::Deleted
            ]
        );
    }
}
