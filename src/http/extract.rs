//! What handlers take from a request besides its token (that is [`super::auth`]): a JSON body,
//! the query string, path parameters. Every one rejects with problem+json through
//! [`ApiError`], naming the problem and the fix.
//!
//! JSON bodies are read in one place ([`read`]: whole, within [`super::BODY_LIMIT`], 413 beyond;
//! declared as JSON, else 415) and parsed in one place ([`parse`]: malformed JSON is 400, a body
//! of the wrong shape 422). Every body the API takes is an object, so [`parse`] refuses any
//! other JSON value (an array, a string, `null`) with 422 before looking at the fields, and
//! reads the fields through [`crate::config::strict`]: no struct inside a body may be given in
//! serde's positional (array) form either.
//!
//! - [`Json`]: a required body, parsed.
//! - [`OptionalJson`]: a body that may be left out (empty means "all defaults").
//! - [`JsonText`]: a required body left unparsed, for a parser of its own (the config, whose
//!   validation lists every problem).
//! - [`IfMatch`]: the revision a change expects the process set to be at.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::error::ApiError;
use super::listen::BodyReadTimeout;

/// A required JSON body, parsed as `T`. Also an answer: `T` as JSON.
pub struct Json<T>(pub T);

/// A JSON body that may be left out: `None` for an empty (or all-whitespace) body, which needs no
/// content type; when present it must be declared as JSON.
pub struct OptionalJson<T>(pub Option<T>);

/// A required body declared as JSON, read whole but not parsed.
pub struct JsonText(pub Bytes);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        declared_json(req.headers(), "--json '{...}'")?;
        parse(&read(req, state).await?).map(Json)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Only a body that is there needs to be declared as JSON.
        let declared = declared_json(req.headers(), "--json '{...}'");
        let bytes = read(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        declared?;
        parse(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        declared_json(req.headers(), "--json @config.json")?;
        read(req, state).await.map(JsonText)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// 415 unless the content type is `application/json` or `…+json`; `curl` shows how to send it.
fn declared_json(headers: &HeaderMap, curl: &str) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "the body must be JSON with `Content-Type: application/json`, not {ct:?} (curl: {curl})"
    )))
}

/// The whole body, within the body limit and the time to read it ([`BodyReadTimeout`], set by
/// the server's accept loop; without it, the default).
async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyReadTimeout>()
        .map_or(super::listen::BODY_READ_TIMEOUT, |t| t.0);
    let Ok(read) = tokio::time::timeout(limit, Bytes::from_request(req, state)).await else {
        return Err(ApiError::RequestTimeout(format!(
            "the body was not received within {}; send it whole, at once",
            humantime::format_duration(limit)
        )));
    };
    read.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the body is larger than the limit of {} bytes",
            super::BODY_LIMIT
        )),
        _ => ApiError::BadRequest(r.body_text()),
    })
}

/// `bytes` as `T`: 400 if it is not JSON, 422 if it is JSON but not an object or not a `T`. The
/// 422 names the field at fault (`instances: invalid type: string "3", expected …`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let not_json =
        |e: serde_json::Error| ApiError::BadRequest(format!("the body is not valid JSON: {e}"));
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        serde_json::from_slice::<IgnoredAny>(bytes).map_err(not_json)?;
        let kind = match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b'n') => "null",
            Some(b't' | b'f') => "a boolean",
            _ => "a number",
        };
        return Err(ApiError::Unprocessable(format!(
            "the body must be a JSON object ({{...}}), not {kind}"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(not_json)?;
    serde_path_to_error::deserialize(crate::config::strict::Strict(value)).map_err(|e| {
        let path = e.path().to_string();
        let why = e.into_inner();
        ApiError::Unprocessable(if path == "." {
            why.to_string()
        } else {
            format!("{path}: {why}")
        })
    })
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// The `If-Match` header of a change: the revision of the process set it was made against
/// (`"7"`, as `ETag` gives it, or `7`); `None` without the header or with `*`. Anything else
/// is 400.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = v.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let bare = text.strip_prefix("W/").unwrap_or(text);
        let bare = bare
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(bare);
        bare.parse().map(|r| IfMatch(Some(r))).map_err(|_| {
            ApiError::BadRequest(format!(
                "If-Match: {text:?} is not a revision; give the ETag of GET / (a number in quotes, e.g. \"7\"), or leave the header out"
            ))
        })
    }
}

/// `Query` whose rejections are problem+json.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `Path` whose rejections are problem+json.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Default)]
    struct Opts {
        #[serde(default)]
        n: u32,
    }

    /// POST `body` (declared as JSON) to a route taking `OptionalJson<Opts>`.
    async fn send(body: &'static str) -> (StatusCode, String) {
        let app: Router = Router::new().route(
            "/",
            post(|OptionalJson(o): OptionalJson<Opts>| async move {
                Json(o.map_or(-1, |o| i64::from(o.n)))
            }),
        );
        let req = Request::post("/")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_body_must_be_an_object_even_when_every_field_has_a_default() {
        assert_eq!(send(" ").await, (StatusCode::OK, "-1".into()));
        assert_eq!(send("{}").await, (StatusCode::OK, "0".into()));
        assert_eq!(send(r#"{"n": 2}"#).await, (StatusCode::OK, "2".into()));
        for (body, kind) in [
            ("[]", "an array"),
            ("null", "null"),
            (r#""x""#, "a string"),
            ("7", "a number"),
        ] {
            let (status, text) = send(body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
            assert!(text.contains(&format!("not {kind}")), "{body}: {text}");
        }
        let (status, text) = send("[1,").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    }
}
