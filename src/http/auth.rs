//! Authentication and authorisation: bearer JWTs checked by extractors.
//!
//! The verification key ([`Keys`]) is read once, at start, from the environment and
//! kept in the app state — never a global, never from the network. [`Claims`] accepts any valid
//! token with the `read` or `admin` scope; [`Admin`] also requires `admin`. A handler that
//! changes anything takes `Admin`, so forgetting the check does not compile into a hole.
//!
//! Invariants: missing, malformed, expired, badly signed and `alg: none` tokens are all 401 with
//! `WWW-Authenticate: Bearer`; a valid token without the scope is 403. Secrets are never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
pub use super::keys::{AuthError, ENV_PUBLIC_KEY_FILE, ENV_SECRET, ENV_SECRET_FILE, Keys};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Look: every GET.
    Read,
    /// Look and change.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Verify bearer JWTs with this key.
    Jwt(Box<Keys>),
    /// Accept every request as admin (`--insecure-no-auth`).
    Insecure,
}

impl Auth {
    /// The key from the environment; [`AuthError::NoKey`] when none is set and `insecure` is false.
    pub fn from_env(insecure: bool) -> Result<Auth, AuthError> {
        match Keys::from_env()? {
            Some(keys) => Ok(Auth::Jwt(Box::new(keys))),
            None if insecure => Ok(Auth::Insecure),
            None => Err(AuthError::NoKey),
        }
    }

    /// The claims of a request carrying `header` (the `Authorization` value, if any).
    fn verify(&self, header: Option<&[u8]>) -> Result<Claims, ApiError> {
        let keys = match self {
            Auth::Insecure => return Ok(Claims::insecure()),
            Auth::Jwt(k) => k,
        };
        let header = header.ok_or_else(|| {
            ApiError::Unauthorized(
                "missing `Authorization: Bearer <token>`; mint one with `state-manager token`"
                    .into(),
            )
        })?;
        let token = bearer(header)?;
        keys.decode(token)
    }
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

/// The claims of a verified token: any token with the `read` or `admin` scope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Space-separated scopes: `read`, `admin`.
    #[serde(default)]
    pub scope: String,
}

impl Claims {
    fn insecure() -> Claims {
        Claims {
            sub: Some("insecure-no-auth".into()),
            exp: u64::MAX,
            iat: None,
            scope: "admin".into(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scope
            .split_ascii_whitespace()
            .any(|s| s == scope.as_str() || (scope == Scope::Read && s == Scope::Admin.as_str()))
    }
}

impl FromRequestParts<AppState> for Claims {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        let claims = state.auth().verify(header)?;
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

    fn claims(scope: &str) -> Claims {
        Claims {
            sub: None,
            exp: 0,
            iat: None,
            scope: scope.into(),
        }
    }

    #[test]
    fn admin_implies_read_and_scopes_are_a_space_separated_list() {
        assert!(claims("admin").has(Scope::Read));
        assert!(claims("read admin").has(Scope::Admin));
        assert!(!claims("read").has(Scope::Admin));
        assert!(!claims("readadmin").has(Scope::Read));
        assert!(!claims("").has(Scope::Read));
    }

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
