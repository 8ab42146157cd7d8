//! `GET /config` and `POST /config`: the seed's one-shot configuration. The handlers only read
//! the body and answer; [`crate::service`] checks, persists and applies the config (and says
//! why not: 409 once configured, 422 with every problem of an invalid config).

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::ApiError;
use super::extract::JsonText;
use crate::config::{self, Config};

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
