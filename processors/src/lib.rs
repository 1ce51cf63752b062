//! roar's workers. Each consumer group reads one topic and runs one kind of work off the async
//! executor: the `probe` decodes every uploaded file and writes its `metadata.json`; the model
//! processors (pitch, demucs, whisper, ...) each live in their own module.

pub mod audio;
pub mod probe;
