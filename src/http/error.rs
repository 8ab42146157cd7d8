//! Every failure of the API as one type, [`ApiError`], answered as `application/problem+json`
//! (RFC 9457: `type`, `title`, `status`, `detail`, plus `problems` for an invalid config and
//! `dependants` for a stack others depend on), and the one place where the errors of the layers
//! below (service, node, supervisor, checkpoint, lease, event history, token) become answers:
//! each `From` chooses the status and the `detail`.
//!
//! Invariants: a handler never builds an error response by hand; every extractor the API uses
//! (JSON body, query, path) rejects through `ApiError`, so a client sees one shape for every
//! 4xx and 5xx. Server-side causes are logged here, once, and never echoed beyond `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::InvalidToken;
use crate::checkpoint::CheckpointError;
use crate::config::Problem;
use crate::feed::EventLogError;
use crate::lease::LeaseError;
use crate::node::NodeError;
use crate::service::ServiceError;
use crate::supervisor::SupervisorError;

/// The content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, bad query value, invalid glob.
    #[error("{0}")]
    BadRequest(String),
    /// No or bad credentials. The detail says which; the response carries `WWW-Authenticate`.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the needed scope.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state (e.g. a second `POST /config`).
    #[error("{0}")]
    Conflict(String),
    /// A stack other stacks depend on, which `DELETE /processes/{name}` will not remove without
    /// `force`: a conflict whose answer also lists them (`dependants`), so a client can show
    /// them and offer to remove it anyway.
    #[error("{detail}")]
    HasDependants {
        detail: String,
        dependants: Vec<String>,
    },
    /// `If-Match` names a revision the resource has moved on from.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive within the time to read it.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A body that parses as JSON but has the wrong shape for the request.
    #[error("{0}")]
    Unprocessable(String),
    /// A config or a process spec that parses as JSON but is not valid; every problem is listed.
    #[error("the request body has {} problem(s)", .0.len())]
    InvalidConfig(Vec<Problem>),
    /// The request took longer than its route allows.
    #[error("{0}")]
    Timeout(String),
    /// The service is shutting down or otherwise unable to act now.
    #[error("{0}")]
    Unavailable(String),
    /// This node should get no traffic now (`GET /readyz`): an answer about its role, not a
    /// fault, so it is not logged as one.
    #[error("{0}")]
    NotReady(String),
    /// A failure of ours. `detail` is shown; `cause` is only logged.
    #[error("{detail}: {cause}")]
    Internal { detail: String, cause: String },
}

/// The body of every error answer (RFC 9457 problem details).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ProblemDetails)]
pub struct ProblemBody<'a> {
    /// `urn:state-manager:problem:<kind>`, e.g. `urn:state-manager:problem:not-found`.
    #[serde(rename = "type")]
    #[schema(examples("urn:state-manager:problem:not-found"))]
    kind: String,
    /// The HTTP reason phrase of `status`.
    #[schema(examples("Not Found"))]
    title: &'a str,
    status: u16,
    /// What went wrong and how to fix it.
    detail: String,
    /// Every problem of an invalid config (only with `invalid-config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Problem>>)]
    problems: Option<&'a [Problem]>,
    /// The stacks that depend on the one `DELETE /processes/{name}` was asked to remove (only
    /// with its 409; `?force=true` removes it anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    dependants: Option<&'a [String]>,
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::HasDependants { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) | ApiError::InvalidConfig(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable name of the kind of problem (the tail of `type`).
    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Conflict(_) | ApiError::HasDependants { .. } => "conflict",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::InvalidConfig(_) => "invalid-config",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Internal { .. } => "internal",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::InvalidConfig(p) => format!(
                "the request body has {} problem(s); fix each one listed in `problems` and send it again",
                p.len()
            ),
            ApiError::Internal { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    fn log(&self) {
        let status = self.status_code();
        if status.is_server_error() && !matches!(self, ApiError::NotReady(_)) {
            tracing::error!(status = status.as_u16(), "{self}");
        } else {
            tracing::debug!(status = status.as_u16(), "{self}");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status_code();
        let problems = match &self {
            ApiError::InvalidConfig(p) => Some(p.as_slice()),
            _ => None,
        };
        let dependants = match &self {
            ApiError::HasDependants { dependants, .. } => Some(dependants.as_slice()),
            _ => None,
        };
        let body = ProblemBody {
            kind: format!("urn:state-manager:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.detail(),
            problems,
            dependants,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (status, bytes).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"state-manager\""),
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is never read: a client must not send its next request on
            // this connection, whose unread bytes make the server's side reset it.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::NoMatch { .. } | SupervisorError::NotFound { .. } => {
                ApiError::NotFound(e.to_string())
            }
            SupervisorError::BadPattern { .. } => ApiError::BadRequest(e.to_string()),
            SupervisorError::AlreadyLoaded | SupervisorError::StillRunning { .. } => {
                ApiError::Conflict(e.to_string())
            }
            SupervisorError::ShuttingDown => ApiError::Unavailable(e.to_string()),
            SupervisorError::Probe(_) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let text = e.to_string();
        match e {
            ServiceError::AlreadyConfigured { .. }
            | ServiceError::FileAppeared { .. }
            | ServiceError::NotConfigured => ApiError::Conflict(text),
            ServiceError::NotText(_) | ServiceError::Unparsable(_) => ApiError::BadRequest(text),
            ServiceError::Invalid(problems) => ApiError::InvalidConfig(problems),
            ServiceError::Persist { path, cause } => ApiError::Internal {
                detail: format!(
                    "cannot write the config to {}; nothing was applied",
                    path.display()
                ),
                cause,
            },
            ServiceError::Supervisor(s) => s.into(),
            ServiceError::Node(n) => n.into(),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let text = e.to_string();
        match e {
            NodeError::NotOwner { .. }
            | NodeError::Busy { .. }
            | NodeError::Exists { .. }
            | NodeError::NodeOnly { .. }
            | NodeError::Database(crate::store::StoreError::RevisionMismatch { .. }) => {
                ApiError::Conflict(text)
            }
            NodeError::HasDependants { dependants, .. } => ApiError::HasDependants {
                detail: text,
                dependants,
            },
            NodeError::NoCheckpoint | NodeError::UnknownStack { .. } => ApiError::NotFound(text),
            NodeError::Stale { .. } => ApiError::PreconditionFailed(text),
            NodeError::Invalid(problems) => ApiError::InvalidConfig(problems),
            NodeError::Checkpoint(c) => c.into(),
            NodeError::Lease(l) => l.into(),
            NodeError::Storage(ref s) => storage_unavailable(text, s),
            NodeError::Replication(crate::replication::ReplicationError::Storage(ref s)) => {
                storage_unavailable(text, s)
            }
            NodeError::Replication(_) => ApiError::Unavailable(format!(
                "{text}; is storage reachable? GET / shows the node's state"
            )),
            NodeError::Supervisor(s) => s.into(),
            NodeError::Hook(_) | NodeError::Database(_) | NodeError::Io { .. } => {
                ApiError::Internal {
                    detail: text.clone(),
                    cause: text,
                }
            }
        }
    }
}

impl From<CheckpointError> for ApiError {
    fn from(e: CheckpointError) -> Self {
        let text = e.to_string();
        match e {
            CheckpointError::InvalidId { .. } | CheckpointError::InvalidLabel { .. } => {
                ApiError::BadRequest(text)
            }
            CheckpointError::NotFound { .. } => ApiError::NotFound(text),
            CheckpointError::Unreadable { .. }
            | CheckpointError::CorruptChunk { .. }
            | CheckpointError::MissingChunk { .. }
            | CheckpointError::SizeMismatch { .. } => ApiError::Unprocessable(text),
            CheckpointError::Busy
            | CheckpointError::GcBusy { .. }
            | CheckpointError::ConcurrentGc { .. }
            | CheckpointError::GcWaitTimeout { .. }
            | CheckpointError::Fenced { .. } => ApiError::Conflict(text),
            CheckpointError::Store(ref s) => storage_unavailable(text, s),
            // A process that did not stop in time (stuck on a busy disk): the next try may succeed.
            CheckpointError::Freeze { .. } => ApiError::Unavailable(text),
            _ => ApiError::Internal {
                detail: text.clone(),
                cause: text,
            },
        }
    }
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        let text = e.to_string();
        match e {
            LeaseError::Held { .. }
            | LeaseError::NotHeld { .. }
            | LeaseError::Superseded { .. } => ApiError::Conflict(text),
            LeaseError::Storage { ref source, .. } => storage_unavailable(text, source),
            LeaseError::Timeout { .. } | LeaseError::Stopped => ApiError::Unavailable(text),
            _ => ApiError::Internal {
                detail: text.clone(),
                cause: text,
            },
        }
    }
}

/// The 503 of a request that needed storage: `text` already names the cause and its fix when
/// the failure is known (a [`crate::objstore::Failure`]); otherwise the operator is pointed at
/// the storage health in `GET /`.
fn storage_unavailable(text: String, e: &crate::objstore::StorageError) -> ApiError {
    match e.failure() {
        Some(_) => ApiError::Unavailable(format!("{text} (GET / shows storage health)")),
        None => ApiError::Unavailable(format!(
            "{text}; is storage reachable? GET / shows storage health"
        )),
    }
}

impl From<EventLogError> for ApiError {
    fn from(e: EventLogError) -> Self {
        ApiError::Internal {
            detail: "the event history cannot be read now; try again".into(),
            cause: e.to_string(),
        }
    }
}

impl From<InvalidToken> for ApiError {
    fn from(e: InvalidToken) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

/// The 404 for a path no route matches.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint at {}; GET / shows the status, GET /openapi.json lists every endpoint",
        uri.path()
    ))
}

/// The 405 for a known path with the wrong method.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; GET /openapi.json lists the methods of each endpoint",
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes that would not stop for the checkpoint are a reason to try again, not a fault
    /// of the server. (A process held in state D for 10 s cannot be produced on demand.)
    #[test]
    fn a_failed_freeze_is_unavailable_not_internal() {
        let e = CheckpointError::Freeze {
            source: "process 7 is still in state D".into(),
        };
        assert_eq!(
            ApiError::from(e).status_code(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
