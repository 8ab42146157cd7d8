//! `GET /config`, `POST /config` (the seed's one-shot configuration) and `PUT /config` (a
//! reload with a plan). The handlers only read the body and answer; [`crate::service`] checks,
//! persists and applies the config (and says why not: 409 once configured or for a node-only
//! setting, 412 for a stale `If-Match`, 422 with every problem of an invalid config).

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::ApiError;
use super::extract::{IfMatch, JsonText, Query};
use super::procset::with_etag;
use crate::config::{self, Config};
use crate::node::{ReloadOptions, Reloaded};

/// The applied config.
///
/// Every secret (storage keys, webhook authorisations) is redacted.
#[utoipa::path(
    get,
    path = "/config",
    operation_id = "get_config",
    tag = "config",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The config, secrets redacted", body = Config),
        (status = 404, description = "Not configured yet"),
    )
)]
pub async fn get(_: Claims, State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.service().config() {
        Some(c) => Ok(axum::Json(config::redacted(&c)).into_response()),
        None => Err(ApiError::NotFound(
            "state-manager is not configured yet; POST /config with a config to configure it"
                .into(),
        )),
    }
}

/// The answer of a successful `POST /config`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Configured {
    /// Always `true`.
    pub configured: bool,
    /// Where the config was persisted.
    #[schema(value_type = String)]
    pub config_path: PathBuf,
    /// The names of the configured processes.
    pub processes: Vec<String>,
}

/// Configure the service, once.
///
/// Started without a config file, the service is unconfigured: the first valid config is
/// validated, persisted (0600) at the `--config` path and applied at once. Every later POST is
/// 409; to change the config, edit the file and restart.
#[utoipa::path(
    post,
    path = "/config",
    operation_id = "configure",
    tag = "config",
    request_body(content = Config, description = "The whole config (`config.example.json` shows every option)", content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Configured", body = Configured, headers(("location" = String, description = "`/config`"))),
        (status = 400, description = "The body is not JSON (or not UTF-8)"),
        (status = 409, description = "Already configured, or a config file appeared since the start"),
        (status = 408, description = "The body was not received whole within 30 s"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "The config is not valid: `problems` lists every problem"),
        (status = 500, description = "The config cannot be written"),
        (status = 503, description = "Storage cannot be reached or the service is shutting down"),
    )
)]
pub async fn post(
    _: Admin,
    State(state): State<AppState>,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    let service = state.service();
    let applied = service.configure(&body).await?;
    let body = Configured {
        configured: true,
        config_path: service.config_path().to_path_buf(),
        processes: applied.processes.clone(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/config")],
        axum::Json(body),
    )
        .into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReloadQuery {
    /// Answer the plan and change nothing (not the file, not the set, not a process).
    #[serde(default)]
    dry_run: bool,
}

/// Reload the config.
///
/// The body is the whole new config, validated like `POST /config`. The difference is applied:
/// stacks added are started, removed ones stopped, changed ones restarted one instance at a time
/// (each ready before the next), unchanged ones untouched (same pids); stacks added or changed
/// through the API are kept. A new global `env` reaches untouched processes at their next start
/// (`env_affected`). The file is written (0600) before anything changes. Settings the node keeps
/// from its start (storage, `node_id`, `stacks_dir`, lease) cannot change: 409.
#[utoipa::path(
    put,
    path = "/config",
    operation_id = "reload_config",
    tag = "config",
    params(ReloadQuery, ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#, description = "Reload only if the process set is still at this revision (the `ETag` of `GET /`, e.g. `\"7\"`); 412 otherwise")),
    request_body(content = Config, description = "The whole config", content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Reloaded (or, with `dry_run=true`, what a reload would do)", body = Reloaded, headers(("etag" = String, description = "The revision of the process set after the reload, quoted: `\"7\"`"))),
        (status = 400, description = "The body is not JSON (or not UTF-8), a bad query or `If-Match`"),
        (status = 408, description = "The body was not received whole within 30 s"),
        (status = 409, description = "Not configured yet, a node-only setting differs, or this node does not own the environment"),
        (status = 412, description = "`If-Match` names a revision the set has moved on from"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "The config is not valid: `problems` lists every problem"),
        (status = 500, description = "The config cannot be written"),
        (status = 503, description = "The state database cannot be written, or the service is shutting down"),
    )
)]
pub async fn put(
    Admin(who): Admin,
    State(state): State<AppState>,
    Query(q): Query<ReloadQuery>,
    IfMatch(expected): IfMatch,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    let opts = ReloadOptions {
        dry_run: q.dry_run,
        expected,
        by: who.sub,
        write: None,
    };
    let reloaded = state.service().reload(Some(&body), opts).await?;
    Ok(with_etag(reloaded.revision, axum::Json(reloaded)))
}
