//! The API's description, `GET /openapi.json` (OpenAPI 3.1), generated from the handlers.
//!
//! Each handler carries its `#[utoipa::path]` (path, parameters, body, responses, scope) and the
//! router is assembled from those handlers by `utoipa_axum` ([`super::api`]), so a route and its
//! description are registered by the same call and cannot drift apart. This module adds what is
//! common to every operation, from the same facts the server acts on:
//! - every 4xx/5xx answer is `application/problem+json` ([`ProblemBody`]);
//! - an operation that names a scope answers 401 without a valid token and 403 without the scope;
//! - a route under a time limit ([`with_deadline`]) answers 503 when it passes.
//!
//! Invariant: the document is built once, when the router is, and served as it is.

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::auth::Claims;
use super::error::{PROBLEM_JSON, ProblemBody};
use super::events::UsageEvent;

/// The name of the bearer JWT security scheme.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "state-manager",
        description = "The control plane of state-manager: processes, configuration, checkpoints \
            of the environment directory, and the lease that decides which node owns it.\n\n\
            Every request except `GET /healthz`, `GET /readyz` and the console (`GET /ui`) \
            carries `Authorization: Bearer <JWT>` (mint one with `state-manager token`). A token \
            with the `read` scope may call every GET; everything that changes state needs the \
            `admin` scope. Every error is `application/problem+json`."
    ),
    modifiers(&Bearer),
    components(schemas(
        ProblemBody,
        UsageEvent,
        crate::feed::StorageEvent,
        crate::config::NameGlob
    )),
    tags(
        (name = "status", description = "Status, liveness and metrics"),
        (name = "config", description = "The one-shot configuration"),
        (name = "processes", description = "Supervised processes, their logs and ports"),
        (name = "events", description = "Lifecycle events of the processes"),
        (name = "checkpoints", description = "Checkpoints of the environment directory"),
        (name = "lease", description = "The lease: which node owns the environment"),
        (name = "openapi", description = "This description"),
        (name = "console", description = "The operator's console, a page for a browser"),
    )
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "A JWT whose `scope` claim holds `read` (every GET) or `admin` (everything). \
             Each operation lists the scope it needs."
                .into(),
        );
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The document's parts that belong to no route: info, security scheme, tags, shared schemas.
pub fn base() -> Document {
    ApiDoc::openapi()
}

/// The description of every route, as served by `GET /openapi.json`.
pub fn document() -> Document {
    super::api().1
}

/// `router` with the time limit of [`super::deadline`], and its 503 in each operation.
pub fn with_deadline(router: OpenApiRouter<AppState>, limit: Duration) -> OpenApiRouter<AppState> {
    let mut router = router.layer(axum::middleware::from_fn_with_state(limit, super::deadline));
    let description = format!(
        "The request did not finish within {} (what it started may still be going on), or the \
         service is shutting down",
        humantime::format_duration(limit)
    );
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        for op in operations(item) {
            let responses = &mut op.responses.responses;
            responses
                .entry("503".into())
                .or_insert_with(|| ResponseBuilder::new().description(&description).into());
        }
    }
    router
}

/// The operations whose body is optional (their handlers take `OptionalJson`).
const OPTIONAL_BODIES: [&str; 2] = ["create_checkpoint", "release_lease"];

/// Complete every operation of `doc`: the 401 and 403 of its scope, and the problem+json body
/// of each error answer.
pub fn finish(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            // A body taken through `OptionalJson` may be left out, but when sent it is an object,
            // never `null`: not required, and not nullable.
            if OPTIONAL_BODIES.contains(&op.operation_id.as_deref().unwrap_or(""))
                && let Some(RefOr::T(body)) = op.request_body.as_mut()
            {
                body.required = Some(utoipa::openapi::Required::False);
            }
            if let Some(scope) = scope(op) {
                add_auth_answers(op, &scope);
            }
            for (status, response) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) =
                    (status.parse().is_ok_and(|s: u16| s >= 400), response)
                {
                    problem_body(response);
                }
            }
        }
    }
}

/// Every operation of a path, whatever its method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The scope an operation's bearer requirement names, if it has one.
fn scope(op: &Operation) -> Option<String> {
    let requirements = serde_json::to_value(op.security.as_ref()?).ok()?;
    requirements.as_array()?.iter().find_map(|r| {
        r.get(BEARER)?
            .as_array()?
            .first()?
            .as_str()
            .map(str::to_string)
    })
}

fn add_auth_answers(op: &mut Operation, scope: &str) {
    let challenge = HeaderBuilder::new()
        .schema(Some(<String as utoipa::PartialSchema>::schema()))
        .description(Some("`Bearer realm=\"state-manager\"`"))
        .build();
    let unauthorized = ResponseBuilder::new()
        .description(
            "No token, or one that is malformed, expired or badly signed; mint one with \
             `state-manager token`",
        )
        .header("WWW-Authenticate", challenge)
        .build();
    let forbidden = if scope == "admin" {
        "The token has the `read` scope only; this request needs `admin`"
    } else {
        "The token has neither the `read` nor the `admin` scope"
    };
    let responses = &mut op.responses.responses;
    responses.insert("401".into(), unauthorized.into());
    responses.insert(
        "403".into(),
        ResponseBuilder::new().description(forbidden).into(),
    );
}

fn problem_body(response: &mut ApiResponse) {
    if response.content.is_empty() {
        let schema = Ref::from_schema_name(<ProblemBody as utoipa::ToSchema>::name());
        response
            .content
            .insert(PROBLEM_JSON.into(), Content::new(Some(schema)).into());
    }
}

/// The serialised document, shared by every request (cloning it shares the bytes).
#[derive(Clone)]
pub struct Served(Bytes);

impl Served {
    pub fn new(doc: &Document) -> Served {
        Served(serde_json::to_vec(doc).unwrap_or_default().into())
    }
}

/// This description of the API.
///
/// OpenAPI 3.1, generated from the handlers of this server.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "openapi",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn serve(_: Claims, Extension(doc): Extension<Served>) -> Response {
    let mut resp = doc.0.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every operation of the document, as JSON: (method, path, operation).
    fn operations() -> Vec<(String, String, Value)> {
        let doc = serde_json::to_value(super::document()).unwrap();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_operation_has_a_summary_an_id_a_tag_and_its_auth_answers() {
        let ops = operations();
        assert!(ops.len() >= 22, "{}", ops.len());
        for (method, path, op) in ops {
            let what = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| s.len() > 5),
                "{what}"
            );
            assert!(op["operationId"].is_string(), "{what}");
            assert!(op["tags"][0].is_string(), "{what}");
            let secured = op.get("security").is_some();
            let public = matches!(path.as_str(), "/healthz" | "/readyz" | "/ui" | "/ui/{file}");
            assert_eq!(secured, !public, "{what}");
            for status in ["401", "403"] {
                assert_eq!(
                    op["responses"].get(status).is_some(),
                    secured,
                    "{what} {status}"
                );
            }
        }
    }

    #[test]
    fn every_error_answer_is_problem_json_and_timed_routes_answer_503() {
        for (method, path, op) in operations() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.as_str() < "400" {
                    continue;
                }
                let schema = &response["content"][super::PROBLEM_JSON]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ProblemDetails",
                    "{method} {path} {status}"
                );
            }
            let timed = !matches!(
                path.as_str(),
                "/healthz" | "/readyz" | "/events/stream" | "/ui" | "/ui/{file}"
            );
            let has_503 = op["responses"].get("503").is_some();
            assert!(has_503 || !timed, "{method} {path} has no 503");
        }
    }
}
