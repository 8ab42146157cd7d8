//! Authentication and authorisation of requests: bearer JWTs checked by extractors.
//!
//! The key ([`crate::auth::Keys`]) is read once at start and kept in the app state — never a
//! global, never from the network. [`Claims`] accepts any valid token with the `read` or `admin`
//! scope; [`Admin`] also requires `admin`. A handler that changes anything takes `Admin`, so
//! forgetting the check does not compile into a hole.
//!
//! Invariants: missing, malformed, expired, badly signed and `alg: none` tokens are all 401 with
//! `WWW-Authenticate: Bearer`; a valid token without the scope is 403. Secrets are never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
/// The claims of the request's token; also the extractor of any authenticated request.
pub use crate::auth::Claims;
use crate::auth::{Auth, Scope};

/// The claims of a request carrying `header` (the `Authorization` value, if any).
fn verify(auth: &Auth, header: Option<&[u8]>) -> Result<Claims, ApiError> {
    let keys = match auth {
        Auth::Insecure => return Ok(Claims::insecure()),
        Auth::Jwt(k) => k,
    };
    let header = header.ok_or_else(|| {
        ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>`; mint one with `state-manager token`".into(),
        )
    })?;
    let token = bearer(header)?;
    Ok(keys.decode(token)?)
}

fn bearer(header: &[u8]) -> Result<&str, ApiError> {
    let text = std::str::from_utf8(header)
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(format!(
            "the Authorization scheme must be Bearer, not {scheme:?}; send `Authorization: Bearer <token>`"
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::Unauthorized(
            "the Bearer token is empty; mint one with `state-manager token`".into(),
        ));
    }
    Ok(token)
}

impl FromRequestParts<AppState> for Claims {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        let claims = verify(state.auth(), header)?;
        if !claims.has(Scope::Read) {
            return Err(ApiError::Forbidden(
                "the token has neither the `read` nor the `admin` scope".into(),
            ));
        }
        Ok(claims)
    }
}

/// A verified token with the `admin` scope: required by every route that changes something.
#[derive(Clone, Debug)]
pub struct Admin(pub Claims);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = Claims::from_request_parts(parts, state).await?;
        if !claims.has(Scope::Admin) {
            return Err(ApiError::Forbidden(
                "this request changes state and needs a token with the `admin` scope; this one has only `read`".into(),
            ));
        }
        tracing::info!(
            sub = claims.sub.as_deref().unwrap_or("-"),
            method = %parts.method,
            path = parts.uri.path(),
            "admin request"
        );
        Ok(Admin(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_with_a_token_is_accepted() {
        assert_eq!(bearer(b"Bearer abc").unwrap(), "abc");
        assert_eq!(bearer(b"bearer  abc ").unwrap(), "abc");
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer   ",
            b"abc",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(bearer(bad), Err(ApiError::Unauthorized(_))),
                "{bad:?}"
            );
        }
    }
}
