//! `GET /config` and `POST /config`: the seed's one-shot configuration.
//!
//! Started without a config file, the service is unconfigured; exactly one `POST /config` with
//! a valid config is accepted (201): it is persisted atomically (0600) at the `--config` path and
//! applied at once. Every later POST is 409. Invariants: nothing is written unless the config is
//! valid and the service unconfigured; POSTs are serialised, so two at once cannot both win.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::ApiError;
use crate::config::{self, Config, ConfigError};

/// Applies a config: sets up the environment and (once it owns the lease) starts its stacks.
#[async_trait::async_trait]
pub trait Configure: Send + Sync + 'static {
    /// Apply `config`, which is valid and already persisted; returns its process names.
    async fn configure(&self, config: Config) -> Result<Vec<String>, ApiError>;
}

/// The applied config, and the lock that makes applying it happen once.
pub struct ConfigSlot {
    current: RwLock<Option<Arc<Config>>>,
    apply: tokio::sync::Mutex<()>,
    path: PathBuf,
}

impl ConfigSlot {
    pub fn new(current: Option<Config>, path: PathBuf) -> Self {
        ConfigSlot {
            current: RwLock::new(current.map(Arc::new)),
            apply: tokio::sync::Mutex::new(()),
            path,
        }
    }

    pub fn get(&self) -> Option<Arc<Config>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, c: Config) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(c));
    }

    fn already(&self) -> ApiError {
        let path = self.path.display();
        ApiError::Conflict(format!(
            "state-manager is already configured from {path}; to change the configuration, edit {path}, check it with `state-manager check --config {path}` and restart state-manager"
        ))
    }
}

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
    match state.config().get() {
        Some(c) => Ok(axum::Json(config::redacted(&c)).into_response()),
        None => Err(ApiError::NotFound(
            "state-manager is not configured yet; POST /config with a config to configure it"
                .into(),
        )),
    }
}

/// A request body declared as JSON, read whole (within the body limit), not yet parsed.
pub struct JsonBody(pub Bytes);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be JSON with `Content-Type: application/json`, not {ct:?} (curl: --json @config.json)"
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!(
                    "the body is larger than the limit of {} bytes",
                    super::BODY_LIMIT
                ))
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })?;
        Ok(JsonBody(bytes))
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
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let slot = state.config();
    let _once = slot.apply.lock().await;
    if slot.get().is_some() {
        return Err(slot.already());
    }
    if slot.path.exists() {
        return Err(ApiError::Conflict(format!(
            "a config file appeared at {} since state-manager started; restart state-manager to use it, or remove it and POST again",
            slot.path.display()
        )));
    }
    let config = parse(&body)?;
    persist(slot.path.clone(), body).await?;
    let names = state.configurator().configure(config.clone()).await?;
    tracing::info!(config = %slot.path.display(), processes = names.len(), "configured by POST /config");
    slot.set(config);
    let body = Configured {
        configured: true,
        config_path: slot.path.clone(),
        processes: names,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/config")],
        axum::Json(body),
    )
        .into_response())
}

fn parse(body: &[u8]) -> Result<Config, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8 text: {e}")))?;
    config::parse(text).map_err(|e| match e {
        ConfigError::Syntax { .. } | ConfigError::Read { .. } => {
            ApiError::BadRequest(e.to_string())
        }
        ConfigError::Invalid(problems) => ApiError::InvalidConfig(problems),
    })
}

async fn persist(path: PathBuf, bytes: Bytes) -> Result<(), ApiError> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || config::persist(&path, &bytes))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|cause| ApiError::Internal {
            detail: format!("cannot write the config to {shown}; nothing was applied"),
            cause,
        })
}
