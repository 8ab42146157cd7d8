//! Authentication and authorisation: bearer JWTs checked by extractors.
//!
//! The verification key is read once, at start, from the environment ([`Auth::from_env`]) and
//! kept in the app state — never a global, never from the network. [`Claims`] accepts any valid
//! token with the `read` or `admin` scope; [`Admin`] also requires `admin`. A handler that
//! changes anything takes `Admin`, so forgetting the check does not compile into a hole.
//!
//! Invariants: missing, malformed, expired, badly signed and `alg: none` tokens are all 401 with
//! `WWW-Authenticate: Bearer`; a valid token without the scope is 403. Secrets are never logged.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;

/// Environment variable holding the HS256 secret itself.
pub const ENV_SECRET: &str = "STATE_MANAGER_JWT_SECRET";
/// Environment variable naming a file that holds the HS256 secret.
pub const ENV_SECRET_FILE: &str = "STATE_MANAGER_JWT_SECRET_FILE";
/// Environment variable naming a PEM public key (RSA, EC P-256/P-384, Ed25519): verify only.
pub const ENV_PUBLIC_KEY_FILE: &str = "STATE_MANAGER_JWT_PUBLIC_KEY_FILE";

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

/// The verification key and, for a shared secret, the signing key for `state-manager token`.
#[derive(Clone)]
pub struct Keys {
    decoding: DecodingKey,
    validation: Validation,
    encoding: Option<EncodingKey>,
    /// Where the key came from, for the start-up log (never the key itself).
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no JWT key configured: set {ENV_SECRET} (a shared secret, HS256), {ENV_SECRET_FILE} (a file holding it) or {ENV_PUBLIC_KEY_FILE} (a PEM public key: RS256, ES256 or EdDSA); or run with --insecure-no-auth (STATE_MANAGER_INSECURE_NO_AUTH=1) to accept unauthenticated requests"
    )]
    NoKey,
    #[error("{var} is set but empty; put the secret in it or unset it")]
    Empty { var: &'static str },
    #[error("{var}: cannot read {path}: {source}")]
    Read {
        var: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{ENV_PUBLIC_KEY_FILE}: {path} is not a PEM public key of a supported kind (RSA, EC P-256/P-384, Ed25519)"
    )]
    BadPublicKey { path: String },
    #[error(
        "only one of {ENV_SECRET}, {ENV_SECRET_FILE} and {ENV_PUBLIC_KEY_FILE} may be set; unset the others"
    )]
    Ambiguous,
    #[error(
        "minting tokens needs the shared secret ({ENV_SECRET} or {ENV_SECRET_FILE}); with a public key, sign tokens with its private key"
    )]
    CannotSign,
    #[error("cannot sign the token: {0}")]
    Sign(jsonwebtoken::errors::Error),
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

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read {
        var,
        path: path.display().to_string(),
        source,
    })
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

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn validation(algorithms: &[Algorithm]) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms.to_vec();
    v.set_required_spec_claims(&["exp"]);
    v.leeway = 5;
    v.validate_aud = false;
    v
}

impl Keys {
    /// The key named by the environment, if any. At most one of the three variables may be set.
    pub fn from_env() -> Result<Option<Keys>, AuthError> {
        let get = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
        let (secret, secret_file, public) = (
            get(ENV_SECRET),
            get(ENV_SECRET_FILE),
            get(ENV_PUBLIC_KEY_FILE),
        );
        let set = [&secret, &secret_file, &public]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set > 1 {
            return Err(AuthError::Ambiguous);
        }
        if let Some(s) = secret {
            return Keys::hs256(&s.into_encoded_bytes(), ENV_SECRET).map(Some);
        }
        if let Some(path) = secret_file {
            let bytes = read(ENV_SECRET_FILE, Path::new(&path))?;
            return Keys::hs256(bytes.trim_ascii_end(), ENV_SECRET_FILE).map(Some);
        }
        if let Some(path) = public {
            let pem = read(ENV_PUBLIC_KEY_FILE, Path::new(&path))?;
            let shown = Path::new(&path).display().to_string();
            return Keys::public_pem(&pem, &shown).map(Some);
        }
        Ok(None)
    }

    /// A shared secret (HS256): verifies and signs.
    pub fn hs256(secret: &[u8], source: &'static str) -> Result<Keys, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::Empty { var: source });
        }
        if secret.len() < 32 {
            tracing::warn!(
                "{source} is shorter than 32 bytes; use a longer random secret (e.g. `openssl rand -hex 32`)"
            );
        }
        Ok(Keys {
            decoding: DecodingKey::from_secret(secret),
            validation: validation(&[Algorithm::HS256]),
            encoding: Some(EncodingKey::from_secret(secret)),
            source: source.to_string(),
        })
    }

    /// A PEM public key: verify only. The key's kind decides the accepted algorithms.
    pub fn public_pem(pem: &[u8], path: &str) -> Result<Keys, AuthError> {
        let (decoding, algs): (DecodingKey, &[Algorithm]) =
            if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                (k, &[Algorithm::EdDSA])
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                (k, &[Algorithm::ES256, Algorithm::ES384])
            } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (k, &RSA_ALGS)
            } else {
                return Err(AuthError::BadPublicKey { path: path.into() });
            };
        Ok(Keys {
            decoding,
            validation: validation(algs),
            encoding: None,
            source: format!("{ENV_PUBLIC_KEY_FILE} ({path})"),
        })
    }

    fn decode(&self, token: &str) -> Result<Claims, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired; mint a new one",
                    ErrorKind::InvalidSignature => "the token's signature does not match our key",
                    ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted here",
                    ErrorKind::MissingRequiredClaim(_) => "the token has no `exp` claim",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)",
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(format!("invalid bearer token: {why}"))
            })?;
        Ok(data.claims)
    }

    /// Sign a token with the shared secret (for `state-manager token` and tests).
    pub fn mint(&self, sub: &str, scope: Scope, ttl: Duration) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotSign)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: Some(sub.to_string()),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            scope: scope.as_str().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).map_err(AuthError::Sign)
    }
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

    #[test]
    fn a_minted_token_verifies_and_a_tampered_one_does_not() {
        let keys = Keys::hs256(b"unit-secret-0123456789abcdef012345", "test").unwrap();
        let t = keys
            .mint("me", Scope::Admin, Duration::from_secs(60))
            .unwrap();
        let c = keys.decode(&t).unwrap();
        assert_eq!((c.sub.as_deref(), c.scope.as_str()), (Some("me"), "admin"));
        let mut tampered = t.into_bytes();
        let n = tampered.len();
        tampered[n - 2] = if tampered[n - 2] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(
            keys.decode(&tampered),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(Keys::hs256(b"", "X").is_err());
    }
}
