//! roar's workers. Each consumer group reads one topic and runs one kind of work off the async
//! executor: the `probe` decodes every uploaded file and writes its `metadata.json`; the
//! [`runtime`] runs model jobs (consume → run → write outputs → emit → store offset) for the
//! models, each in its own module (`pitch`, `whisper`, `demucs`; musicgen and gemma3n to come),
//! and [`encode`] writes audio outputs (WAV, FLAC, MP3).

pub mod audio;
pub mod demucs;
pub mod encode;
pub mod pitch;
pub mod probe;
pub mod runtime;
pub mod whisper;
