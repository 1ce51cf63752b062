//! `GET /admin/dlq` and `POST /admin/dlq/{letter_id}/redrive` (role `admin`).

use axum::extract::State;
use axum::Json;

use crate::commands::dlq::{self, DlqError};
use crate::extract::ApiPath;
use crate::middleware::User;
use crate::routes::admin::require_admin;
use crate::views::{
    is_letter_id, AuthErrors, DeadLetterView, DeadLettersPage, ErrorBody, LetterPath,
    RedriveAccepted, RedriveView,
};
use crate::{ApiError, AppState};

/// The most letters one answer lists (the newest).
const MAX_LISTED: usize = 500;

impl From<DlqError> for ApiError {
    fn from(e: DlqError) -> Self {
        match e {
            DlqError::NotFound(_) => ApiError::NotFound,
            e @ DlqError::Empty(_) => ApiError::Conflict {
                code: "nothing_to_redrive",
                message: e.to_string(),
            },
            DlqError::Kafka(e) => e.into(),
            DlqError::Db(e) => e.into(),
        }
    }
}

/// `GET /admin/dlq`.
#[utoipa::path(get, path = "/admin/dlq", tag = "admin",
    responses(
        (status = 200, description = "the dead letters, newest first (at most 500), each with its re-drive if it had one", body = DeadLettersPage),
        (status = 403, description = "needs the admin role", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn dead_letters(
    State(s): State<AppState>,
    user: User,
) -> Result<Json<DeadLettersPage>, ApiError> {
    require_admin(&user)?;
    let letters = dlq::list(&s.cfg.kafka, &s.db).await?;
    Ok(Json(DeadLettersPage {
        total: letters.len(),
        letters: letters
            .iter()
            .take(MAX_LISTED)
            .map(DeadLetterView::from)
            .collect(),
    }))
}

/// `POST /admin/dlq/{letter_id}/redrive`.
#[utoipa::path(post, path = "/admin/dlq/{letter_id}/redrive", tag = "admin",
    params(LetterPath),
    responses(
        (status = 200, description = "the message is back on its source topic (`sent_now` is false when an earlier re-drive sent it: nothing is sent twice)", body = RedriveAccepted),
        (status = 403, description = "needs the admin role", body = ErrorBody),
        (status = 404, description = "no such dead letter", body = ErrorBody),
        (status = 409, description = "the letter kept no payload (`nothing_to_redrive`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn redrive_letter(
    State(s): State<AppState>,
    user: User,
    ApiPath(LetterPath { letter_id }): ApiPath<LetterPath>,
) -> Result<Json<RedriveAccepted>, ApiError> {
    require_admin(&user)?;
    if !is_letter_id(&letter_id) {
        return Err(ApiError::NotFound);
    }
    let actor = format!("user:{}", user.id());
    let (done, sent_now) =
        dlq::redrive(&s.cfg.kafka, &s.producer, &s.db, &letter_id, &actor).await?;
    Ok(Json(RedriveAccepted {
        letter_id,
        redrive: RedriveView::from(&done),
        sent_now,
    }))
}
