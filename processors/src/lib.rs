//! roar's workers. Each consumer group reads one topic and runs one kind of work off the async
//! executor: the `probe` decodes every uploaded file and writes its `metadata.json`; the
//! [`runtime`] runs model jobs (consume → run → write outputs → emit → store offset) for the
//! models, each in its own module (`pitch`, `whisper`, `demucs`, `musicgen`, `gemma3n`: lyrics),
//! and [`encode`] writes audio outputs (WAV, FLAC, MP3).

pub mod alloc;
pub mod audio;
pub mod demucs;
pub mod device;
pub mod encode;
pub mod gemma3n;
pub mod musicgen;
pub mod pitch;
pub mod probe;
pub mod runtime;
pub mod whisper;

use roar_schemas::DeadLetterKind;

/// The error code a job or upload ends with when its message was dead-lettered by the
/// consumer loop (the letter itself keeps the full cause for an operator).
pub(crate) fn dead_letter_code(kind: DeadLetterKind) -> &'static str {
    match kind {
        DeadLetterKind::Failed => "retries_exhausted",
        DeadLetterKind::WrongModel => "wrong_model",
        DeadLetterKind::Invalid => "invalid_request",
        DeadLetterKind::Undecodable => "undecodable",
        DeadLetterKind::JobFailed => "failed",
        DeadLetterKind::Panicked => "handler_panicked",
    }
}
