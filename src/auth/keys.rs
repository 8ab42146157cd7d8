//! JWT keys: read once from the environment at start ([`Keys::from_env`]), used to verify
//! bearer tokens and, with a shared secret, to mint them (`state-manager token`).
//!
//! Invariants: the key never comes from the network and is never logged (only where it came
//! from); a public key accepts only the algorithms of its own kind, so an HS256 token keyed with
//! the public key's bytes (algorithm confusion) and `alg: none` are refused.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{Claims, InvalidToken, Scope};

/// Environment variable holding the HS256 secret itself.
pub const ENV_SECRET: &str = "STATE_MANAGER_JWT_SECRET";
/// Environment variable naming a file that holds the HS256 secret.
pub const ENV_SECRET_FILE: &str = "STATE_MANAGER_JWT_SECRET_FILE";
/// Environment variable naming a PEM public key (RSA, EC P-256/P-384, Ed25519): verify only.
pub const ENV_PUBLIC_KEY_FILE: &str = "STATE_MANAGER_JWT_PUBLIC_KEY_FILE";

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

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read {
        var,
        path: path.display().to_string(),
        source,
    })
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Seconds of clock difference allowed between the minting machine and this one, for `exp`,
/// `nbf` and `iat` alike.
pub const LEEWAY_SECS: u64 = 5;

fn validation(algorithms: &[Algorithm]) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms.to_vec();
    v.set_required_spec_claims(&["exp"]);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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

    /// The claims of `token` if it is signed with our key, not expired and uses an accepted
    /// algorithm; else why not.
    pub fn decode(&self, token: &str) -> Result<Claims, InvalidToken> {
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
                InvalidToken(why)
            })?;
        // jsonwebtoken does not look at `iat`; a token issued in the future is as suspect as
        // one not valid yet.
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now_secs() + LEEWAY_SECS)
        {
            return Err(InvalidToken(
                "the token was issued in the future (`iat`); check the clocks of both machines",
            ));
        }
        Ok(data.claims)
    }

    /// Sign a token with the shared secret (for `state-manager token` and tests).
    pub fn mint(&self, sub: &str, scope: Scope, ttl: Duration) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotSign)?;
        let now = now_secs();
        let claims = Claims {
            sub: Some(sub.to_string()),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            scope: scope.as_str().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).map_err(AuthError::Sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(keys.decode(&tampered), Err(InvalidToken(_))));
        assert!(Keys::hs256(b"", "X").is_err());
    }

    #[test]
    fn a_token_not_valid_yet_or_issued_in_the_future_is_refused() {
        let secret = b"unit-secret-0123456789abcdef012345";
        let keys = Keys::hs256(secret, "test").unwrap();
        let now = now_secs();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let future = now + 3600;
        let nbf = sign(serde_json::json!({"scope": "admin", "nbf": future, "exp": now + 7200}));
        let err = keys.decode(&nbf).unwrap_err().0;
        assert!(err.contains("not valid yet"), "{err}");
        let iat = sign(serde_json::json!({"scope": "admin", "iat": future, "exp": now + 7200}));
        let err = keys.decode(&iat).unwrap_err().0;
        assert!(err.contains("issued in the future"), "{err}");
        // Within the leeway both pass, as do an `nbf` and `iat` in the past.
        let near = now + LEEWAY_SECS - 1;
        let ok =
            sign(serde_json::json!({"scope": "admin", "nbf": near, "iat": near, "exp": now + 60}));
        assert!(keys.decode(&ok).is_ok());
        let past = sign(
            serde_json::json!({"scope": "admin", "nbf": now - 60, "iat": now - 60, "exp": now + 60}),
        );
        assert!(keys.decode(&past).is_ok());
    }
}
