//! The OpenAPI 3.1 description of the API, generated from the handlers' annotations and the
//! types in [`crate::views`] they read and answer with. `schemas/openapi/orchestrator.yaml` is
//! this, checked in; a test fails when it is stale (`ROAR_UPDATE_OPENAPI=1` rewrites it, and
//! the test fails all the same until a run finds nothing to rewrite).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::views::{
    ErrorBody, FileView, HistoryEventView, JobView, ProbeView, ProcessBody, StatusView,
};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Path parameters are always required (OpenAPI says so); utoipa leaves `required` unset for
/// parameters whose schema is hand-built (`schema_with`), so it is set here for all of them.
struct PathParamsRequired;

impl Modify for PathParamsRequired {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::Required;
        for item in api.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    if matches!(p.parameter_in, ParameterIn::Path) {
                        p.required = Required::True;
                    }
                }
            }
        }
    }
}

/// `POST /notify`'s body says which fields each status needs (see
/// [`crate::views::notify_request_schema`]).
struct NotifyConditions;

impl Modify for NotifyConditions {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let schemas = &mut api.components.get_or_insert_with(Default::default).schemas;
        let derived = schemas
            .remove("NotifyRequest")
            .expect("NotifyRequest is a component (the /notify body)");
        schemas.insert(
            "NotifyRequest".into(),
            crate::views::notify_request_schema(derived).into(),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "roar orchestrator", description = "The Lion's Roar Studio API: uploads, process requests, status, SSE, admin. Every error body is ErrorBody; every response carries X-Request-ID. Routes behind the bearer token also answer 401 (token refused), 429 (rate limit, with Retry-After) and 503 (a dependency is down)."),
    modifiers(&Bearer, &PathParamsRequired, &NotifyConditions),
    security(("bearer" = [])),
    paths(
        crate::routes::upload::upload,
        crate::routes::presign::put_signed,
        crate::routes::presign::complete,
        crate::routes::process::process,
        crate::routes::generate::generate,
        crate::routes::status::status,
        crate::routes::events::events,
        crate::routes::catalog::songs,
        crate::routes::catalog::delete_song,
        crate::routes::me::usage,
        crate::routes::catalog::models,
        crate::routes::pipelines::presets,
        crate::routes::pipelines::get,
        crate::routes::pipelines::cancel,
        crate::routes::admin::cancel,
        crate::routes::admin::retry,
        crate::routes::admin::admin_cancel,
        crate::routes::admin::list,
        crate::routes::dlq::dead_letters,
        crate::routes::dlq::redrive_letter,
        crate::routes::notify::notify,
        crate::routes::webhooks::create,
        crate::routes::webhooks::list,
        crate::routes::webhooks::delete,
        crate::routes::webhooks::deliveries,
        crate::routes::files::download,
        crate::routes::health::health,
        crate::routes::health::ready,
    ),
    // Referenced from descriptions or only through other schemas; listed so they are named.
    components(schemas(ErrorBody, FileView, JobView, ProbeView, StatusView, HistoryEventView, ProcessBody))
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON (what a spec-driven client or fuzzer reads).
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// The OpenAPI document as YAML.
pub fn yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/openapi/orchestrator.yaml"
    );

    /// Compares `now` with the file at `path`. Updating rewrites a file that differs and
    /// reports it as an error all the same, so only a run with nothing to rewrite passes.
    fn current_or_update(path: &str, now: &str, update: bool) -> Result<(), String> {
        if std::fs::read_to_string(path).ok().as_deref() == Some(now) {
            return Ok(());
        }
        if !update {
            return Err(format!(
                "{path} is stale; regenerate it with \
                 ROAR_UPDATE_OPENAPI=1 cargo nextest run -p roar-orchestrator openapi"
            ));
        }
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap())
            .and_then(|()| std::fs::write(path, now))
            .map_err(|e| format!("{path}: {e}"))?;
        Err(format!(
            "{path} rewritten by ROAR_UPDATE_OPENAPI; review and commit it"
        ))
    }

    #[test]
    fn the_checked_in_openapi_document_is_current() {
        let update = std::env::var_os("ROAR_UPDATE_OPENAPI").is_some();
        if let Err(e) = current_or_update(CHECKED_IN, &yaml(), update) {
            panic!("{e}");
        }
    }

    #[test]
    fn updating_rewrites_a_stale_document_and_still_fails() {
        let dir = std::env::temp_dir().join(format!("roar-openapi-{}", std::process::id()));
        let path = dir.join("api.yaml");
        let path = path.to_str().unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(path, "old").unwrap();
        assert!(current_or_update(path, "new", false).is_err());
        let e = current_or_update(path, "new", true).unwrap_err();
        assert!(e.contains("rewritten"), "{e}");
        assert_eq!(std::fs::read_to_string(path).unwrap(), "new");
        assert_eq!(current_or_update(path, "new", false), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
