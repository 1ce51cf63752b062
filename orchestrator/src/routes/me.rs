//! `GET /me/usage`: the caller's quota usage and limits.

use axum::extract::State;
use axum::Json;

use crate::middleware::User;
use crate::views::{AuthErrors, Usage};
use crate::{quotas, ApiError, AppState};

#[utoipa::path(get, path = "/me/usage", tag = "files",
    responses(
        (status = 200, description = "what the caller uses of each quota (`quota.*`), and the limits", body = Usage),
        AuthErrors,
    ))]
pub async fn usage(State(s): State<AppState>, user: User) -> Result<Json<Usage>, ApiError> {
    Ok(Json(quotas::usage(&s, user.id()).await?))
}
