//! The API's vocabulary: every request and response body and every query string the handlers
//! accept or return, as types. Handlers deserialize into these and serialize these, and the
//! OpenAPI document (`crate::openapi`) is derived from the same types, so the document cannot
//! drift from what is on the wire without a compile error or a failing test.
//!
//! Conversions from the read model's rows live beside the views; nothing here touches the
//! network or the database.

mod dlq;
mod errors;
mod files;
mod generate;
mod jobs;
mod models;
mod numbers;
mod pipelines;
mod process;
mod queries;
pub(crate) mod schema;
mod status;
mod usage;
mod webhooks;

pub use dlq::{
    is_letter_id, DeadLetterView, DeadLettersPage, LetterPath, RedriveAccepted, RedriveView,
    LETTER_ID_PATTERN,
};
pub use errors::{AuthErrors, ErrorBody, JsonBodyErrors};
pub use files::{
    FileError, FileView, MultipartUpload, ProbeView, SongsPage, UploadCreated, UploadRequest,
    UploadTicket, Uploaded,
};
pub use generate::{
    song_filename, GenerateAccepted, GenerateBody, GenerateRequest, GenerationView, GENERATOR,
    NEEDS_A_SONG, NOT_IN_PARAMS,
};
pub use jobs::{
    notify_request_schema, stored_outputs, AdminJobView, CancelAccepted, CommandStatus,
    HistoryEventView, JobError, JobInputView, JobRequestView, JobView, JobsPage, NotifyAccepted,
    NotifyError, NotifyOutput, NotifyRequest, NotifyStatus, Outcome, OutputView, RetryAccepted,
};
pub use models::{
    HealthView, ModelView, ModelsView, ParamKindView, ParamView, ReadyView, ServedView,
    VariationView, WorkerView,
};
pub use pipelines::{
    overall, PipelineCancelAccepted, PipelinePath, PipelineRequestView, PipelineStepView,
    PipelineView, PresetStepView, PresetView, PresetsView, StepInputView,
};
pub use process::{
    JobOutputRef, ModelChoice, ModelOutputRef, ProcessBody, ProcessRequest, ProcessResponse,
    RequestedJobs, MAX_JOBS_PER_REQUEST,
};
pub use queries::{
    EventsHeaders, EventsQuery, FilePath, JobPath, JobsQuery, LinkQuery, PageQuery, StatusQuery,
    DEFAULT_LIMIT, MAX_LIMIT, MIN_LIMIT,
};
pub use schema::PIPELINE_ID_PATTERN;
pub use status::StatusView;
pub use usage::{Usage, UsageLimits};
pub use webhooks::{
    events_schema, is_webhook_secret, is_webhook_url, secret_schema, url_schema, DeliveryList,
    DeliveryView, WebhookList, WebhookPath, WebhookRequest, WebhookView, MAX_FILTERS,
};
