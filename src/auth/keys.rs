//! JWT keys: read once from the environment at start ([`Keys::from_env`]), used to verify
//! bearer tokens and, with a shared secret, to mint them (`state-manager token`).
//!
//! Invariants: the key never comes from the network and is never logged (only where it came
//! from); a public key accepts only the algorithms of its own kind, so an HS256 token keyed with
//! the public key's bytes (algorithm confusion) and `alg: none` are refused. What a token must
//! carry besides its signature is in `rules.rs`; a minted token satisfies those rules.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;

use super::rules::{self, Expect, RSA_ALGS};
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
    algorithms: &'static [Algorithm],
    expect: Expect,
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
        let keys = if let Some(s) = secret {
            Keys::hs256(&s.into_encoded_bytes(), ENV_SECRET)?
        } else if let Some(path) = secret_file {
            let bytes = read(ENV_SECRET_FILE, Path::new(&path))?;
            Keys::hs256(bytes.trim_ascii_end(), ENV_SECRET_FILE)?
        } else if let Some(path) = public {
            let pem = read(ENV_PUBLIC_KEY_FILE, Path::new(&path))?;
            let shown = Path::new(&path).display().to_string();
            Keys::public_pem(&pem, &shown)?
        } else {
            return Ok(None);
        };
        Ok(Some(keys.expecting(Expect::from_env())))
    }

    /// These keys, accepting only tokens with the audience and issuer of `expect` (and minting
    /// tokens that carry them).
    pub fn expecting(mut self, expect: Expect) -> Keys {
        self.validation = expect.validation(self.algorithms);
        self.expect = expect;
        self
    }

    fn new(
        decoding: DecodingKey,
        algorithms: &'static [Algorithm],
        encoding: Option<EncodingKey>,
        source: String,
    ) -> Keys {
        let expect = Expect::default();
        Keys {
            decoding,
            algorithms,
            validation: expect.validation(algorithms),
            expect,
            encoding,
            source,
        }
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
        Ok(Keys::new(
            DecodingKey::from_secret(secret),
            &[Algorithm::HS256],
            Some(EncodingKey::from_secret(secret)),
            source.to_string(),
        ))
    }

    /// A PEM public key: verify only. The key's kind decides the accepted algorithms.
    pub fn public_pem(pem: &[u8], path: &str) -> Result<Keys, AuthError> {
        let (decoding, algs): (DecodingKey, &'static [Algorithm]) =
            if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                (k, &[Algorithm::EdDSA])
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                (k, &[Algorithm::ES256, Algorithm::ES384])
            } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (k, &RSA_ALGS)
            } else {
                return Err(AuthError::BadPublicKey { path: path.into() });
            };
        Ok(Keys::new(
            decoding,
            algs,
            None,
            format!("{ENV_PUBLIC_KEY_FILE} ({path})"),
        ))
    }

    /// The claims of `token` if it is signed with our key, uses an accepted algorithm and
    /// satisfies the rules of `rules.rs` (times, audience, issuer); else why not.
    pub fn decode(&self, token: &str) -> Result<Claims, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| rules::refusal(&e))?;
        rules::check_iat(data.claims.iat)?;
        Ok(data.claims)
    }

    /// Sign a token with the shared secret (for `state-manager token` and tests).
    pub fn mint(&self, sub: &str, scope: Scope, ttl: Duration) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotSign)?;
        let now = rules::now_secs();
        let claims = Minted {
            claims: Claims {
                sub: Some(sub.to_string()),
                exp: now + ttl.as_secs(),
                iat: Some(now),
                scope: scope.as_str().to_string(),
            },
            aud: self.expect.audience.first().map(String::as_str),
            iss: self.expect.issuer.first().map(String::as_str),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).map_err(AuthError::Sign)
    }
}

/// A minted token's claims: ours, and the audience and issuer this service expects.
#[derive(Serialize)]
struct Minted<'a> {
    #[serde(flatten)]
    claims: Claims,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Expect;

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
        let now = rules::now_secs();
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
        let near = now + rules::LEEWAY_SECS - 1;
        let ok =
            sign(serde_json::json!({"scope": "admin", "nbf": near, "iat": near, "exp": now + 60}));
        assert!(keys.decode(&ok).is_ok());
        let past = sign(
            serde_json::json!({"scope": "admin", "nbf": now - 60, "iat": now - 60, "exp": now + 60}),
        );
        assert!(keys.decode(&past).is_ok());
    }

    #[test]
    fn minted_tokens_carry_the_expected_audience_and_issuer() {
        let keys = Keys::hs256(b"unit-secret-0123456789abcdef012345", "test").unwrap();
        let plain = keys
            .mint("me", Scope::Read, Duration::from_secs(60))
            .unwrap();
        let keys = keys.expecting(Expect {
            audience: vec!["sm".into(), "other".into()],
            issuer: vec!["idp".into()],
        });
        // Which of the two missing claims is named first is the library's choice.
        let err = keys.decode(&plain).unwrap_err().0;
        assert!(
            err.contains("no `aud`") || err.contains("no `iss`"),
            "{err}"
        );
        let t = keys
            .mint("me", Scope::Read, Duration::from_secs(60))
            .unwrap();
        assert!(keys.decode(&t).is_ok());
    }
}
